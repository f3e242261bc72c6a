// One timer renews every running Idempotency-Key claim of a store.
import { test } from 'tap'
import { Renewals } from '../lib/idempotency/hooks.js'
import { sleep } from './helpers/http.js'

type Claim = Parameters<Renewals['add']>[0]

function claim (): Claim & { renewed: number } {
  const fake = { renewed: 0, renewals: null, renew () { fake.renewed++ } }
  return fake as unknown as Claim & { renewed: number }
}

test('every running claim is renewed each third of the lease, from one timer that stops when idle', async (t) => {
  const renewals = new Renewals(60)
  t.teardown(() => renewals.close())
  const claims = Array.from({ length: 50 }, claim)
  for (const one of claims) renewals.add(one)
  t.equal(renewals.size, 50)
  t.ok(renewals.ticking, 'the timer runs')
  await sleep(75)
  t.ok(claims.every((one) => one.renewed >= 2 && one.renewed <= 4), `each renewed every 20 ms (${claims.map((one) => one.renewed).join(',')})`)
  for (const one of claims.slice(1)) renewals.delete(one)
  const counts = claims.map((one) => one.renewed)
  await sleep(45)
  t.ok(claims[0].renewed > counts[0], 'the claim still running is still renewed')
  t.same(claims.slice(1).map((one) => one.renewed), counts.slice(1), 'the others are not')
  renewals.delete(claims[0])
  await sleep(50)
  t.notOk(renewals.ticking, 'the timer stopped on a tick with nothing to renew')
  const late = claim()
  renewals.add(late)
  t.ok(renewals.ticking, 'and starts again with the next claim')
  await sleep(30)
  t.equal(late.renewed, 1, 'renewed within a third of the lease')
  renewals.close()
  t.notOk(renewals.ticking, 'close() stops it')
})

test('a lease shorter than 3 ms is renewed every millisecond', async (t) => {
  const renewals = new Renewals(2)
  t.teardown(() => renewals.close())
  const one = claim()
  renewals.add(one)
  await sleep(20)
  t.ok(one.renewed >= 3, `renewed ${one.renewed} times`)
})
