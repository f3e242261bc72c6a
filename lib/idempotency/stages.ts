// The Idempotency-Key stages of a route, which the route pipeline attaches:
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
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { Readable } from 'node:stream'
import { ProblemCode } from '../errors.js'
import { isSafe } from '../http/methods.js'
import { publishIdempotency } from '../observe.js'
import type { IdempotencyPolicy } from '../policy.js'
import type { ProblemWriter } from '../problem.js'
import { clientGone, isThenable, orReply } from '../shared.js'
import { stateOf } from '../slots.js'
import { call } from './calls.js'
import { Claim, ClaimState } from './claim.js'
import { decodeForClient } from './encoding.js'
import { BodyDigest, routeHead, storeKey } from './fingerprint.js'
import { parseIdempotencyKey } from './key.js'
import type { Renewals } from './renewals.js'
import type { ClaimResult, IdempotencyStore } from './store.js'

/** What the stages need from the plugin. */
export interface IdempotencyState {
  store: IdempotencyStore
  problems: ProblemWriter
  renewals: Renewals
  /** How long a claim waits for the store before the request is answered 503, in ms. */
  claimTimeout: number
}

/**
 * Whether a request carries an Idempotency-Key header, valid or not: what the precondition check
 * leaves to be checked after the claim (at onRequest, before the key is read).
 */
export function carriesKey (request: FastifyRequest): boolean {
  return request.headers['idempotency-key'] !== undefined
}

/**
 * The Retry-After of a 409, in whole seconds, at least 1: a short hint, when the running claim's
 * lease ends or sooner: at most the renewal interval (a third of the lease), since the request
 * that holds the key is likely to finish long before a lease it keeps renewing. Undefined where
 * the store does not say: the plugin's `retryAfter`.
 */
function retryAfterSeconds (result: { retryAfter?: number }, lease: number): number | undefined {
  if (result.retryAfter === undefined) return undefined
  return Math.max(1, Math.floor(Math.min(result.retryAfter, lease / 3) / 1000))
}

/**
 * The key's preParsing hook: it reads the key and starts the body's digest. One hook: before the
 * body is read, after every onRequest hook (auth answers an unauthenticated client first, and rate
 * limits count the 400s), and one hook stage fewer than an onRequest hook for the key would cost.
 * `between`: the plugin's gate or check sits between the claim and the route's handler, which
 * `markRun` then marks when it is called.
 */
export function readKeyHook (policy: IdempotencyPolicy, state: IdempotencyState, url: string, name: string, between: boolean) {
  const { store, problems } = state
  const { required, ttl } = policy
  const head = routeHead(url)
  return function readIdempotencyKey (request: FastifyRequest, reply: FastifyReply, payload: Readable, done: (error: Error | null, payload?: Readable) => void) {
    if (isSafe(request.method)) {
      done(null, payload)
      return
    }
    const parsed = parseIdempotencyKey(request.headers['idempotency-key'])
    if (parsed.ok) {
      // Every keyed request is watched, not only those with Content-Length or Transfer-Encoding:
      // Fastify parses a body wherever there is a Content-Type, and an HTTP/2 request may carry one
      // with neither.
      const digest = new BodyDigest(payload, head(request.method, request.url, request.headers['content-type']))
      stateOf(request).claim = new Claim(parsed.key, request, reply, digest, store, ttl, !between, name)
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
  }
}

type Instance = ThisParameterType<RouteOptions['handler']>

/**
 * Marks a claim's route handler as run when it is called: the gate or the check between the claim
 * and the handler may not call it (a 412, or a client gone while the lock was awaited).
 */
export function markRun (handler: RouteOptions['handler']): RouteOptions['handler'] {
  return function markRun (this: Instance, request: FastifyRequest, reply: FastifyReply) {
    const claim = stateOf(request).claim as Claim | null
    if (claim !== null) {
      // Its client left before the handler's turn and the key was let go: a retry may run it.
      if (claim.state === ClaimState.OVER) return undefined
      claim.ran = true
    }
    return handler.call(this, request, reply)
  } as RouteOptions['handler']
}

/**
 * The route's handler wrapped in the claim: the outermost wrapping of the plugin's (around the
 * write gate or the precondition check), so the claim comes first and the replay before any
 * precondition or lock is looked at.
 */
export function claimHandler (policy: IdempotencyPolicy, state: IdempotencyState, handler: RouteOptions['handler']): RouteOptions['handler'] {
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
      problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_KEY_IN_USE, request.url, retryAfterSeconds(result, store.lease))
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
    claim.fingerprint = print
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

  return function claimThenHandle (this: Instance, request: FastifyRequest, reply: FastifyReply) {
    const claim = stateOf(request).claim as Claim | null
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
 * The onSend hook that captures a claimed request's answer and stores it (or releases the key on
 * a 5xx or a 429): the last onSend hook the plugin adds to the route, so the headers stored (ETag,
 * Last-Modified) are the ones sent. `before` runs first on every answer of the route, keyed or
 * not.
 */
export function recordHook (before: ((reply: FastifyReply) => void) | null) {
  return function captureResponse (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void) {
    // What the route's other onSend hook of the plugin would do, where this is its only one.
    if (before !== null) before(reply)
    const claim = stateOf(request).claim as Claim | null
    if (claim === null) {
      done(null, payload)
      return
    }
    const state = claim.state
    if (state === ClaimState.RUNNING || state === ClaimState.SENDING || state === ClaimState.PENDING) claim.answered(payload, done)
    else done(null, payload)
  }
}
