// The request fingerprint and the body digest taken while the body streams.
import { createHash } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'tap'
import { BodyDigest, EMPTY_BODY_DIGEST, fingerprint, hasBody, UNREAD_BODY } from '../lib/idempotency/fingerprint.js'

// Byte streams, as a request is (Readable.from is in object mode unless told otherwise).
const bytes = (chunks: Buffer[]) => Readable.from(chunks, { objectMode: false })
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

test('BodyDigest hashes what the stream hands its reader, however it is read', async (t) => {
  const chunks = [Buffer.from('{"a":'), Buffer.from([0xff, 0x00]), Buffer.from('1}')]
  const whole = sha(Buffer.concat(chunks))
  const readers: Record<string, (stream: Readable) => Promise<Buffer>> = {
    'a data listener': (stream) => new Promise((resolve) => {
      const out: Buffer[] = []
      stream.on('data', (chunk: Buffer) => out.push(chunk)).on('end', () => resolve(Buffer.concat(out)))
    }),
    'async iteration (read() in paused mode)': async (stream) => {
      const out: Buffer[] = []
      for await (const chunk of stream) out.push(chunk as Buffer)
      return Buffer.concat(out)
    },
    pipe: async (stream) => {
      const out: Buffer[] = []
      await pipeline(stream, new Writable({ write (chunk: Buffer, _encoding, callback) { out.push(chunk); callback() } }))
      return Buffer.concat(out)
    },
    'a reader that starts late': async (stream) => {
      await new Promise((resolve) => setTimeout(resolve, 20))
      return await readers['async iteration (read() in paused mode)'](stream)
    }
  }
  for (const [name, read] of Object.entries(readers)) {
    const source = bytes(chunks.map((chunk) => Buffer.from(chunk)))
    const digest = new BodyDigest(source)
    t.equal(digest.digest, null, `${name}: unknown before the end`)
    t.same(await read(source), Buffer.concat(chunks), `${name}: the reader gets every byte`)
    t.equal(digest.digest, whole, name)
  }
  const one = bytes([Buffer.from('{"one":1}')])
  const oneDigest = new BodyDigest(one)
  await readers['a data listener'](one)
  t.equal(oneDigest.digest, sha('{"one":1}'), 'one chunk')
  const empty = bytes([])
  const emptyDigest = new BodyDigest(empty)
  await readers['a data listener'](empty)
  t.equal(emptyDigest.digest, EMPTY_BODY_DIGEST, 'no chunk')
  const text = bytes([Buffer.from('h\u00e9'), Buffer.from('llo')])
  text.setEncoding('utf8')
  const textDigest = new BodyDigest(text)
  let received = ''
  for await (const chunk of text) received += chunk as string
  t.equal(received, 'h\u00e9llo')
  t.equal(textDigest.digest, sha('h\u00e9llo'), 'strings from setEncoding() are hashed as their UTF-8 bytes')
  t.equal(EMPTY_BODY_DIGEST, sha(''))
})
