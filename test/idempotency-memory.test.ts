// The in-memory idempotency store: claim states, owner checks by token, leases, ttl, and the
// sweep that keeps it bounded. A fake clock makes expiry exact; one test uses real timers.
import { test } from 'tap'
import { MemoryIdempotencyStore, memoryIdempotencyStore } from '../lib/idempotency/memory.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { sleep } from './helpers/http.js'

const response: StoredResponse = { status: 201, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"id":1}') }

function clocked (options: { lease?: number, sweepInterval?: number } = {}) {
  const clock = { now: 1_000_000 }
  const store = new MemoryIdempotencyStore({ ...options, now: () => clock.now })
  return { store, clock }
}

test('options', async (t) => {
  const store = memoryIdempotencyStore()
  t.ok(store instanceof MemoryIdempotencyStore)
  t.equal(store.lease, 10_000)
  t.equal(store.sweepInterval, 60_000)
  t.equal(new MemoryIdempotencyStore({ lease: 5, sweepInterval: 7 }).lease, 5)
  for (const [name, options] of [['lease 0', { lease: 0 }], ['lease fractional', { lease: 1.5 }], ['sweepInterval a string', { sweepInterval: '1' }], ['not an object', 'x'], ['null', null]] as const) {
    t.throws(() => new MemoryIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE' }, name)
  }
})

test('claim, running, done, mismatch', async (t) => {
  const { store, clock } = clocked()
  const first = store.claim('k', 'fp', 1000)
  t.equal(first.state, 'claimed')
  const token = (first as { token: string }).token
  t.match(token, /^[\w-]{16}$/, 'a random token')
  clock.now += 400
  t.same(store.claim('k', 'fp', 1000), { state: 'running', retryAfter: 600 }, 'the same request while the first runs')
  t.same(store.claim('k', 'other', 1000), { state: 'mismatch' }, 'another request while the first runs')
  t.equal(store.complete('k', token, response, 5000), true)
  t.same(store.claim('k', 'fp', 1000), { state: 'done', response }, 'the same request once done')
  t.same(store.claim('k', 'other', 1000), { state: 'mismatch' }, 'another request once done')
  t.equal(store.complete('k', token, { ...response, status: 500 }, 5000), false, 'a completed record is never overwritten')
  t.equal(store.renew('k', token, 1000), false, 'nor renewed')
  store.release('k', token)
  t.same(store.claim('k', 'fp', 1000), { state: 'done', response }, 'nor released')
  const second = store.claim('k2', 'fp', 1000)
  t.not((second as { token: string }).token, token, 'every claim has its own token')
})

test('release frees the key for its owner only', async (t) => {
  const { store } = clocked()
  const { token } = store.claim('k', 'fp', 1000) as { token: string }
  store.release('k', 'not-the-token')
  t.equal(store.claim('k', 'fp', 1000).state, 'running', 'a wrong token releases nothing')
  store.release('k', token)
  t.equal(store.size, 0)
  t.equal(store.claim('k', 'other', 1000).state, 'claimed', 'free again, for any request')
})

test('a lease that runs out frees the key; its old owner can do nothing with it', async (t) => {
  const { store, clock } = clocked()
  const { token } = store.claim('k', 'fp', 1000) as { token: string }
  clock.now += 999
  t.equal(store.claim('k', 'fp', 1000).state, 'running', 'held until the lease ends')
  clock.now += 1
  const again = store.claim('k', 'fp', 1000) as { state: string, token: string }
  t.equal(again.state, 'claimed', 'the crashed claimer\'s key is free after its lease')
  t.equal(store.complete('k', token, response, 5000), false, 'the stale claimer cannot complete')
  t.equal(store.renew('k', token, 1000), false, 'nor renew')
  store.release('k', token)
  t.equal(store.claim('k', 'fp', 1000).state, 'running', 'nor release the new claim')
  t.equal(store.complete('k', again.token, response, 5000), true, 'the new owner can')
})

test('renew extends the lease', async (t) => {
  const { store, clock } = clocked()
  const { token } = store.claim('k', 'fp', 1000) as { token: string }
  clock.now += 900
  t.equal(store.renew('k', token, 1000), true)
  clock.now += 900
  t.same(store.claim('k', 'fp', 1000), { state: 'running', retryAfter: 100 }, 'still held 1800 ms after a 1000 ms claim')
  t.equal(store.renew('k', 'nope', 1000), false, 'a wrong token renews nothing')
  clock.now += 100
  t.equal(store.renew('k', token, 1000), false, 'an expired lease cannot be renewed')
})

test('a stored response expires after its ttl', async (t) => {
  const { store, clock } = clocked()
  const { token } = store.claim('k', 'fp', 1000) as { token: string }
  store.complete('k', token, response, 5000)
  clock.now += 4999
  t.equal(store.claim('k', 'fp', 1000).state, 'done')
  clock.now += 1
  t.equal(store.claim('k', 'other', 1000).state, 'claimed', 'a fresh key after the ttl, for any request')
})

test('the sweep keeps the store bounded over many keys', async (t) => {
  const { store, clock } = clocked({ sweepInterval: 1000 })
  for (let i = 0; i < 10_000; i++) {
    const { token } = store.claim(`k${i}`, 'fp', 1000) as { token: string }
    if (i % 2 === 0) store.complete(`k${i}`, token, response, 50)
    clock.now += 1
  }
  t.equal(store.size, 10_000)
  clock.now += 999
  store.sweep()
  t.equal(store.size, 0, 'expired claims and responses are all gone')
  const { token } = store.claim('kept', 'fp', 1000) as { token: string }
  store.complete('kept', token, response, 100_000)
  clock.now += 5000
  store.sweep()
  t.equal(store.size, 1, 'a live record stays')
  store.close()
  t.equal(store.claim('kept', 'fp', 1000).state, 'done', 'close stops the timer; records stay')
})

test('the sweep runs on its own timer, which never holds the process open', async (t) => {
  const store = new MemoryIdempotencyStore({ sweepInterval: 20 })
  t.teardown(() => store.close())
  for (let i = 0; i < 1000; i++) {
    const { token } = store.claim(`k${i}`, 'fp', 5) as { token: string }
    if (i % 2 === 0) store.complete(`k${i}`, token, response, 5)
  }
  const timer = (store as unknown as { timer: NodeJS.Timeout }).timer
  t.equal(timer.hasRef(), false, 'unref\'d')
  const end = Date.now() + 5000
  while (store.size > 0 && Date.now() < end) await sleep(10)
  t.equal(store.size, 0, 'swept without being asked')
  t.equal((store as unknown as { timer: unknown }).timer, null, 'the timer stops once nothing is kept')
  store.claim('again', 'fp', 5)
  t.not((store as unknown as { timer: unknown }).timer, null, 'and starts again with the next record')
})
