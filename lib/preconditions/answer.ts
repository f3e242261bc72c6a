// The validators on a route's answers: a read's from its check, a write's read after it (while its
// lock is held) in preSerialization or onSend, and the route's `headers`; problems cleaned of
// tags that are not theirs.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isSafe } from '../http/methods.js'
import { checkValidators } from '../http/validators.js'
import type { Policy } from '../policy.js'
import { dropForeignProblemEtag } from '../problem.js'
import { isThenable } from '../shared.js'
import { isReplay, peekState, stateOf } from '../slots.js'
import { setRouteHeaders, setValidatorHeaders, unsetValidatorHeaders } from './headers.js'

type OnSendDone = (error: Error | null, payload?: unknown) => void

/**
 * Calls an onSend `done` from a promise continuation. Outside Fastify's runner nothing would
 * catch a throw from there (writeHead fails on an invalid header the handler set): hand it to
 * Fastify as its runner does, and log what even that throws.
 */
function handOn (request: FastifyRequest, done: OnSendDone, payload: unknown): void {
  try {
    done(null, payload)
  } catch (error) {
    try {
      done(error as Error)
    } catch (again) {
      request.log.error({ err: again }, 'fastify-precondition: the response could not be sent')
    }
  }
}

/**
 * Reads a write's validators after it, while its lock is held, and sets the headers the reply
 * has not set; then `proceed`. Marks the request so it happens once.
 */
export function afterWriteStage (validators: NonNullable<Policy['validators']>, route: string) {
  function apply (request: FastifyRequest, reply: FastifyReply, value: unknown, etagSet: boolean): void {
    try {
      // A handler that set one of the two keeps it, and gets the other.
      setValidatorHeaders(reply, checkValidators(value, route), etagSet)
    } catch (error) {
      // The write is done: a 500 now would tell the client to retry a change that was applied.
      request.log.error({ err: error }, 'fastify-precondition: validators after the write were invalid; no ETag sent')
    }
  }
  function failed (request: FastifyRequest, error: unknown): void {
    request.log.warn({ err: error }, 'fastify-precondition: validators failed after the write; no ETag sent')
  }
  return function readAfterWrite (request: FastifyRequest, reply: FastifyReply, proceed: () => void): void {
    // Each header asked once: one the reply lacks costs Fastify two lookups, each lower-casing its
    // name. A handler that set both keeps them, and the validators are not read.
    const etagSet = reply.hasHeader('etag')
    if (etagSet && reply.hasHeader('last-modified')) {
      proceed()
      return
    }
    stateOf(request).written = true
    let current
    try {
      current = validators(request)
    } catch (error) {
      failed(request, error)
      proceed()
      return
    }
    if (!isThenable(current)) {
      apply(request, reply, current, etagSet)
      proceed()
      return
    }
    current.then((value) => { apply(request, reply, value, etagSet) }, (error: unknown) => { failed(request, error) }).then(proceed)
  }
}

export type AfterWrite = ReturnType<typeof afterWriteStage>

/** A write's answer that still needs its validators: a 2xx whose validators were not read yet. */
function writeNotRead (request: FastifyRequest, reply: FastifyReply): boolean {
  const status = reply.statusCode
  return status >= 200 && status < 300 && !isSafe(request.method) && !peekState(request).written
}

/**
 * A write that answers with a value to serialize gets its validators in preSerialization, before
 * any onSend hook: app-wide ones such as @fastify/etag's, which run before the route's own, then
 * keep the resource's tag instead of hashing the body. (A string or a stream has no
 * preSerialization stage: it gets them in onSend; `reply.setValidators` sets them earlier still.)
 */
export function writeValidatorsHook (afterWrite: AfterWrite) {
  return function writeValidators (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone): void {
    if (!writeNotRead(request, reply)) {
      done(null, payload)
      return
    }
    afterWrite(request, reply, () => { handOn(request, done, payload) })
  }
}

/**
 * The route's onSend hook of the preconditions: the route's `headers` on 2xx and 304, a write's
 * validators where no earlier stage set them, a read's taken off an error, problems cleaned.
 */
export function answerHeadersHook (policy: Policy, route: string, afterWrite: AfterWrite | null) {
  const { headers } = policy
  return function sendValidators (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone): void {
    // Read only: a 428 answered before any stage made the state makes none here.
    const state = peekState(request)
    const gate = state.gate
    if (gate !== null) gate.answer()
    const status = reply.statusCode
    if (!((status >= 200 && status < 300) || status === 304)) {
      dropForeignProblemEtag(reply)
      // A read that the handler answered with an error (its 404, a 500) describes no representation.
      const current = state.validators
      if (current !== null && current !== undefined && isSafe(request.method)) unsetValidatorHeaders(reply, current)
      done(null, payload)
      return
    }
    // A replay goes out as it was stored.
    if (policy.idempotency !== null && isReplay(request)) {
      done(null, payload)
      return
    }
    if (headers !== null) setRouteHeaders(request, reply, headers, route)
    // A read's validators went on the reply in its check (a 304's too), before any onSend hook.
    // A write changed the representation: its validators now are the ones to send. The lock is
    // still held, so they are this write's and nobody else's.
    if (afterWrite === null || state.written || isSafe(request.method)) {
      done(null, payload)
      return
    }
    afterWrite(request, reply, () => { handOn(request, done, payload) })
  }
}
