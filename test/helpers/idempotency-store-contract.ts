// What every idempotency store must do, as one suite: claim, running, done and mismatch; owner
// checks by token (a stale claimer can neither complete, release nor renew); leases and ttls that
// end on real time; bodies replayed as the type they were stored as; answers recorded as not
// replayable; maxAnswerBytes when the store has one. `storeContract(t, makeStore)` runs it on a
// store; test/idempotency-store-contract.test.ts runs it on memory, Redis and PostgreSQL.
import { randomBytes } from 'node:crypto'
import type { Test } from 'tap'
import type { ClaimResult, IdempotencyStore, StoredResponse } from '../../lib/idempotency/store.js'
import { sleep } from './http.js'

/** A short lease (long enough for the next statement to land inside it on a loaded machine), and a wait that outlasts it. */
const SHORT = 800
const PAST_SHORT = 1200
/** A renewed lease: longer than SHORT by more than a loaded machine's delays. */
const RENEWED = 3000
const TTL = 60_000

const bytes: StoredResponse = {
  status: 201,
  headers: { 'content-type': 'application/octet-stream', location: '/orders/1', etag: '"v1"' },
  body: Buffer.from([0x7b, 0x00, 0xff, 0xfe, 0x7d])
}
const text: StoredResponse = {
  status: 200,
  headers: { 'content-type': 'application/json; charset=utf-8' },
  body: '{"name":"caf\u00e9 \u2713 \ud83d\ude00","nul":"\u0000","escaped":"\\u00e9"}'
}

type Claimed = Extract<ClaimResult, { state: 'claimed' }>

/**
 * Registers the contract as subtests of `t`. `makeStore` gives the store under test (one per
 * subtest; it may be the same store each time: keys never repeat across runs).
 */
