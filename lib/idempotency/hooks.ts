// The Idempotency-Key policy on a route: its hooks, and the life of one claim.
//
// preParsing  the key's syntax (400 when it is malformed, or missing where required); the body is
//             hashed as the content-type parser reads it.
// handler     the key is claimed when the route's handler is called: after every hook of the
//             route, also hooks that plugins registered later add in their own onRoute hooks
//             (auth), and before the plugin's write gate and precondition check, which run inside
//             it. A stored answer is replayed, a running one answered 409, another request's key
//             422.
// onSend      the claimed request's answer is stored as soon as Fastify has it, whatever the
//             handler's style and whether or not its client is still there; a 5xx or a 429
//             releases the key. A stream flows to its client while it is recorded.
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
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Readable } from 'node:stream'
import { IdempotencyClaimLostError, ProblemCode } from '../errors.js'
import { publishIdempotency } from '../observe.js'
import { isSafe } from '../policy.js'
import type { ProblemWriter } from '../problem.js'
import { appendHook } from '../route-hooks.js'
import { clientGone, orReply } from '../write-gate.js'
import { decodeForClient } from './encoding.js'
import { BodyDigest, requestHead, storeKey } from './fingerprint.js'
import { parseIdempotencyKey } from './key.js'
import type { IdempotencyPolicy } from './policy.js'
import type { ClaimResult, IdempotencyStore, StoredResponse, TransactionClient } from './store.js'

/** What the hooks need from the plugin. */
export interface IdempotencyState {
  store: IdempotencyStore
  problems: ProblemWriter
  renewals: Renewals
  /** How long a claim waits for the store before the request is answered 503, in ms. */
  claimTimeout: number
}

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

const kIdempotency = Symbol('fastify-precondition.idempotency')

type IdempotentRequest = FastifyRequest & { [kIdempotency]: Claim | null }

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
}

/**
 * Declares the request slots the hooks use, so requests keep one shape. Called once per plugin
 * registration.
 */
export function decorateIdempotency (fastify: { decorateRequest: (name: string, value: unknown) => unknown }): void {
  fastify.decorateRequest(kIdempotency as unknown as string, null)
  fastify.decorateRequest('idempotency', {
    getter (this: IdempotentRequest): RequestIdempotency | null {
      return this[kIdempotency]
    }
  })
}

/** Whether this reply is a replay of a stored response (so an onSend hook leaves it as stored). */
export function isReplay (request: FastifyRequest): boolean {
  return (request as IdempotentRequest)[kIdempotency]?.replayed === true
}

/** Whether this request carries a key that its handler will claim. */
export function isKeyed (request: FastifyRequest): boolean {
  return (request as IdempotentRequest)[kIdempotency] !== null
}

function isThenable<T> (value: unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<T>).then === 'function'
}

function ignore (): void {}

/**
 * The largest answer recorded where the store sets no limit of its own (bytes): an endless stream
 * whose client has gone is not read forever for nobody, nor one that flows to its client kept.
 */
export const DRAIN_LIMIT = 16 * 1024 * 1024

/** Statuses whose answers are not kept: the request may be tried again. */
function releases (status: number): boolean {
  return status >= 500 || status === 429
}

