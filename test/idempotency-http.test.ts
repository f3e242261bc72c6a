// The Idempotency-Key policy over real HTTP on loopback, through the test stand-in for the
// plugin's wiring (test/helpers/idempotency-app.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import { test, type Test } from 'tap'
import { ProblemCode } from '../lib/errors.js'
import { ANSWER_STORE_WAIT } from '../lib/idempotency/calls.js'
import { isReplay } from '../lib/slots.js'
import { MemoryIdempotencyStore } from '../lib/idempotency/memory.js'
import type { ClaimResult, IdempotencyStore } from '../lib/idempotency/store.js'
import { idempotencyApp, listen } from './helpers/idempotency-app.js'
import { closed, partialRequest, send, sleep } from './helpers/http.js'

async function start (t: Test, app: FastifyInstance): Promise<number> {
  t.teardown(() => app.close())
  return await listen(app)
}

async function until (what: string, condition: () => boolean, limit = 5000): Promise<void> {
  const end = Date.now() + limit
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** An orders API: POST /orders creates one; `runs` counts handler runs. */
async function ordersApp (t: Test, idempotency: unknown = { required: true }, options: Parameters<typeof idempotencyApp>[0] = {}) {
  const app = await idempotencyApp(options)
  const state = { runs: 0, delay: 0, status: 201, replays: [] as boolean[] }
  app.addHook('onSend', async (request) => { state.replays.push(isReplay(request)) })
  app.post('/orders', { config: { idempotency } }, async (request, reply) => {
    state.runs++
    const id = state.runs
    if (state.delay > 0) await sleep(state.delay)
    return reply.code(state.status).header('location', `/orders/${id}`).header('etag', `"o${id}"`)
      .header('last-modified', 'Sun, 06 Nov 1994 08:49:37 GMT').header('x-other', 'not kept')
      .send({ id, ...(request.body as object) })
  })
  app.get('/orders', { config: { idempotency } }, async () => {
    state.runs++
    return { list: true }
  })
  const port = await start(t, app)
  return { app, port, state }
}

const post = (port: number, key: string | undefined, body: unknown = { item: 'book' }, headers: Record<string, string> = {}) =>
  send(port, { method: 'POST', path: '/orders', body, headers: key === undefined ? headers : { 'idempotency-key': key, ...headers } })

test('a missing key where required: 400 problem, handler not run', async (t) => {
  const { port, state } = await ordersApp(t)
  const res = await post(port, undefined)
  t.equal(res.status, 400)
  t.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(res.json(), {
    type: 'about:blank',
    title: 'Bad Request',
    status: 400,
    detail: 'This request must carry an Idempotency-Key header, so that a retry of it is never applied twice. Send a new unique key (a UUID, say) for each change, and the same key when you retry that change.',
    instance: '/orders',
    code: ProblemCode.IDEMPOTENCY_KEY_MISSING
  })
  t.equal(state.runs, 0)
})

test('a malformed key: 400 problem, even where not required', async (t) => {
  const { port, state } = await ordersApp(t, true, { problemTypeBase: 'https://example.com/problems/' })
  for (const key of ['"unterminated', 'a b', '"x"; p=1', 'k'.repeat(256)]) {
    const res = await post(port, key)
    t.equal(res.status, 400, key)
    t.match(res.json(), { code: ProblemCode.IDEMPOTENCY_KEY_INVALID, type: 'https://example.com/problems/idempotency-key-invalid', status: 400 })
  }
  t.equal(state.runs, 0)
})

test('without a key where not required, every request runs', async (t) => {
  const { port, state } = await ordersApp(t, true)
  t.equal((await post(port, undefined)).status, 201)
  t.equal((await post(port, undefined)).status, 201)
  t.equal(state.runs, 2)
})

test('safe methods are left alone', async (t) => {
  const { port, state } = await ordersApp(t)
  t.equal((await send(port, { path: '/orders', headers: { 'idempotency-key': 'a b' } })).status, 200, 'not even checked')
  t.equal((await send(port, { path: '/orders' })).status, 200, 'not required')
  t.equal(state.runs, 2)
})

test('the same key twice: one run, the second response identical with Idempotent-Replayed', async (t) => {
  const { port, state } = await ordersApp(t)
  const first = await post(port, '"order-1"')
  const second = await post(port, 'order-1')
  t.equal(state.runs, 1, 'the handler ran once; "order-1" and order-1 are one key')
  t.equal(first.status, 201)
  t.equal(second.status, 201)
  t.equal(second.body, first.body, 'the same body, byte for byte')
  for (const name of ['content-type', 'location', 'etag', 'last-modified']) t.equal(second.headers[name], first.headers[name], name)
  t.equal(first.headers['idempotent-replayed'], undefined, 'the first is not a replay')
  t.equal(second.headers['idempotent-replayed'], 'true')
  t.equal(second.headers['x-other'], undefined, 'other headers are not stored')
  t.same(state.replays, [false, true], 'isReplay tells them apart')
})

test('replayed byte for byte: a string with characters beyond ASCII, bytes that are not UTF-8, an empty body', async (t) => {
  const app = await idempotencyApp()
  const bodies: Record<string, string | Buffer | undefined> = {
    '/text': '{"name":"caf\u00e9 \u2713 \ud83d\ude00"}',
    '/bytes': Buffer.from([0x7b, 0xff, 0x00, 0xc3, 0x28, 0x7d]),
    '/empty': undefined
  }
  for (const [path, body] of Object.entries(bodies)) {
    app.post(path, { config: { idempotency: true } }, async (request, reply) => {
      reply.code(201).type(typeof body === 'string' ? 'application/json; charset=utf-8' : 'application/octet-stream')
      return reply.send(body)
    })
  }
  const port = await start(t, app)
  const raw = (path: string) => new Promise<{ headers: Record<string, unknown>, bytes: Buffer }>((resolve, reject) => {
    const request = httpRequest({ port, host: '127.0.0.1', method: 'POST', path, headers: { 'idempotency-key': 'k' + path } }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk)).on('end', () => resolve({ headers: response.headers, bytes: Buffer.concat(chunks) }))
    })
    request.on('error', reject).end()
  })
  for (const [path, body] of Object.entries(bodies)) {
    const first = await raw(path)
    const second = await raw(path)
    const expected = body === undefined ? Buffer.alloc(0) : Buffer.from(body)
    t.ok(first.bytes.equals(expected), `${path}: the first answer is the handler's`)
    t.equal(second.headers['idempotent-replayed'], 'true', `${path}: replayed`)
    t.ok(second.bytes.equals(first.bytes), `${path}: the same ${first.bytes.length} bytes`)
    t.equal(second.headers['content-length'], first.headers['content-length'], `${path}: the same Content-Length`)
    t.equal(second.headers['content-type'], first.headers['content-type'], `${path}: the same Content-Type`)
  }
})