export function storeContract (t: Test, makeStore: () => IdempotencyStore | Promise<IdempotencyStore>): void {
  const ns = randomBytes(6).toString('hex')
  let n = 0
  const fresh = (name: string): string => `${ns}:${n++}:${name}`

  async function claimed (store: IdempotencyStore, key: string, fingerprint = 'fp', lease = 5000): Promise<string> {
    const result = await store.claim(key, fingerprint, lease)
    if (result.state !== 'claimed') throw new Error(`expected ${key} to be claimed, got ${JSON.stringify(result)}`)
    return result.token
  }

  async function roundTrip (store: IdempotencyStore, response: StoredResponse): Promise<StoredResponse> {
    const key = fresh('round-trip')
    const token = await claimed(store, key)
    if (await store.complete(key, token, response, TTL) !== true) throw new Error('complete refused its own claim')
    const done = await store.claim(key, 'fp', 5000)
    if (done.state !== 'done') throw new Error(`expected done, got ${JSON.stringify(done)}`)
    return done.response
  }

  t.test('claim, running, done, mismatch; a completed record is never overwritten', async (t) => {
    const store = await makeStore()
    const key = fresh('k')
    const first = await store.claim(key, 'fp', 5000)
    t.equal(first.state, 'claimed')
    const token = (first as Claimed).token
    t.type(token, 'string')
    t.ok(token.length >= 8, 'a token long enough not to be guessed')
    const running = await store.claim(key, 'fp', 5000)
    t.equal(running.state, 'running', 'the same request while the first runs')
    const retryAfter = (running as { retryAfter?: number }).retryAfter
    t.ok(retryAfter !== undefined && retryAfter > 4000 && retryAfter <= 5000, `retryAfter is what the lease has left: ${String(retryAfter)}`)
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' }, 'another request while the first runs')
    t.equal(await store.complete(key, 'not-the-token', bytes, TTL), false, 'another token cannot complete')
    t.equal(await store.complete(key, token, bytes, TTL), true)
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: bytes }, 'status, headers and bytes survive')
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' }, 'another request once done')
    t.equal(await store.complete(key, token, { ...bytes, status: 200 }, TTL), false, 'not overwritten, even by its owner')
    t.equal(await store.renew(key, token, 5000), false, 'nor renewed')
    await store.release(key, token)
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: bytes }, 'nor released')
    t.not(await claimed(store, fresh('k2')), token, 'every claim has its own token')
  })

  t.test('retryAfter is never more than the lease', async (t) => {
    const store = await makeStore()
    const key = fresh('retry-after')
    await claimed(store, key, 'fp', 1000)
    for (let i = 0; i < 3; i++) {
      const running = await store.claim(key, 'fp', 60_000) as { state: string, retryAfter?: number }
      t.equal(running.state, 'running')
      t.ok(running.retryAfter !== undefined && running.retryAfter >= 0 && running.retryAfter <= 1000,
        `the holder's lease, not the asker's: ${String(running.retryAfter)}`)
    }
  })

  t.test('release frees the key for its owner only', async (t) => {
    const store = await makeStore()
    const key = fresh('release')
    const token = await claimed(store, key)
    await store.release(key, 'not-the-token')
    t.equal((await store.claim(key, 'fp', 5000)).state, 'running', 'a wrong token releases nothing')
    await store.release(key, token)
    t.equal((await store.claim(key, 'other', 5000)).state, 'claimed', 'free again, for any request')
    await store.release(key, token)
    t.equal((await store.claim(key, 'other', 5000)).state, 'running', 'the old token does not release the new claim')
  })

  t.test('a lease that runs out frees the key; its old owner can do nothing with it', async (t) => {
    const store = await makeStore()
    const key = fresh('lease')
    const token = await claimed(store, key, 'fp', SHORT)
    t.equal((await store.claim(key, 'fp', SHORT)).state, 'running', 'held while the lease lasts')
    await sleep(PAST_SHORT)
    const again = await claimed(store, key, 'fp', 5000)
    t.not(again, token)
    t.equal(await store.complete(key, token, bytes, TTL), false, 'the stale claimer cannot complete')
    t.equal(await store.renew(key, token, 5000), false, 'nor renew')
    await store.release(key, token)
    t.equal((await store.claim(key, 'fp', 5000)).state, 'running', 'nor release the new claim')
    t.equal(await store.complete(key, again, bytes, TTL), true, 'the new owner can')
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: bytes })
  })

  t.test('a lease that ran out is still its claimer\'s while nobody claimed the key since: complete and renew work', async (t) => {
    const store = await makeStore()
    const completeKey = fresh('late-complete')
    const renewKey = fresh('late-renew')
    const completeToken = await claimed(store, completeKey, 'fp', SHORT)
    const renewToken = await claimed(store, renewKey, 'fp', SHORT)
    await sleep(PAST_SHORT)
    t.equal(await store.complete(completeKey, completeToken, bytes, TTL, 'fp'), true, 'the answer is stored: nobody else ran')
    t.same(await store.claim(completeKey, 'fp', 5000), { state: 'done', response: bytes })
    t.equal(await store.renew(renewKey, renewToken, 5000, 'fp'), true, 'the lease is kept')
    t.equal((await store.claim(renewKey, 'fp', 5000)).state, 'running', 'held again')
  })

  t.test('a record that vanished (released, swept, lost in an outage) is stored by complete with the fingerprint; without one, nothing is', async (t) => {
    const store = await makeStore()
    const key = fresh('vanished')
    const token = await claimed(store, key, 'fp', 5000)
    await store.release(key, token)
    t.equal(await store.complete(key, token, text, TTL), false, 'no fingerprint: nothing to store it under')
    t.equal(await store.complete(key, token, text, TTL, 'fp'), true)
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: text })
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' }, 'under that fingerprint')
    t.equal(await store.complete(key, token, bytes, TTL, 'fp'), false, 'done: not stored again')
  })

  t.test('a mismatching request can take a key whose lease ran out', async (t) => {
    const store = await makeStore()
    const key = fresh('lease-mismatch')
    await claimed(store, key, 'fp', SHORT)
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' })
    await sleep(PAST_SHORT)
    t.equal((await store.claim(key, 'other', 5000)).state, 'claimed')
  })

  t.test('renew extends the lease from now', async (t) => {
    const store = await makeStore()
    const key = fresh('renew')
    const token = await claimed(store, key, 'fp', SHORT)
    await sleep(SHORT / 4)
    t.equal(await store.renew(key, token, RENEWED), true)
    t.equal(await store.renew(key, 'not-the-token', RENEWED), false, 'a wrong token renews nothing')
    await sleep(PAST_SHORT - SHORT / 4)
    const running = await store.claim(key, 'fp', 5000) as { state: string, retryAfter?: number }
    t.equal(running.state, 'running', 'still held past the first lease')
    t.ok(running.retryAfter !== undefined && running.retryAfter <= RENEWED, `retryAfter counts from the renewal: ${String(running.retryAfter)}`)
    t.equal(await store.complete(key, token, text, TTL), true, 'the owner still owns it')
  })

  t.test('a stored answer expires after its ttl; then any request may claim the key', async (t) => {
    const store = await makeStore()
    const key = fresh('ttl')
    const token = await claimed(store, key)
    t.equal(await store.complete(key, token, bytes, SHORT), true)
    t.equal((await store.claim(key, 'fp', 5000)).state, 'done')
    await sleep(PAST_SHORT)
    t.equal((await store.claim(key, 'other', 5000)).state, 'claimed', 'a fresh run, for another request too')
    t.equal((await store.claim(key, 'fp', 5000)).state, 'mismatch', 'and the old answer is gone')
  })

  t.test('a string body comes back as the same string, bytes as the same bytes', async (t) => {
    const store = await makeStore()
    const replayedText = await roundTrip(store, text)
    t.type(replayedText.body, 'string', 'a string stays a string')
    t.same(replayedText, text, 'every character survives, NUL and astral ones included')
    const replayedBytes = await roundTrip(store, bytes)
    t.ok(Buffer.isBuffer(replayedBytes.body), 'bytes stay bytes')
    t.ok((replayedBytes.body as Buffer).equals(bytes.body as Buffer), 'every byte survives')
    const emptyText = await roundTrip(store, { status: 200, headers: {}, body: '' })
    t.same(emptyText, { status: 200, headers: {}, body: '' }, 'an empty string')
    const emptyBytes = await roundTrip(store, { status: 204, headers: {}, body: Buffer.alloc(0) })
    t.ok(Buffer.isBuffer(emptyBytes.body) && emptyBytes.body.length === 0, 'no bytes')
    t.equal(emptyBytes.status, 204)
    const client = await roundTrip(store, { status: 404, headers: { 'content-type': 'application/problem+json' }, body: '{"status":404}' })
    t.same(client, { status: 404, headers: { 'content-type': 'application/problem+json' }, body: '{"status":404}' }, 'a 4xx is kept as well')
  })

  t.test('an answer recorded as not replayable comes back as such', async (t) => {
    const store = await makeStore()
    const hijacked: StoredResponse = { status: 0, headers: {}, body: '', replayable: false }
    t.same(await roundTrip(store, hijacked), hijacked, 'status unknown')
    const sent: StoredResponse = { status: 201, headers: {}, body: '', replayable: false }
    t.same(await roundTrip(store, sent), sent, 'the status it went out with')
  })

  t.test('an answer larger than maxAnswerBytes is kept as not replayable', async (t) => {
    const store = await makeStore()
    const max = store.maxAnswerBytes
    if (max === undefined) {
      t.pass('this store has no limit of its own')
      return
    }
    const fits: StoredResponse = { status: 201, headers: { 'content-type': 'text/plain' }, body: 'a'.repeat(max) }
    t.same(await roundTrip(store, fits), fits, `${max} bytes are kept`)
    const over = { status: 201, headers: { 'content-type': 'application/octet-stream' }, body: Buffer.alloc(max + 1, 1) }
    t.same(await roundTrip(store, over), { status: 201, headers: {}, body: '', replayable: false }, `${max + 1} bytes are not`)
    // Counted in bytes, not characters: each é is two bytes of UTF-8.
    const wide = { status: 200, headers: { 'content-type': 'text/plain' }, body: '\u00e9'.repeat(Math.floor(max / 2) + 1) }
    t.same(await roundTrip(store, wide), { status: 200, headers: {}, body: '', replayable: false }, 'UTF-8 bytes are counted')
  })

  t.test('keys are compared exactly: case, length and characters', async (t) => {
    const store = await makeStore()
    const base = fresh('Key')
    const keys = [base, base.toLowerCase(), base + ' ', base + '\u00e9', base + ':'.repeat(200)]
    for (const key of keys) t.equal((await store.claim(key, 'fp', 5000)).state, 'claimed', JSON.stringify(key.slice(-8)))
  })

  t.test('20 concurrent claims of one key: exactly one is claimed', async (t) => {
    const store = await makeStore()
    const key = fresh('race')
    const results = await Promise.all(Array.from({ length: 20 }, () => store.claim(key, 'fp', 5000)))
    t.equal(results.filter((r) => r.state === 'claimed').length, 1)
    t.equal(results.filter((r) => r.state === 'running').length, 19)
  })
}

