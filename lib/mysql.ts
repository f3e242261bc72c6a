// fastify-precondition/mysql: the Idempotency-Key store in MySQL or MariaDB, whose answers can be
// recorded in the handler's own transaction. mysql2 is the caller's (an optional peer): nothing
// here imports it.
export {
  mysqlIdempotencyStore,
  MysqlIdempotencyStore,
  idempotencyTableSql,
  type MysqlIdempotencyStoreOptions,
  type MysqlIdempotencyPool
} from './mysql/idempotency-store.js'
export { IdempotencyClaimLostError } from './errors.js'
export type { StoredResponse, TransactionClient, IdempotencyStore, ClaimResult } from './idempotency/store.js'