/** One request carrying a key, from preParsing until its claim is stored or released. */
class Claim implements RequestIdempotency {
  state: ClaimState = ClaimState.READ
  readonly key: string
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  /** The fingerprint of the request, taken as its body is read. */
  readonly body: BodyDigest
  storeKey = ''
  token = ''
  replayed = false
  /** The response has closed: finished, or its client is gone. */
  closed = false
  /** The handler recorded the answer in its own transaction (`complete`). */
  completedInTransaction = false
  /**
   * The route's own handler was called. Where the plugin's gate or check sits between the claim
   * and the handler, it may not be (412, or the client left while the lock was awaited).
   */
  ran: boolean
  /** The store's Renewals while the lease is renewed, and this claim's neighbours in its list. */
  renewals: Renewals | null = null
  previousRenewal: Claim | null = null
  nextRenewal: Claim | null = null
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
    if (this.completedInTransaction) {
      // Recorded in the handler's transaction: not stored again. A failure after it (5xx) lets a
      // claim whose transaction rolled back go; one that committed is done and stays.
      if (releases(status)) this.release()
      this.over()
      done(null, payload)
      return
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
        this.record(stream, status, true)
        stream.resume()
        done(null, null)
        return
      }
      this.record(stream, status, false)
    } else {
      // A web stream or a Response: not recorded.
      this.notKept()
    }
    done(null, payload)
  }

  /**
   * Records a stream's bytes as it is read for its client, and stores them once it has ended.
   * `draining`: nobody else reads it, so past the store's limit it is stopped.
   */
  private record (stream: Readable, status: number, draining: boolean): void {
    // Past the limit a stream nobody else reads is stopped; one its client reads flows on.
    const stop: () => unknown = draining ? stream.destroy.bind(stream) : ignore
    const chunks: Buffer[] = []
    let bytes = 0
    let kept = true
    let ended = false
    const emit = stream.emit
    const claim = this
    stream.emit = function recordAnswer (this: Readable, event: string | symbol, chunk?: unknown) {
      if (event === 'data' && kept) {
        const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer
        bytes += piece.length
        if (claim.tooLarge(bytes)) {
          kept = false
          chunks.length = 0
          stop()
        } else {
          chunks.push(piece)
        }
      } else if (event === 'end') {
        ended = true
        if (kept) claim.keep(claim.response(status, Buffer.concat(chunks)), ignore)
        else claim.notKept()
      } else if (event === 'error') {
        // The answer broke off: as a 5xx, the key is let go.
        if (!ended) {
          ended = true
          claim.release()
        }
      } else if (event === 'close' && !ended) {
        // Destroyed before its end (its client left): applied, its answer not whole.
        ended = true
        claim.notKept()
      }
      return emit.apply(this, arguments as unknown as [string | symbol, ...unknown[]])
    } as typeof stream.emit
  }

  /** Past what the store keeps, or DRAIN_LIMIT where the store sets no limit of its own. */
  private tooLarge (bytes: number): boolean {
    return bytes > (this.store.maxAnswerBytes ?? DRAIN_LIMIT)
  }

  private response (status: number, body: Buffer | string): StoredResponse {
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
  private notKept (after: () => void = ignore): void {
    this.keep({ status: this.reply.statusCode, headers: {}, body: '', replayable: false }, after)
  }

  /** → OVER: stores `response`, then calls `after`, also when the store failed (logged). */
  private keep (response: StoredResponse, after: () => void): void {
    this.over()
    const { store, storeKey: key, token, request } = this
    let proceed = after
    const pending = !call(() => store.complete(key, token, response, this.ttl), (error) => {
      request.log.warn({ err: error, key: this.key }, 'fastify-precondition: storing the answer of an Idempotency-Key failed; a retry may run the request again')
      proceed()
    }, (stored) => {
      if (stored === false) request.log.warn({ key: this.key }, 'fastify-precondition: the Idempotency-Key lease ended before the answer was stored; a retry may run the request again')
      else publishIdempotency(request, this.route, 'stored')
      proceed()
    })
    // While the store is pending, `proceed` is a once-only `after` that a timer also calls: a
    // store that hangs holds the answer up for a bounded time.
    if (pending && after !== ignore) proceed = onceWithin(after)
  }

  /** → OVER: frees the key (the answer is a 5xx or a 429, or nothing ran), then calls `after`. */
  release (after: () => void = ignore): void {
    this.over()
    publishIdempotency(this.request, this.route, 'released')
    let proceed = after
    const pending = !call(() => this.store.release(this.storeKey, this.token), (error) => {
      this.request.log.warn({ err: error, key: this.key }, 'fastify-precondition: releasing an Idempotency-Key failed; it frees at the end of its lease')
      proceed()
    }, () => proceed())
    if (pending && after !== ignore) proceed = onceWithin(after)
  }

  private over (): void {
    this.state = ClaimState.OVER
    this.stopRenewal()
  }

  /** `request.idempotency.complete(tx, body)`: the answer recorded in the handler's transaction. */
  async complete (tx: TransactionClient, body: unknown): Promise<void> {
    const store = this.store
    if (typeof store.completeIn !== 'function') {
      throw new TypeError('fastify-precondition: request.idempotency.complete(tx, body) records the answer in a database transaction, and this idempotency store has none: use pgIdempotencyStore from fastify-precondition/postgres, or just return the answer')
    }
    const state = this.state
    // Called again after a transaction that recorded the answer rolled back (a serialization
    // failure at COMMIT, retried by the handler): the store's token check tells whether the key is
    // still this request's.
    if (state !== ClaimState.RUNNING && state !== ClaimState.PENDING) {
      throw new IdempotencyClaimLostError(this.key, 'it is not claimed yet, or answered already: call complete from the handler, before it answers')
    }
    const reply = this.reply
    let serialized: Buffer | string
    if (typeof body === 'string' || Buffer.isBuffer(body)) {
      serialized = body
    } else {
      serialized = reply.serialize(body) as string
      // What Fastify sets when it serializes the same value: the stored answer has it too.
      if (!reply.hasHeader('content-type')) reply.header('content-type', 'application/json; charset=utf-8')
    }
    const size = Buffer.byteLength(serialized)
    const response = this.tooLarge(size)
      ? { status: reply.statusCode, headers: {}, body: '', replayable: false as const }
      : this.response(reply.statusCode, serialized)
    if (!await store.completeIn(tx, this.storeKey, this.token, response, this.ttl)) {
      throw new IdempotencyClaimLostError(this.key, 'its lease ended and another request claimed it')
    }
    this.completedInTransaction = true
    publishIdempotency(this.request, this.route, 'stored')
    // Renewals go on: the transaction may still roll back and be tried again. One that meets
    // the recorded row waits for the transaction, and finds the claim done once it committed.
  }

  /** Extends the lease; called by the store's Renewals while the request runs. */
  renew (): void {
    call(() => this.store.renew(this.storeKey, this.token, this.store.lease), ignore, (held) => {
      if (held === false && this.renewals !== null) {
        this.stopRenewal()
        // Recorded in the handler's committed transaction: done, not lost.
        if (!this.completedInTransaction) this.request.log.warn({ key: this.key }, 'fastify-precondition: the Idempotency-Key lease was lost while its request ran; a duplicate may run')
      }
    })
  }

  stopRenewal (): void {
    if (this.renewals !== null) this.renewals.delete(this)
    this.renewals = null
  }
}

