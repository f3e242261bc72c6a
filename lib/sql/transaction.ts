// What `request.idempotency.complete(tx, body)` and a SQL store accept as a transaction: each data
// layer's own transaction object, as the layer hands it to the user, described by its shape only,
// so the plugin's typings need none of these packages installed. Each type is the least a layer's
// transaction type has that the others' do not; lib/sql/layers/ recognizes the same shapes at run
// time.

/**
 * node-postgres (`pg`): a `Client` or a `PoolClient` inside BEGIN … COMMIT, or anything with its
 * `query(text, values)` resolving to `{ rowCount }`. TypeORM's `EntityManager` has this shape too.
 */
export interface NodePostgresTransaction {
  query (text: string, values?: any[]): Promise<{ rowCount: number | null }>
}

/** postgres.js (`postgres`): the `sql` of `sql.begin(async (sql) => …)`. */
export interface PostgresJsTransaction {
  unsafe (query: string, parameters?: any[], queryOptions?: any): PromiseLike<unknown>
}

/** Kysely: the `trx` of `db.transaction().execute(async (trx) => …)`. */
export interface KyselyTransaction {
  executeQuery (query: any): Promise<{ rows: unknown[], numAffectedRows?: bigint }>
}

/** Drizzle ORM (PostgreSQL or MySQL drivers): the `tx` of `db.transaction(async (tx) => …)`. */
export interface DrizzleTransaction {
  execute (query: any): PromiseLike<unknown>
  rollback (): unknown
}

/** Knex: the `trx` of `knex.transaction(async (trx) => …)`. */
export interface KnexTransaction {
  raw (sql: string, bindings: any): PromiseLike<unknown>
  readonly isTransaction?: boolean
}

/** TypeORM: the `EntityManager` of `dataSource.transaction(async (manager) => …)`. */
export interface TypeOrmEntityManager {
  query (query: string, parameters?: any[]): Promise<any>
  readonly queryRunner?: unknown
}

/** mysql2: a promise `PoolConnection` (or `Connection`) after `beginTransaction()`. */
export interface Mysql2Transaction {
  query (sql: string, values?: any): Promise<unknown>
  beginTransaction (): Promise<void>
}

/**
 * Anything else (Prisma's `tx.$executeRawUnsafe`, …): a function that runs `text` (with the
 * engine's own placeholders: `$1` for PostgreSQL, `?` for MySQL) with `values` in the open
 * transaction, and says how many rows it changed or returned.
 */
export type SqlFunction = (text: string, values: unknown[]) => Promise<{ rowCount: number, rows?: unknown[] }>

/** The transaction of any data layer `complete(tx, body)` accepts (see each type). */
export type SqlTransaction =
  | NodePostgresTransaction
  | PostgresJsTransaction
  | KyselyTransaction
  | DrizzleTransaction
  | KnexTransaction
  | TypeOrmEntityManager
  | Mysql2Transaction
  | SqlFunction
