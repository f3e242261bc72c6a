// The Idempotency-Key policy on a route: its hooks and the life of one claim.
//
// preParsing  the key's syntax (400 when it is malformed, or missing where required); the body is
//             hashed as the content-type parser reads it.
// claim       after every hook of the route (auth), before any write lock: in place of the
//             handler, or in a last preHandler hook where the plugin's precondition hooks or gate
//             follow. A stored response is replayed, a running one answered 409, another request's
//             key 422.
// onSend      the claimed request's answer is stored (2xx–4xx) or its key released (5xx) before
//             it is sent.
// 'close'     of a response that got no answer: the key is released once the handler is over. A
//             handler still running for a client that left keeps the key until it is over.
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import type { Readable } from 'node:stream'
import { ProblemCode } from '../errors.js'
import { isSafe } from '../policy.js'
import type { ProblemWriter } from '../problem.js'
import { appendHook } from '../route-hooks.js'
import { clientGone, orReply } from '../write-gate.js'
import { BodyDigest, requestHead, storeKey } from './fingerprint.js'
import { parseIdempotencyKey } from './key.js'
import type { IdempotencyPolicy } from './policy.js'
import type { ClaimResult, IdempotencyStore, StoredResponse } from './store.js'

/** What the hooks need from the plugin. */
export interface IdempotencyState {
  store: IdempotencyStore
  problems: ProblemWriter
  renewals: Renewals
  /** How long a claim waits for the store before the request is answered 503, in ms. */
  claimTimeout: number
}

/** The response headers kept with a stored response and replayed. */
export const REPLAYED_HEADERS = ['content-type', 'location', 'etag', 'last-modified'] as const

const kIdempotency = Symbol('fastify-precondition.idempotency')

type IdempotentRequest = FastifyRequest & { [kIdempotency]?: KeyedRequest | null }

/**
 * Declares the request slot the hooks use, so requests keep one shape. Optional (the hooks work
 * without it), called once per plugin registration.
 */
export function decorateIdempotency (fastify: { decorateRequest: (name: string, value: unknown) => unknown }): void {
  fastify.decorateRequest(kIdempotency as unknown as string, null)
}

/** Whether this reply is a replay of a stored response (so an onSend hook leaves it as stored). */
export function isReplay (request: FastifyRequest): boolean {
  return (request as IdempotentRequest)[kIdempotency]?.replayed === true
}

function isThenable<T> (value: unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<T>).then === 'function'
}

/** One request carrying a key, from preParsing until its claim is stored or released. */
class KeyedRequest {
  readonly key: string
  readonly request: FastifyRequest
  /** The fingerprint of the request, taken as its body is read. */
  readonly body: BodyDigest
  storeKey = ''
  token: string | null = null
  replayed = false
  /** Inside the handler, or waiting for its promise. */
  running = false
  /** The handler returned without a promise and without answering: it may still answer. */
  pending = false
  /** The key was stored or released; nothing more happens. */
  over = false
  closed = false
  status = 0
  payload: Buffer | string | null = null
  /** The store's Renewals while the lease is renewed, and this claim's neighbours in its list. */
  renewals: Renewals | null = null
  previousRenewal: KeyedRequest | null = null
  nextRenewal: KeyedRequest | null = null
  ttl = 0
  store: IdempotencyStore | null = null
  reply: FastifyReply | null = null

  constructor (key: string, request: FastifyRequest, body: BodyDigest) {
    this.key = key
    this.request = request
    this.body = body
  }

  /**
   * The response closed, or the handler's promise settled, without an answer captured: the key is
   * let go once the handler is over. (An answer is stored as it is captured, in onSend.)
   */
  settle (): void {
    if (this.over || !this.closed) return
    if (this.pending) {
      // A callback-style handler may still write and answer: keep the key, unrenewed, so it
      // frees at the end of its lease if no answer comes.
      this.stopRenewal()
    } else if (!this.running) {
      this.finish(ignore)
    }
  }

