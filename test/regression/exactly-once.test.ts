// Idempotency-Key as users write Fastify code: one test per finding that applied a change twice,
// kept an answer it should not, or told a client the wrong thing. Over real sockets on loopback,
// through the plugin. (The handler styles × client departures × transports × stores × neighbours
// are in test/matrix/.)
import compress from '@fastify/compress'
import Fastify, { type FastifyInstance } from 'fastify'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import * as zlib from 'node:zlib'
import { test, type Test } from 'tap'
import fastifyPrecondition, { memoryIdempotencyStore, type FastifyPreconditionOptions } from '../../lib/index.js'
import { send, sleep } from '../helpers/http.js'

async function start (t: Test, options: FastifyPreconditionOptions, routes: (app: FastifyInstance) => void, before?: (app: FastifyInstance) => Promise<void>): Promise<number> {
  const app = Fastify()
  if (before !== undefined) await before(app)
  await app.register(fastifyPrecondition, options)
  routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return (app.server.address() as { port: number }).port
}

test('a streamed answer reaches its client as it is produced, and is replayed whole', async (t) => {
  let runs = 0
  const port = await start(t, {}, (app) => {
    app.post('/events', { concurrency: { idempotency: true } }, async (_request, reply) => {
      runs++
      reply.type('text/event-stream')
      return Readable.from((async function * () {
        for (let i = 1; i <= 5; i++) {
          yield `data: ${i}\n\n`
          await sleep(120)
        }
      })(), { objectMode: false })
    })
  })
  const started = Date.now()
  const timings = await new Promise<{ first: number, end: number, body: string }>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/events', headers: { 'idempotency-key': 'sse' } }, (res) => {
      let first = 0
      let body = ''
      res.on('data', (chunk: Buffer) => {
        if (first === 0) first = Date.now() - started
        body += chunk.toString()
      })
      res.on('end', () => resolve({ first, end: Date.now() - started, body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.ok(timings.end >= 500, `the stream took its time (${timings.end} ms)`)
  t.ok(timings.first < timings.end - 300, `the first event came at ${timings.first} ms, not at the end (${timings.end} ms)`)
  const replay = await send(port, { method: 'POST', path: '/events', headers: { 'idempotency-key': 'sse' } })
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.equal(replay.body, timings.body, 'the whole stream, replayed')
  t.equal(runs, 1)
})

test('a 429 from the handler releases the key: the retry runs again', async (t) => {
  let runs = 0
  const port = await start(t, {}, (app) => {
    app.post('/limited', { concurrency: { idempotency: true } }, async (_request, reply) => {
      runs++
      if (runs === 1) return reply.code(429).header('retry-after', '2').send({ error: 'slow down' })
      return reply.code(201).send({ ok: true })
    })
  })
  const first = await send(port, { method: 'POST', path: '/limited', headers: { 'idempotency-key': 'k' } })
  t.equal(first.status, 429)
  t.equal(first.headers['retry-after'], '2')
  const retry = await send(port, { method: 'POST', path: '/limited', headers: { 'idempotency-key': 'k' } })
  t.equal(retry.status, 201, 'not the 429 again')
  t.equal(retry.headers['idempotent-replayed'], undefined)
  t.equal(runs, 2)
})

test('the media type is part of the request: the same bytes as text/plain are another request (422)', async (t) => {
  let runs = 0
  const port = await start(t, {}, (app) => {
    app.addContentTypeParser('text/plain', { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
    app.post('/notes', { concurrency: { idempotency: true } }, async () => ({ run: ++runs }))
  })
  const bytes = '{"text":"hello"}'
  const headers = (type: string) => ({ 'idempotency-key': 'note', 'content-type': type, 'content-length': String(bytes.length) })
  const json = await rawPost(port, '/notes', headers('application/json'), bytes)
  t.equal(json.status, 200)
  const again = await rawPost(port, '/notes', headers('application/json; charset=utf-8'), bytes)
  t.equal(again.headers['idempotent-replayed'], 'true', 'parameters are not the media type')
  const text = await rawPost(port, '/notes', headers('text/plain'), bytes)
  t.equal(text.status, 422, 'another media type: another request')
  t.equal(runs, 1)
})

function rawPost (port: number, path: string, headers: Record<string, string>, body: string): Promise<{ status: number, headers: Record<string, unknown>, body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode as number, headers: res.headers, body: Buffer.concat(chunks) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

test('the 409 of a running claim is a short hint: at most the renewal interval, at least 1 s', async (t) => {
  for (const [lease, hint] of [[2000, '1'], [5000, '1'], [12_000, '4'], [30_000, '10']] as const) {
    let release: () => void = () => {}
    const port = await start(t, { idempotencyStore: memoryIdempotencyStore({ lease }) }, (app) => {
      app.post('/slow', { concurrency: { idempotency: true } }, async () => {
        await new Promise<void>((resolve) => { release = resolve })
        return 'done'
      })
    })
    const first = send(port, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })
    await sleep(100)
    const busy = await send(port, { method: 'POST', path: '/slow', headers: { 'idempotency-key': 'k' } })
    t.equal(busy.status, 409)
    t.equal(busy.headers['retry-after'], hint, `lease ${lease} ms: Retry-After ${hint}, not the lease's end`)
    release()
    t.equal((await first).body, 'done')
  }
})

test('a hijacked reply: the retry is told at once that it was applied, and nothing runs twice', async (t) => {
  let runs = 0
  const port = await start(t, {}, (app) => {
    app.post('/sync', { concurrency: { idempotency: true } }, function (_request, reply) {
      runs++
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': 'text/plain' })
      reply.raw.end('by hand')
    })
    app.post('/async', { concurrency: { idempotency: true } }, async (_request, reply) => {
      runs++
      await sleep(10)
      reply.hijack()
      reply.raw.writeHead(200, { 'content-type': 'text/plain' })
      reply.raw.end('by hand')
    })
  })
  for (const path of ['/sync', '/async']) {
    const first = await send(port, { method: 'POST', path, headers: { 'idempotency-key': path } })
    t.equal(first.body, 'by hand')
    await sleep(20)
    const retry = await send(port, { method: 'POST', path, headers: { 'idempotency-key': path } })
    t.equal(retry.status, 409, `${path}: not a 409 "in use" until the lease ends, and no second run`)
    t.equal(retry.json().code, 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT')
    t.equal(retry.headers['retry-after'], undefined, `${path}: nothing to wait for`)
  }
  t.equal(runs, 2)
})

test('an answer larger than the store keeps is recorded as applied, not kept', async (t) => {
  let runs = 0
  const port = await start(t, {}, (app) => {
    app.post('/big', { concurrency: { idempotency: true } }, async () => {
      runs++
      return 'x'.repeat(2 * 1024 * 1024)
    })
  })
  const first = await send(port, { method: 'POST', path: '/big', headers: { 'idempotency-key': 'big' } })
  t.equal(first.body.length, 2 * 1024 * 1024, 'the first client gets it whole')
  const retry = await send(port, { method: 'POST', path: '/big', headers: { 'idempotency-key': 'big' } })
  t.equal(retry.status, 409)
  t.equal(retry.json().code, 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT')
  t.equal(runs, 1)
})

test('with @fastify/compress before the plugin: a replay is decodable by the client that retries', async (t) => {
  let runs = 0
  const payload = { text: 'y'.repeat(3000) }
  const port = await start(t, {}, (app) => {
    app.post('/docs', { concurrency: { idempotency: true } }, async (_request, reply) => {
      runs++
      reply.code(201)
      return payload
    })
  }, async (app) => { await app.register(compress, { threshold: 0 }) })
  const post = (accept: string | undefined) => rawPost(port, '/docs', { 'idempotency-key': 'doc', ...(accept === undefined ? {} : { 'accept-encoding': accept }) }, '')
  const first = await post('br')
  t.equal(first.headers['content-encoding'], 'br')
  t.same(JSON.parse(zlib.brotliDecompressSync(first.body).toString()), payload)
  const asIs = await post('br, gzip')
  t.equal(asIs.headers['content-encoding'], 'br', 'to a client that accepts it, as it was sent')
  t.same(asIs.body, first.body, 'byte for byte')
  const gzipOnly = await post('gzip')
  t.equal(gzipOnly.headers['idempotent-replayed'], 'true')
  t.equal(gzipOnly.headers['content-encoding'], 'gzip', 'decoded, then encoded again for this client')
  t.same(JSON.parse(zlib.gunzipSync(gzipOnly.body).toString()), payload)
  const none = await post('identity')
  t.equal(none.headers['content-encoding'], undefined, 'decoded for a client that takes no coding')
  t.same(JSON.parse(none.body.toString()), payload)
  t.equal(runs, 1)
})
