// redisLockStore against a real redis-server on loopback (started by the test), plus a few fake
// clients for states a real server cannot be put in on demand (a command that never answers).
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import fastifyPrecondition, { LockTimeoutError, LockUnavailableError, ProblemCode, type Lease } from '../lib/index.js'
import redisLockStoreDefault, { redisLockStore, RedisLockStore, type RedisLockClient } from '../lib/locks/redis.js'
import { send, sleep } from './helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer } from './helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const server = new RedisServer()
const clients: Redis[] = []

function connect (port = server.port): Redis {
  const client = new Redis({ port, host: '127.0.0.1' })
  client.on('error', () => {}) // reconnection attempts during the outage tests are expected
  clients.push(client)
  return client
}

async function until (what: string, condition: () => boolean, limit = 3000): Promise<void> {
  const end = Date.now() + limit
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

const settle = <T>(promise: Promise<T>) => promise.then((value) => ({ value, error: null }), (error: Error & { code?: string }) => ({ value: null, error }))

test('redis lock store', { skip }, async (t) => {
  await server.start()
  t.teardown(async () => {
    for (const client of clients) client.disconnect()
    await server.stop()
  })

  t.test('options are checked when the store is made', async (t) => {
    const client = connect()
    const cases: Array<[string, unknown, RegExp]> = [
      ['no options', undefined, /needs options/],
      ['no client', {}, /client must be an ioredis client/],
      ['client without commands', { client: {} }, /client must be an ioredis client/],
      ['ttl zero', { client, ttl: 0 }, /ttl must be a positive whole number/],
      ['ttl fractional', { client, ttl: 1.5 }, /ttl must be a positive whole number/],
      ['retryInterval a string', { client, retryInterval: '10' }, /retryInterval must be/],
      ['prefix a number', { client, prefix: 1 }, /prefix must be a string/],
      ['onLockLost not a function', { client, onLockLost: 'log' }, /onLockLost must be a function/]
    ]
    for (const [name, options, message] of cases) {
      t.throws(() => redisLockStore(options as never), { code: 'FST_PRECONDITION_INVALID_LOCK_STORE', message }, name)
    }
    const store = redisLockStoreDefault({ client })
    t.ok(store instanceof RedisLockStore, 'the default export is the factory')
    t.match(store, { ttl: 10_000, retryInterval: 10, prefix: 'fastify-precondition:' })
  })

  t.test('a lease is a Redis key with a ttl while held, gone once released', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, ttl: 5000, prefix: 'test-a:' })
    const lease = await store.acquire('/items/1', 1000)
    const pttl = await client.pttl('mutex:test-a:/items/1')
    t.ok(pttl > 0 && pttl <= 5000, `held with a ttl (${pttl} ms)`)
    t.equal(store.size, 1)
    await lease.release()
    t.equal(await client.exists('mutex:test-a:/items/1'), 0)
    t.equal(store.size, 0)
  })

  t.test('another process waits for the key, and gives up with LockTimeoutError', async (t) => {
    const one = redisLockStore({ client: connect(), prefix: 'test-b:' })
    const two = redisLockStore({ client: connect(), prefix: 'test-b:' })
    const held = await one.acquire('k', 1000)
    const started = Date.now()
    const timedOut = await settle(two.acquire('k', 100))
    t.ok(timedOut.error instanceof LockTimeoutError, 'timed out')
    t.equal(timedOut.error?.code, ProblemCode.LOCK_TIMEOUT)
    t.ok(Date.now() - started < 1000, 'after about the wait it was given, not when the key was released')
    t.equal(two.size, 0, 'the local turn was given back')
    const waiting = two.acquire('k', 2000)
    await sleep(50)
    await held.release()
    const lease = await waiting
    t.pass('the waiter got the key once it was released')
    await lease.release()
  })

  t.test('writes within one process queue in order, polling Redis one at a time', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, prefix: 'test-c:' })
    const first = await store.acquire('k', 1000)
    const order: number[] = []
    const waiting = [1, 2, 3, 4, 5].map((n) => store.acquire('k', 2000).then((lease) => {
      order.push(n)
      return lease
    }))
    await sleep(30)
    await first.release()
    for (const pending of waiting) await (await pending).release()
    t.same(order, [1, 2, 3, 4, 5])
    t.equal(store.size, 0)
  })

  t.test('the lease is renewed while held, so it outlives its ttl', async (t) => {
    let lost = 0
    const client = connect()
    const store = redisLockStore({ client, ttl: 300, prefix: 'test-d:', onLockLost: () => { lost++ } })
    const other = redisLockStore({ client: connect(), ttl: 300, prefix: 'test-d:' })
    const lease = await store.acquire('k', 1000)
    const blocked = await settle(other.acquire('k', 900))
    t.ok(blocked.error instanceof LockTimeoutError, 'still held after three ttls')
    t.ok(await client.pttl('mutex:test-d:k') > 0)
    t.equal(lost, 0)
    await lease.release()
    const after = await other.acquire('k', 100)
    await after.release()
  })

  t.test('a lease is released only by its owner; its loss is reported', async (t) => {
    const lost: string[] = []
    const client = connect()
    // A long ttl for the owner check, so no renewal notices the deletion before the release does.
    const owner1 = redisLockStore({ client, ttl: 5000, prefix: 'test-e:', onLockLost: (error, key) => { lost.push(`${key}: ${error.message}`) } })
    const store = redisLockStore({ client, ttl: 300, prefix: 'test-e:', onLockLost: (error, key) => { lost.push(`${key}: ${error.message}`) } })
    const other = redisLockStore({ client: connect(), ttl: 5000, prefix: 'test-e:' })
    const stale = await owner1.acquire('k', 1000)
    await client.del('mutex:test-e:k') // as if the lease had expired
    const fresh = await other.acquire('k', 1000)
    const owner = await client.get('mutex:test-e:k')
    await stale.release()
    t.equal(await client.get('mutex:test-e:k'), owner, 'the stale lease did not delete the new owner\'s key')
    const lease2 = await store.acquire('j', 1000)
    await client.set('mutex:test-e:j', 'someone else')
    await until('the loss to be noticed', () => lost.length > 0)
    t.match(lost, [/^j: Lost mutex for key mutex:test-e:j/])
    await lease2.release()
    t.equal(await client.get('mutex:test-e:j'), 'someone else')
    await fresh.release()
  })

  t.test('without onLockLost, a lost lease is a process warning', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, ttl: 60, prefix: 'test-f:' })
    const warned = new Promise<Error & { code?: string }>((resolve) => process.once('warning', resolve))
    const lease = await store.acquire('k', 1000)
    await client.set('mutex:test-f:k', 'someone else')
    const warning = await warned
    t.equal(warning.code, 'FST_PRECONDITION_LOCK_LOST')
    t.match(warning.message, /lease on "k" was lost/)
    await lease.release()
  })

  t.test('close turns away waiting writes and later ones', async (t) => {
    const client = connect()
    const holder = redisLockStore({ client, prefix: 'test-g:' })
    const store = redisLockStore({ client, prefix: 'test-g:' })
    const held = await holder.acquire('k', 1000)
    const polling = settle(store.acquire('k', 5000))
    const queued = settle(store.acquire('k', 5000))
    await sleep(30)
    const started = Date.now()
    store.close()
    for (const result of [await polling, await queued]) {
      t.ok(result.error instanceof LockUnavailableError)
      t.match(result.error?.message, /closing/)
    }
    t.ok(Date.now() - started < 1000, 'at once, not after the 5 s wait')
    t.ok((await settle(store.acquire('x', 100))).error instanceof LockUnavailableError)
    await held.release()
    t.equal(await client.exists('mutex:test-g:k'), 0)
  })

  t.test('Redis unreachable: 503 at once, never a write; service resumes when it is back', async (t) => {
    const outage = new RedisServer()
    await outage.start()
    t.teardown(() => outage.stop())
    const client = connect(outage.port)
    await until('the client to connect', () => client.status === 'ready')
    const store = redisLockStore({ client, prefix: 'test-h:' })
    const app = Fastify()
    await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 2000 })
    const item = { version: 1 }
    let handled = 0
    const validators = () => ({ etag: `"${item.version}"` })
    app.put('/item', { concurrency: { validators } }, async () => {
      handled++
      await sleep(2)
      item.version++
      return item
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const port = (app.server.address() as { port: number }).port
    const put = () => send(port, { method: 'PUT', path: '/item', headers: { 'if-match': `"${item.version}"` }, body: {} })

    t.equal((await put()).status, 200)

    // Writes keep coming while Redis goes away mid-run.
    const statuses: number[] = []
    const writing = { on: true }
    const load = (async () => {
      while (writing.on) statuses.push((await put()).status)
    })()
    await sleep(50)
    await outage.stop()
    await until('the client to notice', () => client.status !== 'ready')
    const handledAtOutage = handled
    const versionAtOutage = item.version
    const started = Date.now()
    const refused = await put()
    t.ok(Date.now() - started < 1000, `answered at once (${Date.now() - started} ms), not after the 2 s lock timeout`)
    t.equal(refused.status, 503)
    t.equal(refused.headers['retry-after'], '1')
    t.match(refused.json(), { status: 503, code: ProblemCode.LOCK_UNAVAILABLE, instance: '/item' })
    await sleep(100)
    writing.on = false
    await load
    t.ok(statuses.includes(200) && statuses.includes(503), `200s before the outage, 503s during it (${statuses.length} writes)`)
    t.ok(statuses.every((status) => status === 200 || status === 503), 'nothing but 200 and 503')
    t.equal(handled, statuses.filter((status) => status === 200).length + 1, 'a handler ran exactly for each 200')
    t.equal(handled, handledAtOutage, 'no handler ran while Redis was down')
    t.equal(item.version, versionAtOutage, 'no write was applied')

    await outage.start()
    await until('the client to reconnect', () => client.status === 'ready', 5000)
    t.equal((await put()).status, 200, 'service resumed')
    t.equal(item.version, versionAtOutage + 1)
  })

  t.test('the plugin with the Redis store: 50 concurrent PUTs, one 2xx', async (t) => {
    const store = redisLockStore({ client: connect(), prefix: 'test-i:' })
    const app = Fastify()
    await app.register(fastifyPrecondition, { lockStore: store })
    const item = { version: 1 }
    app.put('/item', { concurrency: { validators: () => ({ etag: `"${item.version}"` }) } }, async () => {
      await sleep(10)
      item.version++
      return item
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(() => app.close())
    const port = (app.server.address() as { port: number }).port
    const results = await Promise.all(Array.from({ length: 50 }, () =>
      send(port, { method: 'PUT', path: '/item', headers: { 'if-match': '"1"' }, body: {} })))
    const statuses: Record<number, number> = {}
    for (const { status } of results) statuses[status] = (statuses[status] ?? 0) + 1
    t.same(statuses, { 200: 1, 412: 49 })
    t.equal(store.size, 0)
  })
})