  /**
   * Stores the captured answer (2xx–4xx) or releases the key (5xx, or no answer), then calls
   * `after`, also when the store failed (that is logged): the answer goes out either way.
   */
  finish (after: () => void): void {
    this.over = true
    this.stopRenewal()
    const store = this.store as IdempotencyStore
    const token = this.token as string
    const log = this.request.log
    // `proceed` is read when the store is done: while it is pending it becomes a once-only
    // `after` that a timer also calls, so a store that hangs holds the answer up for a bounded time.
    let proceed = after
    let over
    if (this.payload === null || this.status >= 500) {
      over = call(() => store.release(this.storeKey, token), (error) => {
        log.warn({ err: error }, 'fastify-precondition: releasing an Idempotency-Key failed; it frees at the end of its lease')
        proceed()
      }, () => proceed())
    } else {
      const response: StoredResponse = { status: this.status, headers: {}, body: this.payload }
      // All of them at once: getHeader() lower-cases each name and asks Node's response again for
      // each one that is missing.
      const sent = (this.reply as FastifyReply).getHeaders()
      for (const name of REPLAYED_HEADERS) {
        const value = sent[name]
        if (value !== undefined) response.headers[name] = String(value)
      }
      over = call(() => store.complete(this.storeKey, token, response, this.ttl), (error) => {
        log.warn({ err: error }, 'fastify-precondition: storing the response of an Idempotency-Key failed; a retry will run again')
        proceed()
      }, (stored) => {
        if (stored === false) log.warn('fastify-precondition: the Idempotency-Key lease was lost before the response was stored; a retry will run again')
        proceed()
      })
    }
    if (!over && after !== ignore) proceed = onceWithin(after)
  }

