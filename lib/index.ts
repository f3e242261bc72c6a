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
import type { ServerResponse } from 'node:http'
import { normalizeEtag } from './entity-tag.js'
import { invalidOption, ProblemCode } from './errors.js'
import { evaluate, Outcome, outcomeStatus, type ConditionalHeaders, type Validators } from './evaluate.js'
import { formatHttpDate } from './http-date.js'
import { MemoryLockStore } from './locks/memory.js'
import type { Lease, LockStore } from './locks/types.js'
import { isSafe, toPolicy, type ConcurrencyOptions, type Policy } from './policy.js'
import { hasUsablePrecondition, parsePreconditions, type Preconditions } from './preconditions.js'
import { ProblemWriter, requestPath, type ProblemMessagesOption } from './problem.js'
import { documentRoute, shareProblemSchema } from './schema.js'

export { strongEtag } from './etag.js'
export { evaluate, Outcome, outcomeStatus, outcomeHeader, type Validators, type ConditionalHeaders } from './evaluate.js'
export { parseEntityTags, strongCompare, weakCompare, type EntityTagCondition } from './entity-tag.js'
export { parseHttpDate, formatHttpDate } from './http-date.js'
export { ProblemDetailsSchema, PROBLEM_CONTENT_TYPE, defaultMessages, type ProblemDetails, type ProblemMessages, type ProblemMessagesOption } from './problem.js'
export { LockTimeoutError, LockUnavailableError, ProblemCode } from './errors.js'
export { MemoryLockStore } from './locks/memory.js'
export type { Lease, LockStore } from './locks/types.js'
export type { ConcurrencyOptions, RequirableHeader } from './policy.js'
export type { Preconditions } from './preconditions.js'

/** Plugin options; all optional. */
export interface FastifyPreconditionOptions {
  /** Where write locks live: `'memory'` (default, one process) or a store such as `redisLockStore(...)`. */
  lockStore?: 'memory' | LockStore
  /** How long (ms) a write waits for its resource's lock before a 503. Default 10000. */
  lockTimeout?: number
  /** Seconds sent in Retry-After with a 503. Default 1. */
  retryAfter?: number
  /** Whether a 412 reveals the current ETag (header and `etag` member). Default true. */
  exposeEtag?: boolean
  /** Base URI for problem `type`s (`https://example.com/problems/` → `…/precondition-failed`). Default: `about:blank`. */
  problemTypeBase?: string
  /** Replacement titles and details of the problem bodies, e.g. in another language. */
  messages?: ProblemMessagesOption
  /** Add the precondition headers and the 304/412/428 responses to route schemas for OpenAPI. Default true. */
  documentRoutes?: boolean
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
  }
  interface FastifyReply {
    /**
     * Answers 412 as the plugin does, for a handler that does its own compare-and-swap.
     * `current` is the resource's current validators or ETag, if known.
     */
    preconditionFailed (current?: Validators | string | null): FastifyReply
  }
}

// Per-request slots, declared up front so requests keep one shape.
const kValidators = Symbol('fastify-precondition.validators')
const kGuard = Symbol('fastify-precondition.guard')
const kParsed = Symbol('fastify-precondition.parsed')
const kHeaders = Symbol('fastify-precondition.headers')

type PreconditionRequest = FastifyRequest & {
  [kValidators]: Validators | null | undefined
  [kGuard]: WriteGuard | null
  [kParsed]: Preconditions | null
  [kHeaders]: ConditionalHeaders | null
}
type GuardedResponse = ServerResponse & { [kGuard]?: WriteGuard }

function isThenable<T> (value: unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<T>).then === 'function'
}

/**
 * The lock a write holds, and when it may be let go: once the response is closed, unless the
 * handler is still running for a client that left, in which case once the handler is over.
 * Releasing earlier would let the next write in while this one still writes.
 */
