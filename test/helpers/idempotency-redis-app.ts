// One instance behind a load balancer, for the many-processes Idempotency-Key test: POST /orders
// with the Redis idempotency store; every handler run is counted in Redis (INCR), so the test
// sees runs across processes. Started with fork(); reports its port over IPC, stops on 'close'.
// With HANG=1 the handler never ends, so the test can kill the process mid-request.
import { Redis } from 'ioredis'
import { redisIdempotencyStore } from '../../lib/redis/idempotency-store.js'
import { idempotencyApp, listen } from './idempotency-app.js'

const client = new Redis({ port: Number(process.env.REDIS_PORT), host: '127.0.0.1' })
const store = redisIdempotencyStore({ client, prefix: process.env.PREFIX, lease: Number(process.env.LEASE ?? 10_000) })
const app = await idempotencyApp({ store })
app.post('/orders', { config: { idempotency: { required: true } } }, async (_request, reply) => {
  const run = await client.incr(`${process.env.PREFIX}runs`)
  process.send!({ run })
  if (process.env.HANG === '1') await new Promise(() => {})
  await new Promise((resolve) => setTimeout(resolve, 50))
  return reply.code(201).send({ order: run, pid: process.pid })
})
const port = await listen(app)
process.send!({ port })
process.on('message', async (message) => {
  if (message !== 'close') return
  await app.close()
  client.disconnect()
  process.disconnect()
})