// States a live server cannot be held in on demand: a command that never answers, or fails.
function fakeClient (t: Test, overrides: Partial<Record<'set' | 'evalsha', (...args: unknown[]) => Promise<unknown>>> & { status?: string }): RedisLockClient & { calls: string[] } {
  const calls: string[] = []
  const client = {
    status: overrides.status ?? 'ready',
    calls,
    set: (...args: unknown[]) => { calls.push('set'); return (overrides.set ?? (async () => 'OK'))(...args) },
    evalsha: (...args: unknown[]) => { calls.push('evalsha'); return (overrides.evalsha ?? (async () => 1))(...args) },
    eval: async () => 1,
    get: async () => null,
    zrem: async () => 0
  }
  t.ok(client)
  return client as unknown as RedisLockClient & { calls: string[] }
}

test('a Redis command that never answers', async (t) => {
  const never = () => new Promise<unknown>(() => {})
  const ready = redisLockStore({ client: fakeClient(t, { set: never }) })
  t.ok((await settle(ready.acquire('k', 50))).error instanceof LockTimeoutError, 'while ioredis says ready: a timeout')
  const connecting = fakeClient(t, { set: never, status: 'ready' })
  const store = redisLockStore({ client: connecting })
  const pending = settle(store.acquire('k', 50))
  ;(connecting as { status: string }).status = 'connecting'
  const result = await pending
  t.ok(result.error instanceof LockUnavailableError, 'while ioredis is connecting: unavailable')
  t.match(result.error?.message, /connecting/)
  t.equal(store.size, 0)
})