test('50 concurrent duplicates: one run, the others 409 or the replay', async (t) => {
  const { port, state } = await ordersApp(t)
  state.delay = 100
  const results = await Promise.all(Array.from({ length: 50 }, () => post(port, 'burst')))
  t.equal(state.runs, 1, 'one handler run')
  const created = results.filter((r) => r.status === 201)
  const busy = results.filter((r) => r.status === 409)
  t.equal(created.length + busy.length, 50, `only 201 and 409 (${results.map((r) => r.status).join(' ')})`)
  t.equal(created.filter((r) => r.headers['idempotent-replayed'] === undefined).length, 1, 'one original')
  for (const r of created) t.equal(r.body, created[0].body)
  t.ok(busy.length > 0, 'some came while the first ran')
  for (const r of busy) {
    // A short hint, not the lease's end (10 s): the renewal interval (3.3 s), in whole seconds.
    t.equal(r.headers['retry-after'], '3', 'Retry-After: at most the renewal interval')
    t.match(r.json(), { status: 409, title: 'Conflict', code: ProblemCode.IDEMPOTENCY_KEY_IN_USE, instance: '/orders' })
  }
  const after = await post(port, 'burst')
  t.equal(after.headers['idempotent-replayed'], 'true', 'once done, a duplicate gets the replay')
})

test('the same key with another body, method or URL: 422', async (t) => {
  const { port, state } = await ordersApp(t)
  t.equal((await post(port, 'k', { item: 'book' })).status, 201)
  const res = await post(port, 'k', { item: 'pen' })
  t.equal(res.status, 422)
  t.match(res.json(), { status: 422, title: 'Unprocessable Content', code: ProblemCode.IDEMPOTENCY_KEY_MISMATCH })
  t.equal((await post(port, 'k', { item: 'book' }, { 'x-noise': '1' })).status, 201, 'other headers do not matter')
  t.equal((await send(port, { method: 'POST', path: '/orders?x=1', body: { item: 'book' }, headers: { 'idempotency-key': 'k' } })).status, 422, 'another URL')
  t.equal((await post(port, 'k', '{"item": "book"}')).status, 422, 'the bytes count, not the parsed value')
  t.equal(state.runs, 1)
})

test('the same key under two scopes: two runs', async (t) => {
  const { port, state } = await ordersApp(t, { required: true, scope: (request: FastifyRequest) => String(request.headers['x-user']) })
  const a = await post(port, 'k', undefined, { 'x-user': 'alice' })
  const b = await post(port, 'k', undefined, { 'x-user': 'bob' })
  t.equal(state.runs, 2)
  t.not(a.body, b.body)
  t.equal((await post(port, 'k', undefined, { 'x-user': 'bob' })).headers['idempotent-replayed'], 'true', 'each scope replays its own')
  t.equal(state.runs, 2)
})

