// fastify-precondition/postgres: the Idempotency-Key store in PostgreSQL, whose answers can be
// recorded in the handler's own transaction. node-postgres is the caller's (an optional peer):
// nothing here imports it.
export {
  pgIdempotencyStore,
  PgIdempotencyStore,
  idempotencyTableSql,
  type PgIdempotencyStoreOptions,
  type PgIdempotencyPool
} from './postgres/idempotency-store.js'
export { IdempotencyClaimLostError } from './errors.js'
export type { StoredResponse, TransactionClient, IdempotencyStore, ClaimResult } from './idempotency/store.js'
