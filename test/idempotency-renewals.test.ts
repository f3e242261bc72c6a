// One timer renews every running Idempotency-Key claim of a store.
import { test } from 'tap'
import { Renewals } from '../lib/idempotency/renewals.js'
import { sleep } from './helpers/http.js'

/** Waits (up to 2 s) until `condition` holds. */
async function until (condition: () => boolean): Promise<void> {
  const end = Date.now() + 2000
  while (!condition()) {
    if (Date.now() > end) throw new Error('timed out')
    await sleep(2)
  }
}

type Claim = Parameters<Renewals['add']>[0]

/** A stand-in claim; `lost` makes its renewal find the lease lost and take it out, as a claim does. */
function claim (lost = false): Claim & { renewed: number } {
  const fake = {
    renewed: 0,
    renewals: null as Renewals | null,
    previousRenewal: null,
    nextRenewal: null,
    renew () {
      fake.renewed++
      if (lost) fake.renewals?.delete(fake as unknown as Claim)
    }
  }
  return fake as unknown as Claim & { renewed: number }
}

test('every running claim is renewed each third of the lease, from one timer that stops when idle', async (t) => {
  const renewals = new Renewals(60)
  t.teardown(() => renewals.close())
  const claims = Array.from({ length: 50 }, claim)
  for (const one of claims) renewals.add(one)
  t.equal(renewals.size, 50)
  t.ok(renewals.ticking, 'the timer runs')
  await until(() => claims[0].renewed >= 2)
  t.ok(claims.every((one) => one.renewed === claims[0].renewed), 'each tick renews every claim')
  for (const one of claims.slice(1)) renewals.delete(one)
  const counts = claims.map((one) => one.renewed)
  await until(() => claims[0].renewed > counts[0] + 1)
  t.pass('the claim still running is still renewed')
  t.same(claims.slice(1).map((one) => one.renewed), counts.slice(1), 'the others are not')
  renewals.delete(claims[0])
  await until(() => !renewals.ticking)
  t.pass('the timer stopped on a tick with nothing to renew')
  const late = claim()
  renewals.add(late)
  t.ok(renewals.ticking, 'and starts again with the next claim')
  await until(() => late.renewed === 1)
  t.pass('renewed')
  renewals.close()
  t.notOk(renewals.ticking, 'close() stops it')
})

test('claims leave the list from its head, middle and tail, also while it is walked', async (t) => {
  const renewals = new Renewals(30)
  t.teardown(() => renewals.close())
  const [a, b, c, d] = [claim(), claim(true), claim(), claim(true)]
  for (const one of [a, b, c, d]) renewals.add(one) // the list: d c b a
  t.equal(renewals.size, 4)
  await until(() => a.renewed >= 1)
  t.same([b, c, d].map((one) => one.renewed), [1, 1, 1], 'one tick renewed each, the lost ones too')
  t.equal(renewals.size, 2, 'the two whose lease was lost are out (the head and one in the middle)')
  renewals.delete(a) // the tail
  const renewed = a.renewed
  await until(() => c.renewed >= renewed + 1)
  t.equal(a.renewed, renewed, 'only the one left is renewed again')
  t.same([b.renewed, d.renewed], [1, 1], 'the lost ones are not renewed again')
  renewals.delete(c)
  t.equal(renewals.size, 0)
  const e = claim()
  renewals.add(e)
  await until(() => e.renewed >= 1)
  t.pass('the emptied list takes claims again')
})

test('a lease shorter than 3 ms is renewed every millisecond', async (t) => {
  const renewals = new Renewals(2)
  t.teardown(() => renewals.close())
  const one = claim()
  renewals.add(one)
  await sleep(20)
  t.ok(one.renewed >= 3, `renewed ${one.renewed} times`)
})
