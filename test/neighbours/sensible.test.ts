// Beside @fastify/sensible, which decorates reply.preconditionFailed too: both orders register,
// the plugin's own helper is reply.failPrecondition, and the alias is there only where free.
import sensible from '@fastify/sensible'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'

for (const order of ['sensible first', 'precondition first'] as const) {
  test(`@fastify/sensible and this plugin, ${order}`, async (t) => {
    const app = Fastify()
    if (order === 'sensible first') {
      await app.register(sensible)
      await app.register(fastifyPrecondition)
    } else {
      await app.register(fastifyPrecondition)
      await app.register(sensible)
    }
    app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => ({ etag: '"v1"' }) } }, async () => 'ok')
    app.put('/cas', async (_request, reply) => reply.failPrecondition({ etag: '"v9"' }))
    app.get('/sensible', async (_request, reply) => reply.preconditionFailed('from sensible'))
    t.equal((await app.inject({ method: 'PUT', url: '/items/1' })).statusCode, 428, 'the policy works')
    const cas = await app.inject({ method: 'PUT', url: '/cas' })
    t.equal(cas.statusCode, 412)
    t.equal(cas.json().etag, '"v9"', 'failPrecondition is this plugin\'s problem body')
    const own = await app.inject({ url: '/sensible' })
    t.equal(own.statusCode, 412)
    t.equal(own.json().message, 'from sensible', 'preconditionFailed stays sensible\'s')
  })
}

test('without sensible, reply.preconditionFailed is an alias of failPrecondition', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/cas', async (_request, reply) => (reply as unknown as { preconditionFailed: typeof reply.failPrecondition }).preconditionFailed('v3'))
  const res = await app.inject({ method: 'PUT', url: '/cas' })
  t.equal(res.statusCode, 412)
  t.equal(res.json().code, 'FST_PRECONDITION_FAILED')
  t.equal(res.headers.etag, '"v3"')
})
