// `replicas` on both Redis stores, against a real primary and replica on loopback: a claim, an
// answer and a lease count only once the replicas acknowledged them (WAIT, sent behind the script
// on the same connection); without the acknowledgement a claim or a lease is given back and
// refused, an answer is reported as not stored, and storing it again waits for the replicas again.
import { Redis } from 'ioredis'
import { test } from 'tap'
import { LockUnavailableError } from '../lib/index.js'
import { redisIdempotencyStore, redisLockStore } from '../lib/redis.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { LuaScript, type PipelineClient, type ScriptPipeline } from '../lib/redis/lua-script.js'
import { sleep } from './helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer } from './helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const answer: StoredResponse = { status: 201, headers: { 'content-type': 'application/json' }, body: '{"id":1}' }

/** A pipeline whose exec answers `results`: for the states a real server does not give. */
function fakePipelineClient (results: Array<Array<[Error | null, unknown]> | null>): PipelineClient {
  const pipeline: ScriptPipeline = {
    evalsha: () => pipeline,
    eval: () => pipeline,
    wait: () => pipeline,
    exec: async () => results.shift() ?? null
  }
  return { evalsha: async () => 0, eval: async () => 0, pipeline: () => pipeline }
}

test('replicas: WAIT behind claims, answers and leases', { skip }, async (t) => {
  const primary = new RedisServer()
  await primary.start()
  const replica = new RedisServer(['--replicaof', '127.0.0.1', String(primary.port)])
  await replica.start()
  const redis = new Redis({ port: primary.port, host: '127.0.0.1' })
  const replicaClient = new Redis({ port: replica.port, host: '127.0.0.1' })
  t.teardown(async () => {
    redis.disconnect()
    replicaClient.disconnect()
    await replica.stop()
    await primary.stop()
  })
  const end = Date.now() + 10_000
  while (!(await replicaClient.info('replication')).includes('master_link_status:up') && Date.now() < end) await sleep(20)

  t.test('options are checked when the stores are made', async (t) => {
    const noPipeline = { evalsha: async () => 0, eval: async () => 0 }
    const rows: Array<[string, unknown, RegExp]> = [
      ['replicas negative', { client: redis, replicas: -1 }, /replicas must be a whole number, 0 or more; got -1/],
      ['replicas fractional', { client: redis, replicas: 0.5 }, /replicas must be a whole number, 0 or more/],
      ['replicaTimeout 0', { client: redis, replicaTimeout: 0 }, /replicaTimeout must be a positive whole number of milliseconds; got 0/],
      ['commandTimeout 0', { client: redis, commandTimeout: 0 }, /commandTimeout must be a positive whole number of milliseconds; got 0/],
      ['replicas without pipeline()', { client: noPipeline, replicas: 1 }, /replicas needs a client with pipeline\(\)/]
    ]
    for (const [name, options, message] of rows) {
      t.throws(() => redisIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message }, `idempotency: ${name}`)
      t.throws(() => redisLockStore(options as never), { code: 'FST_PRECONDITION_INVALID_LOCK_STORE', message }, `lock: ${name}`)
    }
    t.match(redisIdempotencyStore({ client: redis }), { replicas: 0, replicaTimeout: 1000, commandTimeout: 1000 })
    t.match(redisLockStore({ client: redis }), { replicas: 0, replicaTimeout: 1000, commandTimeout: 1000 })
    t.match(redisIdempotencyStore({ client: noPipeline, replicas: 0 }), { replicas: 0 }, 'no pipeline needed without replicas')
  })

  t.test('idempotency: acknowledged by the replica, a claim and an answer count', async (t) => {
    const store = redisIdempotencyStore({ client: redis, prefix: 'r1:', replicas: 1 })
    const claimed = await store.claim('k', 'fp', 5000) as { state: string, token: string }
    t.equal(claimed.state, 'claimed')
    t.equal(await replicaClient.hget('r1:k', 'token'), claimed.token, 'the replica has the claim when it is made')
    t.equal((await store.claim('k', 'fp', 5000)).state, 'running')
    t.equal(await store.complete('k', claimed.token, answer, 60_000, 'fp'), true)
    t.equal(await replicaClient.hget('r1:k', 'state'), 'done', 'and the answer when it is stored')
    t.same(await store.claim('k', 'fp', 5000), { state: 'done', response: answer })
    t.equal(await store.complete('k', 'another', answer, 60_000, 'fp'), false, 'another token stores nothing')
    await redis.script('FLUSH')
    t.equal((await store.claim('k2', 'fp', 5000)).state, 'claimed', 'a script the server forgot is sent again, with its WAIT')
  })

  t.test('idempotency: not acknowledged in time, a claim is let go and refused; an answer is not stored', async (t) => {
    // Two replicas asked of a primary that has one: WAIT answers 1 after the timeout.
    const store = redisIdempotencyStore({ client: redis, prefix: 'r2:', replicas: 2, replicaTimeout: 50 })
    const started = Date.now()
    await t.rejects(store.claim('k', 'fp', 5000), { message: 'the claim was written to the Redis primary, and 1 of the 2 replicas it needs acknowledged it within 50 ms: a failover could lose it' })
    t.ok(Date.now() - started < 1000, 'after replicaTimeout')
    await sleep(20)
    t.equal(await redis.exists('r2:k'), 0, 'the claim was given back: a retry may claim it')
    t.equal((await store.claim('k', 'other', 5000).catch(() => null)), null, 'and is refused again while the replica is missing')
    // An answer: its claim made by a store that does not wait.
    const plain = redisIdempotencyStore({ client: redis, prefix: 'r2:' })
    const { token } = await plain.claim('a', 'fp', 5000) as { token: string }
    await t.rejects(store.complete('a', token, answer, 60_000, 'fp'), { message: /^the answer was written to the Redis primary, and 1 of the 2 replicas/ })
    t.equal(await redis.hget('r2:a', 'state'), 'done', 'it is on the primary')
    t.equal(await plain.complete('a', token, answer, 60_000, 'fp'), true, 'storing the same answer again by its claim is allowed')
    t.equal(await plain.complete('a', token, { ...answer, body: '{"id":2}' }, 60_000, 'fp'), false, 'another answer is not')
    t.same(await plain.claim('a', 'fp', 5000), { state: 'done', response: answer })
  })

  t.test('idempotency: a refused script, a refused WAIT and a discarded pipeline are failures', async (t) => {
    await redis.set('r3:wrongtype', 'x')
    const store = redisIdempotencyStore({ client: redis, prefix: 'r3:', replicas: 1 })
    await t.rejects(store.claim('wrongtype', 'fp', 5000), /WRONGTYPE/)
    const waitRefused = redisIdempotencyStore({ client: fakePipelineClient([[[null, ['claimed']], [new Error('ERR WAIT cannot be used with replica instances'), null]]]), replicas: 1 })
    await t.rejects(waitRefused.claim('k', 'fp', 5000), /WAIT cannot be used/)
    const discarded = redisIdempotencyStore({ client: fakePipelineClient([null]), replicas: 1 })
    await t.rejects(discarded.claim('k', 'fp', 5000), /the pipeline was discarded/)
    const script = new LuaScript('return 1')
    t.same(await script.runAndWait(fakePipelineClient([[[null, 1], [null, '2']]]), [], [], 1, 10), { result: 1, replicas: 2 }, 'the count as a number')
  })

  t.test('a claim or an acquire Redis does not answer within commandTimeout fails; a claim that lands later is let go', async (t) => {
    const pausing = new Redis({ port: primary.port, host: '127.0.0.1' })
    t.teardown(() => pausing.disconnect())
    const store = redisIdempotencyStore({ client: redis, prefix: 'r5:', commandTimeout: 100 })
    const locks = redisLockStore({ client: redis, prefix: 'r5:', commandTimeout: 100 })
    t.teardown(() => locks.close())
    await primary.signal('SIGSTOP')
    const started = Date.now()
    await t.rejects(store.claim('k', 'fp', 5000), { message: 'Redis did not answer within 100 ms' })
    await t.rejects(locks.acquire('k', 10_000), LockUnavailableError)
    t.ok(Date.now() - started < 2000, `refused in ${Date.now() - started} ms`)
    await primary.signal('SIGCONT')
    await pausing.ping()
    await sleep(50)
    t.equal(await redis.exists('r5:k'), 0, 'the claim that landed late was let go')
    t.equal(await redis.hget('r5:lock:{k}', 'owner'), null, 'and the lease given back')
  })

  t.test('lock: acknowledged, a lease is held; not acknowledged, it is given back and the write refused', async (t) => {
    const store = redisLockStore({ client: redis, prefix: 'r4:', replicas: 1 })
    t.teardown(() => store.close())
    const lease = await store.acquire('k', 1000)
    t.ok(lease.token > 0)
    t.equal(await replicaClient.hget('r4:lock:{k}', 'owner') !== null, true, 'the replica has the lease')
    await lease.release()
    const strict = redisLockStore({ client: redis, prefix: 'r4:', replicas: 2, replicaTimeout: 50 })
    t.teardown(() => strict.close())
    await t.rejects(strict.acquire('k', 1000), LockUnavailableError)
    await sleep(20)
    t.equal(await redis.hget('r4:lock:{k}', 'owner'), null, 'the lease was given back')
    const again = await store.acquire('k', 1000)
    t.ok(again.token > lease.token, 'and the key is free for the next writer')
    await again.release()
  })
})
