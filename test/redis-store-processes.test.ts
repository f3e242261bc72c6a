// The Redis lock store shared by separate Node processes (test/helpers/redis-locker.ts) and one
// real redis-server on loopback: fencing tokens across processes, and a holder killed with SIGKILL.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import { redisLockStore } from '../lib/redis.js'
import { hasRedisServer, REDIS_MISSING, startRedis } from './helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const script = fileURLToPath(new URL('./helpers/redis-locker.ts', import.meta.url))

interface Locker {
  child: ChildProcess
  /** The next IPC message from the child, or an error if it exits or takes longer than `limit`. */
  next (limit?: number): Promise<any>
}

function startLocker (t: Test, env: Record<string, string>): Locker {
  const child = fork(script, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGKILL')
    await exited
  })
  const messages: unknown[] = []
  const waiting: Array<(message: unknown) => void> = []
  child.on('message', (message) => {
    const resolve = waiting.shift()
    if (resolve === undefined) messages.push(message)
    else resolve(message)
  })
  const exited = once(child, 'exit').then(([code, signal]) => { throw new Error(`locker exited (${String(signal ?? code)})`) })
  exited.catch(() => {})
  return {
    child,
    next (limit = 20_000) {
      if (messages.length > 0) return Promise.resolve(messages.shift())
      let timer: NodeJS.Timeout | undefined
      return Promise.race([
        new Promise((resolve) => waiting.push(resolve)),
        exited,
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no message from the locker within ${limit} ms`)), limit) })
      ]).finally(() => clearTimeout(timer))
    }
  }
}

test('the Redis lock store shared by separate processes', { skip }, async (t) => {
  const { server, redis } = await startRedis(t, Redis)
  const base = { REDIS_PORT: String(server.port) }

  t.test('fencing tokens strictly increase per key across two processes taking it concurrently', async (t) => {
    const env = { ...base, LOCK_MODE: 'tokens', LOCK_PREFIX: 'fence-test:', LOCK_KEY: 'shared', LOCK_WORKERS: '4', LOCK_ROUNDS: '25' }
    const lockers = [startLocker(t, env), startLocker(t, env)]
    for (const locker of lockers) t.same(await locker.next(), { ready: true })
    for (const locker of lockers) locker.child.send('go')
    const results = await Promise.all(lockers.map((locker) => locker.next(60_000))) as Array<{ tokens: number[], stale: number }>
    const all = results.flatMap((result) => result.tokens)
    t.equal(all.length, 200, 'two processes x 4 writers x 25 acquisitions')
    for (const [index, result] of results.entries()) {
      t.equal(result.stale, 0, `process ${index + 1}: every holder's token was larger than the last one written under the lock`)
      t.ok(result.tokens.every(Number.isSafeInteger), `process ${index + 1}: safe integers`)
    }
    t.ok(results.every((result) => result.tokens.length > 0 && result.tokens.length < 200), 'both processes took the key')
    const sorted = [...all].sort((a, b) => a - b)
    t.equal(new Set(all).size, 200, 'each token handed out once')
    t.equal(Number(await redis.hget('fence-test:lock:{shared}', 'fence')), sorted[199], 'the fence holds the last one')
    t.equal(await redis.hexists('fence-test:lock:{shared}', 'owner'), 0, 'no lock left behind')
  })

  t.test('a holder killed with SIGKILL: another process gets the key once its ttl ran out', async (t) => {
    const ttl = 1500
    const holder = startLocker(t, { ...base, LOCK_MODE: 'hold', LOCK_PREFIX: 'kill-test:', LOCK_KEY: 'k', LOCK_TTL: String(ttl) })
    const { held } = await holder.next() as { held: number }
    t.ok(held > 0)
    const exited = once(holder.child, 'exit')
    holder.child.kill('SIGKILL')
    await exited
    const killed = Date.now()
    const store = redisLockStore({ client: redis, ttl, prefix: 'kill-test:' })
    const lease = await store.acquire('k', ttl + 3000)
    const waited = Date.now() - killed
    t.ok(waited <= ttl + 1000, `taken ${waited} ms after the kill (ttl ${ttl} ms)`)
    t.ok(lease.token > held, 'with a larger token')
    t.equal(lease.signal.aborted, false)
    await lease.release()
  })
})
