// redisLockStore against a real redis-server on loopback (started by the test), plus a few fake
// clients for states a real server cannot be put in on demand (a command that never answers).
import Fastify from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import { test, type Test } from 'tap'
import { LockLostError } from '../lib/errors.js'
import fastifyPrecondition, { LockTimeoutError, LockUnavailableError, ProblemCode, type Lease } from '../lib/index.js'
import redisLockStoreDefault, { encodeResourceKey, redisLockStore, RedisLockStore, SCRIPT_SHAS, type RedisLockClient } from '../lib/redis.js'
import { routeKey } from '../lib/locks/resource-key.js'
import { send, sleep } from './helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer } from './helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

// DEBUG SLEEP (allowed from loopback only) pauses the server for the ghost-lock tests.
const server = new RedisServer(['--enable-debug-command', 'local'])
const clients: Redis[] = []

function connect (port = server.port, options: RedisOptions = {}): Redis {
  const client = new Redis({ port, host: '127.0.0.1', ...options })
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

const LOST_AT_RENEWAL = 'a renewal found the key expired or held by another'
const LOST_AT_RELEASE = 'at release, the key was found expired or held by another'

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
      ['fenceTtl zero', { client, fenceTtl: 0 }, /fenceTtl must be a positive whole number/],
      ['retryInterval a string', { client, retryInterval: '10' }, /retryInterval must be/],
      ['prefix a number', { client, prefix: 1 }, /prefix must be a string/],
      ['prefix with an unclosed brace', { client, prefix: 'app{' }, /unclosed '\{'/],
      ['prefix with an unclosed brace after a tag', { client, prefix: '{app}:{x:' }, /unclosed '\{'/],
      ['onLockLost not a function', { client, onLockLost: 'log' }, /onLockLost must be a function/]
    ]
    for (const [name, options, message] of cases) {
      t.throws(() => redisLockStore(options as never), { code: 'FST_PRECONDITION_INVALID_LOCK_STORE', message }, name)
    }
    const store = redisLockStoreDefault({ client })
    t.ok(store instanceof RedisLockStore, 'the default export is the factory')
    t.match(store, { ttl: 10_000, fenceTtl: 10_000, retryInterval: 10, renewInterval: 3333, prefix: 'fastify-precondition:' })
    t.equal(redisLockStore({ client, prefix: '{app}:' }).prefix, '{app}:', 'a prefix that is a whole hash tag is fine')
    t.equal(redisLockStore({ client, ttl: 2 }).renewInterval, 1, 'renewed at least every millisecond')
  })

  t.test('a lease is a Redis hash with a ttl while held; its fence stays fenceTtl ms after the release', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, ttl: 5000, fenceTtl: 3000, prefix: 'test-a:' })
    const [seconds, micros] = await client.time()
    const before = Number(seconds) * 1e6 + Number(micros)
    const lease = await store.acquire('/items/1', 1000)
    const key = 'test-a:lock:{/items/1}'
    const pttl = await client.pttl(key)
    t.ok(pttl > 5000 && pttl <= 8000, `held with a ttl of the lease and fenceTtl (${pttl} ms)`)
    t.equal(store.size, 1)
    t.ok(lease.token > before && lease.token < before + 1e6, 'the first token of a key is Redis\' clock in microseconds')
    t.ok(Number.isSafeInteger(lease.token))
    t.equal(lease.signal.aborted, false)
    const hash = await client.hgetall(key)
    t.same(Object.keys(hash).sort(), ['fence', 'owner', 'until'])
    t.equal(hash.fence, String(lease.token), 'the fence holds the last token, in whole digits')
    t.match(hash.until, /^\d+$/)
    t.ok(Math.abs(Number(hash.until) - (lease.token / 1000 + 5000)) < 2, 'the lease ends a ttl after it was taken, on Redis\' clock')
    await lease.release()
    t.same(await client.hgetall(key), { fence: String(lease.token) }, 'released: only the fence is left')
    const kept = await client.pttl(key)
    t.ok(kept > 0 && kept <= 3000, `for fenceTtl (${kept} ms)`)
    t.equal(store.size, 0)
    t.equal(lease.signal.aborted, false, 'a lease released in time is not lost')
  })

  t.test('tokens grow with every acquisition of a key, whichever process takes it', async (t) => {
    const client = connect()
    const one = redisLockStore({ client, prefix: 'test-j:' })
    const two = redisLockStore({ client: connect(), prefix: 'test-j:' })
    const tokens: number[] = []
    for (let round = 0; round < 5; round++) {
      for (const store of [one, two]) {
        const lease = await store.acquire('k', 1000)
        tokens.push(lease.token)
        await lease.release()
      }
    }
    t.ok(tokens.every((token, index) => index === 0 || token > tokens[index - 1]), `strictly increasing: ${tokens.join(' ')}`)
    const other = await one.acquire('other', 1000)
    t.ok(other.token > 0, 'another key has its own fence')
    await other.release()
    // A fence ahead of the clock (as after a step back of Redis' clock): the next token is fence + 1.
    await client.hset('test-j:lock:{ahead}', 'fence', String(tokens[9] + 5e9))
    const ahead = await one.acquire('ahead', 1000)
    t.equal(ahead.token, tokens[9] + 5e9 + 1, 'never below the last token')
    await ahead.release()
    await client.hset('test-j:lock:{big}', 'fence', String(Number.MAX_SAFE_INTEGER - 1))
    const big = await two.acquire('big', 1000)
    t.equal(big.token, Number.MAX_SAFE_INTEGER, 'a number, exact up to the largest safe integer')
    await big.release()
    const past = await settle(two.acquire('big', 1000))
    t.ok(past.error instanceof LockUnavailableError, 'and refused past it: a 503, never an inexact token')
    t.match(past.error?.message, /2\^53 - 1/)
    t.equal(await client.hexists('test-j:lock:{big}', 'owner'), 0, 'nothing taken')
  })

  t.test('a resource key is printable in Redis, distinct, and the hash tag of its key', async (t) => {
    const cases: Array<[string, string]> = [
      ['/items/:id\nid=1:7', '/items/:id%0Aid=1:7'],
      ['100%', '100%25'],
      ['{a}b}', '%7Ba%7Db%7D'],
      ['\u0000\u001f\u007f\u0085 \u00a0é', '%00%1F%7F%85 \u00a0é'],
      ['\ud800x\udfff', '%uD800x%uDFFF'],
      ['\ud83d\ude00', '\ud83d\ude00'],
      ['', '']
    ]
    for (const [key, encoded] of cases) t.equal(encodeResourceKey(key), encoded, JSON.stringify(key))
    t.not(encodeResourceKey('a%0Ab'), encodeResourceKey('a\nb'), 'an encoded-looking key is not the key it looks like')
    const client = connect()
    const store = redisLockStore({ client, prefix: 'test-p:' })
    const key = routeKey('/items/:id')({ params: { id: 'x}\ny' } } as never)
    t.equal(key, '/items/:id\nid=4:x}\ny', 'the resource key in JS is unchanged')
    const lease = await store.acquire(key, 1000)
    const keys = await client.keys('test-p:*')
    t.same(keys, ['test-p:lock:{/items/:id%0Aid=4:x%7D%0Ay}'])
    t.match(keys[0], /^[\x20-\x7e]+$/, 'printable')
    t.equal(keys[0].indexOf('{'), keys[0].lastIndexOf('{'), 'one {')
    t.equal(keys[0].indexOf('}'), keys[0].length - 1, 'and one }, at the end: the tag is the whole resource key')
    await lease.release()
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
    t.ok(await client.pttl('test-d:lock:{k}') > 0)
    t.equal(lost, 0)
    await lease.release()
    const after = await other.acquire('k', 100)
    await after.release()
  })

  t.test('a lease is released only by its owner; its loss is reported', async (t) => {
    const lost: string[] = []
    const onLockLost = (error: Error, key: string) => { lost.push(`${key}: ${error.message}`) }
    const client = connect()
    // A long ttl for the owner check, so no renewal notices the deletion before the release does.
    const owner1 = redisLockStore({ client, ttl: 5000, prefix: 'test-e:', onLockLost })
    const store = redisLockStore({ client, ttl: 300, prefix: 'test-e:', onLockLost })
    const other = redisLockStore({ client: connect(), ttl: 5000, prefix: 'test-e:' })
    const stale = await owner1.acquire('k', 1000)
    await client.del('test-e:lock:{k}') // as if the lease had expired
    const fresh = await other.acquire('k', 1000)
    t.ok(fresh.token > stale.token, 'the new owner has the larger token')
    const owner = await client.hget('test-e:lock:{k}', 'owner')
    await stale.release()
    t.equal(await client.hget('test-e:lock:{k}', 'owner'), owner, 'the stale lease did not release the new owner\'s')
    const lease2 = await store.acquire('j', 1000)
    await client.hset('test-e:lock:{j}', 'owner', 'someone else')
    await until('the loss to be noticed', () => lost.length === 2)
    await lease2.release()
    t.equal(await client.hget('test-e:lock:{j}', 'owner'), 'someone else')
    await fresh.release()
    t.same(lost, [
      `k: The lease on "k" was lost: ${LOST_AT_RELEASE}`,
      `j: The lease on "j" was lost: ${LOST_AT_RENEWAL}`
    ], 'each loss reported once')
  })

  t.test('a key deleted by another client: the signal aborts at the next renewal', async (t) => {
    const lost: Array<{ error: Error, key: string }> = []
    const store = redisLockStore({ client: connect(), ttl: 1500, prefix: 'test-k:', onLockLost: (error, key) => { lost.push({ error, key }) } })
    const lease = await store.acquire('/items/7', 1000)
    const aborted = new Promise<number>((resolve) => lease.signal.addEventListener('abort', () => resolve(Date.now())))
    await connect().del('test-k:lock:{/items/7}')
    const deleted = Date.now()
    const at = await aborted
    t.ok(at - deleted < store.renewInterval + 500, `within one renewal interval (${store.renewInterval} ms) and a margin: ${at - deleted} ms`)
    t.ok(lease.signal.reason instanceof LockLostError, 'the reason is a LockLostError')
    t.equal(lease.signal.reason.code, ProblemCode.LOCK_LOST)
    t.equal(lease.signal.reason.message, `The lease on "/items/7" was lost: ${LOST_AT_RENEWAL}`)
    t.equal(lost.length, 1)
    t.equal(lost[0].error, lease.signal.reason, 'onLockLost gets the same error')
    t.equal(lost[0].key, '/items/7', 'and the resource key')
    await lease.release()
    t.equal(lost.length, 1, 'the release does not report it again')
  })

  t.test('a loss found only at release aborts the signal and is reported', async (t) => {
    const lost: string[] = []
    const client = connect()
    const store = redisLockStore({ client, ttl: 60_000, prefix: 'test-l:', onLockLost: (error, key) => { lost.push(`${key}: ${error.message}`) } })
    const lease = await store.acquire('k', 1000)
    await client.del('test-l:lock:{k}') // a Redis restart or an eviction, long before the first renewal
    t.equal(lease.signal.aborted, false, 'nothing noticed it yet')
    const released = await settle(Promise.resolve(lease.release()))
    t.equal(released.error, null, 'release resolves')
    t.equal(lease.signal.aborted, true, 'aborted by the time release resolves')
    t.ok(lease.signal.reason instanceof LockLostError)
    t.same(lost, [`k: The lease on "k" was lost: ${LOST_AT_RELEASE}`])
    await lease.release()
    t.equal(lost.length, 1, 'a second release is a no-op')
    t.equal(store.size, 0)
  })

  t.test('a signal first read after the loss is already aborted; onLost hears of it once', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, ttl: 60_000, prefix: 'test-l2:' })
    const lease = await store.acquire('k', 1000)
    const heard: Error[] = []
    lease.onLost!({ leaseLost: (error) => { heard.push(error) } })
    await client.del('test-l2:lock:{k}')
    await lease.release()
    t.equal(heard.length, 1, 'the listener heard the loss found at release')
    t.ok(heard[0] instanceof LockLostError)
    t.equal(lease.signal.aborted, true, 'a signal made after the loss is aborted')
    t.equal(lease.signal.reason, heard[0])
    const late: Error[] = []
    lease.onLost!({ leaseLost: (error) => { late.push(error) } })
    t.same(late, [heard[0]], 'a listener added after the loss hears of it at once')
  })

  t.test('a command timeout during a Redis pause leaves no ghost lock', async (t) => {
    const client = connect(server.port, { commandTimeout: 300 })
    const store = redisLockStore({ client, ttl: 30_000, prefix: 'test-m:' })
    const other = redisLockStore({ client: connect(), ttl: 30_000, prefix: 'test-m:' })
    await (await store.acquire('warm-up', 1000)).release() // so Redis has the scripts cached
    const sleeper = connect()
    t.equal(await sleeper.exists('test-m:lock:{k}'), 0)
    const asleep = sleeper.call('DEBUG', 'SLEEP', '1.5')
    await sleep(100)
    const failed = await settle(store.acquire('k', 5000))
    t.ok(failed.error instanceof LockUnavailableError, 'the acquire command timed out: 503')
    t.match(failed.error?.message, /timed out/)
    t.equal(store.size, 0)
    await asleep
    await sleeper.ping()
    const [owner, fence] = await sleeper.hmget('test-m:lock:{k}', 'owner', 'fence')
    t.ok(fence !== null && owner === null, 'the timed-out acquire did run when Redis woke, and was given back after it')
    const started = Date.now()
    const lease = await other.acquire('k', 1000)
    t.ok(Date.now() - started < 1000, `taken at once after Redis woke (${Date.now() - started} ms), not after the 30 s ttl`)
    t.ok(lease.token > Number(fence), 'with a larger token')
    await lease.release()
  })

  t.test('a wait that ends while the acquire command is stuck in a Redis pause leaves no ghost lock', async (t) => {
    const store = redisLockStore({ client: connect(), ttl: 30_000, prefix: 'test-n:' })
    const other = redisLockStore({ client: connect(), ttl: 30_000, prefix: 'test-n:' })
    await (await store.acquire('warm-up', 1000)).release()
    const sleeper = connect()
    const asleep = sleeper.call('DEBUG', 'SLEEP', '1')
    await sleep(100)
    const failed = await settle(store.acquire('k', 200))
    t.ok(failed.error instanceof LockTimeoutError, 'the write gave up waiting')
    await asleep
    await sleeper.ping()
    const started = Date.now()
    const lease = await other.acquire('k', 1000)
    t.ok(Date.now() - started < 1000, `taken at once after Redis woke (${Date.now() - started} ms)`)
    await lease.release()
  })

  t.test('a key Redis cannot read as a lease: 503, the key untouched', async (t) => {
    const client = connect()
    const store = redisLockStore({ client, ttl: 30_000, prefix: 'test-o:' })
    await client.set('test-o:lock:{k}', 'not a hash')
    const failed = await settle(store.acquire('k', 1000))
    t.ok(failed.error instanceof LockUnavailableError)
    t.match(failed.error?.message, /WRONGTYPE/)
    await client.ping() // after the owner-checked release, on the same connection
    t.equal(await client.get('test-o:lock:{k}'), 'not a hash')
    t.equal(store.size, 0)
    await client.del('test-o:lock:{k}')
    const lease = await store.acquire('k', 1000)
    t.ok(lease.token > 0)
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
    t.equal(await client.hexists('test-g:lock:{k}', 'owner'), 0)
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
  t.test('1,000 writes to resources that do not exist, then leases left to expire: no key outlives them by more than fenceTtl', async (t) => {
    const ttl = 400
    const fenceTtl = 300
    const client = connect()
    const store = redisLockStore({ client, ttl, fenceTtl, prefix: 'test-q:' })
    const app = Fastify()
    await app.register(fastifyPrecondition, { lockStore: store })
    app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => null } }, async () => 'never')
    t.teardown(() => app.close())
    const before = await store.acquire('/items/:id\nid=6:before', 1000)
    await before.release()
    const statuses: Record<number, number> = {}
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all(Array.from({ length: 100 }, (_, n) => app.inject({
        method: 'PUT', url: `/items/${batch * 100 + n}-${Math.random().toString(36).slice(2)}`, headers: { 'if-match': '"x"' }, payload: {}
      })))
      for (const { statusCode } of answers) statuses[statusCode] = (statuses[statusCode] ?? 0) + 1
    }
    t.same(statuses, { 412: 1000 }, 'each a 412: the resource does not exist')
    const left = await scanKeys(client, 'test-q:*')
    t.ok(left.length > 0, `keys of the recent ones are still there (${left.length})`)
    t.ok(left.every((key) => /^test-q:lock:\{\/items\/:id%0Aid=\d+:[\w-]+\}$/.test(key)), 'printable, one per resource')
    // Leases nobody gives back: their process lost Redis while it held them.
    const lost = connect()
    const abandoned = redisLockStore({ client: lost, ttl, fenceTtl, prefix: 'test-q:' })
    for (let n = 0; n < 20; n++) await abandoned.acquire(`held-${n}`, 1000)
    lost.disconnect()
    const started = Date.now()
    let keys = await scanKeys(client, 'test-q:*')
    while (keys.length > 0 && Date.now() - started < 5000) {
      await sleep(50)
      keys = await scanKeys(client, 'test-q:*')
    }
    t.same(keys, [], `no key with the prefix is left ${Date.now() - started} ms after the last lease was taken (ttl ${ttl} + fenceTtl ${fenceTtl} ms)`)
    const after = await store.acquire('/items/:id\nid=6:before', 1000)
    t.ok(after.token > before.token, `the resource's token grew across the expiry of its key (${before.token} → ${after.token})`)
    await after.release()
  })
})