test('a bad scope function fails the request, not silently', async (t) => {
  const app = await idempotencyApp()
  app.post('/throws', { config: { idempotency: { scope: () => { throw new Error('no user') } } } }, async () => 'ran')
  app.post('/number', { config: { idempotency: { scope: () => 1 } } }, async () => 'ran')
  const port = await start(t, app)
  t.equal((await send(port, { method: 'POST', path: '/throws', headers: { 'idempotency-key': 'k' } })).status, 500)
  const res = await send(port, { method: 'POST', path: '/number', headers: { 'idempotency-key': 'k' } })
  t.equal(res.status, 500)
  t.match(res.json().message, /scope must return a string; got number/)
})

test('a stored response expires after the ttl', async (t) => {
  const { port, state } = await ordersApp(t, { ttl: 0.3 })
  await post(port, 'k')
  t.equal((await post(port, 'k')).headers['idempotent-replayed'], 'true')
  await sleep(400)
  const again = await post(port, 'k', { item: 'other' })
  t.equal(again.status, 201, 'a fresh key, even for another body')
  t.equal(again.headers['idempotent-replayed'], undefined)
  t.equal(state.runs, 2)
})

test('5xx answers are not stored: the key is released and a retry runs', async (t) => {
  const { port, state } = await ordersApp(t)
  state.status = 503
  t.equal((await post(port, 'k')).status, 503)
  state.status = 201
  const retry = await post(port, 'k')
  t.equal(retry.status, 201)
  t.equal(retry.headers['idempotent-replayed'], undefined)
  t.equal(state.runs, 2)
})

test('a handler that throws releases the key; a 4xx answer is stored', async (t) => {
  const app = await idempotencyApp()
  let runs = 0
  app.post('/fails', { config: { idempotency: true } }, async () => {
    runs++
    if (runs === 1) throw new Error('boom')
    return 'ok'
  })
  app.post('/sync-throws', { config: { idempotency: true } }, () => {
    runs++
    throw new Error('sync boom')
  })
  app.post('/missing', { config: { idempotency: true } }, async (_request, reply) => {
    runs++
    return reply.code(404).send({ message: 'no such thing' })
  })
  const port = await start(t, app)
  const call = (path: string) => send(port, { method: 'POST', path, headers: { 'idempotency-key': 'k' + path } })
  t.equal((await call('/fails')).status, 500)
  t.equal((await call('/fails')).body, 'ok', 'retried after a 500')
  t.equal((await call('/sync-throws')).status, 500)
  t.equal((await call('/sync-throws')).status, 500)
  t.equal(runs, 4)
  t.equal((await call('/missing')).status, 404)
  const replayed = await call('/missing')
  t.equal(replayed.status, 404)
  t.equal(replayed.headers['idempotent-replayed'], 'true')
  t.equal(runs, 5)
})

test('responses of every payload kind are stored byte for byte', async (t) => {
  const app = await idempotencyApp()
  let runs = 0
  app.post('/stream', { config: { idempotency: true } }, async (_request, reply) => {
    runs++
    return reply.type('text/plain').send(Readable.from([Buffer.from('chunk one, '), Buffer.from('chunk two')]))
  })
  app.post('/buffer', { config: { idempotency: true } }, async (_request, reply) => {
    runs++
    return reply.type('application/octet-stream').send(Buffer.from([0, 1, 2, 255]))
  })
  app.post('/empty', { config: { idempotency: true } }, async (_request, reply) => {
    runs++
    return reply.code(204).send()
  })
  app.post('/broken-stream', { config: { idempotency: true } }, async (_request, reply) => {
    runs++
    const stream = new Readable({ read () { this.destroy(new Error('disk gone')) } })
    return reply.type('text/plain').send(stream)
  })
  const port = await start(t, app)
  for (const path of ['/stream', '/buffer', '/empty']) {
    const first = await send(port, { method: 'POST', path, headers: { 'idempotency-key': path } })
    const second = await send(port, { method: 'POST', path, headers: { 'idempotency-key': path } })
    t.equal(second.status, first.status, path)
    t.equal(second.body, first.body, path)
    t.equal(second.headers['content-type'], first.headers['content-type'], path)
    t.equal(second.headers['idempotent-replayed'], 'true', path)
  }
  t.equal(runs, 3)
  t.equal((await send(port, { method: 'POST', path: '/broken-stream', headers: { 'idempotency-key': 'b' } })).status, 500)
  t.equal((await send(port, { method: 'POST', path: '/broken-stream', headers: { 'idempotency-key': 'b' } })).status, 500, 'not stored')
  t.equal(runs, 5)
})

