// The answer recorded in the handler's own database transaction: `request.idempotency.complete(tx,
// body)` in a transaction of the handler's, and `request.idempotency.transaction(db, fn)`, which
// opens one. With the transactional claim (`claim: 'transaction'`) the latter also claims the key,
// by inserting its row first in that transaction.
import { IdempotencyClaimLostError } from '../errors.js'
import { publishIdempotency } from '../observe.js'
import { type Claim, ClaimState } from './claim.js'
import type { ClaimResult, IdempotencyStore, TransactionClient } from './store.js'

/** Whether the payload onSend has is the body `complete` recorded (else its transaction rolled back). */
export function sameBody (payload: unknown, body: Buffer | string): boolean {
  if (typeof payload === 'string' && typeof body === 'string') return payload === body
  if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return false
  return Buffer.from(payload).equals(Buffer.from(body))
}

/** `request.idempotency`: on a request that carries a key, the key and the transactional completion. */
export interface RequestIdempotency {
  /** The Idempotency-Key the request carries. */
  readonly key: string
  /**
   * Records the answer (the reply's status and headers as they are now, and `body` serialized as
   * the route serializes it) through `tx`, the handler's own open transaction, so it commits or
   * rolls back with the handler's data. Throws IdempotencyClaimLostError when this request no
   * longer holds the key (roll back), and an Error on a store without transactions.
   */
  complete (tx: TransactionClient, body: unknown): Promise<void>
  /**
   * Opens a transaction on `db` (a pool, or your data layer's database object), runs `fn` with
   * the transaction as your data layer hands it out, records what `fn` returns as the answer in
   * that transaction (with the reply's status as `fn` left it), commits, and returns it. Rolls back
   * when `fn` throws, and releases the connection whatever happens: a connection the database drops
   * costs this request an error, never the process. Return its result from the handler.
   */
  transaction<T> (db: unknown, fn: (tx: any) => Promise<T>): Promise<T>
}

/** `request.idempotency.transaction(db, fn)`: `fn` in a transaction on `db`, its result recorded as the answer. */
export async function inTransaction<T> (claim: Claim, db: unknown, fn: (tx: any) => Promise<T>): Promise<T> {
  const store = claim.store
  if (typeof store.transaction !== 'function') {
    throw new TypeError('fastify-precondition: request.idempotency.transaction(db, fn) records the answer in a database transaction, and this idempotency store has none: use pgIdempotencyStore from fastify-precondition/postgres, or just return the answer')
  }
  if (!claim.transactional) {
    return await store.transaction(db, async (tx) => {
      const body = await fn(tx)
      await completeIn(claim, tx, body)
      return body
    })
  }
  if (claim.opened) throw new TypeError('fastify-precondition: request.idempotency.transaction(db, fn) runs once a request on a route with idempotency.claim \'transaction\'')
  claim.opened = true
  let refused: ClaimResult | null = null
  try {
    return await store.transaction(db, async (tx) => {
      // The key's row first: a duplicate's insert waits here for this transaction.
      const claimed = await (store.claimIn as NonNullable<IdempotencyStore['claimIn']>)(tx, claim.storeKey, claim.fingerprint, store.lease)
      if (claimed.state !== 'claimed') {
        refused = claimed
        throw claimed // rolls the transaction back; caught below
      }
      claim.token = claimed.token
      publishIdempotency(claim.request, claim.route, 'claimed')
      const body = await fn(tx)
      await completeIn(claim, tx, body)
      return body
    })
  } catch (error) {
    if (error !== refused || refused === null) throw error
    // Another request under the key committed first: its answer, after this one rolled back.
    claim.state = ClaimState.REFUSED
    ;(claim.refuse as (result: ClaimResult) => void)(refused)
    return claim.reply as T
  }
}

/** `request.idempotency.complete(tx, body)`: the answer recorded through `tx`, fenced by the claim. */
export async function completeIn (claim: Claim, tx: TransactionClient, body: unknown): Promise<void> {
  const store = claim.store
  if (typeof store.completeIn !== 'function') {
    throw new TypeError('fastify-precondition: request.idempotency.complete(tx, body) records the answer in a database transaction, and this idempotency store has none: use pgIdempotencyStore from fastify-precondition/postgres, or just return the answer')
  }
  const state = claim.state
  // Called again after a transaction that recorded the answer rolled back (a serialization
  // failure at COMMIT, retried by the handler): the store's token check tells whether the key is
  // still this request's.
  if (state !== ClaimState.RUNNING && state !== ClaimState.PENDING) {
    throw new IdempotencyClaimLostError(claim.key, 'it is not claimed yet, or answered already: call complete from the handler, before it answers')
  }
  const reply = claim.reply
  let serialized: Buffer | string
  if (typeof body === 'string' || Buffer.isBuffer(body)) {
    serialized = body
  } else {
    serialized = reply.serialize(body) as string
    // What Fastify sets when it serializes the same value: the stored answer has it too.
    if (!reply.hasHeader('content-type')) reply.header('content-type', 'application/json; charset=utf-8')
  }
  const size = Buffer.byteLength(serialized)
  const response = claim.tooLarge(size)
    ? { status: reply.statusCode, headers: {}, body: '', replayable: false as const }
    : claim.response(reply.statusCode, serialized)
  const recorded = await store.completeIn(tx, claim.storeKey, claim.token, response, claim.ttl)
  if (recorded === false) {
    claim.lost = true
    throw new IdempotencyClaimLostError(claim.key, 'its lease ended and another request claimed it')
  }
  // The transaction cannot see the claim (its snapshot is older): the answer is stored once sent.
  if (recorded === 'later') return
  claim.recorded = response
  publishIdempotency(claim.request, claim.route, 'stored')
  // Renewals go on: the transaction may still roll back and be tried again. One that meets
  // the recorded row waits for the transaction, and finds the claim done once it committed.
}
