// One way to run a statement whatever the data layer: `executorOf(tx, dialect)` recognizes the
// transaction a user's data layer handed them (one module per layer in ./layers/, tried in
// order) and reduces it to `query(text, values) → { rows, rowCount }`; `inTransaction(db, dialect,
// fn)` opens a transaction on a layer's database object and hands `fn` the layer's own
// transaction. Nothing here imports a layer's package: each is recognized by its shape.
import { drizzle } from './layers/drizzle.js'
import { knex } from './layers/knex.js'
import { kysely } from './layers/kysely.js'
import { mysql2 } from './layers/mysql2.js'
import { nodePostgres } from './layers/node-postgres.js'
import { postgresJs } from './layers/postgres-js.js'
import { sqlFunction } from './layers/function.js'
import { typeorm } from './layers/typeorm.js'
import { describe, ENGINE_NAME } from './shape.js'

/** The engine a statement's text is written for: its placeholders are `$1` or `?`. */
export type SqlDialect = 'postgres' | 'mysql'

export interface SqlResult {
  /** The rows a SELECT (or a RETURNING) gave, by column name. */
  rows: any[]
  /** How many rows the statement returned (SELECT) or changed (INSERT, UPDATE, DELETE). */
  rowCount: number
}

/** A transaction or a pool, reduced to the one thing a store needs of it. */
export interface SqlExecutor {
  /** Runs `text`, written with the dialect's own placeholders, with `values`. */
  query (text: string, values: unknown[]): Promise<SqlResult>
}

/** One data layer: how its transactions (and databases) are recognized and used. */
export interface SqlLayer {
  /** Its transaction, as a user would name it: for the error that lists what is accepted. */
  readonly accepts: string
  /** Its database object that `inTransaction` opens a transaction on, when it has one. */
  readonly opens?: string
  /**
   * Whether `tx` is this layer's transaction: true; false when it is not this layer's; a sentence
   * when it is this layer's but cannot be used as asked (another engine, not a transaction).
   */
  recognize (tx: unknown, dialect: SqlDialect): boolean | string
  executor (tx: any, dialect: SqlDialect): SqlExecutor
  /** Whether `db` is this layer's database object (`opens`). */
  isDatabase? (db: unknown): boolean
  transaction? <T>(db: any, dialect: SqlDialect, fn: (tx: any) => Promise<T>): Promise<T>
}

// In this order: a Drizzle transaction has a `query` property and a Knex one is a function, so
// the layers with a mark of their own come before the shapes any object may have.
const LAYERS: readonly SqlLayer[] = [drizzle, typeorm, knex, postgresJs, kysely, mysql2, nodePostgres, sqlFunction]
/** The same, in the order a refusal names them. */
const NAMED: readonly SqlLayer[] = [nodePostgres, postgresJs, kysely, drizzle, knex, typeorm, mysql2, sqlFunction]

function refused (what: string, dialect: SqlDialect, value: unknown, accepted: string[]): TypeError {
  return new TypeError(`fastify-precondition: ${what} is none it knows for ${ENGINE_NAME[dialect]} (got ${describe(value)}); it takes ${accepted.join('; ')}`)
}

/**
 * The executor of `tx`, a data layer's open transaction (or a store's pool). Throws a TypeError
 * naming every kind it accepts when `tx` is none of them, before any SQL runs.
 */
export function executorOf (tx: unknown, dialect: SqlDialect): SqlExecutor {
  for (const layer of LAYERS) {
    const mine = layer.recognize(tx, dialect)
    if (mine === true) return layer.executor(tx, dialect)
    if (mine !== false) throw new TypeError(`fastify-precondition: ${mine}`)
  }
  throw refused('the transaction', dialect, tx, NAMED.map((layer) => layer.accepts))
}

/**
 * Opens a transaction on `db` (a node-postgres Pool, a postgres.js `sql`, a Kysely or Drizzle
 * database, a Knex instance, a TypeORM DataSource, a mysql2 promise Pool), hands `fn` the layer's
 * own transaction object, commits when `fn` resolves and rolls back when it throws.
 */
export async function inTransaction<T> (db: unknown, dialect: SqlDialect, fn: (tx: unknown) => Promise<T>): Promise<T> {
  const layer = LAYERS.find((each) => each.isDatabase?.(db) === true)
  if (layer === undefined) {
    throw refused('the database', dialect, db, NAMED.flatMap((each) => each.opens === undefined ? [] : [each.opens]))
  }
  return await layer.transaction!(db, dialect, fn)
}
