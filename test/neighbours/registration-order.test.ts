// A route carrying `concurrency` is guarded when the plugin's onRoute hook exists as it is declared:
// Fastify gives a plugin no way to see routes declared before that. These are the orders the
// README shows; each ends in a 428 for a write without If-Match.
import Fastify, { type FastifyInstance } from 'fastify'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'

const concurrency = { require: 'if-match' as const, validators: () => ({ etag: '"v1"' }) }

async function status (app: FastifyInstance): Promise<number> {
  return (await app.inject({ method: 'PUT', url: '/items/1' })).statusCode
}

test('await register, then routes', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/items/:id', { concurrency }, async () => 'ok')
  t.equal(await status(app), 428)
})

test('register without await, routes in .after() (CommonJS without top-level await)', async (t) => {
  const app = Fastify()
  app.register(fastifyPrecondition).after(() => {
    app.put('/items/:id', { concurrency }, async () => 'ok')
  })
  t.equal(await status(app), 428)
})

test('register without await, routes in a plugin registered after it (as @fastify/autoload does)', async (t) => {
  const app = Fastify()
  app.register(fastifyPrecondition)
  app.register(async function routes (child) {
    child.put('/items/:id', { concurrency }, async () => 'ok')
  })
  t.equal(await status(app), 428)
})

test('the plugin in a parent context guards the routes of encapsulated children', async (t) => {
  const app = Fastify()
  await app.register(async function api (scoped) {
    await scoped.register(fastifyPrecondition)
    await scoped.register(async function items (child) {
      child.put('/items/:id', { concurrency }, async () => 'ok')
    })
  })
  t.equal(await status(app), 428)
})