test('a SET that lands after the wait ended is handed straight back', async (t) => {
  const client = fakeClient(t, { set: () => sleep(80).then(() => 'OK') })
  const store = redisLockStore({ client })
  t.ok((await settle(store.acquire('k', 20))).error instanceof LockTimeoutError)
  await sleep(120)
  t.same(client.calls, ['set', 'evalsha'], 'the late lease was deleted')
  const failing = fakeClient(t, { set: () => sleep(40).then(() => 'OK'), evalsha: async () => { throw new Error('Connection is closed.') } })
  t.ok((await settle(redisLockStore({ client: failing }).acquire('k', 10))).error instanceof LockTimeoutError)
  await sleep(80)
  t.same(failing.calls, ['set', 'evalsha'], 'a failed delete of the late lease is let go (it expires with its ttl)')
})

test('a failing Redis command is LockUnavailableError', async (t) => {
  const store = redisLockStore({ client: fakeClient(t, { set: async () => { throw new Error("Stream isn't writeable and enableOfflineQueue options is false") } }) })
  const result = await settle(store.acquire('k', 1000))
  t.ok(result.error instanceof LockUnavailableError)
  t.match(result.error?.message, /enableOfflineQueue/)
  const odd = redisLockStore({ client: fakeClient(t, { set: () => Promise.reject('not an error') }) }) // eslint-disable-line prefer-promise-reject-errors
  t.match((await settle(odd.acquire('k', 1000))).error?.message, /not an error/)
  const flaky = fakeClient(t, { status: 'ready' })
  const queued = redisLockStore({ client: flaky })
  const first = await queued.acquire('k', 1000)
  const second = settle(queued.acquire('k', 1000))
  ;(flaky as { status: string }).status = 'reconnecting'
  await first.release()
  const turnedAway = await second
  t.ok(turnedAway.error instanceof LockUnavailableError, 'a write queued in this process is turned away when its turn comes with Redis gone')
  t.equal(queued.size, 0)
  for (const status of ['reconnecting', 'close', 'end']) {
    const down = redisLockStore({ client: fakeClient(t, { status }) })
    const refused = await settle(down.acquire('k', 1000))
    t.ok(refused.error instanceof LockUnavailableError, status)
    t.match(refused.error?.message, new RegExp(status))
  }
})

test('a renewal that cannot reach Redis is retried, not a crash; a failed one reports the loss', async (t) => {
  let refreshes = 0
  const lost: string[] = []
  const client = fakeClient(t, {
    evalsha: async () => {
      refreshes++
      if (refreshes === 1) throw new Error('Connection is closed.')
      return refreshes === 2 ? 1 : 0
    }
  })
  const store = redisLockStore({ client, ttl: 30, onLockLost: (_error, key) => lost.push(key) })
  const lease: Lease = await store.acquire('k', 100)
  await until('three renewals', () => refreshes >= 3)
  await sleep(10)
  t.same(lost, ['k'], 'reported once, on the renewal that found the key gone')
  await lease.release()
})
