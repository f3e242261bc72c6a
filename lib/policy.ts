// The route option `concurrency`, its types and its checks: checked once when the route is
// declared and turned into the fixed policy the route plan is made of. Nothing here runs per
// request but `checkHeaders` of a `headers` function's result.
import type { FastifyRequest } from 'fastify'
import { invalidOption } from './errors.js'
import type { Validators } from './http/evaluate.js'
import type { RequirableHeader } from './http/preconditions.js'

export type { RequirableHeader }

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
  /**
   * How the key is claimed. `'lease'` (default): claimed before the handler runs, with a lease
   * renewed while it runs, for every store and every handler. `'transaction'`: claimed by the
   * key's row inserted first in the handler's own database transaction, which the handler opens with
   * `request.idempotency.transaction(db, fn)` (a store with transactions, e.g. pgIdempotencyStore):
   * no lease, no renewal, no write before the handler; a duplicate waits for that transaction and
   * gets its answer. For handlers whose every effect is in that transaction.
   */
  claim?: 'lease' | 'transaction'
}

export interface IdempotencyPolicy {
  required: boolean
  /** In milliseconds. */
  ttl: number
  scope: ((request: FastifyRequest) => string) | null
  claim: 'lease' | 'transaction'
}

const IDEMPOTENCY_KEYS = new Set(['required', 'ttl', 'scope', 'claim'])
/** The longest ttl: a year, well inside what a Redis PX or a timer can hold. */
const MAX_TTL = 365 * 86400

/** The route option `concurrency`. */
export interface ConcurrencyOptions<Request = FastifyRequest> {
  /**
   * On unsafe methods, answer 428 unless at least one of these headers is present and usable
   * (an unparsable date does not count). Checked in preParsing: after every onRequest hook
   * (auth, rate limits), before the body is read.
   */
  require?: RequirableHeader | RequirableHeader[]
  /**
   * The current selected representation's validators, or null when none exists. `etag`: a quoted
   * entity-tag (`"v42"`, `W/"v42"`; a bare `v42` of visible ASCII is quoted for you);
   * `lastModified`: a Date, epoch milliseconds, or an ISO 8601 or HTTP-date string. Anything else
   * is a 500 naming the route and the value; an error thrown with a `statusCode` (a 404) is
   * answered with it.
   */
  validators?: (request: Request) => Validators | null | Promise<Validators | null>
  /**
   * Where a read's preconditions are evaluated, and whether a write is also checked early.
   * `'preHandler'` (default): after the body and the route's own hooks. `'onRequest'`: before
   * the body is read and before later hooks (auth), without the lock; a write that passes is
   * checked again under the lock, after its hooks, before the handler.
   */
  stage?: 'preHandler' | 'onRequest'
  /**
   * The resource key writes are serialised by. Default: the matched route and its decoded
   * params, so every spelling of a URL the router sends to this route shares one key.
   */
  key?: (request: Request) => string
  /**
   * Hold a per-key lock on unsafe methods from reading `validators` until the response has
   * finished. Default: true when `validators` is set. `lock: true` without validators serialises
   * writes for a handler that checks by itself; `lock: false` for a database compare-and-swap.
   */
  lock?: boolean
  /**
   * Headers a 304 must carry because the 200 would (RFC 9110 §15.4.5: Cache-Control,
   * Content-Location, Expires, Vary): sent with the route's 2xx and 304 answers unless already
   * set. An object, or a function of the request returning one.
   */
  headers?: Record<string, string> | ((request: Request) => Record<string, string>)
  /**
   * Apply a change once with `Idempotency-Key`: `true`, or `{ required, ttl, scope }`. A retried
   * request with the same key is answered with the stored response, without running again.
   */
  idempotency?: boolean | IdempotencyOptions<Request>
  /**
   * Whether a PUT may create the resource. Default true. `false`: a PUT to a resource whose
   * `validators` give null has its preconditions ignored (RFC 9110 §13.2.1), as any other method
   * has, and its handler answers (its 404); no problem suggests creating it.
   */
  create?: boolean
}

export interface Policy {
  required: RequirableHeader[] | null
  validators: ((request: FastifyRequest) => Validators | null | Promise<Validators | null>) | null
  stage: 'preHandler' | 'onRequest'
  key: ((request: FastifyRequest) => string) | null
  lock: boolean
  headers: Record<string, string> | ((request: FastifyRequest) => Record<string, string>) | null
  idempotency: IdempotencyPolicy | null
  create: boolean
}

const KEYS = new Set(['require', 'validators', 'stage', 'key', 'lock', 'headers', 'idempotency', 'create'])
// RFC 9110 §5.1 field-name, and a field value without control characters (§5.5).
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const REQUIRABLE = new Set<string>(['if-match', 'if-unmodified-since', 'if-none-match'])

