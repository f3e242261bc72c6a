// Drizzle ORM, on any PostgreSQL or MySQL driver: the `tx` of `db.transaction(async (tx) => …)`;
// `db.transaction` for `inTransaction`. Recognized as drizzle-orm's own `is(tx, PgTransaction)`
// recognizes it (by the entity kind each of its classes carries under a global symbol), without
// importing drizzle-orm. A statement goes through `tx.execute`, as an object that is its own SQL
// and compiles to the text and values as they are: the driver receives them untouched.
import { mysqlResult } from './mysql2.js'
import { pgResult } from './node-postgres.js'
import type { SqlDialect, SqlExecutor, SqlLayer } from '../executor.js'
import { ENGINE_NAME } from '../shape.js'

const entityKind = Symbol.for('drizzle:entityKind')

interface Database {
  execute (query: unknown): PromiseLike<unknown>
  transaction<T> (fn: (tx: Database) => Promise<T>): Promise<T>
}

/** drizzle-orm's `is(value, Class)`, by the class's entity kind (e.g. 'PgTransaction'). */
export function isDrizzle (value: unknown, kind: string): boolean {
  if (typeof value !== 'object' || value === null) return false
  let cls = (Object.getPrototypeOf(value) as { constructor?: unknown } | null)?.constructor as Record<symbol, unknown> | null | undefined
  while (typeof cls === 'function') {
    if (entityKind in cls && cls[entityKind] === kind) return true
    cls = Object.getPrototypeOf(cls) as Record<symbol, unknown> | null
  }
  return false
}

/** The engine of a Drizzle database or transaction, or null when `value` is none. */
function engineOf (value: unknown): SqlDialect | null {
  if (isDrizzle(value, 'PgDatabase')) return 'postgres'
  if (isDrizzle(value, 'MySqlDatabase')) return 'mysql'
  return null
}

/** What `tx.execute` takes (an SQLWrapper), compiling to `text` and `values` as they are. */
function rawSql (text: string, values: unknown[]): unknown {
  const sql = {
    getSQL: () => sql,
    toQuery: () => ({ sql: text, params: values })
  }
  return sql
}

/** A driver's result: pg's `{ rows, rowCount }`, postgres.js' rows with `count`, mysql2's `[result, fields]`. */
function drizzleResult (result: any, dialect: SqlDialect): ReturnType<typeof pgResult> {
  if (dialect === 'mysql') return mysqlResult(Array.isArray(result) ? result[0] : result, 'Drizzle\'s tx.execute')
  if (Array.isArray(result)) return { rows: result, rowCount: Number((result as { count?: number | null }).count ?? result.length) }
  return pgResult(result, 'Drizzle\'s tx.execute')
}

export const drizzle: SqlLayer = {
  accepts: 'the tx of Drizzle\'s db.transaction(async (tx) => …)',
  opens: 'a Drizzle database',
  recognize (tx: unknown, dialect: SqlDialect) {
    const engine = engineOf(tx)
    if (engine === null) return false
    if (engine !== dialect) return `a Drizzle ${ENGINE_NAME[engine]} database is not ${ENGINE_NAME[dialect]}'s`
    return isDrizzle(tx, engine === 'postgres' ? 'PgTransaction' : 'MySqlTransaction') ||
      'a Drizzle database is not a transaction: pass the tx of db.transaction(async (tx) => …)'
  },
  executor (tx: Database, dialect: SqlDialect): SqlExecutor {
    return {
      async query (text, values) {
        return drizzleResult(await tx.execute(rawSql(text, values)), dialect)
      }
    }
  },
  isDatabase (db: unknown) {
    return engineOf(db) !== null
  },
  async transaction<T> (db: Database, _dialect: SqlDialect, fn: (tx: Database) => Promise<T>): Promise<T> {
    return await db.transaction(fn)
  }
}