/**
 * Renews the lease of every running claim of one store, from one timer ticking every third of
 * the lease while any claim runs (a timer per request cost more than the claim itself). A claim
 * is renewed within a third of the lease of being made, and every third of the lease after.
 */
export class Renewals {
  // A doubly linked list through the claims themselves: adding and removing one costs no
  // allocation and no hashing, as a Set's would.
  private head: Claim | null = null
  private count = 0
  private timer: NodeJS.Timeout | null = null
  private readonly interval: number

  constructor (lease: number) {
    this.interval = Math.max(Math.floor(lease / 3), 1)
  }

  /** How many claims are being renewed (for tests and monitoring). */
  get size (): number {
    return this.count
  }

  /** Whether the timer is running. */
  get ticking (): boolean {
    return this.timer !== null
  }

  add (claim: Claim): void {
    claim.renewals = this
    claim.nextRenewal = this.head
    if (this.head !== null) this.head.previousRenewal = claim
    this.head = claim
    this.count++
    if (this.timer !== null) return
    this.timer = setInterval(() => this.tick(), this.interval)
    this.timer.unref()
  }

  /** Takes out a claim that `add` put in (and not yet taken out). */
  delete (claim: Claim): void {
    const { previousRenewal: previous, nextRenewal: next } = claim
    if (previous === null) this.head = next
    else previous.nextRenewal = next
    if (next !== null) next.previousRenewal = previous
    claim.previousRenewal = null
    claim.nextRenewal = null
    this.count--
  }

  private tick (): void {
    // Stopped on a tick that finds nothing to renew, not each time the set empties: under load
    // it empties and fills many times a second.
    if (this.head === null) {
      this.close()
      return
    }
    // The next one is read first: a renewal that finds the lease lost takes its claim out.
    for (let claim: Claim | null = this.head, next; claim !== null; claim = next) {
      next = claim.nextRenewal
      claim.renew()
    }
  }

