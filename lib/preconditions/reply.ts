// The reply methods of the preconditions: `reply.failPrecondition` (and its alias
// `reply.preconditionFailed`) for a handler's own compare-and-swap, `reply.setValidators` for a
// write's new validators.
import type { FastifyReply } from 'fastify'
import { normalizeEtag } from '../http/entity-tag.js'
import { evaluate, Outcome, outcomeStatus, type Validators } from '../http/evaluate.js'
import { checkValidators } from '../http/validators.js'
import { publishPrecondition } from '../observe.js'
import type { ProblemWriter } from '../problem.js'
import { conditionalHeaders, stateOf } from '../slots.js'
import { setValidatorHeaders } from './headers.js'

export type FailPrecondition = (this: FastifyReply, current?: Validators | string | null, detail?: string) => FastifyReply

/** `reply.failPrecondition(current, detail)`: a 412 that says why, from the request's own headers. */
export function failPreconditionMethod (problems: ProblemWriter, weakIfMatch: boolean): FailPrecondition {
  return function failPrecondition (this: FastifyReply, current?: Validators | string | null, detail?: string): FastifyReply {
    const request = this.request
    const validators = typeof current === 'string' ? { etag: current } : current
    const etag = validators?.etag === undefined ? undefined : normalizeEtag(validators.etag)
    // The request's own headers against what the handler found: why its compare-and-swap failed.
    let outcome: Outcome = Outcome.IF_MATCH_MISMATCH
    if (validators !== undefined && validators !== null) {
      const evaluated = evaluate('PUT', conditionalHeaders(request), { ...validators, etag }, weakIfMatch)
      if (outcomeStatus(evaluated) === 412) outcome = evaluated
    }
    // The route as the plugin names it: its methods (an array joins with commas) and its URL.
    publishPrecondition(request, `${String(request.routeOptions.method)} ${String(request.routeOptions.url)}`, 'failed')
    problems.sendFailed(this, outcome, request.url, etag, detail, current === null)
    return this
  }
}

/** `reply.setValidators(current)`: the write's new validators, sent now and not read again. */
export function setValidators (this: FastifyReply, current: Validators): FastifyReply {
  const route = `${this.request.method} ${String(this.request.routeOptions.url)}`
  const checked = checkValidators(current, route)
  if (checked === null) throw new TypeError(`fastify-precondition: ${route}: reply.setValidators needs the new validators ({ etag, lastModified }); got null`)
  setValidatorHeaders(this, checked)
  // Handed over: `validators` is not called after the write, also for a header left out.
  stateOf(this.request).written = true
  return this
}