async function scanKeys (client: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    keys.push(...batch)
    cursor = next
  } while (cursor !== '0')
  return keys
}

// States a live server cannot be held in on demand: a command that never answers, or fails.
type ScriptName = 'acquire' | 'renew' | 'release'
type Handler = (...args: unknown[]) => Promise<unknown>

const SCRIPTS = new Map(Object.entries(SCRIPT_SHAS).map(([name, sha]) => [sha, name as ScriptName]))

function scriptName (args: unknown[]): ScriptName {
  return SCRIPTS.get(args[0] as string)!
}

function fakeClient (t: Test, overrides: Partial<Record<ScriptName, Handler>> & { status?: string }): RedisLockClient & { calls: ScriptName[] } {
  const calls: ScriptName[] = []
  const defaults: Record<ScriptName, Handler> = { acquire: async () => 1, renew: async () => 1, release: async () => 1 }
  const client = {
    status: overrides.status ?? 'ready',
    calls,
    evalsha: (...args: unknown[]) => {
      const name = scriptName(args)
      calls.push(name)
      return (overrides[name] ?? defaults[name])(...args)
    },
    eval: async () => { throw new Error('EVAL is only sent after NOSCRIPT') }
  }
  t.ok(client)
  return client as unknown as RedisLockClient & { calls: ScriptName[] }
}

