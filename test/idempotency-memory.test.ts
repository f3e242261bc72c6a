// The in-memory idempotency store: claim states, owner checks by token, leases, ttl, the sweep,
// and the bounds (bytes, records, answer size) with their eviction warnings. A fake clock makes
// expiry and the warnings' rate exact; one test uses real timers.
import { test } from 'tap'
import { EVICTION_WARNING_INTERVAL, MemoryIdempotencyStore, memoryIdempotencyStore, RECORD_OVERHEAD, type MemoryIdempotencyStoreOptions } from '../lib/idempotency/memory.js'
import { scopeOf, storeKey } from '../lib/idempotency/fingerprint.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { sleep } from './helpers/http.js'

const response: StoredResponse = { status: 201, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"id":1}') }

function clocked (options: MemoryIdempotencyStoreOptions = {}) {
  const clock = { now: 1_000_000 }
  const store = new MemoryIdempotencyStore({ ...options, now: () => clock.now })
  return { store, clock }
}

test('options', async (t) => {
  const store = memoryIdempotencyStore()
  t.ok(store instanceof MemoryIdempotencyStore)
  t.equal(store.lease, 10_000)
  t.equal(store.sweepInterval, 60_000)
  t.equal(store.maxBytes, 67_108_864, '64 MiB of records')
  t.equal(store.maxRecords, 100_000)
  t.equal(store.maxAnswerBytes, 1_048_576, '1 MiB answers')
  t.equal(store.bytes, 0)
  t.equal(new MemoryIdempotencyStore({ lease: 5, sweepInterval: 7 }).lease, 5)
  t.match(new MemoryIdempotencyStore({ maxBytes: 1000, maxRecords: 3, maxAnswerBytes: 10 }), { maxBytes: 1000, maxRecords: 3, maxAnswerBytes: 10 })
  t.equal(new MemoryIdempotencyStore({ maxBytes: 65_536 }).maxAnswerBytes, 65_536, 'answers default to maxBytes when that is smaller than 1 MiB')
  t.equal(new MemoryIdempotencyStore({ maxBytes: 100, maxAnswerBytes: 100 }).maxAnswerBytes, 100, 'maxAnswerBytes may equal maxBytes')
  const rows: Array<[string, unknown, RegExp]> = [
    ['lease 0', { lease: 0 }, /lease must be a positive whole number of milliseconds; got 0/],
    ['lease fractional', { lease: 1.5 }, /lease must be/],
    ['sweepInterval a string', { sweepInterval: '1' }, /sweepInterval must be a positive whole number of milliseconds/],
    ['maxBytes 0', { maxBytes: 0 }, /maxBytes must be a positive whole number of bytes; got 0/],
    ['maxBytes Infinity', { maxBytes: Infinity }, /maxBytes must be/],
    ['maxRecords negative', { maxRecords: -1 }, /maxRecords must be a positive whole number of records; got -1/],
    ['maxRecords a string', { maxRecords: '10' }, /maxRecords must be/],
    ['maxAnswerBytes fractional', { maxAnswerBytes: 1.5 }, /maxAnswerBytes must be a positive whole number of bytes/],
    ['maxAnswerBytes above maxBytes', { maxBytes: 1000, maxAnswerBytes: 1001 }, /maxAnswerBytes \(1001\) must be at most maxBytes \(1000\)/],
    ['maxAnswerBytes above the default maxBytes', { maxAnswerBytes: 67_108_865 }, /must be at most maxBytes \(67108864\)/],
    ['log without warn', { log: { info () {} } }, /log must be a logger with a warn method/],
    ['log null', { log: null }, /log must be a logger/],
    ['log a function', { log: () => {} }, /log must be a logger/],
    ['now not a function', { now: 5 }, /now must be a function/],
    ['not an object', 'x', /options must be an object/],
    ['null', null, /options must be an object/]
  ]
  for (const [name, options, message] of rows) {
    t.throws(() => new MemoryIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message }, name)
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
  t.equal(store.renew('k', token, 1000), true, 'an expired lease nobody claimed since is renewed')
  clock.now += 1000
  t.equal(store.claim('k', 'fp', 1000).state, 'claimed', 'expired again: another request claims it')
  t.equal(store.renew('k', token, 1000), false, 'and the first can no longer renew it')
})