  close (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}

/**
 * Runs a store call that may throw, answer a value, or answer a promise. True when it is over
 * (`failed` or `succeeded` has run); false when its promise is still pending.
 */
function call<T> (run: () => T | Promise<T>, failed: (error: unknown) => void, succeeded: (value: T) => void = ignore): boolean {
  let result
  try {
    result = run()
  } catch (error) {
    failed(error)
    return true
  }
  if (!isThenable<T>(result)) {
    succeeded(result)
    return true
  }
  result.then(succeeded, failed)
  return false
}

/**
 * How long an answer waits for its store before it goes out anyway, in ms: a store that hangs
 * (a partition, a client without commandTimeout) must not hold up an answer the handler has made.
 */
export const ANSWER_STORE_WAIT = 1000

/** `after`, called once: by the store being done, or by a timer ANSWER_STORE_WAIT ms from now. */
function onceWithin (after: () => void): () => void {
  let called = false
  const once = (): void => {
    if (called) return
    called = true
    clearTimeout(timer)
    after()
  }
  const timer = setTimeout(once, ANSWER_STORE_WAIT)
  timer.unref()
  return once
}

/** The Retry-After of a 409, in seconds: when the running claim's lease ends. */
function retryAfterSeconds (result: { retryAfter?: number }): number | undefined {
  return result.retryAfter === undefined ? undefined : Math.max(1, Math.ceil(result.retryAfter / 1000))
}

/**
 * Adds the Idempotency-Key's preParsing hook to a route, after the hooks it already has: it reads
 * the key and starts the body's digest. `between`: the plugin will wrap the handler (gate, check)
 * before the claim wraps it, so the route's own handler is marked when it is called; call this
 * before that wrapping.
 */
export function wireIdempotencyKey (routeOptions: RouteOptions, policy: IdempotencyPolicy, state: IdempotencyState, between = false): void {
  const { store, problems } = state
  const { required, ttl } = policy
  const route = routeOptions.url
  const name = `${Array.isArray(routeOptions.method) ? routeOptions.method.join(',') : routeOptions.method} ${route}`

  // One preParsing hook reads the key and starts the digest: before the body is read, after every
  // onRequest hook (auth answers an unauthenticated client first, and rate limits count the 400s),
  // and one hook stage fewer than an onRequest hook for the key would cost.
  appendHook(routeOptions, 'preParsing', function readIdempotencyKey (request: FastifyRequest, reply: FastifyReply, payload: Readable, done: (error: Error | null, payload?: Readable) => void) {
    if (isSafe(request.method)) {
      done(null, payload)
      return
    }
    const parsed = parseIdempotencyKey(request.headers['idempotency-key'])
    if (parsed.ok) {
      // Every keyed request is watched, not only those with Content-Length or Transfer-Encoding:
      // Fastify parses a body wherever there is a Content-Type, and an HTTP/2 request may carry one
      // with neither.
      const digest = new BodyDigest(payload, requestHead(request.method, route, request.url, request.headers['content-type']))
      ;(request as IdempotentRequest)[kIdempotency] = new Claim(parsed.key, request, reply, digest, store, ttl, !between, name)
      done(null, payload)
    } else if (parsed.reason === 'invalid') {
      publishIdempotency(request, name, 'invalid')
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_INVALID, request.url)
    } else if (required) {
      publishIdempotency(request, name, 'missing')
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_MISSING, request.url)
    } else {
      done(null, payload)
    }
  })
  if (!between) return
  const handler = routeOptions.handler
  type Instance = ThisParameterType<RouteOptions['handler']>
  routeOptions.handler = function markRun (this: Instance, request: FastifyRequest, reply: FastifyReply) {
    const claim = (request as IdempotentRequest)[kIdempotency]
    if (claim !== null) {
      // Its client left before the handler's turn and the key was let go: a retry may run it.
      if (claim.state === ClaimState.OVER) return undefined
      claim.ran = true
    }
    return handler.call(this, request, reply)
  } as RouteOptions['handler']
}

/**
 * Wraps the route's handler in the claim: call it after every other wrapping of the plugin's (the
 * write gate, the precondition check), so the claim comes first and the replay before any
 * precondition or lock is looked at.
 */