class WriteGuard {
  lease: Lease | null = null
  /** The response has closed (finished or the connection was lost). */
  closed = false
  /** The request was let through to the handler. */
  started = false
  /** The handler is over: its promise settled, or it (or a hook) answered through the reply. */
  settled = false
  /** Inside the handler: its call, and for an async handler until its promise settles. */
  inHandler = false
  /** The response passed onSend. */
  answered = false
  readonly request: FastifyRequest

  constructor (request: FastifyRequest) {
    this.request = request
  }

  /** The write is over: the lock goes as soon as the response has closed too. */
  settle (): void {
    this.settled = true
    if (this.closed) this.release()
  }

  release (): void {
    const lease = this.lease
    if (lease === null) return
    this.lease = null
    try {
      const released = lease.release()
      if (isThenable(released)) released.then(undefined, logReleaseError.bind(this.request))
    } catch (error) {
      logReleaseError.call(this.request, error)
    }
  }
}

function logCloseError (this: FastifyInstance, error: unknown): void {
  this.log.warn({ err: error }, 'fastify-precondition: closing the lock store failed')
}

function logReleaseError (this: FastifyRequest, error: unknown): void {
  this.log.warn({ err: error }, 'fastify-precondition: releasing a lock failed; it expires with its lease')
}

function onResponseClose (this: GuardedResponse): void {
  const guard = this[kGuard] as WriteGuard
  guard.closed = true
  // A finished response with no onSend is a hijacked reply written by a handler that is done.
  if (!guard.started || guard.settled || (this.writableFinished && !guard.inHandler)) guard.release()
}

/**
 * Marks when the handler is over. Fastify sends nothing for a client that left when an async
 * handler resolves undefined, so onSend alone would leave such a write's lock held for ever.
 */
function guardHandler (handler: RouteOptions['handler']): RouteOptions['handler'] {
  return function guardedHandler (this: ThisParameterType<RouteOptions['handler']>, request: FastifyRequest, reply: FastifyReply) {
    const guard = (request as PreconditionRequest)[kGuard]
    if (guard === null) return handler.call(this, request, reply)
    guard.inHandler = true
    let result
    try {
      result = handler.call(this, request, reply)
    } finally {
      guard.inHandler = false
    }
    // A synchronous `return reply` promises an answer through the reply: onSend ends that write.
    // (An async handler's `return reply` resolves once the response ends, or at once for a client
    // that left: the promise cannot tell it from a handler that finished without answering.)
    if (result !== reply && isThenable(result)) {
      guard.inHandler = true
      // Watch the handler's own promise and hand that same promise to Fastify: returning a
      // promise chained on it cost Fastify an extra microtask hop per write (0.84x bare PUT
      // throughput against 0.94x, benchmarks/RESULTS.md). Registered first, this reaction still
      // runs before Fastify's; it also handles a rejection, which Fastify answers from `result`.
      const over = (): void => {
        guard.inHandler = false
        guard.settle()
      }
      result.then(over, over)
      return result
    }
    if (guard.answered) guard.settle()
    return result
  }
}

interface PluginState {
  store: LockStore
  lockTimeout: number
  problems: ProblemWriter
  documentRoutes: boolean
}

