// postgres.js (`postgres`): the `sql` of `sql.begin(async (sql) => …)`, or the `sql` itself (for a
// store: its pool); `sql.begin` for `inTransaction`. Its values are encoded by the type the server
// gives each parameter: a string for a json parameter would be encoded again, so what a store
// writes as JSON goes as text (`$5::text::json`).
import type { SqlDialect, SqlExecutor, SqlLayer } from '../executor.js'
import { ENGINE_NAME, hasMethod } from '../shape.js'

interface Sql {
  unsafe (text: string, values?: unknown[]): PromiseLike<any[] & { count?: number | null }>
  begin<T> (fn: (sql: Sql) => Promise<T>): Promise<T>
}

/** Whether `value` is a postgres.js `sql` (a function with `unsafe`), a transaction's or not. */
export function isPostgresJs (value: unknown): boolean {
  return typeof value === 'function' && hasMethod(value, 'unsafe')
}

export function postgresJsExecutor (sql: Sql): SqlExecutor {
  return {
    async query (text, values) {
      const result = await sql.unsafe(text, values)
      return { rows: result, rowCount: Number(result.count ?? 0) }
    }
  }
}

export const postgresJs: SqlLayer = {
  accepts: 'the sql of postgres.js\' sql.begin(async (sql) => …)',
  opens: 'a postgres.js sql',
  recognize (tx: unknown, dialect: SqlDialect) {
    if (!isPostgresJs(tx)) return false
    return dialect === 'postgres' || `a postgres.js sql is ${ENGINE_NAME.postgres}'s, and this store is ${ENGINE_NAME[dialect]}'s`
  },
  executor: postgresJsExecutor,
  isDatabase (db: unknown) {
    return isPostgresJs(db) && hasMethod(db, 'begin')
  },
  async transaction<T> (sql: Sql, _dialect: SqlDialect, fn: (tx: Sql) => Promise<T>): Promise<T> {
    return await sql.begin(fn)
  }
}
