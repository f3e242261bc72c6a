// Finding 5: Redis paused (SIGSTOP) for longer than the lease while a 300 ms keyed handler runs,
// then resumed. The client gets its 201 (the plugin waits for the store at most a second), and
// when Redis wakes the claim's record has expired. The request that ran is still the only one
// that ran its key: the renewal queued during the pause writes the claim again and the answer is
// stored (a missing record is the running request's, with its fingerprint), so a resend is a
// replay and the handler ran once. Before, the answer was refused ("the lease ended"), and the
// resend ran the handler again (LEASE=2000 FREEZE_MS=2500: 2 runs).
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'
import { redisIdempotencyStore } from '../../lib/redis.js'
import { send, sleep } from '../helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer } from '../helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const LEASE = 2000
const FREEZE_MS = 2500

async function pausedDuringHandler (t: Test): Promise<void> {
  const server = new RedisServer()
  await server.start()
  const client = new Redis({ port: server.port, host: '127.0.0.1' })
  client.on('error', () => {})
  t.teardown(async () => {
    client.disconnect()
    await server.stop()
  })
  let runs = 0
  const app = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: redisIdempotencyStore({ client, lease: LEASE }) })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (_request, reply) => {
    runs++
    if (runs === 1) await server.signal('SIGSTOP')
    await sleep(300)
    return reply.code(201).send({ order: runs })
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const request = { method: 'POST', path: '/orders', body: { item: 'book' }, headers: { 'idempotency-key': 'paused' } }

  const paused = Date.now()
  const first = send(port, request)
  await sleep(FREEZE_MS)
  await server.signal('SIGCONT')
  const answer = await first
  t.equal(answer.status, 201, `the client got its 201 (after ${Date.now() - paused} ms)`)
  await client.ping() // what was queued during the pause has been answered
  await sleep(200)
  const resend = await send(port, request)
  t.equal(resend.status, 201)
  t.equal(resend.headers['idempotent-replayed'], 'true', 'the resend is a replay')
  t.equal(resend.body, answer.body, 'of the first answer')
  t.equal(runs, 1, 'the handler ran once')
}

test('Redis paused past the lease while the handler runs: one run, and the resend is a replay', { skip }, pausedDuringHandler)
