import fp from 'fastify-plugin'
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifyInstance,
  FastifyPluginAsync,
  FastifyReply,
  FastifyRequest,
  FastifySchema,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  HookHandlerDoneFunction,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault,
  RouteGenericInterface,
  RouteOptions
} from 'fastify'
import { normalizeEtag } from './entity-tag.js'
import { invalidOption } from './errors.js'
import { evaluate, Outcome, outcomeStatus, type ConditionalHeaders, type Validators } from './evaluate.js'
import { formatHttpDate } from './http-date.js'
import { MemoryLockStore } from './locks/memory.js'
import type { LockStore } from './locks/types.js'
import { decorateIdempotency, isKeyed, isReplay, Renewals, wireIdempotencyKey, wireIdempotentHandler, wireIdempotentResponse, type IdempotencyState, type RequestIdempotency } from './idempotency/hooks.js'
import { MemoryIdempotencyStore } from './idempotency/memory.js'
import type { IdempotencyStore } from './idempotency/store.js'
import { checkHeaders, isSafe, toPolicy, type ConcurrencyOptions, type Policy } from './policy.js'
import { appendHook } from './route-hooks.js'
import { hasUsablePrecondition, parsePreconditions, type Preconditions } from './preconditions.js'
import { kProblemEtag, PROBLEM_CONTENT_TYPE, ProblemWriter, type ProblemMessagesOption } from './problem.js'
import { routeKey } from './resource-key.js'
import { publishPrecondition } from './observe.js'
import { documentRoute, shareProblemSchema } from './schema.js'
import { checkValidators } from './validators.js'
import { gateHandler, kGate, orReply, type RequestLock, type WriteGate } from './write-gate.js'

export { strongEtag } from './etag.js'
export { evaluate, Outcome, outcomeStatus, outcomeHeader, type Validators, type ConditionalHeaders } from './evaluate.js'
export { parseEntityTags, strongCompare, weakCompare, type EntityTagCondition } from './entity-tag.js'
export { parseHttpDate, formatHttpDate } from './http-date.js'
export { ProblemDetailsSchema, PROBLEM_CONTENT_TYPE, PreconditionProblemError, defaultMessages, type ProblemDetails, type ProblemMessages, type ProblemMessagesOption } from './problem.js'
export { LockLostError, LockTimeoutError, LockUnavailableError, ProblemCode } from './errors.js'
export { MemoryLockStore } from './locks/memory.js'
export type { Lease, LeaseLossListener, LockStore } from './locks/types.js'
export type { ConcurrencyOptions, RequirableHeader } from './policy.js'
export { ifMatchVersions, type Preconditions } from './preconditions.js'
export type { RequestLock } from './write-gate.js'
export { MemoryIdempotencyStore, memoryIdempotencyStore, type MemoryIdempotencyStoreOptions } from './idempotency/memory.js'
export type { IdempotencyStore, ClaimResult, StoredResponse, TransactionClient } from './idempotency/store.js'
export type { RequestIdempotency } from './idempotency/hooks.js'
export { IdempotencyClaimLostError } from './errors.js'
export type { IdempotencyOptions } from './idempotency/policy.js'

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

// Per-request slots, declared up front so requests keep one shape.
const kValidators = Symbol('fastify-precondition.validators')
const kParsed = Symbol('fastify-precondition.parsed')
const kHeaders = Symbol('fastify-precondition.headers')
/** A write's validators were read after it. */
const kWritten = Symbol('fastify-precondition.written')

type PreconditionRequest = FastifyRequest & {
  [kValidators]: Validators | null | undefined
  [kGate]: WriteGate | null
  [kParsed]: Preconditions | null
  [kHeaders]: ConditionalHeaders | null
  [kWritten]: boolean
}

function isThenable<T> (value: unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<T>).then === 'function'
}

function logCloseError (this: FastifyInstance, error: unknown): void {
  this.log.warn({ err: error }, 'fastify-precondition: closing the lock store failed')
}