function deferred<T> (): { promise: Promise<T>, resolve: (value: T) => void, reject: (error: Error) => void } {
  const handles = {} as { resolve: (value: T) => void, reject: (error: Error) => void }
  const promise = new Promise<T>((resolve, reject) => { handles.resolve = resolve; handles.reject = reject })
  return { promise, ...handles }
}

test('a Redis command that never answers', async (t) => {
  const never = () => new Promise<unknown>(() => {})
  const client = fakeClient(t, { acquire: never })
  const ready = redisLockStore({ client })
  t.ok((await settle(ready.acquire('k', 50))).error instanceof LockTimeoutError, 'while ioredis says ready: a timeout')
  t.same(client.calls, ['acquire', 'release'], 'the owner-checked delete follows the command it gave up on')
  const connecting = fakeClient(t, { acquire: never, status: 'ready' })
  const store = redisLockStore({ client: connecting })
  const pending = settle(store.acquire('k', 50))
  ;(connecting as { status: string }).status = 'connecting'
  const result = await pending
  t.ok(result.error instanceof LockUnavailableError, 'while ioredis is connecting: unavailable')
  t.match(result.error?.message, /connecting/)
  t.equal(store.size, 0)
})

test('an acquire that lands after the wait ended is handed straight back', async (t) => {
  const client = fakeClient(t, { acquire: () => sleep(80).then(() => 7) })
  const store = redisLockStore({ client })
  t.ok((await settle(store.acquire('k', 20))).error instanceof LockTimeoutError)
  t.same(client.calls, ['acquire', 'release'], 'deleted when the wait ended, behind the acquire')
  await sleep(120)
  t.same(client.calls, ['acquire', 'release', 'release'], 'and again once it answered that it took the key')
  const busy = fakeClient(t, { acquire: () => sleep(40).then(() => 0) })
  t.ok((await settle(redisLockStore({ client: busy }).acquire('k', 10))).error instanceof LockTimeoutError)
  await sleep(80)
  t.same(busy.calls, ['acquire', 'release'], 'not again when it answered that the key was held')
  const failing = fakeClient(t, { acquire: () => sleep(40).then(() => 1), release: async () => { throw new Error('Connection is closed.') } })
  t.ok((await settle(redisLockStore({ client: failing }).acquire('k', 10))).error instanceof LockTimeoutError)
  await sleep(80)
  t.same(failing.calls, ['acquire', 'release', 'release'], 'a failed delete is let go (the key expires with its ttl)')
  const late = fakeClient(t, { acquire: () => sleep(40).then(() => { throw new Error('Command timed out') }) })
  t.ok((await settle(redisLockStore({ client: late }).acquire('k', 10))).error instanceof LockTimeoutError, 'a command failing after the wait ended changes nothing')
  await sleep(80)
  t.same(late.calls, ['acquire', 'release'])
})

