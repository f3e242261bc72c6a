// The precondition check of RFC 9110 §13.2.2 on a request: in a hook of the route (reads, writes
// without a lock, the early check of a locked write), or inside the handler for a keyed write
// without a lock. A locked write is checked by its write gate (locks/), under the lock.
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import { evaluate, Outcome, outcomeStatus, type Validators } from '../http/evaluate.js'
import { isSafe } from '../http/methods.js'
import { checkValidators } from '../http/validators.js'
import { publishPrecondition } from '../observe.js'
import type { Policy } from '../policy.js'
import type { ProblemWriter } from '../problem.js'
import { isThenable, orReply } from '../shared.js'
import { conditionalHeaders, isKeyed, stateOf } from '../slots.js'
import { setValidatorHeaders } from './headers.js'

export type CheckHook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void

export interface CheckOptions {
  validators: NonNullable<Policy['validators']>
  /** The route, as the plugin names it (`PUT /items/:id`). */
  route: string
  problems: ProblemWriter
  weakIfMatch: boolean
  create: boolean
  /**
   * What the hook does with a write: `'check'` it; `'skip'` it (its gate checks it, under the
   * lock); check it `'early'`, without the lock (its gate checks it again).
   */
  writes: 'check' | 'skip' | 'early'
  /**
   * The writes left to be checked after their claim (those carrying an Idempotency-Key: the
   * retry of an answered one is replayed, not refused for its now stale If-Match), or null.
   */
  leave: ((request: FastifyRequest) => boolean) | null
}

/**
 * Keeps the conditional headers as they arrived (onRequest): a headers schema with
 * additionalProperties: false makes Ajv delete the ones it does not list before preHandler runs,
 * which would turn a guarded write into an unguarded one.
 */
export function keepConditionalHeaders (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const headers = request.headers
  stateOf(request).headers = {
    'if-match': headers['if-match'],
    'if-none-match': headers['if-none-match'],
    'if-modified-since': headers['if-modified-since'],
    'if-unmodified-since': headers['if-unmodified-since'],
    'if-range': headers['if-range'],
    range: headers.range
  }
  done()
}

/**
 * An error thrown after plugin code handed control on (from a promise continuation, where no
 * Fastify runner would catch it) goes to Fastify's error path while an answer is still possible,
 * and to the log otherwise: never an unhandled rejection.
 */
function reportError (request: FastifyRequest, reply: FastifyReply, error: unknown): void {
  if (!reply.sent && !reply.raw.headersSent) {
    reply.send(error)
  } else {
    request.log.error({ err: error }, 'fastify-precondition: error after the response started')
  }
}

/** The check as a hook of the route's stage (onRequest or preHandler). */
export function checkHook (options: CheckOptions): CheckHook {
  const { validators, route, problems, weakIfMatch, create, leave } = options
  const skipWrites = options.writes === 'skip'
  const early = options.writes === 'early'

  function decide (request: FastifyRequest, reply: FastifyReply, value: unknown, done: HookHandlerDoneFunction): void {
    let current: Validators | null
    try {
      current = checkValidators(value, route)
    } catch (error) {
      done(error as Error)
      return
    }
    const outcome = evaluate(request.method, conditionalHeaders(request), current, weakIfMatch, create)
    stateOf(request).validators = current
    if (outcome === Outcome.PROCEED || outcome === Outcome.IGNORE_RANGE) {
      // A locked write checked early is checked again under its lock, which says how it ends.
      if (!early || isSafe(request.method)) publishPrecondition(request, route, 'proceed')
      // §13.2.2 step 5: a failed If-Range means the whole representation, so Range goes.
      if (outcome === Outcome.IGNORE_RANGE) delete request.headers.range
      // A read's validators go on the reply now, before any onSend hook: app-wide ones such as
      // @fastify/etag's run before this route's and keep a tag that is already there.
      if (isSafe(request.method)) setValidatorHeaders(reply, current)
      done()
      return
    }
    if (outcomeStatus(outcome) === 304) {
      publishPrecondition(request, route, 'not-modified')
      // A 304 carries the validators a 200 would have (RFC 9110 §15.4.5).
      setValidatorHeaders(reply, current)
      reply.code(304).send()
      return
    }
    publishPrecondition(request, route, 'failed')
    problems.sendFailed(reply, outcome, request.url, current?.etag as string | undefined)
  }

  return function checkPreconditions (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if ((skipWrites || (leave !== null && leave(request))) && !isSafe(request.method)) {
      done()
      return
    }
    let current
    try {
      current = validators(request)
    } catch (error) {
      done(error as Error)
      return
    }
    if (isThenable(current)) {
      current.then((value) => {
        try {
          decide(request, reply, value, done)
        } catch (error) {
          reportError(request, reply, error)
        }
      }, done)
    } else {
      decide(request, reply, current, done)
    }
  }
}

/**
 * The check of a keyed write without a lock, run in the handler (after the claim) instead of in
 * its stage's hook. Fastify waits on the promise: the handler's result, or the response's end
 * where the check answered (304, 412) or the handler answers by itself.
 */
export function checkInHandler (check: CheckHook, handler: RouteOptions['handler']): RouteOptions['handler'] {
  type Instance = ThisParameterType<RouteOptions['handler']>
  return function checkedHandler (this: Instance, request: FastifyRequest, reply: FastifyReply) {
    if (isSafe(request.method) || !isKeyed(request)) return handler.call(this, request, reply)
    return new Promise((resolve, reject) => {
      const ended = (): void => { resolve(undefined) }
      reply.then(ended, ended)
      check(request, reply, (error) => {
        if (error !== undefined && error !== null) {
          reject(error)
          return
        }
        try {
          resolve(orReply(handler.call(this, request, reply), reply))
        } catch (thrown) {
          reject(thrown)
        }
      })
    })
  } as RouteOptions['handler']
}