test('a record lost meanwhile is made again by its claimer, with the fingerprint given', async (t) => {
  const { store, clock } = clocked()
  const { token } = store.claim('k', 'fp', 1000) as { token: string }
  store.release('k', token)
  t.equal(store.renew('k', token, 1000), false, 'without a fingerprint: not made again')
  t.equal(store.renew('k', token, 1000, 'fp'), true, 'with one: claimed again for its token')
  t.same(store.claim('k', 'fp', 1000), { state: 'running', retryAfter: 1000 })
  store.release('k', token)
  const response = { status: 201, headers: {}, body: 'x' }
  t.equal(store.complete('k', token, response, 5000), false, 'complete without a fingerprint: nothing stored')
  t.equal(store.complete('k', token, response, 5000, 'fp'), true, 'with one: stored')
  t.same(store.claim('k', 'fp', 1000), { state: 'done', response })
  t.same(store.claim('k', 'other', 1000), { state: 'mismatch' }, 'under the fingerprint given')
  clock.now += 100
  t.equal(store.complete('k', token, response, 5000, 'fp'), false, 'a done record is not stored again')
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

function done (store: MemoryIdempotencyStore, key: string, answer: StoredResponse = response, ttlMs = 60_000): void {
  const { token } = store.claim(key, 'fp', 1000) as { token: string }
  if (!store.complete(key, token, answer, ttlMs)) throw new Error(`${key} was not completed`)
}

function warnings () {
  const lines: Array<{ details: Record<string, number>, message: string }> = []
  return { lines, log: { warn (details: object, message?: string) { lines.push({ details: details as Record<string, number>, message: message as string }) } } }
}

test('bytes: keys, fingerprints, answers and a fixed overhead per record', async (t) => {
  const { store, clock } = clocked()
  const { token } = store.claim('key', 'print', 1000) as { token: string }
  t.equal(store.bytes, 3 + 5 + RECORD_OVERHEAD, 'a running claim counts its key, fingerprint and overhead')
  // UTF-8 bytes of a string body: é is 2, ✓ 3, 😀 4.
  const text: StoredResponse = { status: 200, headers: { 'content-type': 'text/plain', etag: '"1"' }, body: 'é✓😀' }
  store.complete('key', token, text, 1000)
  t.equal(store.bytes, 3 + 5 + RECORD_OVERHEAD + 9 + 'content-type'.length + 'text/plain'.length + 'etag'.length + 3)
  done(store, 'bytes', { status: 201, headers: {}, body: Buffer.alloc(1000) }, 5000)
  t.equal(store.bytes, 3 + 5 + RECORD_OVERHEAD + 9 + 12 + 10 + 4 + 3 + 5 + 2 + RECORD_OVERHEAD + 1000, 'bytes of a Buffer body')
  const running = store.claim('running', 'fp', 100_000) as { token: string }
  store.release('running', running.token)
  t.equal(store.bytes, 3 + 5 + RECORD_OVERHEAD + 9 + 12 + 10 + 4 + 3 + 5 + 2 + RECORD_OVERHEAD + 1000, 'a release gives its bytes back')
  clock.now += 1000
  t.equal(store.claim('key', 'print', 1000).state, 'claimed', 'the first answer expired')
  t.equal(store.bytes, 5 + 2 + RECORD_OVERHEAD + 1000 + 3 + 5 + RECORD_OVERHEAD, 'its bytes are given back, the new claim counted')
  clock.now += 5000
  store.sweep()
  t.equal(store.size, 0)
  t.equal(store.bytes, 0, 'nothing counted once everything is swept')
  store.close()
})

test('maxBytes: the oldest completed records are evicted, never a running claim', async (t) => {
  const { store } = clocked({ maxBytes: 1_048_576, log: warnings().log })
  const held = store.claim('held', 'fp', 1_000_000) as { token: string }
  const answer: StoredResponse = { status: 201, headers: { 'content-type': 'application/json' }, body: 'x'.repeat(10_240) }
  let most = 0
  for (let i = 0; i < 10_000; i++) {
    done(store, `k${i}`, answer)
    most = Math.max(most, store.bytes)
  }
  t.ok(most <= 1_048_576, `at most 1 MiB kept at any time (${most})`)
  const each = `k${9999}`.length + 2 + RECORD_OVERHEAD + 10_240 + 'content-type'.length + 'application/json'.length
  const kept = Math.floor((1_048_576 - ('held'.length + 2 + RECORD_OVERHEAD)) / each)
  t.equal(store.size, kept + 1, `as many answers as fit (${kept}), and the running claim`)
  t.same(store.claim('held', 'fp', 1000), { state: 'running', retryAfter: 1_000_000 }, 'the running claim is still held')
  for (let i = 10_000 - kept; i < 10_000; i++) {
    if (store.claim(`k${i}`, 'fp', 1000).state !== 'done') t.fail(`k${i} is one of the newest; it should be kept`)
  }
  t.equal(store.claim(`k${9999 - kept}`, 'fp', 1000).state, 'claimed', 'the newest record not kept is gone: its key runs again')
  t.equal(store.claim('k0', 'fp', 1000).state, 'claimed', 'and the oldest')
  t.ok(store.bytes <= 1_048_576)
  t.equal(store.complete('held', held.token, response, 1000), true, 'the running claim completes as usual')
})

test('maxRecords: running claims count, and are admitted when nothing else can go', async (t) => {
  const { store } = clocked({ maxRecords: 3, log: warnings().log })
  done(store, 'a')
  done(store, 'b')
  done(store, 'c')
  done(store, 'd')
  t.equal(store.size, 3)
  t.equal(store.claim('a', 'fp', 1000).state, 'claimed', 'a, the oldest, was evicted')
  t.equal(store.claim('b', 'fp', 1000).state, 'claimed', 'then b, for the claim of a')
  t.equal(store.claim('c', 'fp', 1000).state, 'claimed', 'then c')
  t.equal(store.size, 3, 'three running claims')
  t.equal(store.claim('e', 'fp', 1000).state, 'claimed', 'a fourth claim is admitted: running claims are never evicted')
  t.equal(store.claim('f', 'fp', 1000).state, 'claimed')
  t.equal(store.size, 5)
  for (const key of ['a', 'b', 'c', 'e', 'f']) t.equal(store.claim(key, 'fp', 1000).state, 'running', `${key} still running`)
  const g = store.claim('g', 'fp', 1000) as { token: string }
  t.equal(store.complete('g', g.token, response, 1000), true, 'a completion over the record bound keeps its own record')
  t.equal(store.claim('g', 'fp', 1000).state, 'done')
  t.equal(store.claim('h', 'fp', 1000).state, 'claimed')
  t.equal(store.claim('g', 'fp', 1000).state, 'claimed', 'the next claim evicted g, the one completed record')
})

test('eviction follows completion order, not claim order, across expiry and sweeps', async (t) => {
  const { store, clock } = clocked({ maxRecords: 4, log: warnings().log })
  const tokens = Object.fromEntries(['a', 'b', 'c', 'd'].map((key) => [key, (store.claim(key, 'fp', 1000) as { token: string }).token]))
  for (const key of ['c', 'a', 'd', 'b']) store.complete(key, tokens[key], response, key === 'a' ? 10 : 10_000)
  clock.now += 10
  t.equal(store.claim('a', 'fp', 1000).state, 'claimed', 'a expired (from the middle of the list) and is claimed again')
  t.equal(store.claim('e', 'fp', 1000).state, 'claimed', 'a claim over the bound')
  t.equal(store.claim('d', 'other', 1000).state, 'mismatch', 'd is kept')
  t.equal(store.claim('b', 'other', 1000).state, 'mismatch', 'b is kept')
  t.equal(store.claim('c', 'fp', 1000).state, 'claimed', 'c, the first completed, was evicted')
  const { store: swept, clock: later } = clocked({ maxRecords: 3, log: warnings().log })
  done(swept, 'x', response, 10)
  done(swept, 'y', response, 20)
  done(swept, 'z', response, 10)
  later.now += 10
  swept.sweep()
  t.equal(swept.size, 1, 'the sweep took the oldest and the newest')
  done(swept, 'p')
  done(swept, 'q')
  done(swept, 'r')
  t.equal(swept.size, 3)
  for (const key of ['p', 'q', 'r']) t.equal(swept.claim(key, 'other', 1000).state, 'mismatch', `${key} is kept`)
  t.equal(swept.claim('y', 'fp', 1000).state, 'claimed', 'y, the oldest completed, was evicted for r')
  swept.close()
})

test('an answer over maxAnswerBytes is kept as not replayable', async (t) => {
  const { store } = clocked({ maxAnswerBytes: 100 })
  done(store, 'fits', { status: 201, headers: { etag: '"1"' }, body: 'x'.repeat(100) })
  t.same(store.claim('fits', 'fp', 1000), { state: 'done', response: { status: 201, headers: { etag: '"1"' }, body: 'x'.repeat(100) } }, '100 bytes are kept')
  const before = store.bytes
  done(store, 'text', { status: 201, headers: { etag: '"2"' }, body: 'é'.repeat(51) })
  t.same(store.claim('text', 'fp', 1000), { state: 'done', response: { status: 201, headers: {}, body: '', replayable: false } }, '51 characters are 102 UTF-8 bytes: not kept')
  t.equal(store.bytes - before, 'text'.length + 2 + RECORD_OVERHEAD, 'only the record is counted')
  done(store, 'bytes', { status: 200, headers: {}, body: Buffer.alloc(101) })
  t.same(store.claim('bytes', 'fp', 1000), { state: 'done', response: { status: 200, headers: {}, body: '', replayable: false } })
  const marked: StoredResponse = { status: 0, headers: {}, body: '', replayable: false }
  done(store, 'marked', marked)
  t.equal((store.claim('marked', 'fp', 1000) as { response: StoredResponse }).response, marked, 'a record the plugin marked is kept as it is')
})

test('evictions are warned about once a minute at most, with how many and why', async (t) => {
  const { lines, log } = warnings()
  const { store, clock } = clocked({ maxRecords: 2, maxBytes: 2 * (2 + 2 + RECORD_OVERHEAD) + 100, log })
  done(store, 'k0')
  done(store, 'k1')
  t.equal(lines.length, 0, 'no warning before the store is full')
  done(store, 'k2')
  t.equal(lines.length, 1, 'the first eviction is warned about at once')
  t.match(lines[0], {
    details: { evicted: 1, forBytes: 0, forRecords: 1, records: 1 },
    message: /idempotency store is full; 1 completed record evicted since it started \(0 over maxBytes 708, 1 over maxRecords 2\); a retry of an evicted key runs its handler again/
  })
  for (let i = 3; i < 13; i++) {
    clock.now += 1000
    done(store, `k${i}`)
  }
  t.equal(lines.length, 1, 'no more lines within the minute')
  clock.now += EVICTION_WARNING_INTERVAL - 10_000
  // Its claim evicts one more for records, and its answer, over the byte bound, evicts for bytes.
  done(store, 'big', { status: 200, headers: {}, body: 'x'.repeat(200) })
  t.equal(lines.length, 2, 'a line a minute after the last one')
  t.match(lines[1], { details: { evicted: 11, forBytes: 0, forRecords: 11 }, message: /11 completed records evicted since the last warning \(0 over maxBytes 708, 11 over maxRecords 2\)/ })
  t.equal(store.size, 1, 'the big answer alone')
  t.ok(store.bytes <= store.maxBytes)
  done(store, 'k13')
  t.equal(store.size, 1, 'k13 alone: the big answer made room for it')
  t.equal(lines.length, 2)
  clock.now += EVICTION_WARNING_INTERVAL - 1
  store.sweep()
  t.equal(lines.length, 2, 'the sweep reports nothing within the minute')
  clock.now += 1
  store.sweep()
  t.equal(lines.length, 3, 'the sweep reports evictions left unreported')
  t.match(lines[2], { details: { evicted: 2, forBytes: 2, forRecords: 0 } })
  clock.now += EVICTION_WARNING_INTERVAL
  store.sweep()
  t.equal(lines.length, 3, 'nothing more to report')
  store.close()
})

test('without a log, evictions are process warnings, once a minute at most', async (t) => {
  const emitted = t.capture(process, 'emitWarning', () => {})
  const { store, clock } = clocked({ maxRecords: 1 })
  done(store, 'a')
  done(store, 'b')
  done(store, 'c')
  const calls = emitted()
  t.equal(calls.length, 1)
  t.match(calls[0].args, [/idempotency store is full; 1 completed record evicted since it started/, { code: 'FST_PRECONDITION_IDEMPOTENCY_EVICTED' }])
  clock.now += EVICTION_WARNING_INTERVAL
  done(store, 'd')
  t.match(emitted()[0].args, [/2 completed records evicted since the last warning \(0 over maxBytes 67108864, 2 over maxRecords 1\)/])
})

test('a logger that throws fails neither the claim nor the completion that evicted', async (t) => {
  let calls = 0
  const log = { warn () { calls++; throw new Error('logger down') } }
  const { store } = clocked({ maxRecords: 1, log })
  done(store, 'a')
  t.equal(store.claim('b', 'fp', 1000).state, 'claimed', 'the claim that evicted a for records')
  t.equal(calls, 1)
  const { store: bytes, clock } = clocked({ maxBytes: 2 * (1 + 2 + RECORD_OVERHEAD) + 100, log })
  done(bytes, 'c')
  done(bytes, 'd')
  const { token } = bytes.claim('e', 'fp', 2 * EVICTION_WARNING_INTERVAL) as { token: string }
  t.equal(calls, 2, 'the claim of e evicted c')
  clock.now += EVICTION_WARNING_INTERVAL
  t.equal(bytes.complete('e', token, { status: 200, headers: {}, body: 'x'.repeat(100) }, 1000), true, 'the completion that evicted d for bytes')
  t.equal(calls, 3)
  t.equal(bytes.claim('e', 'fp', 1000).state, 'done', 'and its answer is kept')
  t.equal(bytes.size, 1)
  t.ok(bytes.bytes <= bytes.maxBytes)
})

test('eviction is fair between scopes: one scope flooding the store evicts its own records first', async (t) => {
  const { store } = clocked({ maxRecords: 10, log: { warn () {} } })
  const keep = (key: string): void => {
    const { token } = store.claim(key, 'fp', 1000) as { token: string }
    t.equal(store.complete(key, token, response, 60_000), true)
  }
  // Two quiet clients first, then one that sends fresh keys without end.
  keep(storeKey('alice', 'a1'))
  keep(storeKey('bob', 'b1'))
  keep(storeKey('bob', 'b2'))
  for (let i = 0; i < 200; i++) keep(storeKey('mallory', `m${i}`))
  t.equal(store.size, 10)
  t.equal(store.claim(storeKey('alice', 'a1'), 'fp', 1000).state, 'done', 'the quiet client\'s answer is kept')
  t.equal(store.claim(storeKey('bob', 'b1'), 'fp', 1000).state, 'done')
  t.equal(store.claim(storeKey('bob', 'b2'), 'fp', 1000).state, 'done')
  t.equal(store.claim(storeKey('mallory', 'm199'), 'fp', 1000).state, 'done', 'the flood keeps its newest')
  t.equal(store.claim(storeKey('mallory', 'm0'), 'fp', 1000).state, 'claimed', 'and lost its oldest')
  // Once the flood holds no more than the others, the scope holding the most goes first: bob.
  const { store: even } = clocked({ maxRecords: 4, log: { warn () {} } })
  const keepIn = (key: string): void => {
    const { token } = even.claim(key, 'fp', 1000) as { token: string }
    even.complete(key, token, response, 60_000)
  }
  keepIn(storeKey('bob', 'b1'))
  keepIn(storeKey('bob', 'b2'))
  keepIn(storeKey('alice', 'a1'))
  keepIn('unscoped')
  keepIn(storeKey('alice', 'a2'))
  t.equal(even.claim('unscoped', 'fp', 1000).state, 'done')
  t.equal(even.claim(storeKey('alice', 'a1'), 'fp', 1000).state, 'done')
  t.equal(even.claim(storeKey('bob', 'b2'), 'fp', 1000).state, 'done')
  t.equal(even.claim(storeKey('bob', 'b1'), 'fp', 1000).state, 'claimed', 'bob held 2 of 4: his oldest went')
})

test('scopeOf reads back the owner storeKey put in', async (t) => {
  for (const owner of ['', 'a', 'user:1', ' 3:x', 'ünïcode']) {
    for (const key of ['k', 'a:b', '1']) t.equal(scopeOf(storeKey(owner, key)), owner, `${JSON.stringify(owner)} ${key}`)
  }
})