test('between attempts, a wait that ends has nothing to delete', async (t) => {
  const client = fakeClient(t, { acquire: async () => 0 })
  const store = redisLockStore({ client, retryInterval: 1000 })
  t.ok((await settle(store.acquire('k', 50))).error instanceof LockTimeoutError)
  t.same(client.calls, ['acquire'])
  const closing = fakeClient(t, { acquire: async () => 0 })
  const closed = redisLockStore({ client: closing, retryInterval: 1000 })
  const waiting = settle(closed.acquire('k', 5000))
  await sleep(20)
  closed.close()
  t.ok((await waiting).error instanceof LockUnavailableError)
  t.same(closing.calls, ['acquire'])
})

test('a failing Redis command is LockUnavailableError, and its key is deleted', async (t) => {
  const client = fakeClient(t, { acquire: async () => { throw new Error("Stream isn't writeable and enableOfflineQueue options is false") } })
  const store = redisLockStore({ client })
  const result = await settle(store.acquire('k', 1000))
  t.ok(result.error instanceof LockUnavailableError)
  t.match(result.error?.message, /enableOfflineQueue/)
  t.same(client.calls, ['acquire', 'release'], 'the owner-checked delete is sent: the script may have run')
  const dropped = fakeClient(t, { acquire: async () => { throw new Error('Connection is closed.') } })
  t.ok((await settle(redisLockStore({ client: dropped }).acquire('k', 1000))).error instanceof LockUnavailableError)
  t.same(dropped.calls, ['acquire', 'release'], 'also when the connection dropped mid-acquire')
  const odd = redisLockStore({ client: fakeClient(t, { acquire: () => Promise.reject('not an error') }) }) // eslint-disable-line prefer-promise-reject-errors
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

test('a renewal that cannot reach Redis is retried, not a crash; one that finds the key gone reports the loss', async (t) => {
  let renewals = 0
  const lost: string[] = []
  const client = fakeClient(t, {
    renew: async () => {
      renewals++
      if (renewals === 1) throw new Error('Connection is closed.')
      return renewals === 2 ? 1 : 0
    }
  })
  const store = redisLockStore({ client, ttl: 300, onLockLost: (_error, key) => lost.push(key) })
  const lease: Lease = await store.acquire('k', 100)
  await until('three renewals', () => renewals >= 3)
  await sleep(10)
  t.same(lost, ['k'], 'reported once, on the renewal that found the key gone')
  t.match(lease.signal.reason, { message: new RegExp(LOST_AT_RENEWAL) })
  await lease.release()
  t.same(lost, ['k'])
  t.equal(renewals, 3, 'no renewal after the loss')
})

test('no renewal succeeding within the ttl is a loss', async (t) => {
  const lost: Error[] = []
  const never = fakeClient(t, { renew: () => new Promise<unknown>(() => {}) })
  const store = redisLockStore({ client: never, ttl: 150, onLockLost: (error) => lost.push(error) })
  const lease = await store.acquire('k', 100)
  const started = Date.now()
  await until('the lease to be given up', () => lease.signal.aborted)
  t.ok(Date.now() - started < 1000, 'about a ttl after it was taken')
  t.match(lease.signal.reason, { code: ProblemCode.LOCK_LOST, message: /no renewal succeeded within its ttl of 150 ms/ })
  t.equal(lost[0], lease.signal.reason)
  t.same(never.calls, ['acquire', 'renew'], 'one renewal in flight, never answered')
  const failing = fakeClient(t, { renew: async () => { throw new Error('Command timed out') } })
  const other = redisLockStore({ client: failing, ttl: 150 })
  const lease2 = await other.acquire('k', 100)
  await until('the lease to be given up', () => lease2.signal.aborted)
  t.ok(failing.calls.filter((name) => name === 'renew').length >= 2, 'renewals that fail are retried until the ttl runs out')
  const calls = failing.calls.length
  await sleep(150)
  t.equal(failing.calls.length, calls, 'and stop then')
  await lease.release()
  await lease2.release()
  t.equal(lost.length, 1, 'a release that deletes the key does not report it again')
})

test('a renewal answered after the release changes nothing', async (t) => {
  const answers: Array<ReturnType<typeof deferred<unknown>>> = []
  const client = fakeClient(t, {
    renew: () => {
      const answer = deferred<unknown>()
      answers.push(answer)
      return answer.promise
    },
    release: async () => 0
  })
  const lost: string[] = []
  const store = redisLockStore({ client, ttl: 30, onLockLost: (_error, key) => lost.push(key) })
  const first = await store.acquire('a', 100)
  const second = await store.acquire('b', 100)
  await until('both renewals in flight', () => answers.length === 2)
  await first.release()
  await second.release()
  t.same(lost, ['a', 'b'], 'the releases found no key')
  answers[0].resolve(1)
  answers[1].reject(new Error('Connection is closed.'))
  await sleep(60)
  t.same(client.calls.filter((name) => name === 'renew').length, 2, 'no renewal after the release')
  t.same(lost, ['a', 'b'])
})

test('a release never rejects: a failed delete, a throwing onLockLost', async (t) => {
  const failing = fakeClient(t, { release: async () => { throw new Error('Connection is closed.') } })
  const lease = await redisLockStore({ client: failing }).acquire('k', 100)
  t.equal((await settle(Promise.resolve(lease.release()))).error, null, 'a delete that failed: the key expires with its ttl')
  t.equal(lease.signal.aborted, false, 'not a loss')
  const gone = fakeClient(t, { release: async () => 0 })
  const throwing = redisLockStore({ client: gone, onLockLost: () => { throw new Error('reporter broke') } })
  const lost = await throwing.acquire('k', 100)
  t.equal((await settle(Promise.resolve(lost.release()))).error, null, 'onLockLost threw')
  t.equal(lost.signal.aborted, true)
})
