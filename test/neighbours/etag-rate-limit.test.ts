// @fastify/etag hashes every string body, problems included; @fastify/rate-limit counts requests in
// hooks added after this plugin's. Problems keep only the ETag a 412 reveals, and 428s are counted.
import etag from '@fastify/etag'
import rateLimit from '@fastify/rate-limit'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'

test('beside @fastify/etag, problem answers carry no hash ETag', async (t) => {
  for (const exposeEtag of [true, false]) {
    const app = Fastify()
    await app.register(etag)
    await app.register(fastifyPrecondition, { exposeEtag })
    app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => ({ etag: '"v1"' }) } }, async () => 'ok')
    app.put('/plain/:id', { concurrency: { require: 'if-match' } }, async () => 'ok')
    for (const url of ['/items/1', '/plain/1']) {
      const required = await app.inject({ method: 'PUT', url })
      t.equal(required.statusCode, 428)
      t.equal(required.headers.etag, undefined, `exposeEtag ${exposeEtag}: no ETag on the 428 of ${url}`)
    }
    const failed = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v0"' } })
    t.equal(failed.statusCode, 412)
    t.equal(failed.headers.etag, exposeEtag ? '"v1"' : undefined, `exposeEtag ${exposeEtag}: the 412 carries the current tag or none`)
    const ok = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' } })
    t.equal(ok.statusCode, 200)
  }
})

test('beside @fastify/etag, the problems of a route with idempotency alone carry no hash ETag; its answers keep theirs', async (t) => {
  const app = Fastify()
  await app.register(etag)
  await app.register(fastifyPrecondition)
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => reply.code(201).send({ id: 1 }))
  const missing = await app.inject({ method: 'POST', url: '/orders' })
  t.equal(missing.statusCode, 400)
  t.equal(missing.headers.etag, undefined, 'no ETag on the 400')
  const order = { method: 'POST' as const, url: '/orders', headers: { 'idempotency-key': 'k1' }, payload: { n: 1 } }
  const created = await app.inject(order)
  t.equal(created.statusCode, 201)
  t.match(created.headers.etag, /^"/, '@fastify/etag tags the answer')
  const replayed = await app.inject(order)
  t.equal(replayed.headers['idempotent-replayed'], 'true')
  t.equal(replayed.headers.etag, created.headers.etag, 'the replay keeps the tag it was stored with')
  const other = await app.inject({ ...order, payload: { n: 2 } })
  t.equal(other.statusCode, 422)
  t.equal(other.headers.etag, undefined, 'no ETag on the 422')
})

test('@fastify/rate-limit registered after this plugin counts 428s', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  await app.register(rateLimit, { max: 3, timeWindow: 60_000 })
  app.put('/items/:id', { concurrency: { require: 'if-match' } }, async () => 'ok')
  const statuses = []
  for (let i = 0; i < 5; i++) statuses.push((await app.inject({ method: 'PUT', url: '/items/1' })).statusCode)
  t.same(statuses, [428, 428, 428, 429, 429])
})

test('auth in an onRequest hook added after this plugin answers before the 428', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.addHook('onRequest', async (request, reply) => {
    if (request.headers.authorization === undefined) return reply.code(401).send({ message: 'who are you?' })
  })
  app.put('/items/:id', { concurrency: { require: 'if-match' } }, async () => 'ok')
  t.equal((await app.inject({ method: 'PUT', url: '/items/1' })).statusCode, 401)
  t.equal((await app.inject({ method: 'PUT', url: '/items/1', headers: { authorization: 'x' } })).statusCode, 428)
})
