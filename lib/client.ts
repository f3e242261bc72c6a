// The client side of a lost-update-safe write: read, change, write back conditionally, and on
// 412 read again and reapply the change. Uses the global fetch (Node 20+, browsers, Deno) and
// nothing else, so API clients can import it without the plugin or Fastify.
//
// The entry point of `fastify-precondition/client`; the helpers live in lib/client/, which imports
// nothing of the rest of lib/.
export { conditionalUpdate, type ConditionalUpdateOptions, type ConditionalUpdateResult } from './client/conditional-update.js'
export { idempotentWrite, type IdempotentWriteOptions } from './client/idempotent-write.js'
export type { WriteOptions } from './client/options.js'
export type { WriteResult } from './client/answers.js'
export {
  AnswerNotKeptError, ConditionalUpdateError, OutcomeUnknownError, PreconditionFailedError, PreconditionRequiredError, ReadFailedError,
  ServiceUnavailableError, UnexpectedResponseError, type ProblemDetails, type UnsettledWrite
} from './client/errors.js'
export { retryDelay } from './client/backoff.js'
export { newIdempotencyKey } from './client/keys.js'
