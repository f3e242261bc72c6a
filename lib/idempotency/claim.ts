// The life of one request that carries an Idempotency-Key, from preParsing until its answer is
// stored or its key released (the route's stages that drive it are in stages.ts).
//
// One claim is a small state machine (ClaimState), its transitions in the methods of Claim:
//
//   READ ── claim ──▶ CLAIMING ── claimed ──▶ RUNNING ── returned a value, threw ──▶ SENDING ─┐
//                        │                     │  │                                            │
//                        │ stored: replay      │  └─ returned nothing, no answer ──▶ PENDING ──┤ onSend
//                        │ running: 409        │                                               ▼
//                        │ other request: 422  │                                           ANSWERED
//                        │ store failed: 503   │ hijacked, or ended by hand                    │
//                        │ client gone         │ (also from PENDING)                           │ stored · released
//                        ▼                     ▼                                               ▼
//                     REFUSED                 OVER (applied, answer not kept) ◀───────────── OVER
//
// - The lease is renewed from RUNNING until the answer is stored. A handler that returned without
//   answering (PENDING: a callback or `return reply` style, or an async handler that returned
//   nothing) may still answer: once its client is gone too the lease is no longer renewed, and the
//   key frees at its end unless the answer comes first.
// - The answer of SENDING is on its way: Fastify sends what the handler returned or threw right
//   after the handler's promise settles, also for a client that left.
// - The transactional claim (`transactional`) reads in CLAIMING and goes to RUNNING holding nothing:
//   `transaction(db, fn)` claims in the handler's transaction (REFUSED when a duplicate won).
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Readable } from 'node:stream'
import { publishIdempotency } from '../observe.js'
import { clientGone, ignore, isThenable } from '../shared.js'
import type { ClaimSlot } from '../slots.js'
import { call, onceWithin } from './calls.js'
import type { BodyDigest } from './fingerprint.js'
import { recordStream } from './record.js'
import { completeIn, inTransaction, sameBody, type RequestIdempotency } from './transaction.js'
import type { Renewable, Renewals } from './renewals.js'
import type { ClaimResult, IdempotencyStore, StoredResponse, TransactionClient } from './store.js'

/** The response headers kept with a stored response and replayed. */
export const REPLAYED_HEADERS = ['content-type', 'content-encoding', 'location', 'etag', 'last-modified'] as const

