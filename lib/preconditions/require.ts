// `require`: the 428 of RFC 6585 for a write that carries none of the required headers.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isSafe } from '../http/methods.js'
import { hasUsablePrecondition, type RequirableHeader } from '../http/preconditions.js'
import { publishPrecondition } from '../observe.js'
import type { ProblemWriter } from '../problem.js'

type PreParsingDone = (error: Error | null, payload?: unknown) => void

/**
 * The 428 hook, for preParsing: before the body is read, and after every onRequest hook, whoever
 * added it and whenever: auth answers an unauthenticated client first, and rate limits count the
 * 428s.
 */
export function requireHook (required: RequirableHeader[], route: string, problems: ProblemWriter) {
  const body = problems.required(required)
  return function requirePrecondition (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: PreParsingDone): void {
    if (isSafe(request.method) || hasUsablePrecondition(request.headers, required)) {
      done(null, payload)
      return
    }
    publishPrecondition(request, route, 'required')
    problems.sendRequired(reply, body, request.url)
  }
}
