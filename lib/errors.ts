import createError, { type FastifyErrorConstructor } from '@fastify/error'

// Registration errors: one code per option, so the code alone names what to fix.
const OPTION_CODES = {
  concurrency: 'FST_PRECONDITION_INVALID_CONCURRENCY',
  require: 'FST_PRECONDITION_INVALID_REQUIRE',
  validators: 'FST_PRECONDITION_INVALID_VALIDATORS',
  stage: 'FST_PRECONDITION_INVALID_STAGE',
  key: 'FST_PRECONDITION_INVALID_KEY',
  lock: 'FST_PRECONDITION_INVALID_LOCK',
  headers: 'FST_PRECONDITION_INVALID_HEADERS',
  create: 'FST_PRECONDITION_INVALID_CREATE',
  lockStore: 'FST_PRECONDITION_INVALID_LOCK_STORE',
  lockTimeout: 'FST_PRECONDITION_INVALID_LOCK_TIMEOUT',
  retryAfter: 'FST_PRECONDITION_INVALID_RETRY_AFTER',
  exposeEtag: 'FST_PRECONDITION_INVALID_EXPOSE_ETAG',
  problemTypeBase: 'FST_PRECONDITION_INVALID_PROBLEM_TYPE_BASE',
  messages: 'FST_PRECONDITION_INVALID_MESSAGES',
  documentRoutes: 'FST_PRECONDITION_INVALID_DOCUMENT_ROUTES',
  weakIfMatch: 'FST_PRECONDITION_INVALID_WEAK_IF_MATCH',
  problems: 'FST_PRECONDITION_INVALID_PROBLEMS',
  idempotency: 'FST_PRECONDITION_INVALID_IDEMPOTENCY',
  idempotencyStore: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE'
} as const

export type OptionName = keyof typeof OPTION_CODES

function optionError (code: string) {
  return createError<string, [string]>(code, '%s', 500, TypeError)
}

const optionErrors = Object.fromEntries(
  Object.entries(OPTION_CODES).map(([name, code]) => [name, optionError(code)])
) as Record<OptionName, ReturnType<typeof optionError>>

/** The error thrown at registration or route declaration for a bad option value. */
export function invalidOption (name: OptionName, message: string): Error & { code: string } {
  return new optionErrors[name](message)
}

/** Codes of the problems the plugin answers with, as the `code` member of the body. */
export const ProblemCode = {
  PRECONDITION_REQUIRED: 'FST_PRECONDITION_REQUIRED',
  PRECONDITION_FAILED: 'FST_PRECONDITION_FAILED',
  LOCK_TIMEOUT: 'FST_PRECONDITION_LOCK_TIMEOUT',
  LOCK_UNAVAILABLE: 'FST_PRECONDITION_LOCK_UNAVAILABLE',
  LOCK_LOST: 'FST_PRECONDITION_LOCK_LOST',
  /** 400: the route requires an Idempotency-Key and the request carried none. */
  IDEMPOTENCY_KEY_MISSING: 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISSING',
  /** 400: the Idempotency-Key is not a 1–255 character string or token. */
  IDEMPOTENCY_KEY_INVALID: 'FST_PRECONDITION_IDEMPOTENCY_KEY_INVALID',
  /** 409: the first request with this key is still being processed. */
  IDEMPOTENCY_KEY_IN_USE: 'FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE',
  /** 422: the key was already used for a different request. */
  IDEMPOTENCY_KEY_MISMATCH: 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISMATCH',
  /** 503: the idempotency store could not be reached, so the request was not attempted. */
  IDEMPOTENCY_UNAVAILABLE: 'FST_PRECONDITION_IDEMPOTENCY_UNAVAILABLE',
  /**
   * 409: the first request with this key was applied, and its answer is not kept (its handler
   * hijacked the reply, or the answer was larger than the store keeps). Do not retry it.
   */
  IDEMPOTENCY_ANSWER_NOT_KEPT: 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT',
  /** Thrown by `request.idempotency.complete` when this request no longer holds its key. */
  IDEMPOTENCY_CLAIM_LOST: 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST'
} as const

// The classes' types are written out, from a named type import: declarations that spelt them
// `createError.FastifyErrorConstructor` (what TypeScript infers) only resolve under NodeNext, and
// became `any` for applications compiled with moduleResolution bundler or node10.
type LockErrorConstructor<Code extends string> = FastifyErrorConstructor<{ code: Code, statusCode: 503 }>

/** A lock store throws (or rejects with) this when a key stayed held past the wait limit. */
export const LockTimeoutError: LockErrorConstructor<typeof ProblemCode.LOCK_TIMEOUT> = createError(ProblemCode.LOCK_TIMEOUT,
  'Timed out after %s ms waiting for the lock on "%s"', 503)

/**
 * A lock store throws this when it cannot reach its backend. Any other error from a store is
 * treated the same way: the request fails closed with 503 and the handler never runs.
 */
export const LockUnavailableError: LockErrorConstructor<typeof ProblemCode.LOCK_UNAVAILABLE> = createError(ProblemCode.LOCK_UNAVAILABLE,
  'The lock store is unavailable: %s', 503)

/**
 * The reason a lease's `signal` aborts with: the store found the lease expired or held by another
 * while its request still ran, so another writer may have written meanwhile.
 */
export const LockLostError: LockErrorConstructor<typeof ProblemCode.LOCK_LOST> = createError(ProblemCode.LOCK_LOST,
  'The lease on "%s" was lost: %s', 503)

/**
 * `request.idempotency.complete(tx, body)` throws this when the request does not hold its key
 * (its lease ended and another request claimed it): roll the transaction back. Answered as a 409
 * if it reaches Fastify.
 */
export const IdempotencyClaimLostError: FastifyErrorConstructor<{ code: typeof ProblemCode.IDEMPOTENCY_CLAIM_LOST, statusCode: 409 }, [string, string]> = createError(ProblemCode.IDEMPOTENCY_CLAIM_LOST,
  'The Idempotency-Key "%s" is not held by this request: %s. Roll the transaction back.', 409)

/**
 * A store's or a plugin's numeric option: `fallback` when absent, else a safe integer of at least
 * `min`. Throws `FST_PRECONDITION_INVALID_<OPTION>` saying `<owner>: <name> must be …`.
 */
export function positiveInteger (option: OptionName, owner: string, name: string, value: unknown, fallback: number, unit = '', min = 1): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || (value as number) < min) {
    const kind = min === 0 ? 'a whole number, 0 or more' : 'a positive whole number'
    throw invalidOption(option, `${owner}: ${name} must be ${kind}${unit === '' ? '' : ' of ' + unit}; got ${String(value)}`)
  }
  return value as number
}
