// redisLockStore with each supported ioredis major (5, and 6 installed as the alias `ioredis6`)
// against a real redis-server on loopback: a lease is taken and given back, guarded writes
// through the plugin are serialised, and stores on the two majors exclude each other on one key.
import Fastify from 'fastify'
import { Redis as Redis5 } from 'ioredis'
import { Redis as Redis6 } from 'ioredis6'
import { createRequire } from 'node:module'
import { test } from 'tap'
import fastifyPrecondition, { LockTimeoutError } from '../lib/index.js'
import { redisLockStore } from '../lib/redis.js'
import { hasRedisServer, REDIS_MISSING, RedisServer } from './helpers/redis-server.js'

const require = createRequire(import.meta.url)
const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

// In an application only one ioredis is installed, and redis-semaphore's client type (which the
// store's `client` option is) refers to that one. Here `ioredis` is 5 and 6 sits beside it under
// another name, so its client is given the other's type; at run time it is the real thing.
const CLIENTS: Array<{ major: string, version: string, connect (port: number): Redis5 }> = [
  { major: '5', version: require('ioredis/package.json').version as string, connect: (port: number) => new Redis5({ port, host: '127.0.0.1' }) },
  { major: '6', version: require('ioredis6/package.json').version as string, connect: (port: number) => new Redis6({ port, host: '127.0.0.1' }) as unknown as Redis5 }
]

test('redisLockStore works with ioredis 5 and ioredis 6', { skip }, async (t) => {
  const server = new RedisServer()
  await server.start()
  const opened: Array<{ disconnect (): void }> = []
  t.teardown(async () => {
    for (const client of opened) client.disconnect()
    await server.stop()
  })

  for (const { major, version, connect } of CLIENTS) {
    await t.test(`ioredis ${major}`, async (t) => {
      t.match(version, new RegExp(`^${major}\\.`), `ioredis ${version} is the client under test`)
      const client = connect(server.port)
      opened.push(client)
      const store = redisLockStore({ client, prefix: `v${major}:` })

      const lease = await store.acquire('/items/1', 1000)
      t.equal(await client.hget(`v${major}:lock:{/items/1}`, 'fence'), String(lease.token), 'the lease is a key in Redis')
      await lease.release()
      t.equal(await client.hexists(`v${major}:lock:{/items/1}`, 'owner'), 0, 'released')

      let current = 1
      const app = Fastify()
      await app.register(fastifyPrecondition, { lockStore: redisLockStore({ client, prefix: `app${major}:` }) })
      app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => ({ etag: `"${current}"` }) } }, async () => {
        await new Promise((resolve) => setTimeout(resolve, 20))
        current++
        return { version: current }
      })
      t.teardown(() => app.close())
      const write = () => app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"1"' }, payload: {} })
      const statuses = (await Promise.all([write(), write(), write()])).map((response) => response.statusCode).sort()
      t.same(statuses, [200, 412, 412], 'three writes based on one version: one applies, the others are refused')
      t.equal(current, 2)
    })
  }

  await t.test('stores on ioredis 5 and ioredis 6 exclude each other on one key', async (t) => {
    const [five, six] = CLIENTS.map(({ connect }) => {
      const client = connect(server.port)
      opened.push(client)
      return redisLockStore({ client, prefix: 'mixed:' })
    })
    const held = await five.acquire('k', 1000)
    await t.rejects(six.acquire('k', 50), LockTimeoutError, 'ioredis 6 waits for the key ioredis 5 holds')
    await held.release()
    const taken = await six.acquire('k', 1000)
    await t.rejects(five.acquire('k', 50), LockTimeoutError, 'and the other way round')
    await taken.release()
  })
})
