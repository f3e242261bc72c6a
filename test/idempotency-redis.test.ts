// The Redis idempotency store against a real redis-server on loopback (started by the test):
// the Lua claim, owner checks, leases and ttl; then two processes sharing it, and a process that
// dies while it holds a key.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { test, type Test } from 'tap'
import { RedisIdempotencyStore, redisIdempotencyStore } from '../lib/redis/idempotency-store.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { send, sleep } from './helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer, startRedis } from './helpers/redis-server.js'
import { stopChild } from './helpers/child.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const script = fileURLToPath(new URL('./helpers/idempotency-redis-app.ts', import.meta.url))
async function claimDone (store: ReturnType<typeof redisIdempotencyStore>, key: string): Promise<Buffer | string> {
  const claimed = await store.claim(key, 'fp', 5000)
  if (claimed.state === 'claimed') await store.complete(key, claimed.token, response, 60_000)
  const done = await store.claim(key, 'fp', 5000)
  return (done as { response: StoredResponse }).response.body
}

const response: StoredResponse = { status: 201, headers: { 'content-type': 'application/json', location: '/orders/1' }, body: Buffer.from([0x7b, 0x7d, 0xff]) }

interface Instance { port: number, child: ChildProcess, runs: number[] }

async function startInstance (t: Test, env: Record<string, string>): Promise<Instance> {
  const child = fork(script, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const instance: Instance = { port: 0, child, runs: [] }
  t.teardown(() => stopChild(child))
  child.on('message', (message: { run?: number }) => { if (message.run !== undefined) instance.runs.push(message.run) })
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`instance exited with ${String(code)} before listening`) })
  ])
  instance.port = (message as { port: number }).port
  return instance
}

