// Three Fastify processes behind an imaginary load balancer, sharing one real redis-server that
// the test starts on a free loopback port. The counter itself lives in Redis; twenty clients each
// increment it 25 times, spreading their requests over the three processes.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import { incrementAll } from './helpers/counter.js'
import { hasRedisServer, REDIS_MISSING, startRedis } from './helpers/redis-server.js'
import { stopChild } from './helpers/child.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const script = fileURLToPath(new URL('./helpers/redis-app.ts', import.meta.url))

async function startInstances (t: Test, redisPort: number, count: number): Promise<number[]> {
  const children: ChildProcess[] = []
  t.teardown(async () => {
    await Promise.all(children.map(stopChild))
  })
  const ports = await Promise.all(Array.from({ length: count }, async () => {
    const child = fork(script, { env: { ...process.env, REDIS_PORT: String(redisPort) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    const [message] = await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => { throw new Error(`instance exited with ${String(code)} before listening`) })
    ])
    return (message as { port: number }).port
  }))
  return ports
}

test('three processes sharing Redis', { skip }, async (t) => {
  const { server, redis } = await startRedis(t, Redis)

  const ports = await startInstances(t, server.port, 3)

  t.test('with the Redis lock store: 20 clients x 25 increments end at exactly 500', async (t) => {
    const started = Date.now()
    const result = await incrementAll(ports, '/redis/counter', 20, 25)
    t.same(result.other, {}, 'only 2xx and 412')
    t.equal(result.written, 500)
    t.equal(Number(await redis.get('counter:redis')), 500, `final value (${result.refused} retries, ${Date.now() - started} ms)`)
    // A resource's key outlives its lease, for its fence: a lock left behind is a key with an owner.
    const keys = await redis.keys('fastify-precondition:lock:*')
    t.equal(keys.length, 1, 'one key for the one resource')
    t.equal(await redis.hexists(keys[0], 'owner'), 0, 'no lock left behind')
  })

  t.test('with a memory lock in each process instead, updates are lost', async (t) => {
    const result = await incrementAll(ports, '/memory/counter', 20, 25)
    t.equal(result.written, 500)
    const final = Number(await redis.get('counter:memory'))
    t.ok(final < 500, `one process's lock does not guard another's writes: ${final}`)
  })
})
