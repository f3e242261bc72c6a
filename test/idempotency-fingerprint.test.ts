// The request fingerprint and the body digest taken while the body streams.
import { createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'tap'
import { DigestStream, EMPTY_BODY_DIGEST, fingerprint, hasBody, UNREAD_BODY } from '../lib/idempotency/fingerprint.js'

const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('base64url')
const base = { method: 'POST', route: '/orders', url: '/orders', scope: '', body: EMPTY_BODY_DIGEST }

test('every part counts', async (t) => {
  const one = fingerprint(base)
  t.equal(one, fingerprint({ ...base }), 'the same parts, the same fingerprint')
  t.match(one, /^[\w-]{43}$/)
  const variants = [
    { method: 'PUT' },
    { route: '/orders/:id' },
    { url: '/orders?x=1' },
    { scope: 'user-1' },
    { body: sha('{}') },
    { body: UNREAD_BODY }
  ]
  const seen = new Set([one])
  for (const change of variants) seen.add(fingerprint({ ...base, ...change }))
  t.equal(seen.size, variants.length + 1, 'each change makes another fingerprint')
  t.not(fingerprint({ ...base, route: '/a', url: 'b' }), fingerprint({ ...base, route: '/ab', url: '' }), 'parts cannot run into each other')
})

test('hasBody reads the head as Fastify does', async (t) => {
  t.equal(hasBody({}), false)
  t.equal(hasBody({ 'content-length': '0' }), false)
  t.equal(hasBody({ 'content-length': '2' }), true)
  t.equal(hasBody({ 'transfer-encoding': 'chunked' }), true)
})

test('DigestStream hashes the bytes it passes on, unchanged', async (t) => {
  const chunks = [Buffer.from('{"a":'), Buffer.from([0xff, 0x00]), Buffer.from('1}')]
  const source = Readable.from(chunks)
  const digest = new DigestStream(source)
  t.equal(digest.digest, null, 'unknown before the end')
  const out: Buffer[] = []
  await pipeline(source, digest, async function (stream) {
    for await (const chunk of stream) out.push(chunk as Buffer)
  })
  t.same(Buffer.concat(out), Buffer.concat(chunks), 'passed through')
  t.equal(digest.digest, sha(Buffer.concat(chunks)))
  t.equal(digest.receivedEncodedLength, undefined)
  const decoded = Object.assign(Readable.from([]), { receivedEncodedLength: 42 })
  t.equal(new DigestStream(decoded).receivedEncodedLength, 42, 'an earlier stage\'s count of the raw bytes is kept')
  t.equal(EMPTY_BODY_DIGEST, sha(''))
})
