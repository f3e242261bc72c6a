// The public surface of fastify-precondition: the plugin, and what a user's code names.
import fp from 'fastify-plugin'
import { plugin } from './plugin.js'

export type { FastifyPreconditionOptions } from './options.js'
export { strongEtag } from './http/etag.js'
export { evaluate, Outcome, outcomeStatus, outcomeHeader, type Validators, type ConditionalHeaders } from './http/evaluate.js'
export { parseEntityTags, strongCompare, weakCompare, type EntityTagCondition } from './http/entity-tag.js'
export { parseHttpDate, formatHttpDate } from './http/http-date.js'
export { ifMatchVersions, type Preconditions } from './http/preconditions.js'
export { ProblemDetailsSchema, PROBLEM_CONTENT_TYPE, PreconditionProblemError, defaultMessages, type ProblemDetails, type ProblemMessages, type ProblemMessagesOption } from './problem.js'
export { LockLostError, LockTimeoutError, LockUnavailableError, IdempotencyClaimLostError, ProblemCode } from './errors.js'
export { MemoryLockStore } from './locks/memory.js'
export type { Lease, LeaseLossListener, LockStore, RequestLock } from './locks/types.js'
export type { ConcurrencyOptions, IdempotencyOptions, RequirableHeader } from './policy.js'
export { MemoryIdempotencyStore, memoryIdempotencyStore, type MemoryIdempotencyStoreOptions } from './idempotency/memory.js'
export type { IdempotencyStore, ClaimResult, StoredResponse, TransactionClient } from './idempotency/store.js'
export type { RequestIdempotency } from './idempotency/transaction.js'

/** The plugin. */
export const fastifyPrecondition = fp(plugin, {
  fastify: '5.x',
  name: 'fastify-precondition'
})

export default fastifyPrecondition
