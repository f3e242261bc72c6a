// problems: 'error-handler': every answer the plugin gives itself goes through the app's own
// setErrorHandler, with its status, code, headers and problem body on the error.
import Fastify, { type FastifyError } from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { PreconditionProblemError, type LockStore } from '../lib/index.js'
import { LockTimeoutError } from '../lib/errors.js'

test('each problem status, in the app\'s own format', async (t) => {
  const slowStore: LockStore = { acquire: () => { throw new LockTimeoutError(10, 'x') } }
  const app = Fastify()
  await app.register(fastifyPrecondition, { problems: 'error-handler', retryAfter: 7 })
  const seen: PreconditionProblemError[] = []
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error instanceof PreconditionProblemError) seen.push(error)
    reply.send({ ok: false, status: error.statusCode, code: error.code, why: error.message })
  })
  let version = 1
  const validators = () => ({ etag: `"v${version}"` })
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => { version++; return { version } })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request) => {
    await new Promise((resolve) => setTimeout(resolve, (request.body as { wait?: number } | undefined)?.wait ?? 0))
    return { ok: true }
  })
  app.put('/cas/:id', async (_request, reply) => reply.failPrecondition({ etag: '"v9"' }))
  await app.ready()
  t.teardown(() => app.close())
  const locked = Fastify()
  await locked.register(fastifyPrecondition, { problems: 'error-handler', lockStore: slowStore })
  locked.setErrorHandler((error: FastifyError, _request, reply) => { reply.send({ ok: false, code: error.code }) })
  locked.put('/locked/:id', { concurrency: { validators } }, async () => 'never')
  t.teardown(() => locked.close())

  const required = await app.inject({ method: 'PUT', url: '/items/1', payload: {} })
  t.equal(required.statusCode, 428)
  t.same(required.json(), { ok: false, status: 428, code: 'FST_PRECONDITION_REQUIRED', why: seen[0].problem.detail }, 'the app\'s body')
  t.match(seen[0].problem, { status: 428, title: 'Precondition Required', required: ['If-Match'], instance: '/items/1' }, 'the problem body on the error')

  const failed = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': '"v0"' } })
  t.equal(failed.statusCode, 412)
  t.equal(failed.headers.etag, '"v1"', 'the current ETag as a header')
  t.equal(failed.json().code, 'FST_PRECONDITION_FAILED')
  t.match(seen[1], { statusCode: 412, headers: { etag: '"v1"' }, problem: { etag: '"v1"' } })

  const handler412 = await app.inject({ method: 'PUT', url: '/cas/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(handler412.statusCode, 412, 'reply.failPrecondition goes the same way')
  t.equal(handler412.json().ok, false)

  const timeout = await locked.inject({ method: 'PUT', url: '/locked/1', payload: {} })
  t.equal(timeout.statusCode, 503)
  t.equal(timeout.headers['retry-after'], '1')
  t.equal(timeout.json().code, 'FST_PRECONDITION_LOCK_TIMEOUT')

  const missing = await app.inject({ method: 'POST', url: '/orders', payload: {} })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISSING')
  const invalid = await app.inject({ method: 'POST', url: '/orders', payload: {}, headers: { 'idempotency-key': '"' } })
  t.equal(invalid.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_INVALID')

  const first = app.inject({ method: 'POST', url: '/orders', payload: { wait: 100 }, headers: { 'idempotency-key': 'k' } })
  await new Promise((resolve) => setTimeout(resolve, 30))
  const busy = await app.inject({ method: 'POST', url: '/orders', payload: { wait: 100 }, headers: { 'idempotency-key': 'k' } })
  t.equal(busy.statusCode, 409)
  t.ok(Number(busy.headers['retry-after']) >= 1, 'Retry-After from the lease')
  t.equal(busy.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE')
  await first
  const other = await app.inject({ method: 'POST', url: '/orders', payload: { other: true }, headers: { 'idempotency-key': 'k' } })
  t.equal(other.statusCode, 422)
  t.equal(other.json().code, 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISMATCH')
  t.ok(seen.every((error) => error.statusCode === error.problem.status && error.code === error.problem.code), 'status and code agree with the body')
})

test('problems must be send or error-handler', async (t) => {
  const app = Fastify()
  await t.rejects(async () => {
    await app.register(fastifyPrecondition, { problems: 'json' as never })
    await app.ready()
  }, { code: 'FST_PRECONDITION_INVALID_PROBLEMS' })
})