  /** Extends the lease; called by the store's Renewals while the request runs. */
  renew (): void {
    const store = this.store as IdempotencyStore
    call(() => store.renew(this.storeKey, this.token as string, store.lease), ignore, (held) => {
      if (held === false && this.renewals !== null) {
        this.stopRenewal()
        this.request.log.warn('fastify-precondition: the Idempotency-Key lease was lost while its request ran; a duplicate may run')
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
  private head: KeyedRequest | null = null
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

  add (keyed: KeyedRequest): void {
    keyed.renewals = this
    keyed.nextRenewal = this.head
    if (this.head !== null) this.head.previousRenewal = keyed
    this.head = keyed
    this.count++
    if (this.timer !== null) return
    this.timer = setInterval(() => this.tick(), this.interval)
    this.timer.unref()
  }

  /** Takes out a claim that `add` put in (and not yet taken out). */
  delete (keyed: KeyedRequest): void {
    const { previousRenewal: previous, nextRenewal: next } = keyed
    if (previous === null) this.head = next
    else previous.nextRenewal = next
    if (next !== null) next.previousRenewal = previous
    keyed.previousRenewal = null
    keyed.nextRenewal = null
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
    for (let keyed: KeyedRequest | null = this.head, next; keyed !== null; keyed = next) {
      next = keyed.nextRenewal
      keyed.renew()
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

function ignore (): void {}

/**
 * The body as it is sent, to be stored: a string as it is (its UTF-8 bytes are what goes out; no
 * Buffer copy per request, and a string kept lives in the V8 heap, not in a pooled slab that one
 * kept answer holds on to), bytes as they are; null for a stream.
 */
function sentBody (payload: unknown): Buffer | string | null {
  if (payload == null) return ''
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) return payload
  return null
}

/**
 * Adds the Idempotency-Key hooks to a route, after the hooks it already has, and wraps its
 * handler. The key is claimed after every hook of the route (auth), before the handler:
 * - `claimIn: 'preHandler'`, in a preHandler hook: where the plugin adds hooks or a gate after the
 *   claim (the preconditions, the write lock). Call it before those are added, so the replay comes
 *   before If-Match is evaluated and before the lock.
 * - `claimIn: 'handler'`, in the wrapped handler itself, after every preHandler hook: where nothing
 *   of the plugin's comes between. One hook stage fewer, and no preHandler stage at all on a route
 *   that had none (about 5% of a small POST's instructions under callgrind).
 */
export function wireIdempotency (routeOptions: RouteOptions, policy: IdempotencyPolicy, state: IdempotencyState, claimIn: 'preHandler' | 'handler' = 'preHandler'): void {
  const { store, problems, renewals, claimTimeout } = state
  const { required, ttl, scope } = policy
  const route = routeOptions.url

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
      const digest = new BodyDigest(payload, requestHead(request.method, route, request.url))
      ;(request as IdempotentRequest)[kIdempotency] = new KeyedRequest(parsed.key, request, digest)
      done(null, payload)
    } else if (parsed.reason === 'invalid') {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_INVALID, request.url)
    } else if (required) {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_MISSING, request.url)
    } else {
      done(null, payload)
    }
  })

  /** Acts on the store's answer to a claim; true when the request goes on to its handler. */
  function answer (keyed: KeyedRequest, request: FastifyRequest, reply: FastifyReply, result: ClaimResult): boolean {
    const raw = reply.raw
    if (result.state === 'claimed') {
      keyed.token = result.token
      keyed.store = store
      keyed.reply = reply
      keyed.ttl = ttl
      if (clientGone(raw)) {
        // The client left while the claim was made: nothing will answer it.
        keyed.closed = true
        keyed.finish(ignore)
        return false
      }
      // A closure, not a property on the response: Node's own objects keep their shape.
      raw.on('close', () => {
        keyed.closed = true
        keyed.settle()
      })
      renewals.add(keyed)
      return true
    }
    if (result.state === 'done') {
      keyed.replayed = true
      const stored = result.response
      reply.code(stored.status)
      const headers = stored.headers
      for (const name in headers) reply.header(name, headers[name])
      reply.header('idempotent-replayed', 'true').send(stored.body)
    } else if (result.state === 'running') {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_IN_USE, request.url)
    } else {
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_MISMATCH, request.url)
    }
    return false
  }

  function unavailable (request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    request.log.error({ err: error }, 'fastify-precondition: the idempotency store failed; answering 503')
    problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_UNAVAILABLE, request.url)
  }

  /**
   * Claims the request's key: the store's answer, or its promise; null when the store threw (the
   * request was answered 503). A scope that throws or returns no string throws.
   */
  function claim (keyed: KeyedRequest, request: FastifyRequest, reply: FastifyReply): ClaimResult | Promise<ClaimResult> | null {
    const owner = scope === null ? '' : scope(request)
    if (typeof owner !== 'string') throw new TypeError(`concurrency.idempotency.scope must return a string; got ${typeof owner}`)
    const print = keyed.body.result()
    keyed.storeKey = storeKey(owner, keyed.key)
    let claimed
    try {
      claimed = store.claim(keyed.storeKey, print, store.lease)
    } catch (error) {
      unavailable(request, reply, error)
      return null
    }
    return isThenable<ClaimResult>(claimed) ? within(keyed, claimed, request.log) : claimed
  }

  /**
   * The store's promised answer, or a rejection once `claimTimeout` has passed without one: a
   * store that hangs (a partition, a client without commandTimeout) fails closed with a 503. A
   * claim that lands after that is let go at once, so the key is not held for a request nobody
   * runs.
   */
  function within (keyed: KeyedRequest, claimed: PromiseLike<ClaimResult>, log: FastifyRequest['log']): Promise<ClaimResult> {
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
          call(() => store.release(keyed.storeKey, result.token), (error) => {
            log.warn({ err: error }, 'fastify-precondition: releasing a late Idempotency-Key claim failed; it frees at the end of its lease')
          })
        }
      }, (error: unknown) => {
        clearTimeout(timer)
        if (!late) reject(error)
      })
    })
  }

  if (claimIn === 'preHandler') {
    appendHook(routeOptions, 'preHandler', function claimIdempotencyKey (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
      const keyed = (request as IdempotentRequest)[kIdempotency]
      if (keyed === null || keyed === undefined) {
        done()
        return
      }
      // The client left before this hook ran: claim nothing, run nothing.
      if (clientGone(reply.raw)) return
      let claimed
      try {
        claimed = claim(keyed, request, reply)
      } catch (error) {
        done(error as Error)
        return
      }
      if (claimed === null) return
      if (isThenable<ClaimResult>(claimed)) {
        claimed.then((result) => { if (answer(keyed, request, reply, result)) done() }, (error) => unavailable(request, reply, error))
      } else if (answer(keyed, request, reply, claimed)) {
        done()
      }
    })
  }

  const handler = routeOptions.handler
  type Instance = ThisParameterType<RouteOptions['handler']>
  function run (this: Instance, request: FastifyRequest, reply: FastifyReply, keyed: KeyedRequest | null | undefined): unknown {
    if (keyed === null || keyed === undefined || keyed.store === null) return handler.call(this, request, reply)
    // The client left before the handler and the key was let go: a retry may already run it.
    if (keyed.over) return
    keyed.running = true
    let result
    try {
      result = handler.call(this, request, reply)
    } finally {
      keyed.running = false
    }
    if (isThenable(result)) {
      keyed.running = true
      const over = (): void => {
        keyed.running = false
        keyed.settle()
      }
      result.then(over, over)
    } else if (keyed.status === 0) {
      keyed.pending = true
    }
    return result
  }

  routeOptions.handler = claimIn === 'preHandler'
    ? function idempotentHandler (this: Instance, request: FastifyRequest, reply: FastifyReply) {
      return run.call(this, request, reply, (request as IdempotentRequest)[kIdempotency])
    }
    : function claimThenHandle (this: Instance, request: FastifyRequest, reply: FastifyReply) {
      const keyed = (request as IdempotentRequest)[kIdempotency]
      if (keyed === null || keyed === undefined) return handler.call(this, request, reply)
      // The client left before its turn: claim nothing, run nothing.
      if (clientGone(reply.raw)) return undefined
      // A scope that throws is the route's bug: a 500 through Fastify's error path.
      const claimed = claim(keyed, request, reply)
      if (claimed === null) return undefined
      if (!isThenable<ClaimResult>(claimed)) return answer(keyed, request, reply, claimed) ? run.call(this, request, reply, keyed) : undefined
      // Later, Fastify waits on what this promise gives: the handler's promise or payload, or the
      // reply (settled once the response has ended) when the handler answers by itself or was
      // not run.
      return claimed.then((result) => {
        if (!answer(keyed, request, reply, result)) return reply
        return orReply(run.call(this, request, reply, keyed), reply)
      }, (error: unknown) => {
        unavailable(request, reply, error)
        return reply
      })
    } as RouteOptions['handler']
}