test('a body the handler reads itself is fingerprinted without it', async (t) => {
  const app = await idempotencyApp()
  app.addContentTypeParser('application/x-ndjson', (_request, payload, done) => done(null, payload))
  let runs = 0
  app.post('/upload', { config: { idempotency: true } }, async (request) => {
    runs++
    let text = ''
    for await (const chunk of request.body as Readable) text += String(chunk)
    return { bytes: text.length }
  })
  const port = await start(t, app)
  const upload = (body: string) => new Promise<{ status: number, body: string }>((resolve, reject) => {
    import('node:http').then(({ request }) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', headers: { 'content-type': 'application/x-ndjson', 'idempotency-key': 'u' } }, (res) => {
        let text = ''
        res.on('data', (chunk) => { text += chunk })
        res.on('end', () => resolve({ status: res.statusCode as number, body: text }))
      })
      req.on('error', reject)
      req.end(body)
    }, reject)
  })
  const first = await upload('{"a":1}\n')
  t.same(JSON.parse(first.body), { bytes: 8 }, 'the handler still gets the whole stream')
  const second = await upload('{"b":22}\n')
  t.equal(second.body, first.body, 'replayed: the body was not part of the fingerprint')
  t.equal(runs, 1)
})

/**
 * POSTs `chunks` on a fresh connection, one TCP write each, `gap` ms apart, and reads the answer.
 * With `chunked`, each write is one chunk of a chunked body; otherwise Content-Length is the sum.
 */
