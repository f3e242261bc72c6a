// The error `request.idempotency.complete(tx, body)` throws when this request no longer holds its
// Idempotency-Key (its lease ran out and another request claimed the key): thrown inside the
// handler's transaction, so the transaction rolls back and the change is not applied twice.
import createError, { type FastifyErrorConstructor } from '@fastify/error'

/** The code of `IdempotencyClaimLostError`. */
export const IDEMPOTENCY_CLAIM_LOST = 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST'

// Written out from a named type import, as in errors.ts, so the declaration resolves under every
// moduleResolution.
type ClaimLostErrorConstructor = FastifyErrorConstructor<{ code: typeof IDEMPOTENCY_CLAIM_LOST, statusCode: 409 }, [string]>

/**
 * `new IdempotencyClaimLostError(key)`: this request's claim on `key` was lost, its answer was not
 * recorded, and the transaction it was to be recorded in must roll back. 409: another request
 * with the key runs.
 */
export const IdempotencyClaimLostError: ClaimLostErrorConstructor = createError(IDEMPOTENCY_CLAIM_LOST,
  'The claim on Idempotency-Key "%s" was lost (its lease ended and another request claimed the key): roll the transaction back', 409)
