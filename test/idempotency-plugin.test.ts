// Idempotency-Key through the plugin itself (`concurrency.idempotency`), alone and beside the
// precondition policy of the same route, over real HTTP.
import Fastify, { type FastifyInstance } from 'fastify'
import { test, type Test } from 'tap'
import fastifyPrecondition, { MemoryIdempotencyStore, type FastifyPreconditionOptions } from '../lib/index.js'
import { send } from './helpers/http.js'

async function start (t: Test, options: FastifyPreconditionOptions = {}) {
  const app = Fastify() as unknown as FastifyInstance
  await app.register(fastifyPrecondition, options)
  const state = { version: 1, runs: 0, orders: 0 }
  const validators = () => ({ etag: `"v${state.version}"` })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    state.runs++
    state.orders++
    return reply.code(201).header('location', `/orders/${state.orders}`).send({ id: state.orders, item: (request.body as { item: string }).item })
  })
  for (const stage of ['preHandler', 'onRequest'] as const) {
    app.put(`/${stage}/items/:id`, { concurrency: { require: 'if-match', validators, stage, idempotency: true } }, async (request) => {
      state.runs++
      state.version++
      return { version: state.version, name: (request.body as { name: string }).name }
    })
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, state, port: (app.server.address() as { port: number }).port }
}

test('POST with a required key: 400 without one, one run and an identical replay with one', async (t) => {
  const { state, port } = await start(t)
  const missing = await send(port, { method: 'POST', path: '/orders', body: { item: 'tea' } })
  t.equal(missing.status, 400)
  t.equal(missing.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.equal(missing.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISSING')
  const headers = { 'idempotency-key': '"order-1"' }
  const first = await send(port, { method: 'POST', path: '/orders', headers, body: { item: 'tea' } })
  const second = await send(port, { method: 'POST', path: '/orders', headers, body: { item: 'tea' } })
  t.equal(first.status, 201)
  t.equal(second.status, 201)
  t.equal(second.body, first.body, 'the same body')
  t.equal(second.headers.location, first.headers.location, 'the same Location')
  t.equal(second.headers['idempotent-replayed'], 'true')
  t.equal(first.headers['idempotent-replayed'], undefined)
  t.equal(state.runs, 1, 'the handler ran once')
  const other = await send(port, { method: 'POST', path: '/orders', headers, body: { item: 'coffee' } })
  t.equal(other.status, 422, 'the same key with another body')
  t.equal(other.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISMATCH')
})

for (const stage of ['preHandler', 'onRequest'] as const) {
  test(`stage ${stage}: a retried PUT whose answer was lost is replayed, not refused for its now stale If-Match`, async (t) => {
    const { state, port } = await start(t)
    const path = `/${stage}/items/1`
    const headers = { 'if-match': '"v1"', 'idempotency-key': 'rename-1' }
    const first = await send(port, { method: 'PUT', path, headers, body: { name: 'one' } })
    t.equal(first.status, 200)
    t.equal(first.headers.etag, '"v2"')
    const other = await send(port, { method: 'PUT', path, headers: { 'if-match': '"v2"' }, body: { name: 'two' } })
    t.equal(other.status, 200, 'another change comes in between')
    const retry = await send(port, { method: 'PUT', path, headers, body: { name: 'one' } })
    t.equal(retry.status, 200, 'the retry is answered as the first was')
    t.equal(retry.headers['idempotent-replayed'], 'true')
    t.equal(retry.body, first.body)
    t.equal(retry.headers.etag, '"v2"', 'with the ETag it had, not the current one')
    t.equal(state.runs, 2, 'the change was applied once')
    const stale = await send(port, { method: 'PUT', path, headers: { 'if-match': '"v1"', 'idempotency-key': 'rename-2' }, body: { name: 'x' } })
    t.equal(stale.status, 412, 'a new key with a stale tag is still refused')
    const noTag = await send(port, { method: 'PUT', path, headers: { 'idempotency-key': 'rename-3' }, body: { name: 'x' } })
    t.equal(noTag.status, 428, 'and If-Match is still required')
  })
}

test('idempotencyStore: a store of one\'s own is used and closed with the app; a bad one is refused', async (t) => {
  const store = new MemoryIdempotencyStore()
  let closed = 0
  const close = store.close.bind(store)
  store.close = () => { closed++; close() }
  const { app, port } = await start(t, { idempotencyStore: store })
  await send(port, { method: 'POST', path: '/orders', headers: { 'idempotency-key': 'k' }, body: { item: 'tea' } })
  t.equal(store.size, 1, 'the record is in the given store')
  await app.close()
  t.equal(closed, 1)
  for (const bad of ['redis', null, {}, { claim: 1 }]) {
    const other = Fastify()
    await t.rejects(async () => { await other.register(fastifyPrecondition, { idempotencyStore: bad as never }) }, { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE' }, JSON.stringify(bad))
  }
})

test('a store that fails to close is logged, and the app still closes', async (t) => {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => lines.push(line) } } })
  const store = new MemoryIdempotencyStore()
  store.close = () => { throw new Error('close failed') }
  await app.register(fastifyPrecondition, { idempotencyStore: store })
  app.post('/x', { concurrency: { idempotency: true } }, async () => 'ok')
  await app.inject({ method: 'POST', url: '/x', headers: { 'idempotency-key': 'k' } })
  await app.close()
  t.ok(lines.some((line) => line.includes('closing the idempotency store failed')))
})
