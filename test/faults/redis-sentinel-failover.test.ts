// Finding 6, Sentinel: three app processes share one Sentinel-managed Redis (a primary, a replica,
// three sentinels), keyed 300 ms order handlers under load; the primary is SIGKILLed mid-run and
// the sentinels promote the replica. With `replicas: 1` a claim or an answer counts only once the
// replica has it, so no acknowledged answer is lost with the primary: no key's handler runs twice,
// and a resend of every key afterwards is a replay. (Without WAIT, answers acknowledged by the dead
// primary vanished, and their keys ran again.)
import { test } from 'tap'
import { sleep } from '../helpers/http.js'
import { sendOrders, startApps } from '../helpers/failover-load.js'
import { hasRedisSentinel, SENTINEL_MISSING, SentinelTopology } from '../helpers/redis-topology.js'

const skip = hasRedisSentinel() ? false : SENTINEL_MISSING
if (skip !== false) console.log(`# ${skip}`)

test('a Sentinel failover under load with replicas: 1: no key runs twice', { skip, timeout: 150_000 }, async (t) => {
  const topology = new SentinelTopology()
  t.teardown(() => topology.stop())
  let phase = Date.now()
  const mark = (what: string): void => { t.comment(`${what} in ${Date.now() - phase} ms`); phase = Date.now() }
  await topology.start()
  mark('the topology started')
  const apps = await startApps(t, 3, { SENTINELS: JSON.stringify(topology.addresses), SENTINEL_NAME: topology.name, REPLICAS: '1', LEASE: '2000', FINGERPRINTS: '1' })
  const keys = Array.from({ length: 120 }, (_, i) => `order-${i}`)
  const load = sendOrders(apps, keys, 12, Date.now() + 45_000)
  await sleep(1200)
  mark('the apps started and the load ran')
  const dead = await topology.killPrimary()
  mark('the primary killed and the replica promoted')
  // With one replica asked for and the old primary gone, the new primary has none: claims are
  // refused (503) until the old primary is back as its replica.
  await topology.restart(dead)
  mark('the old primary back as a replica')
  const outcome = await load
  mark('the load ended')
  t.same(outcome.unanswered, [], 'every key got its 201')
  const runs = apps.runs()
  const twice = [...runs].filter(([, n]) => n > 1)
  t.same(twice, [], `no key ran twice (statuses: ${JSON.stringify([...outcome.statuses])})`)
  t.equal(runs.size, keys.length, 'every key ran')
  const again = await sendOrders(apps, keys, 12, Date.now() + 20_000)
  t.same(again.unanswered, [])
  const changed = keys.filter((key) => again.answers.get(key) !== outcome.answers.get(key))
  t.same(changed, [], 'a resend of every key is the first answer, replayed')
  t.same([...apps.runs()].filter(([, n]) => n > 1), [], 'and runs nothing')
})