/** The conditional headers as they arrived: a strict headers schema may have stripped them since. */
function conditionalHeaders (request: FastifyRequest): ConditionalHeaders {
  return (request as PreconditionRequest)[kHeaders] ?? request.headers
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

interface PluginState {
  weakIfMatch: boolean
  store: LockStore
  lockTimeout: number
  problems: ProblemWriter
  documentRoutes: boolean
  /** Made on first use: most apps have no route with idempotency. */
  idempotency: IdempotencyState | null
  idempotencyStore: IdempotencyStore | null
}

function validatePluginOptions (options: FastifyPreconditionOptions): void {
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

const plugin: FastifyPluginAsync<FastifyPreconditionOptions> = async function fastifyPrecondition (fastify, options) {
  validatePluginOptions(options)
  const ownStore = options.lockStore === undefined || options.lockStore === 'memory'
  const state: PluginState = {
    weakIfMatch: options.weakIfMatch ?? false,
    store: ownStore ? new MemoryLockStore() : options.lockStore as LockStore,
    lockTimeout: options.lockTimeout ?? 10_000,
    problems: new ProblemWriter(options),
    documentRoutes: options.documentRoutes ?? true,
    idempotency: null,
    idempotencyStore: options.idempotencyStore === undefined || options.idempotencyStore === 'memory' ? null : options.idempotencyStore
  }
  if (state.documentRoutes) shareProblemSchema(fastify)
  decorateIdempotency(fastify)

  fastify.decorateRequest(kValidators as unknown as string, undefined)
  fastify.decorateRequest(kGate as unknown as string, null)
  fastify.decorateRequest('lock', null)
  fastify.decorateReply(kProblemEtag as unknown as string, null)
  fastify.decorateRequest(kParsed as unknown as string, null)
  fastify.decorateRequest(kHeaders as unknown as string, null)
  fastify.decorateRequest(kWritten as unknown as string, false)
  fastify.decorateRequest('preconditions', {
    getter (this: FastifyRequest): Preconditions {
      const request = this as PreconditionRequest
      let parsed = request[kParsed]
      if (parsed === null) parsed = request[kParsed] = parsePreconditions(request[kHeaders] ?? request.headers)
      return parsed
    }
  })
  function failPrecondition (this: FastifyReply, current?: Validators | string | null, detail?: string): FastifyReply {
    const request = this.request
    const validators = typeof current === 'string' ? { etag: current } : current
    const etag = validators?.etag === undefined ? undefined : normalizeEtag(validators.etag)
    // The request's own headers against what the handler found: why its compare-and-swap failed.
    let outcome: Outcome = Outcome.IF_MATCH_MISMATCH
    if (validators !== undefined && validators !== null) {
      const evaluated = evaluate('PUT', conditionalHeaders(request), { ...validators, etag }, state.weakIfMatch)
      if (outcomeStatus(evaluated) === 412) outcome = evaluated
    }
    // The route as the plugin names it: its methods (an array joins with commas) and its URL.
    publishPrecondition(request, `${String(request.routeOptions.method)} ${String(request.routeOptions.url)}`, 'failed')
    state.problems.sendFailed(this, outcome, request.url, etag, detail, current === null)
    return this
  }
  fastify.decorateReply('failPrecondition', failPrecondition)
  fastify.decorateReply('setValidators', function setValidators (this: FastifyReply, current: Validators): FastifyReply {
    const route = `${this.request.method} ${String(this.request.routeOptions.url)}`
    const checked = checkValidators(current, route)
    if (checked === null) throw new TypeError(`fastify-precondition: ${route}: reply.setValidators needs the new validators ({ etag, lastModified }); got null`)
    setValidatorHeaders(this, checked)
    // Handed over: `validators` is not called after the write, also for a header left out.
    ;(this.request as PreconditionRequest)[kWritten] = true
    return this
  })
  // `reply.preconditionFailed` is also @fastify/sensible's name (a plain 412). The alias is added
  // only where nobody took it, and only once routes are being declared, when plugins such as
  // sensible registered after this one have had their turn.
  let aliasChecked = false

  fastify.addHook('onRoute', function (routeOptions) {
    if (!aliasChecked) {
      aliasChecked = true
      if (!fastify.hasReplyDecorator('preconditionFailed')) fastify.decorateReply('preconditionFailed', failPrecondition)
    }
    const option = (routeOptions as RouteOptions & { concurrency?: unknown }).concurrency
    if (option === undefined) return
    const policy = toPolicy(option, `${String(routeOptions.method)} ${routeOptions.url}`)
    if (policy.idempotency !== null) {
      if (state.idempotency === null) {
        // The default store's eviction warnings go to the app's log.
        const store = state.idempotencyStore ?? new MemoryIdempotencyStore({ log: fastify.log })
        state.idempotency = { store, problems: state.problems, renewals: new Renewals(store.lease), claimTimeout: state.lockTimeout }
      }
      // The key is read before the 428 check: a request without either is told about the key.
      wireIdempotencyKey(routeOptions, policy.idempotency, state.idempotency, policy.validators !== null || policy.lock)
    }
    // A route with `idempotency` alone needs of the precondition onSend hook only its cleaning of
    // problems: the idempotency hook does that too, one hook stage fewer (about 2% of a POST).
    const problemsOnly = policy.idempotency !== null && policy.validators === null && !policy.lock && policy.headers === null
    wireRoute(routeOptions, policy, state, problemsOnly)
    if (policy.idempotency !== null) {
      // Wrapped last, so the claim comes first when the handler is called: after every hook of the
      // route, and before the gate and the check, so a stored answer is replayed, not re-checked.
      wireIdempotentHandler(routeOptions, policy.idempotency, state.idempotency as IdempotencyState)
      // Last, so the answer is stored with the headers the other onSend hooks set.
      wireIdempotentResponse(routeOptions, problemsOnly ? dropForeignProblemEtag : null)
    }
    if (state.documentRoutes) documentRoute(routeOptions, policy, state.problems)
  })

  // preClose, not onClose: Fastify's onClose waits for in-flight requests, which would serve the
  // waiting writes first instead of turning them away.
  const store = state.store
  if (typeof store.close === 'function') {
    fastify.addHook('preClose', function closeLockStore (done) {
      let closing
      try {
        closing = store.close!()
      } catch (error) {
        logCloseError.call(this, error)
        done()
        return
      }
      if (isThenable(closing)) closing.then(() => done(), (error) => { logCloseError.call(this, error); done() })
      else done()
    })
  }
  // onClose: in-flight requests still store their answers until then.
  fastify.addHook('onClose', async function closeIdempotencyStore () {
    state.idempotency?.renewals.close()
    try {
      await state.idempotency?.store.close?.()
    } catch (error) {
      this.log.warn({ err: error }, 'fastify-precondition: closing the idempotency store failed')
    }
  })
  /* c8 ignore next -- fastify-plugin metadata below is what tests observe */
}

function keepConditionalHeaders (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const headers = request.headers
  ;(request as PreconditionRequest)[kHeaders] = {
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
 * A problem the plugin answered carries no ETag but the current one of a 412: not a hash of the
 * problem body, which app-wide hooks such as @fastify/etag's would add.
 */
function dropForeignProblemEtag (reply: FastifyReply): void {
  if (reply.statusCode >= 400 && reply.getHeader('content-type') === PROBLEM_CONTENT_TYPE && reply.getHeader('etag') !== (reply as FastifyReply & { [kProblemEtag]: string | null })[kProblemEtag]) {
    reply.removeHeader('etag')
  }
}

/** `onSendDone`: the idempotency hook cleans problems in the route's one onSend hook of the plugin. */
function wireRoute (routeOptions: RouteOptions, policy: Policy, state: PluginState, onSendDone = false): void {
  const { problems } = state
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  const route = `${methods.join(',')} ${routeOptions.url}`
  if (policy.required !== null) {
    const required = policy.required
    const body = problems.required(required)
    // preParsing: before the body is read, and after every onRequest hook, whoever added it and
    // whenever: auth answers an unauthenticated client first, and rate limits count the 428s.
    appendHook(routeOptions, 'preParsing', function requirePrecondition (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void) {
      if (isSafe(request.method) || hasUsablePrecondition(request.headers, required)) {
        done(null, payload)
        return
      }
      publishPrecondition(request, route, 'required')
      problems.sendRequired(reply, body, request.url)
    })
  }
  const writes = policy.validators !== null && !methods.every(isSafe)
  const afterWrite = writes ? buildAfterWrite(policy.validators as NonNullable<Policy['validators']>, route) : null
  if (afterWrite !== null) appendHook(routeOptions, 'preSerialization', buildWriteValidators(afterWrite))
  if (!onSendDone) appendHook(routeOptions, 'onSend', buildOnSend(policy, route, afterWrite))
  if (policy.validators === null && !policy.lock) return

  if ((routeOptions.schema as { headers?: unknown } | undefined)?.headers !== undefined) {
    // A headers schema with additionalProperties: false makes Ajv delete the conditional headers
    // it does not list before preHandler runs, which would turn a guarded write into an unguarded
    // one. Keep them as they arrived.
    appendHook(routeOptions, 'onRequest', keepConditionalHeaders)
  }
  const gated = policy.lock && !methods.every(isSafe)
  // Reads, and writes without a lock, are checked in the stage's hook. A locked write is checked
  // by its gate, under the lock; with stage onRequest it is also checked early, without the lock.
  const keyed = policy.idempotency !== null
  if (policy.validators !== null && (!gated || policy.stage === 'onRequest' || methods.some(isSafe))) {
    appendHook(routeOptions, policy.stage, buildCheckHook(policy.validators, route, problems, state.weakIfMatch,
      gated && policy.stage === 'preHandler', keyed, policy.create, gated && policy.stage === 'onRequest'))
  }
  if (keyed && policy.validators !== null && !gated && !methods.every(isSafe)) {
    // A keyed write without a lock is checked after its claim, inside the handler: a retry whose
    // first answer was stored is replayed, not refused for its now stale If-Match.
    routeOptions.handler = checkThenHandle(buildCheckHook(policy.validators, route, problems, state.weakIfMatch, false, false, policy.create), routeOptions.handler)
  }
  if (gated) {
    routeOptions.handler = gateHandler({
      route,
      store: state.store,
      lockTimeout: state.lockTimeout,
      problems,
      validators: policy.validators,
      key: policy.key ?? routeKey(routeOptions.url),
      handler: routeOptions.handler,
      headersOf: conditionalHeaders,
      weakIfMatch: state.weakIfMatch,
      create: policy.create
    }, isSafe)
  }
}

type CheckHook = (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void

/**
 * The check of a keyed write without a lock, run in the handler (after the claim) instead of in
 * its stage's hook. Fastify waits on the promise: the handler's result, or the response's end
 * where the check answered (304, 412) or the handler answers by itself.
 */
function checkThenHandle (check: CheckHook, handler: RouteOptions['handler']): RouteOptions['handler'] {
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

/**
 * Evaluates the preconditions of a request in a hook: reads, writes without a lock, and the
 * early check of a locked write at stage onRequest. `skipWrites`: writes are the gate's alone.
 * `skipKeyed`: a write with an Idempotency-Key is checked after its claim (by the gate, or
 * checkThenHandle). `early`: the early check of a locked write, which the gate checks again.
 */
function buildCheckHook (validators: NonNullable<Policy['validators']>, route: string, problems: ProblemWriter, weakIfMatch: boolean, skipWrites: boolean, skipKeyed: boolean, create: boolean, early = false) {
  function decide (request: PreconditionRequest, reply: FastifyReply, value: unknown, done: HookHandlerDoneFunction): void {
    let current: Validators | null
    try {
      current = checkValidators(value, route)
    } catch (error) {
      done(error as Error)
      return
    }
    const outcome = evaluate(request.method, conditionalHeaders(request), current, weakIfMatch, create)
    request[kValidators] = current
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
      reply.code(304).send()
      return
    }
    publishPrecondition(request, route, 'failed')
    problems.sendFailed(reply, outcome, request.url, current?.etag as string | undefined)
  }

  return function checkPreconditions (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    // A write with an Idempotency-Key may be the retry of one that was answered: its stored answer
    // is replayed (when its handler is called), not refused early for its now stale If-Match.
    if ((skipWrites || (skipKeyed && request.headers['idempotency-key'] !== undefined)) && !isSafe(request.method)) {
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
          decide(request as PreconditionRequest, reply, value, done)
        } catch (error) {
          reportError(request, reply, error)
        }
      }, done)
    } else {
      decide(request as PreconditionRequest, reply, current, done)
    }
  }
}

/** `missing`: only the fields the reply has not set (the handler's own win). */
function setValidatorHeaders (reply: FastifyReply, current: Validators | null | undefined, missing = false): void {
  if (current === null || current === undefined) return
  if (current.etag !== undefined && !(missing && reply.hasHeader('etag'))) reply.header('etag', current.etag)
  if (current.lastModified !== undefined && !(missing && reply.hasHeader('last-modified'))) {
    reply.header('last-modified', formatHttpDate(current.lastModified as Date | number))
  }
}

function unsetValidatorHeaders (reply: FastifyReply, current: Validators): void {
  if (current.etag !== undefined && reply.getHeader('etag') === current.etag) reply.removeHeader('etag')
  if (current.lastModified !== undefined && reply.getHeader('last-modified') === formatHttpDate(current.lastModified as Date | number)) {
    reply.removeHeader('last-modified')
  }
}

function setRouteHeaders (request: FastifyRequest, reply: FastifyReply, headers: NonNullable<Policy['headers']>, route: string): void {
  const fields = typeof headers === 'function' ? checkHeaders(headers(request), route) : headers
  for (const name in fields) {
    if (!reply.hasHeader(name)) reply.header(name, fields[name])
  }
}

/**
 * Calls an onSend `done` from a promise continuation. Outside Fastify's runner nothing would
 * catch a throw from there (writeHead fails on an invalid header the handler set): hand it to
 * Fastify as its runner does, and log what even that throws.
 */
function handOn (request: FastifyRequest, done: (error: Error | null, payload?: unknown) => void, payload: unknown): void {
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
function buildAfterWrite (validators: NonNullable<Policy['validators']>, route: string) {
  function apply (request: FastifyRequest, reply: FastifyReply, value: unknown): void {
    try {
      // A handler that set one of the two keeps it, and gets the other.
      setValidatorHeaders(reply, checkValidators(value, route), true)
    } catch (error) {
      // The write is done: a 500 now would tell the client to retry a change that was applied.
      request.log.error({ err: error }, 'fastify-precondition: validators after the write were invalid; no ETag sent')
    }
  }
  function failed (request: FastifyRequest, error: unknown): void {
    request.log.warn({ err: error }, 'fastify-precondition: validators failed after the write; no ETag sent')
  }
  return function readAfterWrite (request: FastifyRequest, reply: FastifyReply, proceed: () => void): void {
    (request as PreconditionRequest)[kWritten] = true
    let current
    try {
      current = validators(request)
    } catch (error) {
      failed(request, error)
      proceed()
      return
    }
    if (!isThenable(current)) {
      apply(request, reply, current)
      proceed()
      return
    }
    current.then((value) => { apply(request, reply, value) }, (error: unknown) => { failed(request, error) }).then(proceed)
  }
}

/** Whether a write's answer still needs its validators: a 2xx without both of its headers, not read yet. */
function needsWriteValidators (request: FastifyRequest, reply: FastifyReply): boolean {
  const status = reply.statusCode
  return status >= 200 && status < 300 && !isSafe(request.method) && !(request as PreconditionRequest)[kWritten] &&
    !(reply.hasHeader('etag') && reply.hasHeader('last-modified'))
}

/**
 * A write that answers with a value to serialize gets its validators in preSerialization, before
 * any onSend hook: app-wide ones such as @fastify/etag's, which run before the route's own, then
 * keep the resource's tag instead of hashing the body. (A string or a stream has no
 * preSerialization stage: it gets them in onSend; `reply.setValidators` sets them earlier still.)
 */
function buildWriteValidators (afterWrite: ReturnType<typeof buildAfterWrite>) {
  return function writeValidators (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void): void {
    if (!needsWriteValidators(request, reply)) {
      done(null, payload)
      return
    }
    afterWrite(request, reply, () => { handOn(request, done, payload) })
  }
}

function buildOnSend (policy: Policy, route: string, afterWrite: ReturnType<typeof buildAfterWrite> | null) {
  const { validators, headers } = policy
  return function sendValidators (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void): void {
    const req = request as PreconditionRequest
    const gate = req[kGate]
    if (gate !== null) gate.answer()
    const status = reply.statusCode
    if (!((status >= 200 && status < 300) || status === 304)) {
      dropForeignProblemEtag(reply)
      // A read that the handler answered with an error (its 404, a 500) describes no representation.
      const current = req[kValidators]
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
    if (validators === null || (reply.hasHeader('etag') && reply.hasHeader('last-modified'))) {
      done(null, payload)
      return
    }
    if (isSafe(request.method)) {
      setValidatorHeaders(reply, req[kValidators])
      done(null, payload)
      return
    }
    // A write changed the representation: its validators now are the ones to send. The lock is
    // still held, so they are this write's and nobody else's.
    if (afterWrite === null || req[kWritten]) {
      done(null, payload)
      return
    }
    afterWrite(request, reply, () => { handOn(request, done, payload) })
  }
}

/** The plugin. */
export const fastifyPrecondition = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-precondition'
})

export default fastifyPrecondition
