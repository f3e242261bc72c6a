// One instance of a service behind a load balancer, for the many-processes test: counters kept
// in Redis, guarded by the plugin with the Redis lock store under /redis, and (the control) with
// the per-process memory store under /memory. Started with fork(); reports its port over IPC and
// stops on 'close'.
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import fastifyPrecondition, { type FastifyPreconditionOptions } from '../../lib/index.js'
import { redisLockStore } from '../../lib/redis.js'

const client = new Redis({ port: Number(process.env.REDIS_PORT), host: '127.0.0.1' })
const app = Fastify()

function counter (lockStore: FastifyPreconditionOptions['lockStore'], key: string) {
  return async function routes (scope: FastifyInstance) {
    await scope.register(fastifyPrecondition, { lockStore })
    const current = async () => Number(await client.get(key) ?? 0)
    // The value only grows, so it can serve as the version.
    const validators = async () => ({ etag: `"${await current()}"` })
    scope.get('/counter', { concurrency: { validators } }, async () => ({ value: await current() }))
    scope.put('/counter', { concurrency: { require: 'if-match', validators } }, async (request) => {
      const { value } = request.body as { value: number }
      await client.set(key, String(value))
      return { value }
    })
  }
}

await app.register(counter(redisLockStore({ client, ttl: 5000, retryInterval: 2 }), 'counter:redis'), { prefix: '/redis' })
await app.register(counter('memory', 'counter:memory'), { prefix: '/memory' })
await app.listen({ port: 0, host: '127.0.0.1' })
process.send!({ port: (app.server.address() as { port: number }).port })
process.on('message', async (message) => {
  if (message !== 'close') return
  await app.close()
  client.disconnect()
  process.disconnect()
})