/**
 * Checks the `headers` a route sends with its 2xx and 304 answers, as declared or as its function
 * returned them; throws an `FST_PRECONDITION_INVALID_HEADERS` error naming the bad field.
 */
export function checkHeaders (headers: unknown, route: string): Record<string, string> {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw invalidOption('headers', `${route}: concurrency.headers must be an object of header fields, or a function (request) => object; got ${JSON.stringify(headers)}`)
  }
  for (const [name, value] of Object.entries(headers)) {
    if (!TOKEN.test(name) || typeof value !== 'string' || !FIELD_VALUE.test(value)) {
      throw invalidOption('headers', `${route}: concurrency.headers.${name} must be a valid header field name with a string value; got ${JSON.stringify(value)}`)
    }
  }
  return headers as Record<string, string>
}

/** Validates a route's `concurrency` option; throws an `FST_PRECONDITION_INVALID_…` error. */
export function toPolicy (option: unknown, route: string): Policy {
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw invalidOption('concurrency', `${route}: concurrency must be an object with any of ${[...KEYS].join(', ')}`)
  }
  for (const name of Object.keys(option)) {
    if (!KEYS.has(name)) {
      throw invalidOption('concurrency', `${route}: concurrency.${name} is not an option; known: ${[...KEYS].join(', ')}`)
    }
  }
  const { require, validators, stage, key, lock, headers, idempotency, create } = option as ConcurrencyOptions

  let required: RequirableHeader[] | null = null
  if (require !== undefined) {
    const list = Array.isArray(require) ? require : [require]
    if (list.length === 0 || !list.every((name) => typeof name === 'string' && REQUIRABLE.has(name))) {
      throw invalidOption('require', `${route}: concurrency.require must be 'if-match', 'if-unmodified-since' or 'if-none-match', or a non-empty array of them; got ${JSON.stringify(require)}`)
    }
    required = [...new Set(list)]
  }
  if (validators !== undefined && typeof validators !== 'function') {
    throw invalidOption('validators', `${route}: concurrency.validators must be a function (request) => ({ etag, lastModified }) | null`)
  }
  if (stage !== undefined && stage !== 'preHandler' && stage !== 'onRequest') {
    throw invalidOption('stage', `${route}: concurrency.stage must be 'preHandler' or 'onRequest'; got ${JSON.stringify(stage)}`)
  }
  if (key !== undefined && typeof key !== 'function') {
    throw invalidOption('key', `${route}: concurrency.key must be a function (request) => string`)
  }
  if (lock !== undefined && typeof lock !== 'boolean') {
    throw invalidOption('lock', `${route}: concurrency.lock must be a boolean; got ${JSON.stringify(lock)}`)
  }
  if (headers !== undefined && typeof headers !== 'function') checkHeaders(headers, route)
  if (create !== undefined && typeof create !== 'boolean') {
    throw invalidOption('create', `${route}: concurrency.create must be a boolean; got ${JSON.stringify(create)}`)
  }
  const idempotencyPolicy = idempotency === undefined ? null : toIdempotencyPolicy(idempotency, route)
  if (required === null && validators === undefined && lock !== true && idempotencyPolicy === null) {
    throw invalidOption('concurrency', `${route}: concurrency needs at least one of require, validators, lock: true or idempotency`)
  }
  return {
    required,
    validators: (validators ?? null) as Policy['validators'],
    stage: stage ?? 'preHandler',
    key: (key ?? null) as Policy['key'],
    lock: lock ?? validators !== undefined,
    headers: (headers ?? null) as Policy['headers'],
    create: create ?? true,
    idempotency: idempotencyPolicy
  }
}

/**
 * Validates `concurrency.idempotency`; throws `FST_PRECONDITION_INVALID_IDEMPOTENCY`. Returns
 * null for `false` (off), so a route can switch it by configuration.
 */
export function toIdempotencyPolicy (option: unknown, route: string): IdempotencyPolicy | null {
  if (option === false) return null
  if (option === true) return { required: false, ttl: 86400_000, scope: null, claim: 'lease' }
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency must be true or an object with any of required, ttl, scope; got ${JSON.stringify(option)}`)
  }
  for (const name of Object.keys(option)) {
    if (!IDEMPOTENCY_KEYS.has(name)) {
      throw invalidOption('idempotency', `${route}: concurrency.idempotency.${name} is not an option; known: ${[...IDEMPOTENCY_KEYS].join(', ')}`)
    }
  }
  const { required, ttl, scope, claim } = option as IdempotencyOptions
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
  if (claim !== undefined && claim !== 'lease' && claim !== 'transaction') {
    throw invalidOption('idempotency', `${route}: concurrency.idempotency.claim must be 'lease' or 'transaction'; got ${JSON.stringify(claim)}`)
  }
  return {
    required: required ?? false,
    ttl: Math.round((ttl ?? 86400) * 1000),
    scope: (scope ?? null) as IdempotencyPolicy['scope'],
    claim: claim ?? 'lease'
  }
}
