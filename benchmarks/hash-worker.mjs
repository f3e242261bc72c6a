// strongEtag against @fastify/etag's default hash function, rebuilt here exactly as its
// buildHashFn makes it. Alternating timed blocks (A B | B A | …), one ratio per pair.
import { createHash } from 'node:crypto'
import { strongEtag } from 'fastify-precondition'
import { summary } from './stats.mjs'

const fastifyEtagDefault = ((hash) => (payload) => '"' + hash(payload) + '"')(
  (payload) => createHash('sha1').update(payload).digest('base64'))

const quick = process.argv.includes('--quick')
const pairs = quick ? 5 : 10
const blockMs = quick ? 50 : 250

let sink = 0
function opsPerSecond (fn, payload) {
  const end = performance.now() + blockMs
  let ops = 0
  let now
  do {
    // Batches keep the clock out of the measurement for small payloads.
    for (let i = 0; i < 64; i++) sink += fn(payload).length
    ops += 64
    now = performance.now()
  } while (now < end)
  return ops / ((now - end + blockMs) / 1000)
}

const rows = []
for (const bytes of [200, 10 * 1024, 1_000_000]) {
  const buffer = Buffer.alloc(bytes, 'abcdefghij')
  for (const [kind, payload] of [['Buffer', buffer], ['string', buffer.toString('latin1')]]) {
    if (strongEtag(payload) !== fastifyEtagDefault(payload)) throw new Error(`tags differ for ${bytes} B ${kind}`)
    const label = `${bytes >= 1_000_000 ? '1 MB' : bytes >= 1024 ? bytes / 1024 + ' KB' : bytes + ' B'} ${kind}`
    opsPerSecond(strongEtag, payload)
    opsPerSecond(fastifyEtagDefault, payload)
    const a = []
    const b = []
    for (let i = 0; i < pairs; i++) {
      if (i % 2 === 0) {
        a.push(opsPerSecond(strongEtag, payload))
        b.push(opsPerSecond(fastifyEtagDefault, payload))
      } else {
        b.push(opsPerSecond(fastifyEtagDefault, payload))
        a.push(opsPerSecond(strongEtag, payload))
      }
    }
    rows.push({ label, bytes, kind, a: summary(a).median, b: summary(b).median, ratio: summary(a.map((value, i) => value / b[i])) })
  }
}
process.send({ type: 'hash', rows, sink: sink > 0 })
process.disconnect()
