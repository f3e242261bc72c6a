// The `idempotency` member of the route option `concurrency`, checked when the route is declared.
import type { FastifyRequest } from 'fastify'
import { invalidOption } from '../errors.js'

/** `concurrency.idempotency`: `true`, or these options. */
export interface IdempotencyOptions<Request = FastifyRequest> {
  /** Answer 400 to an unsafe request without an Idempotency-Key. Default false: such a request just runs. */
  required?: boolean
  /** How long a finished response is kept and replayed, in seconds. Default 86400 (24 h). */
  ttl?: number
  /**
   * Whose key it is, e.g. `(request) => request.user.id`: the same key under another scope is
   * another key, so one client can neither replay nor block another's. Default: one scope for all.
   */
  scope?: (request: Request) => string
}

export interface IdempotencyPolicy {
  required: boolean
  /** In milliseconds. */
  ttl: number
  scope: ((request: FastifyRequest) => string) | null
}

const KEYS = new Set(['required', 'ttl', 'scope'])
/** The longest ttl: a year, well inside what a Redis PX or a timer can hold. */
const MAX_TTL = 365 * 86400

/**
 * Validates `concurrency.idempotency`; throws `FST_PRECONDITION_INVALID_IDEMPOTENCY`. Returns
 * null for `false` (off), so a route can switch it by configuration.
 */
export function toIdempotencyPolicy (option: unknown, route: string): IdempotencyPolicy | null {
  if (option === false) return null
  if (option === true) return { required: false, ttl: 86400_000, scope: null }
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency must be true or an object with any of required, ttl, scope; got ${JSON.stringify(option)}`)
  }
  for (const name of Object.keys(option)) {
    if (!KEYS.has(name)) {
      throw invalidOption('idempotency', `${route}: concurrency.idempotency.${name} is not an option; known: ${[...KEYS].join(', ')}`)
    }
  }
  const { required, ttl, scope } = option as IdempotencyOptions
  if (required !== undefined && typeof required !== 'boolean') {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency.required must be a boolean; got ${JSON.stringify(required)}`)
  }
  // Fractions are allowed (0.5 is half a second): tests and short-lived flows want them.
  if (ttl !== undefined && !(typeof ttl === 'number' && ttl >= 0.001 && ttl <= MAX_TTL)) {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency.ttl must be a number of seconds from 0.001 to ${MAX_TTL}; got ${JSON.stringify(ttl)}`)
  }
  if (scope !== undefined && typeof scope !== 'function') {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency.scope must be a function (request) => string`)
  }
  return {
    required: required ?? false,
    ttl: Math.round((ttl ?? 86400) * 1000),
    scope: (scope ?? null) as IdempotencyPolicy['scope']
  }
}
