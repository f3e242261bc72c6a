// Every diagnostics channel, subscribed, seeing each of its outcomes from real HTTP traffic on
// loopback through the plugin.
import { subscribe, unsubscribe, tracingChannel } from 'node:diagnostics_channel'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition from '../lib/index.js'
import { MemoryIdempotencyStore } from '../lib/idempotency/memory.js'
import { send, sleep } from './helpers/http.js'

test('each channel sees each outcome, from HTTP traffic', async (t) => {
  const seen: string[] = []
  const onPrecondition = (message: unknown): void => {
    const { route, outcome } = message as { route: string, outcome: string }
    seen.push(`precondition ${route} ${outcome}`)
  }
  const onIdempotency = (message: unknown): void => {
    const { route, outcome } = message as { route: string, outcome: string }
    seen.push(`idempotency ${route} ${outcome}`)
  }
  const onRelease = (message: unknown): void => {
    const { key, token, heldMs, lost } = message as { key: string, token: number, heldMs: number, lost: boolean }
    seen.push(`release ${key.length > 0 ? 'key' : ''} ${typeof token} ${heldMs >= 0 ? 'held' : ''} ${String(lost)}`)
  }
  const lock = tracingChannel('fastify-precondition:lock')
  const handlers = {
    start: () => { seen.push('lock start') },
    end: () => { seen.push('lock end') },
    asyncStart: () => {},
    asyncEnd: () => {},
    error: () => { seen.push('lock error') }
  }
  subscribe('fastify-precondition:precondition', onPrecondition)
  subscribe('fastify-precondition:idempotency', onIdempotency)
  subscribe('fastify-precondition:lock:release', onRelease)
  lock.subscribe(handlers)
  t.teardown(() => {
    unsubscribe('fastify-precondition:precondition', onPrecondition)
    unsubscribe('fastify-precondition:idempotency', onIdempotency)
    unsubscribe('fastify-precondition:lock:release', onRelease)
    lock.unsubscribe(handlers)
  })

  const store = new MemoryIdempotencyStore()
  let failClaims = false
  const original = store.claim.bind(store)
  store.claim = (key, print, lease) => {
    if (failClaims) throw new Error('down')
    return original(key, print, lease)
  }
  const app = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: store })
  let version = 1
  const validators = () => ({ etag: `"v${version}"` })
  app.get('/items/:id', { concurrency: { validators } }, async () => ({ version }))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => { version++; return { version } })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    const wait = (request.body as { wait?: number } | undefined)?.wait ?? 0
    if (wait > 0) await sleep(wait)
    if ((request.body as { fail?: boolean } | undefined)?.fail === true) return reply.code(500).send('failed')
    return reply.code(201).send({ ok: true })
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port

  const expect = async (what: string, run: () => Promise<unknown>, lines: string[]): Promise<void> => {
    seen.length = 0
    await run()
    await sleep(20)
    for (const line of lines) t.ok(seen.includes(line), `${what}: ${line} (saw ${JSON.stringify(seen)})`)
  }
  await expect('GET 200', () => send(port, { path: '/items/1' }), ['precondition GET /items/:id proceed'])
  await expect('GET 304', () => send(port, { path: '/items/1', headers: { 'if-none-match': '"v1"' } }), ['precondition GET /items/:id not-modified'])
  await expect('PUT 428', () => send(port, { method: 'PUT', path: '/items/1', body: {} }), ['precondition PUT /items/:id required'])
  await expect('PUT 412', () => send(port, { method: 'PUT', path: '/items/1', body: {}, headers: { 'if-match': '"v0"' } }),
    ['lock start', 'lock end', 'precondition PUT /items/:id failed', 'release key number held false'])
  await expect('PUT 200', () => send(port, { method: 'PUT', path: '/items/1', body: {}, headers: { 'if-match': '"v1"' } }),
    ['lock start', 'precondition PUT /items/:id proceed', 'release key number held false'])

  const post = (key: string | undefined, body: object = {}) => send(port, { method: 'POST', path: '/orders', body, headers: key === undefined ? {} : { 'idempotency-key': key } })
  await expect('no key', () => post(undefined), ['idempotency POST /orders missing'])
  await expect('a bad key', () => post('"unterminated'), ['idempotency POST /orders invalid'])
  await expect('a first request', () => post('a'), ['idempotency POST /orders claimed', 'idempotency POST /orders stored'])
  await expect('its retry', () => post('a'), ['idempotency POST /orders replayed'])
  await expect('another body', () => post('a', { other: true }), ['idempotency POST /orders mismatch'])
  await expect('a 5xx', () => post('b', { fail: true }), ['idempotency POST /orders claimed', 'idempotency POST /orders released'])
  await expect('a duplicate while the first runs', async () => {
    const first = post('c', { wait: 150 })
    await sleep(50)
    await post('c', { wait: 150 })
    await first
  }, ['idempotency POST /orders in-progress'])
  failClaims = true
  await expect('the store down', () => post('d'), ['idempotency POST /orders unavailable'])
})

test('a handler\'s own 412 is published; a locked write checked early proceeds once', async (t) => {
  const seen: string[] = []
  const onPrecondition = (message: unknown): void => {
    const { route, outcome } = message as { route: string, outcome: string }
    seen.push(`${route} ${outcome}`)
  }
  subscribe('fastify-precondition:precondition', onPrecondition)
  t.teardown(() => { unsubscribe('fastify-precondition:precondition', onPrecondition) })
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/cas/:id', async (_request, reply) => reply.failPrecondition({ etag: '"v2"' }))
  app.put('/early/:id', { concurrency: { validators: () => ({ etag: '"v1"' }), stage: 'onRequest' } }, async () => 'written')
  t.teardown(() => app.close())
  await app.inject({ method: 'PUT', url: '/cas/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.same(seen, ['PUT /cas/:id failed'])
  seen.length = 0
  t.equal((await app.inject({ method: 'PUT', url: '/early/1', payload: {}, headers: { 'if-match': '"v1"' } })).statusCode, 200)
  t.same(seen, ['PUT /early/:id proceed'], 'once, not for the early check and again under the lock')
})