function validatePluginOptions (options: FastifyPreconditionOptions): void {
  const { lockStore, lockTimeout, retryAfter, exposeEtag, problemTypeBase, documentRoutes } = options
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
    store: ownStore ? new MemoryLockStore() : options.lockStore as LockStore,
    lockTimeout: options.lockTimeout ?? 10_000,
    problems: new ProblemWriter(options),
    documentRoutes: options.documentRoutes ?? true
  }
  if (state.documentRoutes) shareProblemSchema(fastify)

  fastify.decorateRequest(kValidators as unknown as string, undefined)
  fastify.decorateRequest(kGuard as unknown as string, null)
  fastify.decorateRequest(kParsed as unknown as string, null)
  fastify.decorateRequest(kHeaders as unknown as string, null)
  fastify.decorateRequest('preconditions', {
    getter (this: FastifyRequest): Preconditions {
      const request = this as PreconditionRequest
      let parsed = request[kParsed]
      if (parsed === null) parsed = request[kParsed] = parsePreconditions(request[kHeaders] ?? request.headers)
      return parsed
    }
  })
  fastify.decorateReply('preconditionFailed', function preconditionFailed (this: FastifyReply, current?: Validators | string | null): FastifyReply {
    const etag = typeof current === 'string' ? current : current?.etag
    state.problems.sendFailed(this, Outcome.IF_MATCH_MISMATCH, this.request.url, etag === undefined ? undefined : normalizeEtag(etag))
    return this
  })

  fastify.addHook('onRoute', function (routeOptions) {
    const option = (routeOptions as RouteOptions & { concurrency?: unknown }).concurrency
    if (option === undefined) return
    const policy = toPolicy(option, `${String(routeOptions.method)} ${routeOptions.url}`)
    wireRoute(routeOptions, policy, state)
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

/** Route hooks as a fresh array: user arrays are shared with Fastify's automatic HEAD route. */
function appendHook (routeOptions: RouteOptions, name: 'onRequest' | 'preHandler' | 'onSend', hook: unknown): void {
  const existing = routeOptions[name] as unknown
  const list = existing === undefined ? [] : Array.isArray(existing) ? [...existing] : [existing]
  list.push(hook)
  ;(routeOptions as unknown as Record<string, unknown>)[name] = list
}

function wireRoute (routeOptions: RouteOptions, policy: Policy, state: PluginState): void {
  const { problems } = state
  if (policy.required !== null) {
    const required = policy.required
    const body = problems.required(required)
    appendHook(routeOptions, 'onRequest', function requirePrecondition (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
      if (isSafe(request.method) || hasUsablePrecondition(request.headers, required)) {
        done()
        return
      }
      problems.sendRequired(reply, body, request.url)
    })
  }
  if (policy.validators === null && !policy.lock) return

  const stageHook = buildStageHook(policy, state)
  if ((routeOptions.schema as { headers?: unknown } | undefined)?.headers !== undefined) {
    // A headers schema with additionalProperties: false makes Ajv delete the conditional headers
    // it does not list before preHandler runs, which would turn a guarded write into an unguarded
    // one. Keep them as they arrived.
    appendHook(routeOptions, 'onRequest', keepConditionalHeaders)
  }
  appendHook(routeOptions, policy.stage, stageHook)
  if (policy.stage === 'onRequest' && policy.lock) {
    // The lock is taken before the body is read; Fastify still runs the handler for a client
    // that left during the body, so the last hook before it checks the lock is still held.
    appendHook(routeOptions, 'preHandler', function enterHandler (request: FastifyRequest, _reply: FastifyReply, done: HookHandlerDoneFunction) {
      const guard = (request as PreconditionRequest)[kGuard]
      if (guard === null) {
        done()
      } else if (!guard.closed) {
        guard.started = true
        done()
      }
      // else: the client left and the lock is gone; the handler must not run unguarded.
    })
  }
  appendHook(routeOptions, 'onSend', buildOnSend(policy))
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  if (policy.lock && !methods.every(isSafe)) routeOptions.handler = guardHandler(routeOptions.handler)
}

function buildStageHook (policy: Policy, state: PluginState) {
  const { store, lockTimeout, problems } = state
  const validators = policy.validators
  const key = policy.key ?? ((request: FastifyRequest) => requestPath(request.url))
  const marksStart = policy.stage === 'preHandler'

  function decide (request: PreconditionRequest, reply: FastifyReply, current: Validators | null, done: HookHandlerDoneFunction): void {
    const guard = request[kGuard]
    if (current !== null && typeof current !== 'object') {
      done(new TypeError(`concurrency.validators must return { etag?, lastModified? } or null; got ${typeof current}`))
      return
    }
    const outcome = evaluate(request.method, request[kHeaders] ?? request.headers, current)
    request[kValidators] = current
    if (outcome === Outcome.PROCEED || outcome === Outcome.IGNORE_RANGE) {
      // §13.2.2 step 5: a failed If-Range means the whole representation, so Range goes.
      if (outcome === Outcome.IGNORE_RANGE) delete request.headers.range
      if (guard !== null && marksStart) guard.started = true
      done()
      return
    }
    if (outcomeStatus(outcome) === 304) {
      reply.code(304).send()
      return
    }
    const etag = current?.etag
    problems.sendFailed(reply, outcome, request.url, etag === undefined ? undefined : normalizeEtag(etag))
  }

  function readValidators (request: PreconditionRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (validators === null) {
      const guard = request[kGuard]
      if (guard !== null && marksStart) guard.started = true
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
    if (isThenable<Validators | null>(current)) {
      current.then((value) => decide(request, reply, value, done), done)
    } else {
      decide(request, reply, current, done)
    }
  }

  function lockFailed (request: FastifyRequest, reply: FastifyReply, error: unknown): void {
    const code = (error as { code?: unknown } | null)?.code === ProblemCode.LOCK_TIMEOUT ? ProblemCode.LOCK_TIMEOUT : ProblemCode.LOCK_UNAVAILABLE
    if (code === ProblemCode.LOCK_UNAVAILABLE) request.log.error({ err: error }, 'fastify-precondition: lock store failed; answering 503')
    problems.sendLockProblem(reply, code, request.url)
  }

  return function evaluatePreconditions (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const req = request as PreconditionRequest
    if (!policy.lock || isSafe(request.method)) {
      readValidators(req, reply, done)
      return
    }
    const raw = reply.raw as GuardedResponse
    // The client left before this hook ran: its 'close' has fired, so nothing would release a lock
    // taken now. Take none, and let no handler run unguarded.
    if (raw.destroyed) return
    const guard = new WriteGuard(request)
    req[kGuard] = guard
    raw[kGuard] = guard
    raw.on('close', onResponseClose)
    let lease: Lease | Promise<Lease>
    try {
      lease = store.acquire(key(request), lockTimeout)
    } catch (error) {
      lockFailed(request, reply, error)
      return
    }
    if (!isThenable<Lease>(lease)) {
      guard.lease = lease
      readValidators(req, reply, done)
      return
    }
    lease.then((held) => {
      guard.lease = held
      // The client left while this write waited: give the lock to the next one.
      if (guard.closed) guard.release()
      else readValidators(req, reply, done)
    }, (error) => {
      if (!guard.closed) lockFailed(request, reply, error)
    })
  }
}

function setValidatorHeaders (reply: FastifyReply, current: Validators | null | undefined): void {
  if (current === null || current === undefined) return
  if (current.etag !== undefined) reply.header('etag', normalizeEtag(current.etag))
  if (current.lastModified !== undefined) reply.header('last-modified', formatHttpDate(current.lastModified))
}

function buildOnSend (policy: Policy) {
  const validators = policy.validators
  return function sendValidators (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (error: Error | null, payload?: unknown) => void): void {
    const req = request as PreconditionRequest
    const guard = req[kGuard]
    if (guard !== null) {
      guard.answered = true
      // An answer sent from inside the handler ends the write only when the handler returns.
      if (!guard.inHandler) guard.settle()
    }
    const status = reply.statusCode
    if (validators === null || !((status >= 200 && status < 300) || status === 304) ||
      reply.hasHeader('etag') || reply.hasHeader('last-modified')) {
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
    let current
    try {
      current = validators(request)
    } catch (error) {
      request.log.warn({ err: error }, 'fastify-precondition: validators failed after the write; no ETag sent')
      done(null, payload)
      return
    }
    if (isThenable<Validators | null>(current)) {
      current.then((value) => {
        setValidatorHeaders(reply, value)
        done(null, payload)
      }, (error) => {
        request.log.warn({ err: error }, 'fastify-precondition: validators failed after the write; no ETag sent')
        done(null, payload)
      })
      return
    }
    setValidatorHeaders(reply, current)
    done(null, payload)
  }
}

/** The plugin. */
export const fastifyPrecondition = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-precondition'
})

export default fastifyPrecondition
