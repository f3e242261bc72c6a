// A process that takes Redis leases directly from the store, for the fencing and crash tests.
// Started with fork(); LOCK_MODE says what it does:
// - 'tokens': on the message 'go', LOCK_WORKERS concurrent loops each take LOCK_KEY LOCK_ROUNDS
//   times; while holding it, each checks its token against the last one written under the lock
//   (`<key>:last` in Redis) and writes its own. Reports { tokens, stale } and exits.
// - 'hold': takes LOCK_KEY with ttl LOCK_TTL, reports { held: token } and then never releases
//   (the test kills it with SIGKILL).
import { Redis } from 'ioredis'
import { redisLockStore } from '../../lib/redis.js'

const env = process.env
const client = new Redis({ port: Number(env.REDIS_PORT), host: '127.0.0.1' })
const key = env.LOCK_KEY!
const store = redisLockStore({ client, prefix: env.LOCK_PREFIX, ttl: Number(env.LOCK_TTL ?? 5000), retryInterval: 2 })

async function takeTurns (): Promise<{ tokens: number[], stale: number }> {
  const tokens: number[] = []
  let stale = 0
  const worker = async (): Promise<void> => {
    for (let round = 0; round < Number(env.LOCK_ROUNDS); round++) {
      const lease = await store.acquire(key, 10_000)
      const last = Number(await client.get(`${key}:last`) ?? 0)
      if (!(lease.token > last)) stale++
      await client.set(`${key}:last`, String(lease.token))
      tokens.push(lease.token)
      await lease.release()
    }
  }
  await Promise.all(Array.from({ length: Number(env.LOCK_WORKERS) }, worker))
  return { tokens, stale }
}

if (env.LOCK_MODE === 'hold') {
  const lease = await store.acquire(key, 5000)
  process.send!({ held: lease.token })
} else {
  process.send!({ ready: true })
  process.once('message', async () => {
    process.send!(await takeTurns())
    client.disconnect()
    process.disconnect()
  })
}
