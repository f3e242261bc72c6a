// The request fingerprint and the body digest taken while the body streams.
import { createHash } from 'node:crypto'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { test } from 'tap'
import { BodyDigest, requestHead, routeHead, storeKey, unreadFingerprint } from '../lib/idempotency/fingerprint.js'

// Byte streams, as a request is (Readable.from is in object mode unless told otherwise).
const bytes = (chunks: Buffer[]) => Readable.from(chunks, { objectMode: false })
const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('base64url')

const HEAD = requestHead('POST', '/orders', '/orders')

test('every part of the head counts, and parts cannot run into each other', async (t) => {
  const one = unreadFingerprint(HEAD)
  t.equal(one, unreadFingerprint(requestHead('POST', '/orders', '/orders')), 'the same parts, the same fingerprint')
  t.match(one, /^[\w-]{43}$/)
  t.equal(one, sha(HEAD + 'u'), 'the head, then "u": no parser read the body')
  const seen = new Set([
    one,
    unreadFingerprint(requestHead('PUT', '/orders', '/orders')),
    unreadFingerprint(requestHead('POST', '/orders/:id', '/orders')),
    unreadFingerprint(requestHead('POST', '/orders', '/orders?x=1')),
    unreadFingerprint(requestHead('POST', '/orders', '/orders', 'text/plain'))
  ])
  t.equal(seen.size, 5, 'each change makes another fingerprint, the media type too')
  t.equal(requestHead('POST', '/orders', '/orders', 'Application/JSON; charset=utf-8'), requestHead('POST', '/orders', '/orders', 'application/json'),
    'the media type without its parameters, in lower case')
  t.equal(requestHead('POST', '/orders', '/orders', ' text/plain '), requestHead('POST', '/orders', '/orders', 'text/plain'))
  t.not(requestHead('POST', '/a', 'b'), requestHead('POST', '/ab', ''), 'length-prefixed')
  t.equal(requestHead('P\u00c9', '', ''), '3:P\u00c9;0:;0:;0:;', 'lengths in UTF-8 bytes')
})

test('a route\'s head, its parts kept from one request to the next, is requestHead\'s for every request', async (t) => {
  const head = routeHead('/orders/:id')
  // Methods and media types alternate, repeat and come back, so a part kept from the request
  // before would show.
  const requests: Array<[string, string, string | undefined]> = [
    ['POST', '/orders/1', 'application/json'],
    ['POST', '/orders/2', 'application/json'],
    ['PUT', '/orders/2', 'application/json'],
    ['PUT', '/orders/2', undefined],
    ['POST', '/orders/\u00e9', 'Text/Plain; charset=utf-8'],
    ['POST', '/orders/1', undefined],
    ['P\u00c9', '/orders/1', 'application/json'],
    ['POST', '/orders/1', 'application/json']
  ]
  for (const [method, url, type] of requests) t.equal(head(method, url, type), requestHead(method, '/orders/:id', url, type), `${method} ${url} ${String(type)}`)
})

test('store keys: no two (scope, key) pairs share one', async (t) => {
  t.equal(storeKey('', 'k-1'), 'k-1', 'no scope: the key itself')
  t.equal(storeKey('u', 'k-1'), ' 1:uk-1', 'a scope: a space (never in a key), its length, the scope, the key')
  t.not(storeKey('a:', 'b'), storeKey('a', ':b'), 'where the scope ends is in the length')
  t.not(storeKey('1', ':x'), storeKey('', '1:1:x'))
  // Every pair of strings up to 3 characters over an alphabet of the separator, digits and a
  // letter (keys are visible ASCII, so none starts with a space; scopes may hold anything).
  const words = (alphabet: string[]) => {
    const all = new Set<string>()
    for (const x of alphabet) for (const y of alphabet) for (const z of alphabet) all.add(x + y + z)
    return [...all]
  }
  const keys = words(['', ':', '1', '2', 'a']).filter((key) => key !== '')
  const owners = words(['', ':', '1', '2', 'a', ' '])
  const seen = new Map<string, string>()
  let collisions = 0
  for (const owner of owners) {
    for (const key of keys) {
      const pair = JSON.stringify([owner, key])
      const stored = storeKey(owner, key)
      if (seen.has(stored) && seen.get(stored) !== pair) collisions++
      seen.set(stored, pair)
    }
  }
  t.equal(collisions, 0, `${owners.length * keys.length} pairs, each its own store key`)
})

test('BodyDigest hashes the head and what the stream hands its reader, however it is read', async (t) => {
  const chunks = [Buffer.from('{"a":'), Buffer.from([0xff, 0x00]), Buffer.from('1}')]
  // The head, "b", and each body byte as one character (latin1), all hashed as UTF-8.
  const whole = sha(HEAD + 'b' + Buffer.concat(chunks).toString('latin1'))
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
    const digest = new BodyDigest(source, HEAD)
    t.equal(digest.fingerprint, null, `${name}: unknown before the end`)
    t.same(await read(source), Buffer.concat(chunks), `${name}: the reader gets every byte`)
    t.equal(digest.fingerprint, whole, name)
  }
  const one = bytes([Buffer.from('{"one":1}')])
  const oneDigest = new BodyDigest(one, HEAD)
  await readers['a data listener'](one)
  t.equal(oneDigest.fingerprint, sha(HEAD + 'b{"one":1}'), 'one chunk')
  const empty = bytes([])
  const emptyDigest = new BodyDigest(empty, HEAD)
  await readers['a data listener'](empty)
  t.equal(emptyDigest.fingerprint, sha(HEAD + 'b'), 'no chunk: the head and "b"')
  t.not(emptyDigest.fingerprint, unreadFingerprint(HEAD), 'an empty body read is not a body left unread')
  const text = bytes([Buffer.from('h\u00e9'), Buffer.from('llo')])
  text.setEncoding('utf8')
  const textDigest = new BodyDigest(text, HEAD)
  let received = ''
  for await (const chunk of text) received += chunk as string
  t.equal(received, 'h\u00e9llo')
  t.equal(textDigest.fingerprint, sha(HEAD + 'b' + Buffer.from('h\u00e9llo').toString('latin1')), 'strings from setEncoding() are hashed as their UTF-8 bytes')
})
