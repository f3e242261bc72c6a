// Finding 6, Cluster (three primaries, three replicas). A dead primary: a keyed claim and a lock
// on its slots are answered 503 within the stores' commandTimeout, not after ioredis has retried
// for seconds (the Cluster client stays `ready`) nor after lockTimeout. Then three app processes
// under load, a primary SIGKILLed mid-run and its replica promoted: with `replicas: 1` no key's
// handler runs twice, and a resend of every key afterwards is a replay.
import { Cluster } from 'ioredis'
import { test } from 'tap'
import { LockUnavailableError } from '../../lib/index.js'
import { redisIdempotencyStore, redisLockStore } from '../../lib/redis.js'
import { sleep } from '../helpers/http.js'
import { sendOrders, startApps } from '../helpers/failover-load.js'
import { ClusterTopology, CLUSTER_MISSING, hasRedisCluster } from '../helpers/redis-topology.js'

const skip = hasRedisCluster() ? false : CLUSTER_MISSING
if (skip !== false) console.log(`# ${skip}`)

const settle = <T>(promise: Promise<T>) => promise.then((value) => ({ value, error: null }), (error: Error) => ({ value: null, error }))

test('Redis Cluster failover', { skip, timeout: 280_000 }, async (t) => {
  const topology = new ClusterTopology()
  t.teardown(() => topology.stop())
  await topology.start()

  await t.test('a dead primary: a claim and a lock on its slots are answered 503 within commandTimeout', async (t) => {
    const cluster = new Cluster(topology.startupNodes)
    cluster.on('error', () => {})
    t.teardown(() => cluster.disconnect())
    await cluster.set('warm', '1') // connected, and the slots known
    const idempotency = redisIdempotencyStore({ client: cluster, commandTimeout: 500 })
    const locks = redisLockStore({ client: cluster, commandTimeout: 500 })
    t.teardown(() => locks.close())
    t.equal((await idempotency.claim('warm', 'fp', 5000)).state, 'claimed', 'the cluster answers')
    const port = topology.primaryOf('fastify-precondition:idem:warm')
    // Keys whose slots that primary serves.
    const claims: string[] = []
    for (let i = 0; claims.length < 2; i++) if (topology.primaryOf(`fastify-precondition:idem:c${i}`) === port) claims.push(`c${i}`)
    const resources: string[] = []
    for (let i = 0; resources.length < 2; i++) if (topology.primaryOf(`fastify-precondition:lock:{r${i}}`) === port) resources.push(`r${i}`)
    await topology.kill(port)
    await sleep(100)
    t.equal(cluster.status, 'ready', 'the Cluster client stays ready')
    // All at once, right after the kill: the replica is promoted after cluster-node-timeout (1 s),
    // and an acquisition after that is rightly granted by the new primary.
    const timed = async <T>(run: () => Promise<T>) => {
      const started = Date.now()
      const outcome = await settle(run())
      return { ...outcome, took: Date.now() - started }
    }
    const [claimed, locked] = await Promise.all([
      Promise.all(claims.map((key) => timed(() => idempotency.claim(key, 'fp', 5000)))),
      Promise.all(resources.map((resource) => timed(() => locks.acquire(resource, 10_000))))
    ])
    for (const [index, claim] of claimed.entries()) {
      t.match(claim.error?.message, /Redis did not answer within 500 ms|Connection is closed|Too many Cluster redirections/, `claim ${index + 1}: refused`)
      t.ok(claim.took < 1500, `claim ${index + 1}: in ${claim.took} ms`)
    }
    for (const [index, lock] of locked.entries()) {
      t.ok(lock.error instanceof LockUnavailableError, `lock ${index + 1}: 503 unavailable (${lock.error?.message ?? 'held'})`)
      t.ok(lock.took < 1500, `lock ${index + 1}: in ${lock.took} ms, not after lockTimeout (10 s)`)
    }
    await topology.failedOver('fastify-precondition:idem:warm', port)
    await topology.restart(port)
  })

  await t.test('three processes under load, a primary SIGKILLed, replicas: 1: no key runs twice', async (t) => {
    const apps = await startApps(t, 3, { CLUSTER: JSON.stringify(topology.startupNodes), REPLICAS: '1', LEASE: '2000', FINGERPRINTS: '1' })
    const keys = Array.from({ length: 150 }, (_, i) => `order-${i}`)
    const load = sendOrders(apps, keys, 12, Date.now() + 100_000)
    await sleep(1200)
    const port = topology.primaryOf('fastify-precondition:idem:order-0')
    await topology.kill(port)
    await topology.failedOver('fastify-precondition:idem:order-0', port)
    // The promoted replica has none of its own until the old primary rejoins: its slots refuse
    // claims (503) meanwhile.
    await topology.restart(port)
    const outcome = await load
    t.same(outcome.unanswered, [], 'every key got its 201')
    const runs = apps.runs()
    t.same([...runs].filter(([, n]) => n > 1), [], `no key ran twice (statuses: ${JSON.stringify([...outcome.statuses])})`)
    t.equal(runs.size, keys.length, 'every key ran')
    const again = await sendOrders(apps, keys, 12, Date.now() + 45_000)
    t.same(again.unanswered, [])
    t.same(keys.filter((key) => again.answers.get(key) !== outcome.answers.get(key)), [], 'a resend of every key is the first answer, replayed')
    t.same([...apps.runs()].filter(([, n]) => n > 1), [], 'and runs nothing')
  })
})
