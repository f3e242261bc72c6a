// The plugin's options, their checks at registration, and what the plugin adds to Fastify's types.
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifySchema,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault,
  RouteGenericInterface
} from 'fastify'
import { invalidOption } from './errors.js'
import type { Validators } from './http/evaluate.js'
import type { Preconditions } from './http/preconditions.js'
import type { RequestIdempotency } from './idempotency/transaction.js'
import type { IdempotencyStore } from './idempotency/store.js'
import type { LockStore, RequestLock } from './locks/types.js'
import type { ConcurrencyOptions } from './policy.js'
import type { ProblemMessagesOption } from './problem.js'

/** Plugin options; all optional. */
export interface FastifyPreconditionOptions {
  /** Where write locks live: `'memory'` (default, one process) or a store such as `redisLockStore(...)`. */
  lockStore?: 'memory' | LockStore
  /**
   * How long (ms) a write waits for its resource's lock, and a keyed request for its
   * Idempotency-Key claim to be answered by the store, before a 503. Default 10000.
   */
  lockTimeout?: number
  /** Seconds sent in Retry-After with a 503. Default 1. */
  retryAfter?: number
  /** Whether a 412 reveals the current ETag (header and `etag` member). Default true. */
  exposeEtag?: boolean
  /**
   * How the plugin's own answers (412, 428, 503; 400, 409, 422 of Idempotency-Key) go out:
   * `'send'` (default, the fast path) writes RFC 9457 problem+json bodies; `'error-handler'` hands
   * Fastify's error path a `PreconditionProblemError` carrying `statusCode`, `code`, `headers` and
   * `problem` (the body), so the app's `setErrorHandler` decides the format.
   */
  problems?: 'send' | 'error-handler'
  /** Base URI for problem `type`s (`https://example.com/problems/` → `…/precondition-failed`). Default: `about:blank`. */
  problemTypeBase?: string
  /** Replacement titles and details of the problem bodies, e.g. in another language. */
  messages?: ProblemMessagesOption
  /**
   * Add to route schemas, for OpenAPI: the precondition headers and the 304/412/428/503 answers;
   * on Idempotency-Key routes the header, the 400/409/422/503 answers and Idempotent-Replayed.
   * Default true.
   */
  documentRoutes?: boolean
  /**
   * Where Idempotency-Key records live: `'memory'` (default, one process) or a store such as
   * `redisIdempotencyStore(...)` from `fastify-precondition/redis`.
   */
  idempotencyStore?: 'memory' | IdempotencyStore
  /**
   * Accept a weak tag in If-Match (`W/"x"` matches `"x"`), for deployments behind proxies that
   * weaken the ETags they pass on (nginx with gzip, some CDNs). A deliberate departure from
   * RFC 9110, safe for write preconditions when every version of a resource has its own tag.
   * Default false.
   */
  weakIfMatch?: boolean
}

declare module 'fastify' {
  interface RouteShorthandOptions<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    // eslint-disable-next-line @typescript-eslint/no-unused-vars -- must match the declaration it augments
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
    ContextConfig = ContextConfigDefault,
    SchemaCompiler extends FastifySchema = FastifySchema,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger
  > {
    /** The route's concurrency policy (fastify-precondition). */
    concurrency?: ConcurrencyOptions<FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>>
  }
  interface FastifyRequest {
    /** The conditional request headers, parsed (fastify-precondition). */
    readonly preconditions: Preconditions
    /**
     * On a write that holds the resource's lock, its key, fencing token and lost-lease signal
     * (fastify-precondition); `null` elsewhere.
     */
    readonly lock: RequestLock | null
    /**
     * On a request that carries an Idempotency-Key, the key and `complete(tx, body)`, which records
     * the answer in the handler's own transaction (fastify-precondition/postgres); `null` otherwise.
     */
    readonly idempotency: RequestIdempotency | null
  }
  interface FastifyReply {
    /**
     * Answers 412 as the plugin does, for a handler that does its own compare-and-swap.
     * `current` is the resource's current validators or ETag, if known; `null` when it does not
     * exist. The detail says why, from the request's own headers against `current`: a malformed
     * or weak If-Match, a resource that is gone, or one changed since it was read. `detail`
     * replaces it.
     */
    failPrecondition (current?: Validators | string | null, detail?: string): FastifyReply
    /**
     * Hands the plugin this write's new validators (fastify-precondition): sent as ETag and
     * Last-Modified, now, so neither `validators` is called again after the write nor an app-wide
     * hook such as @fastify/etag's replaces them.
     */
    setValidators (current: Validators): FastifyReply
  }
}

/** Checks the plugin options at registration; throws `FST_PRECONDITION_INVALID_<OPTION>`. */
export function validatePluginOptions (options: FastifyPreconditionOptions): void {
  const { lockStore, lockTimeout, retryAfter, exposeEtag, problemTypeBase, documentRoutes, idempotencyStore, weakIfMatch, problems } = options
  if (problems !== undefined && problems !== 'send' && problems !== 'error-handler') {
    throw invalidOption('problems', `problems must be 'send' or 'error-handler'; got ${JSON.stringify(problems)}`)
  }
  if (weakIfMatch !== undefined && typeof weakIfMatch !== 'boolean') {
    throw invalidOption('weakIfMatch', `weakIfMatch must be a boolean; got ${JSON.stringify(weakIfMatch)}`)
  }
  if (idempotencyStore !== undefined && idempotencyStore !== 'memory' &&
    (typeof idempotencyStore !== 'object' || idempotencyStore === null || typeof idempotencyStore.claim !== 'function')) {
    throw invalidOption('idempotencyStore', "idempotencyStore must be 'memory' or an object with claim, complete, release and renew methods")
  }
  if (lockStore !== undefined && lockStore !== 'memory' &&
    (typeof lockStore !== 'object' || lockStore === null || typeof lockStore.acquire !== 'function')) {
    throw invalidOption('lockStore', "lockStore must be 'memory' or an object with an acquire(key, timeout) method")
  }
  if (lockTimeout !== undefined && !(Number.isInteger(lockTimeout) && lockTimeout > 0)) {
    throw invalidOption('lockTimeout', `lockTimeout must be a positive whole number of milliseconds; got ${String(lockTimeout)}`)
  }
  if (retryAfter !== undefined && !(Number.isInteger(retryAfter) && retryAfter >= 0)) {
    throw invalidOption('retryAfter', `retryAfter must be a whole number of seconds, 0 or more; got ${String(retryAfter)}`)
  }
  if (exposeEtag !== undefined && typeof exposeEtag !== 'boolean') {
    throw invalidOption('exposeEtag', `exposeEtag must be a boolean; got ${JSON.stringify(exposeEtag)}`)
  }
  if (documentRoutes !== undefined && typeof documentRoutes !== 'boolean') {
    throw invalidOption('documentRoutes', `documentRoutes must be a boolean; got ${JSON.stringify(documentRoutes)}`)
  }
  if (problemTypeBase !== undefined) {
    let valid = typeof problemTypeBase === 'string'
    if (valid) {
      try { new URL(problemTypeBase) } catch { valid = false } // eslint-disable-line no-new
    }
    if (!valid) throw invalidOption('problemTypeBase', `problemTypeBase must be an absolute URI such as 'https://example.com/problems/'; got ${JSON.stringify(problemTypeBase)}`)
  }
}