async function postInPieces (port: number, path: string, headers: Record<string, string>, chunks: Buffer[], gap = 15, chunked = false): Promise<{ status: number, body: string }> {
  const { connect } = await import('node:net')
  const socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0)
  const head = [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close',
    chunked ? 'transfer-encoding: chunked' : `content-length: ${length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)].join('\r\n') + '\r\n\r\n'
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => received.push(chunk))
  const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.write(head)
  for (const chunk of chunks) {
    await sleep(gap)
    socket.write(chunked ? Buffer.concat([Buffer.from(chunk.length.toString(16) + '\r\n'), chunk, Buffer.from('\r\n')]) : chunk)
  }
  if (chunked) socket.write('0\r\n\r\n')
  await ended
  const text = Buffer.concat(received).toString()
  const [top, ...rest] = text.split('\r\n\r\n')
  return { status: Number(top.split(' ')[1]), body: rest.join('\r\n\r\n') }
}

test('the body digest covers every byte the parser reads, however the body arrives and whenever the parser reads', async (t) => {
  const { gzipSync, createGunzip } = await import('node:zlib')
  const app = await idempotencyApp()
  // An earlier preParsing stage that hands the parser a different stream (as a decompressor does).
  app.addHook('preParsing', async (request, _reply, payload) => {
    if (request.headers['content-encoding'] !== 'gzip') return payload
    // receivedEncodedLength: what Fastify checks Content-Length against (as @fastify/compress sets it).
    const gunzip = Object.assign(createGunzip(), { receivedEncodedLength: 0 })
    payload.on('data', (chunk: Buffer) => { gunzip.receivedEncodedLength += chunk.length })
    payload.pipe(gunzip)
    return gunzip
  })
  // A stream parser that starts reading only after an await, by async iteration.
  app.addContentTypeParser('application/x-late', async (_request: FastifyRequest, payload: Readable) => {
    await sleep(30)
    let text = ''
    for await (const chunk of payload) text += String(chunk)
    return { text }
  })
  let runs = 0
  app.post('/echo', { config: { idempotency: true } }, async (request) => {
    runs++
    return { run: runs, body: request.body }
  })
  const port = await start(t, app)
  const json = { 'content-type': 'application/json' }
  const body = Buffer.from(JSON.stringify({ name: 'widget', note: 'x'.repeat(2000) }))
  const split = (bytes: Buffer, ...at: number[]) => [0, ...at].map((start, i) => bytes.subarray(start, [...at, bytes.length][i]))

  // Content-Length, three writes.
  const first = await postInPieces(port, '/echo', { ...json, 'idempotency-key': 'a' }, split(body, 10, 1500))
  t.equal(first.status, 200)
  t.same(JSON.parse(first.body).body, JSON.parse(body.toString()), 'the handler got the whole body')
  const again = await postInPieces(port, '/echo', { ...json, 'idempotency-key': 'a' }, split(body, 700), 5, true)
  t.equal(again.body, first.body, 'the same bytes cut elsewhere and sent chunked: replayed')
  const changed = Buffer.from(body)
  changed[changed.length - 3] = 0x79 // the last chunk's "x" becomes "y"
  t.equal((await postInPieces(port, '/echo', { ...json, 'idempotency-key': 'a' }, split(changed, 10, 1500))).status, 422,
    'a byte changed in the last piece: another request')
  t.equal(runs, 1)

  // A parser that reads late, after every byte has arrived.
  const late = { 'content-type': 'application/x-late', 'idempotency-key': 'b' }
  const lateFirst = await postInPieces(port, '/echo', late, split(Buffer.from('one two three'), 4), 1)
  t.same(JSON.parse(lateFirst.body).body, { text: 'one two three' }, 'the late parser lost nothing')
  t.equal((await postInPieces(port, '/echo', late, [Buffer.from('one two three')])).body, lateFirst.body, 'replayed')
  t.equal((await postInPieces(port, '/echo', late, [Buffer.from('one two four')])).status, 422)
  t.equal(runs, 2)

  // Through the decompressing stage: the digest is of what the parser reads.
  const zipped = { ...json, 'content-encoding': 'gzip', 'idempotency-key': 'c' }
  const zipFirst = await postInPieces(port, '/echo', zipped, [gzipSync(body, { level: 1 })])
  t.same(JSON.parse(zipFirst.body).body, JSON.parse(body.toString()))
  t.equal((await postInPieces(port, '/echo', zipped, [gzipSync(body, { level: 9 })])).body, zipFirst.body,
    'the same body compressed otherwise: replayed')
  t.equal((await postInPieces(port, '/echo', zipped, [gzipSync(changed)])).status, 422)
  t.equal(runs, 3)
})

test('a client that leaves while the handler runs: the answer is still stored, and a retry gets it', async (t) => {
  const { port, state } = await ordersApp(t)
  state.delay = 150
  const body = JSON.stringify({ item: 'book' })
  const socket = await partialRequest(port, 'POST', '/orders', { 'idempotency-key': 'gone' }, body.length, body)
  await until('the handler to start', () => state.runs === 1)
  socket.destroy()
  t.equal((await post(port, 'gone')).status, 409, 'still running')
  await sleep(250)
  const retry = await post(port, 'gone')
  t.equal(retry.status, 201)
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.equal(retry.json().id, 1)
  t.equal(state.runs, 1)
})

function waiter () {
  let open: () => void = () => {}
  const gate = new Promise<void>((resolve) => { open = resolve })
  const state = { entered: false }
  const hook = (_request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    state.entered = true
    gate.then(() => done(), undefined)
  }
  return { hook, open: () => open(), state }
}

test('a client that leaves before the handler runs frees the key, and the handler never runs', async (t) => {
  const store = new MemoryIdempotencyStore()
  const app = await idempotencyApp({ store })
  let runs = 0
  const after = waiter()
  const before = waiter()
  app.post('/after', { config: { idempotency: true, afterClaim: after.hook } }, async () => { runs++; return 'ran' })
  app.post('/before', { config: { idempotency: true }, preHandler: [before.hook] }, async () => { runs++; return 'ran' })
  const port = await start(t, app)

  const one = await partialRequest(port, 'POST', '/after', { 'idempotency-key': 'early' }, 2, '{}')
  await until('the claim', () => after.state.entered)
  t.equal((await send(port, { method: 'POST', path: '/after', body: {}, headers: { 'idempotency-key': 'early' } })).status, 409, 'claimed')
  one.destroy()
  await closed(one)
  await until('the key to be let go', () => store.size === 0)
  after.open()
  await sleep(20)
  t.equal(runs, 0, 'the handler did not run for a client that left')
  const retry = await send(port, { method: 'POST', path: '/after', body: {}, headers: { 'idempotency-key': 'early' } })
  t.equal(retry.status, 200, 'the key was freed')
  t.equal(retry.headers['idempotent-replayed'], undefined)
  t.equal(runs, 1)

  const two = await partialRequest(port, 'POST', '/before', { 'idempotency-key': 'earlier' }, 2, '{}')
  await until('the route hook', () => before.state.entered)
  two.destroy()
  await closed(two)
  await sleep(100)
  before.open()
  await sleep(20)
  t.equal(runs, 1, 'gone before the claim: nothing claimed, nothing run')
  const fresh = await send(port, { method: 'POST', path: '/before', body: {}, headers: { 'idempotency-key': 'earlier' } })
  t.equal(fresh.status, 200)
  t.equal(fresh.headers['idempotent-replayed'], undefined)
})

/** The memory store behind a fake: each method can be replaced. */
function fakeStore (overrides: Partial<IdempotencyStore>): IdempotencyStore {
  const memory = new MemoryIdempotencyStore({ lease: 30 })
  return {
    lease: overrides.lease ?? memory.lease,
    claim: overrides.claim ?? memory.claim.bind(memory),
    complete: overrides.complete ?? memory.complete.bind(memory),
    release: overrides.release ?? memory.release.bind(memory),
    renew: overrides.renew ?? memory.renew.bind(memory)
  }
}

function logged () {
  const lines: Array<{ level: number, msg: string }> = []
  const stream = { write (line: string) { lines.push(JSON.parse(line)) } }
  return { lines, logger: { level: 'warn', stream } }
}

test('a store that fails: 503 problem with Retry-After, the handler not run', async (t) => {
  let runs = 0
  for (const [name, claim] of [
    ['throws', () => { throw new Error('down') }],
    ['rejects', () => Promise.reject(new Error('down'))]
  ] as const) {
    const log = logged()
    const app = await idempotencyApp({ store: fakeStore({ claim }), retryAfter: 3 }, { logger: log.logger })
    app.post('/x', { config: { idempotency: true } }, async () => { runs++; return 'ran' })
    const port = await start(t, app)
    const res = await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } })
    t.equal(res.status, 503, name)
    t.equal(res.headers['retry-after'], '3')
    t.match(res.json(), { status: 503, title: 'Service Unavailable', code: ProblemCode.IDEMPOTENCY_UNAVAILABLE })
    t.match(log.lines, [{ level: 40, code: ProblemCode.IDEMPOTENCY_UNAVAILABLE, reason: 'down', msg: /idempotency store failed/ }])
    t.notOk(log.lines.some((line) => 'err' in line), 'no stack')
  }
  t.equal(runs, 0)
})

test('store failures after the handler are logged, and the answer still goes out', async (t) => {
  const cases: Array<[string, Partial<IdempotencyStore>, number, RegExp]> = [
    ['complete throws', { complete: () => { throw new Error('down') } }, 200, /storing the answer .* failed; trying again while its lease is kept/],
    ['complete rejects', { complete: () => Promise.reject(new Error('down')) }, 200, /storing the answer .* failed; trying again while its lease is kept/],
    ['complete finds the key taken', { complete: () => false }, 200, /claimed by another request before the answer was stored/],
    ['release throws', { release: () => { throw new Error('down') } }, 500, /releasing an Idempotency-Key failed/],
    ['release rejects', { release: () => Promise.reject(new Error('down')) }, 500, /releasing an Idempotency-Key failed/]
  ]
  for (const [name, overrides, status, message] of cases) {
    const log = logged()
    const app = await idempotencyApp({ store: fakeStore(overrides) }, { logger: log.logger })
    app.post('/x', { config: { idempotency: true } }, async (_request, reply) => reply.code(status).send('answer'))
    const port = await start(t, app)
    t.equal((await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } })).status, status, name)
    await until('the log line', () => log.lines.length > 0)
    t.match(log.lines[0].msg, message, name)
  }
})

test('a client that has its answer and sends the key again at once gets the replay: the answer is stored before it is sent', async (t) => {
  for (const status of [201, 422, 500]) {
    const memory = new MemoryIdempotencyStore()
    // A store as slow as a remote one: completing or releasing takes 40 ms.
    const slow = fakeStore({
      lease: memory.lease,
      claim: memory.claim.bind(memory),
      complete: async (...args) => { await sleep(40); return memory.complete(...args) },
      release: async (...args) => { await sleep(40); memory.release(...args) }
    })
    const app = await idempotencyApp({ store: slow })
    let runs = 0
    app.post('/x', { config: { idempotency: true } }, async (_request, reply) => reply.code(status).send(`run ${++runs}`))
    const port = await start(t, app)
    const request = { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } }
    const first = await send(port, request)
    const again = await send(port, request)
    t.equal(first.status, status)
    if (status < 500) {
      t.equal(again.status, status, `${status}: the retry is not told the key is in use`)
      t.equal(again.headers['idempotent-replayed'], 'true', `${status}: replayed`)
      t.equal(again.body, first.body)
      t.equal(runs, 1)
    } else {
      t.equal(again.body, 'run 2', '5xx: the key was released before the answer went out, so the retry runs')
    }
  }
})

test('a store that answers with promises: a callback-style handler answers by itself, and replays and 409s still come', async (t) => {
  const memory = new MemoryIdempotencyStore()
  const later = <T>(value: T) => new Promise<T>((resolve) => setTimeout(() => resolve(value), 5))
  const store = fakeStore({
    lease: memory.lease,
    claim: (...args) => later(memory.claim(...args)),
    complete: (...args) => later(memory.complete(...args)),
    release: (...args) => later(memory.release(...args))
  })
  const app = await idempotencyApp({ store })
  let runs = 0
  app.post('/callback', { config: { idempotency: true } }, function (_request, reply) {
    runs++
    setTimeout(() => reply.code(201).send(`answered later ${runs}`), 400)
  })
  const port = await start(t, app)
  const request = { method: 'POST', path: '/callback', headers: { 'idempotency-key': 'k' } }
  // Wide margins: a loaded machine stretches every timer.
  const [first, during] = await Promise.all([send(port, request), sleep(150).then(() => send(port, request))])
  t.equal(first.status, 201)
  t.equal(first.body, 'answered later 1', 'the handler\'s own answer, not an empty one sent for it')
  t.equal(during.status, 409, 'while it runs')
  const again = await send(port, request)
  t.equal(again.body, first.body)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(runs, 1)
})

test('a store that hangs holds an answer up for at most ANSWER_STORE_WAIT, then the answer goes out', async (t) => {
  const memory = new MemoryIdempotencyStore()
  // Completing and releasing take longer than the wait; they still finish, later.
  const stored: string[] = []
  const slow = fakeStore({
    lease: memory.lease,
    claim: memory.claim.bind(memory),
    complete: async (...args) => {
      await sleep(ANSWER_STORE_WAIT + 2000)
      stored.push('complete')
      return memory.complete(...args)
    },
    release: async (...args) => {
      await sleep(ANSWER_STORE_WAIT + 2000)
      stored.push('release')
      memory.release(...args)
    }
  })
  const log = logged()
  const app = await idempotencyApp({ store: slow }, { logger: log.logger })
  app.post('/x/:status', { config: { idempotency: true } }, async (request, reply) => reply.code(Number((request.params as { status: string }).status)).send('answer'))
  const port = await start(t, app)
  for (const status of [201, 500]) {
    const started = Date.now()
    const res = await send(port, { method: 'POST', path: `/x/${status}`, headers: { 'idempotency-key': `k${status}` } })
    const waited = Date.now() - started
    t.equal(res.status, status)
    // Bounds wide apart, for a loaded machine: the wait, and well before the store answers.
    t.ok(waited >= ANSWER_STORE_WAIT - 50 && waited < ANSWER_STORE_WAIT + 1500, `${status}: answered after ${waited} ms`)
  }
  await until('the store calls to finish', () => stored.length === 2)
  t.same(stored, ['complete', 'release'])
  t.same(log.lines, [], 'nothing sent twice, nothing logged')
  const again = await send(port, { method: 'POST', path: '/x/201', headers: { 'idempotency-key': 'k201' } })
  t.equal(again.headers['idempotent-replayed'], 'true', 'the late completion was stored')
})

test('a store that does not answer a claim in time: 503, the handler not run, and a claim that lands later is let go', async (t) => {
  const memory = new MemoryIdempotencyStore()
  const released: string[] = []
  let delay = 1500
  const hanging = fakeStore({
    lease: memory.lease,
    claim: async (...args) => {
      if (delay < 0) return await new Promise<never>(() => {})
      await sleep(delay)
      if (delay === 0) throw new Error('down, and late')
      return memory.claim(...args)
    },
    release: (key, token) => {
      released.push(key)
      if (key.includes('release-fails')) throw new Error('down')
      memory.release(key, token)
    }
  })
  const log = logged()
  const app = await idempotencyApp({ store: hanging, claimTimeout: 50 }, { logger: log.logger })
  let runs = 0
  app.post('/x', { config: { idempotency: true } }, async () => { runs++; return 'ran' })
  const port = await start(t, app)
  const request = { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } }
  const started = Date.now()
  const res = await send(port, request)
  t.equal(res.status, 503)
  t.match(res.json(), { code: 'FST_PRECONDITION_IDEMPOTENCY_UNAVAILABLE' })
  t.ok(Date.now() - started < 1000, 'answered when the wait ran out, not when the store answered')
  await until('the late claim to be let go', () => released.length === 1)
  t.equal(memory.size, 0, 'the key is free again')
  t.equal(runs, 0)
  t.match(log.lines, [{ msg: /idempotency store failed; answering 503/ }])
  t.equal((await send(port, { ...request, headers: { 'idempotency-key': 'release-fails' } })).status, 503)
  await until('the failed release to be logged', () => log.lines.length === 3)
  t.match(log.lines[2], { msg: /releasing a late Idempotency-Key claim failed/ })
  delay = 0 // the store fails, after the wait ran out: one answer only
  t.equal((await send(port, request)).status, 503)
  delay = -1 // the store never answers
  t.equal((await send(port, request)).status, 503)
  await sleep(60)
  t.equal(runs, 0)
  t.equal(log.lines.length, 5, 'one 503 logged a request')
})

test('the lease is renewed while the handler runs; a lost lease is reported', async (t) => {
  // A lease of 300 ms renewed every 100 ms: wide enough that a loaded machine's late timers do not
  // let it lapse between renewals.
  const memory = new MemoryIdempotencyStore({ lease: 300 })
  const renewals: boolean[] = []
  const store = fakeStore({
    lease: 300,
    claim: memory.claim.bind(memory),
    complete: memory.complete.bind(memory),
    renew: (key, token, lease) => {
      const held = memory.renew(key, token, lease)
      renewals.push(held)
      return Promise.resolve(held)
    }
  })
  const log = logged()
  const app = await idempotencyApp({ store }, { logger: log.logger })
  app.post('/slow', { config: { idempotency: true } }, async () => { await sleep(1200); return 'done' })
  const port = await start(t, app)
  const first = send(port, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })
  await sleep(700)
  t.equal((await send(port, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })).status, 409, 'held past its 300 ms lease')
  t.equal((await first).body, 'done')
  t.ok(renewals.length >= 2 && renewals.every(Boolean), `renewed (${renewals.length} times)`)
  t.equal(log.lines.length, 0)

  const lost = fakeStore({ lease: 30, renew: () => false })
  const log2 = logged()
  const app2 = await idempotencyApp({ store: lost }, { logger: log2.logger })
  app2.post('/slow', { config: { idempotency: true } }, async () => { await sleep(60); return 'done' })
  const port2 = await start(t, app2)
  t.equal((await send(port2, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })).body, 'done')
  t.match(log2.lines, [{ msg: /lease was lost while its request ran/ }], 'reported once while it ran')
  t.equal(log2.lines.length, 1, 'the answer is stored all the same: its lease ran out, and nobody claimed the key since')
  t.equal((await send(port2, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })).headers['idempotent-replayed'], 'true')

  const flaky = fakeStore({ lease: 30, renew: () => { throw new Error('blip') } })
  const app3 = await idempotencyApp({ store: flaky })
  app3.post('/slow', { config: { idempotency: true } }, async () => { await sleep(60); return 'done' })
  const port3 = await start(t, app3)
  t.equal((await send(port3, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })).body, 'done', 'a renewal that fails to reach the store is tried again later')
})

test('a client that leaves while the claim is being made: the key is let go at once', async (t) => {
  const memory = new MemoryIdempotencyStore()
  let gate: () => void = () => {}
  const store = fakeStore({
    claim: (key, print, lease) => new Promise<ClaimResult>((resolve) => { gate = () => resolve(memory.claim(key, print, lease)) }),
    release: memory.release.bind(memory)
  })
  const app = await idempotencyApp({ store })
  let runs = 0
  app.post('/x', { config: { idempotency: true } }, async () => { runs++; return 'ran' })
  const port = await start(t, app)
  const socket = await partialRequest(port, 'POST', '/x', { 'idempotency-key': 'k' }, 2, '{}')
  await sleep(50)
  socket.destroy()
  await closed(socket)
  await sleep(100)
  gate()
  await sleep(20)
  t.equal(runs, 0)
  t.equal(memory.size, 0, 'released')
})

test('a callback-style handler that answers after its client left: the answer is stored', async (t) => {
  const app = await idempotencyApp({ store: new MemoryIdempotencyStore({ lease: 1000 }) })
  let runs = 0
  app.post('/callback', { config: { idempotency: true } }, (_request, reply) => {
    runs++
    setTimeout(() => { reply.code(201).send('created later') }, 150)
  })
  const port = await start(t, app)
  const socket = await partialRequest(port, 'POST', '/callback', { 'idempotency-key': 'k' }, 2, '{}')
  await until('the handler', () => runs === 1)
  socket.destroy()
  await sleep(300)
  const retry = await send(port, { method: 'POST', path: '/callback', body: {}, headers: { 'idempotency-key': 'k' } })
  t.equal(retry.status, 201)
  t.equal(retry.body, 'created later')
  t.equal(retry.headers['idempotent-replayed'], 'true')
  t.equal(runs, 1)
})

test('a callback-style handler that never answers keeps its key only until its lease ends', async (t) => {
  const app = await idempotencyApp({ store: new MemoryIdempotencyStore({ lease: 400 }) })
  let runs = 0
  app.post('/never', { config: { idempotency: true } }, () => { runs++ })
  const port = await start(t, app)
  const lost = await partialRequest(port, 'POST', '/never', { 'idempotency-key': 'n' }, 2, '{}')
  await until('the handler', () => runs === 1)
  lost.destroy()
  await closed(lost)
  const busy = await send(port, { method: 'POST', path: '/never', body: {}, headers: { 'idempotency-key': 'n' } })
  t.equal(busy.status, 409, 'held: it may still answer')
  await sleep(500)
  const again = await partialRequest(port, 'POST', '/never', { 'idempotency-key': 'n' }, 2, '{}')
  await until('the second run, once the unrenewed lease ended', () => runs === 2)
  again.destroy()
})

test('works without the request slot declared', async (t) => {
  const app = await idempotencyApp({ decorate: false })
  let runs = 0
  app.post('/x', { config: { idempotency: true } }, async () => { runs++; return 'ran' })
  const port = await start(t, app)
  await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } })
  t.equal((await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'k' } })).headers['idempotent-replayed'], 'true')
  t.equal(runs, 1)
})

test('idempotency: false wires nothing', async (t) => {
  const app = await idempotencyApp()
  app.post('/x', { config: { idempotency: false } }, async () => 'ran')
  const port = await start(t, app)
  t.equal((await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'a b' } })).status, 200)
})