export const ClaimState = {
  /** The key was read; the body is being hashed. Nothing is claimed. */
  READ: 0,
  /** The store was asked for the key. */
  CLAIMING: 1,
  /** Not this request's: replayed, 409, 422, 503, or its client left first. Final. */
  REFUSED: 2,
  /** Claimed; the handler runs. */
  RUNNING: 3,
  /** The handler returned a value or threw: Fastify is sending it. */
  SENDING: 4,
  /** The handler returned without answering: it may answer later, from a callback. */
  PENDING: 5,
  /** onSend has the answer: it is being recorded (a stream) or stored. */
  ANSWERED: 6,
  /** Stored, recorded as applied without its answer, or released. Final. */
  OVER: 7
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare -- a value and its type, one name
export type ClaimState = typeof ClaimState[keyof typeof ClaimState]

/**
 * The largest answer recorded where the store sets no limit of its own (bytes): an endless stream
 * whose client has gone is not read forever for nobody, nor one that flows to its client kept.
 */
export const DRAIN_LIMIT = 16 * 1024 * 1024

/**
 * How long the first new try at storing an answer waits after the store failed, in ms; each next
 * try waits twice as long, up to the renewal interval, until the answer's ttl has passed.
 */
export const STORE_RETRY_FIRST = 100

/** Statuses whose answers are not kept: the request may be tried again. */
function releases (status: number): boolean {
  return status >= 500 || status === 429
}

/** One request carrying a key, from preParsing until its claim is stored or released. */
export class Claim implements RequestIdempotency, ClaimSlot, Renewable {
  state: ClaimState = ClaimState.READ
  readonly key: string
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  /** The fingerprint of the request, taken as its body is read. */
  readonly body: BodyDigest
  storeKey = ''
  token = ''
  /** The request's fingerprint, once claimed: a store that lost the record makes it again with it. */
  fingerprint = ''
  /** `complete` found the key held by another request: nothing of this request's is kept. */
  lost = false
  /** A renewal found the key held by another request, or done. */
  taken = false
  /** The store's Renewals, from the claim on (`renewals` is null while not renewed). */
  home: Renewals | null = null
  /** What `complete` recorded in the handler's transaction, while it may commit. */
  recorded: StoredResponse | null = null
  /** Until when an answer the store failed to take is tried again (ms since the epoch). */
  private until = 0
  /**
   * The transactional claim (`claim: 'transaction'`): nothing was claimed before the handler; the
   * key's row is inserted first in the transaction `transaction(db, fn)` opens.
   */
  transactional = false
  /** The transactional claim's `transaction(db, fn)` ran (or runs). */
  opened = false
  /** Answers a duplicate that lost the transactional claim's race: the stages' replay, 409 or 422. */
  refuse: ((result: ClaimResult) => void) | null = null
  replayed = false
  /** The response has closed: finished, or its client is gone. */
  closed = false
  /**
   * The route's own handler was called. Where the plugin's gate or check sits between the claim
   * and the handler, it may not be (412, or the client left while the lock was awaited).
   */
  ran: boolean
  /** The store's Renewals while the lease is renewed, and this claim's neighbours in its list. */
  renewals: Renewals | null = null
  previousRenewal: Renewable | null = null
  nextRenewal: Renewable | null = null
  readonly ttl: number
  readonly store: IdempotencyStore
  /** The route, as the plugin names it (`POST /orders`). */
  readonly route: string

  constructor (key: string, request: FastifyRequest, reply: FastifyReply, body: BodyDigest, store: IdempotencyStore, ttl: number, ran: boolean, route: string) {
    this.ran = ran
    this.route = route
    this.key = key
    this.request = request
    this.reply = reply
    this.body = body
    this.store = store
    this.ttl = ttl
  }

  /** CLAIMING → RUNNING: the store handed the key to this request. False when its client left meanwhile. */
  claimed (token: string, renewals: Renewals): boolean {
    this.token = token
    this.home = renewals
    const raw = this.reply.raw
    if (clientGone(raw)) {
      // Nothing will answer it, and nothing ran: let the key go.
      this.state = ClaimState.OVER
      this.release()
      return false
    }
    this.state = ClaimState.RUNNING
    publishIdempotency(this.request, this.route, 'claimed')
    // A closure, not a property on the response: Node's own objects keep their shape.
    raw.on('close', () => { this.onClose() })
    renewals.add(this)
    return true
  }

  /** Runs the handler from RUNNING and follows how it ends. */
  run (instance: unknown, handler: RouteOptions['handler']): unknown {
    let result
    try {
      result = handler.call(instance as ThisParameterType<RouteOptions['handler']>, this.request, this.reply)
    } catch (error) {
      this.returned(true)
      throw error
    }
    if (!isThenable(result)) {
      this.returned(result !== undefined)
      return result
    }
    // Fastify sends what this promise gives, right after it settles: the handler's state is known
    // here first. (`return reply.send(x)` and `return reply` give nothing: the reply is a
    // thenable that settles once the response has ended.)
    return result.then((value) => {
      this.returned(value !== undefined)
      return value
    }, (error: unknown) => {
      this.returned(true)
      throw error
    })
  }

  /** The handler returned or threw: `answer` when Fastify will now send what it gave. */
  private returned (answer: boolean): void {
    if (this.state !== ClaimState.RUNNING) return
    if (answer) {
      this.state = ClaimState.SENDING
    } else if (this.reply.sent) {
      // Hijacked, or ended by hand: the request was applied and its answer is not known.
      this.notKept()
    } else {
      this.state = ClaimState.PENDING
      if (this.closed) this.stopRenewal()
    }
  }

  private onClose (): void {
    this.closed = true
    if (!this.ran && this.state >= ClaimState.RUNNING && this.state <= ClaimState.PENDING) {
      // Gone while the gate or the check had the request (waiting for the lock, say), or after
      // they gave up on it: its handler did not run, and a retry may run it now.
      this.release()
      return
    }
    if (this.state !== ClaimState.PENDING) return
    // A handler that answers from a callback has had its chance while its client was there. Not
    // renewed any more, the key frees at the end of its lease unless the answer comes first.
    if (this.reply.sent) this.notKept()
    else this.stopRenewal()
  }

  /**
   * onSend: RUNNING, SENDING or PENDING → ANSWERED. Stores the answer (or releases the key) and
   * calls `done` with the payload to send: at once for a stream, which is recorded as it flows;
   * else once the store is done, so a client that has the answer and retries gets the replay.
   */
  answered (payload: unknown, done: (error: Error | null, payload?: unknown) => void): void {
    this.state = ClaimState.ANSWERED
    const status = this.reply.statusCode
    if (this.transactional) {
      // Recorded in the transaction, or nothing to record (it rolled back): no store call. A
      // success that did not go through `transaction` wrote without the key: an error, loudly.
      this.state = ClaimState.OVER
      if (this.opened || status >= 400) {
        done(null, payload)
        return
      }
      this.request.log.error({ key: this.key, route: this.route }, 'fastify-precondition: a route with idempotency.claim \'transaction\' answered without request.idempotency.transaction(db, fn); its write was not guarded by the key')
      done(new Error(`fastify-precondition: ${this.route} has idempotency.claim 'transaction': open the handler's transaction with request.idempotency.transaction(db, fn), which claims the key in it`))
      return
    }
    if (this.lost) {
      // The answer is about this request's own claim, which another request holds: nothing to
      // keep. The key is let go if it is this request's after all (the token decides).
      this.release(() => done(null, payload))
      return
    }
    const recorded = this.recorded
    if (recorded !== null) {
      // Recorded in the handler's transaction: not stored again. A failure after it (5xx) lets a
      // claim whose transaction rolled back go; one that committed is done and stays.
      if (releases(status)) this.release()
      if (releases(status) || (status === recorded.status && sameBody(payload, recorded.body))) {
        this.over()
        done(null, payload)
        return
      }
      // Another answer than the one recorded (a 4xx thrown after `complete`): its transaction
      // rolled back, and what the client gets is stored below while the key is this request's.
      // A record that committed is done: the store keeps it, and says false.
    }
    if (releases(status)) {
      this.release(() => done(null, payload))
      return
    }
    if (payload === null || payload === undefined || typeof payload === 'string' || Buffer.isBuffer(payload)) {
      const body = payload ?? ''
      if (this.tooLarge(typeof body === 'string' ? Buffer.byteLength(body) : body.length)) this.notKept(() => done(null, payload))
      else this.keep(this.response(status, body), () => done(null, payload))
      return
    }
    if (typeof (payload as Readable).pipe === 'function') {
      const stream = payload as Readable
      if (clientGone(this.reply.raw)) {
        // Nobody will read it: Fastify would destroy it unread. It is read here, to its end, and
        // stored; the response, which goes nowhere, gets nothing.
        recordStream(this, stream, status, true)
        stream.resume()
        done(null, null)
        return
      }
      recordStream(this, stream, status, false)
    } else {
      // A web stream or a Response: not recorded.
      this.notKept()
    }
    done(null, payload)
  }

  /** Past what the store keeps, or DRAIN_LIMIT where the store sets no limit of its own. */
  tooLarge (bytes: number): boolean {
    return bytes > (this.store.maxAnswerBytes ?? DRAIN_LIMIT)
  }

  response (status: number, body: Buffer | string): StoredResponse {
    const response: StoredResponse = { status, headers: {}, body }
    // All of them at once: getHeader() lower-cases each name and asks Node's response again for
    // each one that is missing.
    const sent = this.reply.getHeaders()
    for (const name of REPLAYED_HEADERS) {
      const value = sent[name]
      if (value !== undefined) response.headers[name] = String(value)
    }
    return response
  }

  /** The request was applied and its answer is not kept: a retry is told so, and runs nothing. */
  notKept (after: () => void = ignore): void {
    this.keep({ status: this.reply.statusCode, headers: {}, body: '', replayable: false }, after)
  }

  /**
   * → OVER: stores `response`, then calls `after`, also when the store failed. A store that failed
   * is tried again with backoff while the lease is renewed, so a store that comes back within the
   * answer's ttl has it before a retry can claim the key again.
   */
  keep (response: StoredResponse, after: () => void): void {
    this.state = ClaimState.OVER
    let proceed = after
    const pending = !this.store1(response, 0, () => proceed())
    // While the store is pending, `proceed` is a once-only `after` that a timer also calls: a
    // store that hangs holds the answer up for a bounded time.
    if (pending && after !== ignore) proceed = onceWithin(after)
  }

  /** One try at storing `response`; `then` runs once it is over, stored or not. */
  private store1 (response: StoredResponse, tries: number, then: () => void): boolean {
    const { store, request } = this
    return call(() => store.complete(this.storeKey, this.token, response, this.ttl, this.fingerprint), (error) => {
      if (tries === 0) request.log.warn({ err: error, key: this.key }, 'fastify-precondition: storing the answer of an Idempotency-Key failed; trying again while its lease is kept, until the store is back')
      then()
      this.storeLater(response, tries + 1, tries === 0 ? Date.now() + this.ttl : 0)
    }, (stored) => {
      this.stopRenewal()
      // False after a record committed in the handler's transaction: it is done, and stays.
      if (stored === false && this.recorded === null) request.log.warn({ key: this.key }, 'fastify-precondition: the Idempotency-Key was claimed by another request before the answer was stored; a retry may run the request again')
      if (stored !== false) publishIdempotency(request, this.route, 'stored')
      then()
    })
  }

  /** Tries again later, the lease renewed meanwhile: not once another request holds the key, the instance closed or the ttl passed. */
  private storeLater (response: StoredResponse, tries: number, until: number): void {
    if (until !== 0) this.until = until
    const home = this.home as Renewals
    if (this.taken || home.closed || Date.now() >= this.until) {
      this.stopRenewal()
      return
    }
    home.add(this)
    const timer = setTimeout(() => this.store1(response, tries, ignore), Math.min(STORE_RETRY_FIRST * 2 ** (tries - 1), home.interval))
    timer.unref()
  }

  /**
   * → OVER: frees the key (the answer is a 5xx or a 429, or nothing ran), then calls `after`. A
   * store that failed is tried again with backoff until the lease ends, so a retry after a short
   * outage (a database restart) runs at once instead of waiting out the lease.
   */
  release (after: () => void = ignore, tries = 0): void {
    if (tries === 0) {
      this.over()
      publishIdempotency(this.request, this.route, 'released')
    }
    let proceed = after
    const pending = !call(() => this.store.release(this.storeKey, this.token), (error) => {
      if (tries === 0) this.request.log.warn({ err: error, key: this.key }, 'fastify-precondition: releasing an Idempotency-Key failed; trying again until its lease ends')
      proceed()
      this.releaseLater(tries + 1)
    }, () => proceed())
    if (pending && after !== ignore) proceed = onceWithin(after)
  }

  private releaseLater (tries: number): void {
    const home = this.home as Renewals
    if (tries === 1) this.until = Date.now() + this.store.lease
    if (home.closed || Date.now() >= this.until) return
    const timer = setTimeout(() => this.release(ignore, tries), Math.min(STORE_RETRY_FIRST * 2 ** (tries - 1), home.interval))
    timer.unref()
  }

  private over (): void {
    this.state = ClaimState.OVER
    this.stopRenewal()
  }

  /** `request.idempotency.transaction(db, fn)` (transaction.ts). */
  async transaction<T> (db: unknown, fn: (tx: any) => Promise<T>): Promise<T> {
    return await inTransaction(this, db, fn)
  }

  /** `request.idempotency.complete(tx, body)`: the answer recorded in the handler's transaction (transaction.ts). */
  async complete (tx: TransactionClient, body: unknown): Promise<void> {
    await completeIn(this, tx, body)
  }

  /** Extends the lease; called by the store's Renewals while the request runs. */
  renew (): void {
    call(() => this.store.renew(this.storeKey, this.token, this.store.lease, this.fingerprint), ignore, (held) => {
      if (held === false && this.renewals !== null) {
        this.taken = true
        this.stopRenewal()
        // Recorded in the handler's committed transaction: done, not lost.
        if (this.recorded === null) this.request.log.warn({ key: this.key }, 'fastify-precondition: the Idempotency-Key lease was lost while its request ran; a duplicate may run')
      }
    })
  }

  stopRenewal (): void {
    if (this.renewals !== null) this.renewals.delete(this)
    this.renewals = null
  }
}