/**
 * Adds the hook that captures a claimed request's answer and stores it (or releases the key on a
 * 5xx) before the answer is sent, so a client that has the answer and sends the key again gets
 * the replay, never a 409. Call it after every other onSend hook the plugin adds to the route, so
 * the headers stored (ETag, Last-Modified) are the ones sent. `before` runs first on every
 * answer of the route, keyed or not.
 */
export function wireIdempotentResponse (routeOptions: RouteOptions, before: ((reply: FastifyReply) => void) | null = null): void {
  appendHook(routeOptions, 'onSend', function captureResponse (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void) {
    // What the route's other onSend hook of the plugin would do, where this is its only one.
    if (before !== null) before(reply)
    const keyed = (request as IdempotentRequest)[kIdempotency]
    if (keyed === null || keyed === undefined || keyed.store === null || keyed.over || keyed.status !== 0) {
      done(null, payload)
      return
    }
    keyed.status = reply.statusCode
    keyed.pending = false
    const bytes = keyed.status >= 500 ? null : sentBody(payload)
    if (keyed.status >= 500 || bytes !== null) {
      keyed.payload = bytes
      keyed.finish(() => done(null, payload))
      return
    }
    // A stream: read it whole, so the bytes sent are the bytes stored.
    const chunks: Buffer[] = []
    const stream = payload as Readable
    stream.on('data', (chunk: Buffer | string) => chunks.push(Buffer.from(chunk)))
    stream.once('error', (error) => {
      keyed.status = 500
      keyed.finish(() => done(error))
    })
    stream.once('end', () => {
      keyed.payload = Buffer.concat(chunks)
      keyed.finish(() => done(null, keyed.payload))
    })
  })
}