test('redis idempotency store', { skip }, async (t) => {
  const { server, redis } = await startRedis(t, Redis)

  t.test('options are checked when the store is made', async (t) => {
    const rows: Array<[string, unknown, RegExp]> = [
      ['no options', undefined, /needs options/],
      ['no client', {}, /client must be an ioredis client/],
      ['a client without eval', { client: { evalsha () {} } }, /client must be an ioredis client/],
      ['prefix a number', { client: redis, prefix: 1 }, /prefix must be a string/],
      ['lease 0', { client: redis, lease: 0 }, /lease must be a positive whole number/],
      ['maxAnswerBytes 0', { client: redis, maxAnswerBytes: 0 }, /maxAnswerBytes must be a positive whole number of bytes; got 0/],
      ['maxAnswerBytes fractional', { client: redis, maxAnswerBytes: 1.5 }, /maxAnswerBytes must be/],
      ['maxAnswerBytes a string', { client: redis, maxAnswerBytes: '1' }, /maxAnswerBytes must be/]
    ]
    for (const [name, options, message] of rows) {
      t.throws(() => redisIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message }, name)
    }
    const store = redisIdempotencyStore({ client: redis })
    t.ok(store instanceof RedisIdempotencyStore)
    t.match(store, { prefix: 'fastify-precondition:idem:', lease: 10_000, maxAnswerBytes: 1_048_576 })
    t.equal(redisIdempotencyStore({ client: redis, maxAnswerBytes: 10 }).maxAnswerBytes, 10)
  })

  t.test('a not replayable record, and an answer over maxAnswerBytes kept as one', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't6:', maxAnswerBytes: 100 })
    const notKept: StoredResponse = { status: 201, headers: {}, body: '', replayable: false }
    const marked = await store.claim('marked', 'fp', 5000) as { token: string }
    t.equal(await store.complete('marked', marked.token, { ...notKept, status: 200 }, 60_000), true)
    t.equal(await redis.hget('t6:marked', 'response'), '{"s":200,"r":0}', 'kept as its status and r:0')
    t.same(await store.claim('marked', 'fp', 5000), { state: 'done', response: { ...notKept, status: 200 } })
    t.same(await store.claim('marked', 'other', 5000), { state: 'mismatch' })
    const rows: Array<[string, Buffer | string, boolean]> = [
      ['100 bytes', Buffer.alloc(100), true],
      ['101 bytes', Buffer.alloc(101), false],
      ['100 ASCII characters', 'x'.repeat(100), true],
      ['51 characters of 2 UTF-8 bytes', '\u00e9'.repeat(51), false]
    ]
    for (const [name, body, kept] of rows) {
      const { token } = await store.claim(name, 'fp', 5000) as { token: string }
      const answer: StoredResponse = { status: 201, headers: { etag: '"1"' }, body }
      t.equal(await store.complete(name, token, answer, 60_000), true)
      t.same(await store.claim(name, 'fp', 5000), { state: 'done', response: kept ? answer : notKept }, `${name}: ${kept ? 'kept' : 'not replayable'}`)
    }
  })

  t.test('a claim while the connection is down fails at once', async (t) => {
    const failing = redisIdempotencyStore({ client: { status: 'end', evalsha: async () => { throw new Error('never sent') }, eval: async () => 'never' } })
    await t.rejects(failing.claim('k', 'fp', 100), { message: 'the Redis connection is end' }, 'a client that was quit')
    const own = new RedisServer()
    await own.start()
    const client = new Redis({ port: own.port, host: '127.0.0.1' })
    t.teardown(async () => {
      client.disconnect()
      await own.stop()
    })
    const store = redisIdempotencyStore({ client, prefix: 't7:' })
    t.equal((await store.claim('before', 'fp', 5000)).state, 'claimed')
    await own.stop()
    const end = Date.now() + 5000
    while (client.status === 'ready' && Date.now() < end) await sleep(5)
    t.not(client.status, 'ready', `the client saw the server go (${client.status})`)
    const started = Date.now()
    await t.rejects(store.claim('during', 'fp', 5000), { message: /^the Redis connection is (reconnecting|close)$/ })
    const took = Date.now() - started
    t.ok(took < 200, `rejected in ${took} ms, not after the offline queue`)
    await own.start()
    while (client.status !== 'ready' && Date.now() < end + 5000) await sleep(10)
    t.equal((await store.claim('after', 'fp', 5000)).state, 'claimed', 'claims work again once it is back')
  })

  t.test('claim, running, done, mismatch; a completed record is never overwritten', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't1:' })
    const first = await store.claim('k', 'fp', 5000)
    t.equal(first.state, 'claimed')
    const token = (first as { token: string }).token
    t.ok((await redis.pttl('t1:k')) > 4000, 'the record has the lease as its ttl')
    const running = await store.claim('k', 'fp', 5000)
    t.equal(running.state, 'running')
    t.ok((running as { retryAfter: number }).retryAfter > 4000)
    t.same(await store.claim('k', 'other', 5000), { state: 'mismatch' })
    t.equal(await store.renew('k', token, 8000), true)
    t.ok((await redis.pttl('t1:k')) > 7000, 'renewed')
    t.equal(await store.complete('k', 'wrong', response, 60_000), false, 'another token cannot complete')
    t.equal(await store.complete('k', token, response, 60_000), true)
    t.ok((await redis.pttl('t1:k')) > 59_000, 'kept for the ttl')
    t.same(await store.claim('k', 'fp', 5000), { state: 'done', response }, 'bytes, status and headers survive')
    t.same(await store.claim('k', 'other', 5000), { state: 'mismatch' })
    t.equal(await store.complete('k', token, { ...response, status: 200 }, 60_000), false, 'not overwritten, even by its owner')
    t.equal(await store.renew('k', token, 5000), false)
    await store.release('k', token)
    t.equal((await store.claim('k', 'fp', 5000)).state, 'done', 'nor released')
  })

  t.test('a string body is kept as the string it was, bytes as bytes', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't1s:' })
    const text = { ...response, body: '{"name":"caf\u00e9 \u2713 \ud83d\ude00","raw":"\\u00e9"}' }
    const { token } = await store.claim('k', 'fp', 5000) as { token: string }
    t.equal(await store.complete('k', token, text, 60_000), true)
    const done = await store.claim('k', 'fp', 5000) as { state: 'done', response: StoredResponse }
    t.equal(typeof done.response.body, 'string', 'a string comes back as a string')
    t.same(done, { state: 'done', response: text }, 'every character survives')
    const bytes = await claimDone(store, 'k0')
    t.ok(Buffer.isBuffer(bytes) && bytes.equals(response.body as Buffer), 'bytes come back as bytes')
  })

  t.test('release frees the key for its owner only', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't2:' })
    const { token } = await store.claim('k', 'fp', 5000) as { token: string }
    await store.release('k', 'wrong')
    t.equal((await store.claim('k', 'fp', 5000)).state, 'running')
    await store.release('k', token)
    t.equal(await redis.exists('t2:k'), 0)
    t.equal((await store.claim('k', 'other', 5000)).state, 'claimed')
  })

  t.test('a crashed claimer\'s key frees after its lease; the stale claimer can do nothing', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't3:' })
    const { token } = await store.claim('k', 'fp', 100) as { token: string }
    t.equal((await store.claim('k', 'fp', 100)).state, 'running')
    await sleep(150)
    const again = await store.claim('k', 'fp', 5000) as { state: string, token: string }
    t.equal(again.state, 'claimed')
    t.equal(await store.complete('k', token, response, 60_000), false, 'the stale claimer cannot complete')
    t.equal(await store.renew('k', token, 5000), false)
    await store.release('k', token)
    t.equal((await store.claim('k', 'fp', 5000)).state, 'running', 'nor release the new claim')
  })

  t.test('a stored response expires after its ttl', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't4:' })
    const { token } = await store.claim('k', 'fp', 5000) as { token: string }
    await store.complete('k', token, response, 100)
    await sleep(150)
    t.equal((await store.claim('k', 'other', 5000)).state, 'claimed')
  })

  t.test('scripts are loaded again after the server forgot them', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 't5:' })
    await store.claim('a', 'fp', 5000)
    await redis.script('FLUSH')
    t.equal((await store.claim('b', 'fp', 5000)).state, 'claimed')
    const failing = redisIdempotencyStore({ client: { evalsha: async () => { throw new Error('ERR down') }, eval: async () => 'never' } })
    await t.rejects(failing.claim('k', 'fp', 100), /ERR down/, 'other errors are not retried')
  })

  t.test('two processes, 20 concurrent duplicates: one run in total', async (t) => {
    const env = { REDIS_PORT: String(server.port), PREFIX: 'p1:' }
    const instances = await Promise.all([startInstance(t, env), startInstance(t, env)])
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => send(instances[i % 2].port, {
      method: 'POST', path: '/orders', body: { item: 'book' }, headers: { 'idempotency-key': 'shared' }
    })))
    t.equal(Number(await redis.get('p1:runs')), 1, 'one handler run across both processes')
    const statuses = results.map((r) => r.status)
    t.ok(statuses.every((s) => s === 201 || s === 409), statuses.join(' '))
    const created = results.filter((r) => r.status === 201)
    for (const r of created) t.equal(r.body, created[0].body, 'every 201 is the one response')
    const late = await send(instances[1].port, { method: 'POST', path: '/orders', body: { item: 'book' }, headers: { 'idempotency-key': 'shared' } })
    const early = await send(instances[0].port, { method: 'POST', path: '/orders', body: { item: 'book' }, headers: { 'idempotency-key': 'shared' } })
    t.equal(late.headers['idempotent-replayed'], 'true')
    t.equal(late.body, early.body, 'both processes replay the same response')
  })

  t.test('a process that dies holding a key: another process runs it once the lease ends', async (t) => {
    const hanging = await startInstance(t, { REDIS_PORT: String(server.port), PREFIX: 'p2:', LEASE: '300', HANG: '1' })
    const healthy = await startInstance(t, { REDIS_PORT: String(server.port), PREFIX: 'p2:', LEASE: '300' })
    const request = { method: 'POST', path: '/orders', body: { item: 'book' }, headers: { 'idempotency-key': 'crash' } }
    send(hanging.port, request).catch(() => {})
    const end = Date.now() + 5000
    while (hanging.runs.length === 0 && Date.now() < end) await sleep(5)
    t.equal(hanging.runs.length, 1, 'the first process runs the handler')
    t.equal((await send(healthy.port, request)).status, 409, 'held while its lease is renewed')
    await sleep(400)
    t.equal((await send(healthy.port, request)).status, 409, 'still held: the hung process keeps renewing')
    hanging.child.kill('SIGKILL')
    await once(hanging.child, 'exit')
    await sleep(400)
    const retry = await send(healthy.port, request)
    t.equal(retry.status, 201, 'freed after the dead process\'s lease')
    t.equal(Number(await redis.get('p2:runs')), 2)
  })
})
