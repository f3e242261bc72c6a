// The example API: items kept in memory, every read and write guarded by fastify-precondition,
// and a page at `/` that reads and writes them from a browser (examples/page.js).
// `buildApp()` is what the tests use; `api.js` starts it on a port.
//
// Options, all optional: `logger`; `precondition`, the plugin's options; `cors`, @fastify/cors
// options, for the page served from another origin; `orderDelay`, ms an order's answer waits after
// the order is placed, to watch a client's timeout and its resend.
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import fastifyCors from '@fastify/cors'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fastifyPrecondition, { strongEtag } from 'fastify-precondition'
import { pageRoutes } from './page.js'

export async function buildApp (options = {}) {
  const app = Fastify({ logger: options.logger ?? false })
  // Before the routes, so that their answers (the plugin's problems too) carry its headers.
  if (options.cors !== undefined) await app.register(fastifyCors, options.cors)
  await app.register(fastifyPrecondition, options.precondition)
  // The OpenAPI document at /docs/json, Swagger UI at /docs: the plugin adds each route's
  // precondition and Idempotency-Key headers and its 304/400/409/412/422/428/503 answers. Registered before the routes, so it
  // sees them. The problem schema is #/components/schemas/PreconditionProblemDetails.
  await app.register(fastifySwagger, {
    openapi: { info: { title: 'fastify-precondition example API', version: '1.0.0' } }
  })
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' })
  pageRoutes(app)

  // id -> { body: Buffer of the JSON representation, etag, lastModified }
  const items = new Map()
  function store (id, item, lastModified = new Date()) {
    const body = Buffer.from(JSON.stringify({ id, ...item }))
    items.set(id, { body, etag: strongEtag(body), lastModified })
  }
  store('1', { name: 'first item', count: 0 }, new Date('2026-01-01T00:00:00Z'))

  // One function serves reads and writes, so the tags a GET hands out are the ones a PUT checks.
  const validators = (request) => items.get(request.params.id) ?? null

  const itemSchema = {
    type: 'object',
    properties: { name: { type: 'string' }, count: { type: 'integer' } },
    additionalProperties: false
  }
  const params = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }

  app.get('/items/:id', { schema: { params }, concurrency: { validators } }, async (request, reply) => {
    const item = items.get(request.params.id)
    if (item === undefined) return reply.code(404).send({ message: 'no such item' })
    return reply.type('application/json').send(item.body)
  })

  // PUT replaces, and also creates: with If-None-Match: * it only creates. Both policies: a write
  // based on a stale read is refused (412), and a write resent with the same Idempotency-Key,
  // because its answer was lost, is answered as the first time instead of being refused or
  // applied twice.
  app.put('/items/:id', {
    schema: { params, body: { ...itemSchema, required: ['name'] } },
    concurrency: { require: ['if-match', 'if-none-match'], validators, idempotency: true }
  }, async (request, reply) => {
    const created = !items.has(request.params.id)
    store(request.params.id, request.body)
    return reply.code(created ? 201 : 200).type('application/json').send(items.get(request.params.id).body)
  })

  app.patch('/items/:id', {
    schema: { params, body: itemSchema },
    concurrency: { require: 'if-match', validators }
  }, async (request, reply) => {
    const item = items.get(request.params.id)
    if (item === undefined) return reply.code(404).send({ message: 'no such item' })
    store(request.params.id, { ...JSON.parse(item.body), ...request.body })
    return reply.type('application/json').send(items.get(request.params.id).body)
  })

  app.delete('/items/:id', {
    schema: { params },
    concurrency: { require: 'if-match', validators }
  }, async (request, reply) => {
    if (!items.delete(request.params.id)) return reply.code(404).send({ message: 'no such item' })
    return reply.code(204).send()
  })

  // A POST creates something new each time it runs, and has no precondition to stop a resend:
  // it requires an Idempotency-Key, so an order whose answer was lost is placed once.
  const orders = new Map()
  const orderSchema = {
    type: 'object',
    properties: { item: { type: 'string' }, quantity: { type: 'integer', minimum: 1 } },
    required: ['item'],
    additionalProperties: false
  }
  app.post('/orders', {
    schema: { body: orderSchema },
    concurrency: { idempotency: { required: true } }
  }, async (request, reply) => {
    const id = String(orders.size + 1)
    const order = { id, quantity: 1, ...request.body }
    orders.set(id, order)
    if (options.orderDelay > 0) await sleep(options.orderDelay)
    return reply.code(201).header('location', `/orders/${id}`).send(order)
  })

  app.get('/orders/:id', { schema: { params } }, async (request, reply) => {
    const order = orders.get(request.params.id)
    if (order === undefined) return reply.code(404).send({ message: 'no such order' })
    return order
  })

  return app
}