// ---------------------------------------------------------------------------------------------
// The record that went missing (complete and renew with the fingerprint, DESIGN "Exactly once in
// operation"): a key whose record expired, was swept or was lost in a store outage belongs to
// nobody, and the request that ran it stores its answer, or keeps its claim, with its fingerprint.
// Kept apart from storeContract until every store implements it.

/** Registers the missing-record cases as subtests of `t`, as `storeContract` does. */
export function storeContractMissingRecord (t: Test, makeStore: () => IdempotencyStore | Promise<IdempotencyStore>): void {
  const ns = randomBytes(6).toString('hex')
  let n = 0
  const fresh = (name: string): string => `${ns}:${n++}:${name}`

  async function claimed (store: IdempotencyStore, key: string, fingerprint = 'fp', lease = 5000): Promise<string> {
    const result = await store.claim(key, fingerprint, lease)
    if (result.state !== 'claimed') throw new Error(`expected ${key} to be claimed, got ${JSON.stringify(result)}`)
    return result.token
  }

  // The lead's store interface gains the fingerprint argument; until then, call through this.
  type WithFingerprint = IdempotencyStore & {
    complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): boolean | Promise<boolean>
    renew (key: string, token: string, leaseMs: number, fingerprint?: string): boolean | Promise<boolean>
  }

  t.test('complete after the lease ran out, nobody holding the key: stored, with the fingerprint', async (t) => {
    const store = await makeStore() as WithFingerprint
    const key = fresh('late-complete')
    const token = await claimed(store, key, 'fp', SHORT)
    await sleep(PAST_SHORT)
    t.equal(await store.complete(key, token, bytes, TTL, 'fp'), true, 'the request that ran stores its answer')
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: bytes }, 'and a retry replays it')
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' }, 'another request is told it is another')
    t.equal(await store.complete(key, token, { ...bytes, status: 200 }, TTL, 'fp'), false, 'a done record is not overwritten')
  })

  t.test('complete of a key that was never recorded: stored as done with the fingerprint', async (t) => {
    const store = await makeStore() as WithFingerprint
    const key = fresh('lost')
    t.equal(await store.complete(key, 'a-token-from-a-lost-claim', text, TTL, 'fp'), true)
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: text })
  })

  t.test('complete and renew with the fingerprint still refuse a key another claimed', async (t) => {
    const store = await makeStore() as WithFingerprint
    const key = fresh('taken')
    const stale = await claimed(store, key, 'fp', SHORT)
    await sleep(PAST_SHORT)
    const owner = await claimed(store, key, 'fp', 5000)
    t.equal(await store.renew(key, stale, 5000, 'fp'), false, 'not renewed')
    t.equal(await store.complete(key, stale, bytes, TTL, 'fp'), false, 'not completed')
    t.equal(await store.complete(key, owner, text, TTL, 'fp'), true, 'the new owner completes')
    t.equal(await store.renew(key, owner, 5000, 'fp'), false, 'a done key is not renewed')
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: text })
  })

  t.test('renew after the lease ran out, nobody holding the key: the claim is made again', async (t) => {
    const store = await makeStore() as WithFingerprint
    const key = fresh('late-renew')
    const token = await claimed(store, key, 'fp', SHORT)
    await sleep(PAST_SHORT)
    t.equal(await store.renew(key, token, RENEWED, 'fp'), true, 'the running request keeps its key')
    const running = await store.claim(key, 'fp', 5000) as { state: string, retryAfter?: number }
    t.equal(running.state, 'running', 'a retry meets the running claim')
    t.ok(running.retryAfter !== undefined && running.retryAfter > SHORT && running.retryAfter <= RENEWED, `for the renewed lease: ${String(running.retryAfter)}`)
    t.same(await store.claim(key, 'other', 5000), { state: 'mismatch' }, 'with its fingerprint')
    t.equal(await store.renew(key, 'not-the-token', RENEWED, 'fp'), false, 'another token does not renew it')
    t.equal(await store.complete(key, token, bytes, TTL, 'fp'), true, 'and its owner completes it')
    t.same(await store.claim(key, 'fp', 5000), { state: 'done', response: bytes })
  })
}
