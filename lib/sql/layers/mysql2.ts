// mysql2 (its promise API): a PoolConnection (or Connection) after `beginTransaction()`, or
// anything with its `query(text, values)` on MySQL (a Pool, for a store); a promise Pool for
// `inTransaction`.
import type { SqlDialect, SqlExecutor, SqlLayer, SqlResult } from '../executor.js'
import { ENGINE_NAME, hasMethod } from '../shape.js'

interface Connection {
  query (text: string, values?: unknown[]): Promise<unknown>
  beginTransaction (): Promise<void>
  commit (): Promise<void>
  rollback (): Promise<void>
  release (): void
  destroy (): void
  on (event: 'error', listener: (error: Error) => void): unknown
  off (event: 'error', listener: (error: Error) => void): unknown
}

interface Pool {
  getConnection (): Promise<Connection>
}

/**
 * A MySQL result as `{ rows, rowCount }`: the rows of a SELECT, or the header of a write (its
 * `affectedRows`). mysql2 and the layers on it give it as the first of `[result, fields]`.
 */
export function mysqlResult (result: unknown, from: string): SqlResult {
  if (Array.isArray(result)) return { rows: result, rowCount: result.length }
  const affected = (result as { affectedRows?: unknown } | null)?.affectedRows
  if (typeof affected !== 'number') {
    throw new TypeError(`fastify-precondition: ${from} resolved to neither rows nor a header with affectedRows, as mysql2's promise API gives`)
  }
  return { rows: [], rowCount: affected }
}

export const mysql2: SqlLayer = {
  accepts: 'a mysql2 promise PoolConnection after beginTransaction()',
  opens: 'a mysql2 promise Pool',
  recognize (tx: unknown, dialect: SqlDialect) {
    if (!hasMethod(tx, 'query')) return false
    if (hasMethod(tx, 'beginTransaction')) return dialect === 'mysql' || `a mysql2 connection is ${ENGINE_NAME.mysql}'s, and this store is ${ENGINE_NAME[dialect]}'s`
    if (dialect !== 'mysql') return false
    // node-postgres' Client and PoolClient, by methods of their own.
    return !hasMethod(tx, 'escapeLiteral') || `a node-postgres client is ${ENGINE_NAME.postgres}'s, and this store is ${ENGINE_NAME.mysql}'s`
  },
  executor (connection: Connection): SqlExecutor {
    return {
      async query (text, values) {
        const result = await connection.query(text, values)
        if (!Array.isArray(result)) throw new TypeError('fastify-precondition: query(text, values) did not resolve to [result, fields]: pass a connection of mysql2\'s promise API (mysql2/promise)')
        return mysqlResult(result[0], 'query(text, values)')
      }
    }
  },
  isDatabase (db: unknown) {
    return hasMethod(db, 'getConnection') && hasMethod(db, 'query')
  },
  async transaction<T> (pool: Pool, _dialect: SqlDialect, fn: (tx: Connection) => Promise<T>): Promise<T> {
    const connection = await pool.getConnection()
    // A connection that failed (its server went away) is destroyed, not given back to the pool.
    let broken = false
    const onError = (): void => { broken = true }
    connection.on('error', onError)
    let result: T
    try {
      await connection.beginTransaction()
      result = await fn(connection)
      await connection.commit()
    } catch (error) {
      if (!broken) {
        try {
          await connection.rollback()
        } catch {
          broken = true
        }
      }
      throw error
    } finally {
      connection.off('error', onError)
      if (broken) connection.destroy()
      else connection.release()
    }
    return result
  }
}
