// Knex: the `trx` of `knex.transaction(async (trx) => …)`, a function with `raw`, marked
// `isTransaction`; `knex.transaction` for `inTransaction`. Its bindings are `?`: PostgreSQL's `$n`
// are turned into them (../placeholders.ts).
import { positional } from '../placeholders.js'
import { mysqlResult } from './mysql2.js'
import { pgResult } from './node-postgres.js'
import type { SqlDialect, SqlExecutor, SqlLayer } from '../executor.js'
import { ENGINE_NAME, hasMethod } from '../shape.js'

interface Knex {
  (table: string): unknown
  raw (text: string, bindings: unknown[]): PromiseLike<unknown>
  transaction<T> (fn: (trx: Knex) => Promise<T>): Promise<T>
  readonly isTransaction?: boolean
  readonly client: { readonly dialect?: unknown }
}

function isKnex (value: unknown): boolean {
  return typeof value === 'function' && hasMethod(value, 'raw') && hasMethod(value, 'transaction') &&
    typeof (value as Knex).client === 'object' && (value as Knex).client !== null
}

/** The engine of Knex's client ('postgresql', 'mysql', 'mysql2', …), when it is one of the two. */
function engineOf (knex: Knex): SqlDialect | null {
  const name = String(knex.client.dialect)
  if (/postgres|pg|cockroach|redshift/i.test(name)) return 'postgres'
  if (/mysql|maria/i.test(name)) return 'mysql'
  return null
}

export const knex: SqlLayer = {
  accepts: 'the trx of knex.transaction(async (trx) => …)',
  opens: 'a Knex instance',
  recognize (tx: unknown, dialect: SqlDialect) {
    if (!isKnex(tx)) return false
    const engine = engineOf(tx as Knex)
    if (engine !== null && engine !== dialect) return `a Knex instance on ${ENGINE_NAME[engine]} is not ${ENGINE_NAME[dialect]}'s`
    return (tx as Knex).isTransaction === true || 'a Knex instance is not a transaction: pass the trx of knex.transaction(async (trx) => …)'
  },
  executor (trx: Knex, dialect: SqlDialect): SqlExecutor {
    return {
      async query (text, values) {
        if (dialect === 'mysql') return mysqlResult(((await trx.raw(text, values)) as unknown[])[0], 'Knex\'s trx.raw')
        const statement = positional(text, values)
        return pgResult(await trx.raw(statement.text, statement.values) as { rowCount?: number }, 'Knex\'s trx.raw')
      }
    }
  },
  isDatabase (db: unknown) {
    return isKnex(db) && (db as Knex).isTransaction !== true
  },
  async transaction<T> (db: Knex, _dialect: SqlDialect, fn: (trx: Knex) => Promise<T>): Promise<T> {
    return await db.transaction(fn)
  }
}