export function wireIdempotentHandler (routeOptions: RouteOptions, policy: IdempotencyPolicy, state: IdempotencyState): void {
  const { store, problems, renewals, claimTimeout } = state
  const { scope } = policy

  /** Acts on the store's answer to a claim; true when the request goes on to its handler. */
  function answer (claim: Claim, request: FastifyRequest, reply: FastifyReply, result: ClaimResult): boolean {
    if (result.state === 'claimed') return claim.claimed(result.token, renewals)
    claim.state = ClaimState.REFUSED
    publishIdempotency(request, claim.route, result.state === 'done' ? 'replayed' : result.state === 'running' ? 'in-progress' : 'mismatch')
    if (result.state === 'done') {
      const stored = result.response
      if (stored.replayable === false) {
        problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT, request.url)
        return false
      }
      claim.replayed = true
      reply.code(stored.status)
      const headers = stored.headers
      for (const name in headers) reply.header(name, headers[name])
      reply.header('idempotent-replayed', 'true').send(headers['content-encoding'] === undefined ? stored.body : decodeForClient(reply, stored.body, request.headers['accept-encoding']))
    } else if (result.state === 'running') {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_IN_USE, request.url, retryAfterSeconds(result))
    } else {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_MISMATCH, request.url)
    }
    return false
  }

  function unavailable (claim: Claim, request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    claim.state = ClaimState.REFUSED
    publishIdempotency(request, claim.route, 'unavailable')
    // One line a failure, without a stack: an outage would otherwise fill the log with traces.
    request.log.warn({ code: ProblemCode.IDEMPOTENCY_UNAVAILABLE, key: claim.key, reason: error instanceof Error ? error.message : String(error) },
      'fastify-precondition: the idempotency store failed; answering 503, the request was not run')
    problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_UNAVAILABLE, request.url)
  }

  /**
   * Claims the request's key: the store's answer, or its promise; null when the store threw (the
   * request was answered 503). A scope that throws or returns no string throws.
   */
  function claimKey (claim: Claim, request: FastifyRequest, reply: FastifyReply): ClaimResult | Promise<ClaimResult> | null {
    const owner = scope === null ? '' : scope(request)
    if (typeof owner !== 'string') throw new TypeError(`concurrency.idempotency.scope must return a string; got ${typeof owner}`)
    const print = claim.body.result()
    claim.storeKey = storeKey(owner, claim.key)
    claim.state = ClaimState.CLAIMING
    let claimed
    try {
      claimed = store.claim(claim.storeKey, print, store.lease)
    } catch (error) {
      unavailable(claim, request, reply, error)
      return null
    }
    return isThenable<ClaimResult>(claimed) ? within(claim, claimed, request.log) : claimed
  }

  /**
   * The store's promised answer, or a rejection once `claimTimeout` has passed without one: a
   * store that hangs (a partition, a client without commandTimeout) fails closed with a 503. A
   * claim that lands after that is let go at once, so the key is not held for a request nobody
   * runs.
   */
  function within (claim: Claim, claimed: PromiseLike<ClaimResult>, log: FastifyRequest['log']): Promise<ClaimResult> {
    return new Promise((resolve, reject) => {
      let late = false
      const timer = setTimeout(() => {
        late = true
        reject(new Error(`the idempotency store did not answer a claim within ${claimTimeout} ms`))
      }, claimTimeout)
      claimed.then((result) => {
        clearTimeout(timer)
        if (!late) {
          resolve(result)
        } else if (result.state === 'claimed') {
          call(() => store.release(claim.storeKey, result.token), (error) => {
            log.warn({ err: error }, 'fastify-precondition: releasing a late Idempotency-Key claim failed; it frees at the end of its lease')
          })
        }
      }, (error: unknown) => {
        clearTimeout(timer)
        if (!late) reject(error)
      })
    })
  }

  const handler = routeOptions.handler
  type Instance = ThisParameterType<RouteOptions['handler']>
  routeOptions.handler = function claimThenHandle (this: Instance, request: FastifyRequest, reply: FastifyReply) {
    const claim = (request as IdempotentRequest)[kIdempotency]
    if (claim === null) return handler.call(this, request, reply)
    // The client left before its turn: claim nothing, run nothing.
    if (clientGone(reply.raw)) {
      claim.state = ClaimState.REFUSED
      return undefined
    }
    // A scope that throws is the route's bug: a 500 through Fastify's error path.
    const claimed = claimKey(claim, request, reply)
    if (claimed === null) return undefined
    if (!isThenable<ClaimResult>(claimed)) return answer(claim, request, reply, claimed) ? claim.run(this, handler) : undefined
    // Later, Fastify waits on what this promise gives: the handler's promise or payload, or the
    // reply (settled once the response has ended) when the handler answers by itself or was
    // not run.
    return claimed.then((result) => {
      if (!answer(claim, request, reply, result)) return reply
      return orReply(claim.run(this, handler), reply)
    }, (error: unknown) => {
      unavailable(claim, request, reply, error)
      return reply
    })
  } as RouteOptions['handler']
}

/**
 * Adds the hook that captures a claimed request's answer and stores it (or releases the key on a
 * 5xx or a 429). Call it after every other onSend hook the plugin adds to the route, so the
 * headers stored (ETag, Last-Modified) are the ones sent. `before` runs first on every answer of
 * the route, keyed or not.
 */
export function wireIdempotentResponse (routeOptions: RouteOptions, before: ((reply: FastifyReply) => void) | null = null): void {
  appendHook(routeOptions, 'onSend', function captureResponse (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void) {
    // What the route's other onSend hook of the plugin would do, where this is its only one.
    if (before !== null) before(reply)
    const claim = (request as IdempotentRequest)[kIdempotency]
    if (claim === null) {
      done(null, payload)
      return
    }
    const state = claim.state
    if (state === ClaimState.RUNNING || state === ClaimState.SENDING || state === ClaimState.PENDING) claim.answered(payload, done)
    else done(null, payload)
  })
}
