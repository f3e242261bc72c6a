// node-postgres (`pg`): a Client or a PoolClient inside BEGIN … COMMIT, or anything with its
// `query(text, values)` (a Pool, for a store); a Pool for `inTransaction`.
import type { SqlDialect, SqlExecutor, SqlLayer, SqlResult } from '../executor.js'
import { describe, hasMethod } from '../shape.js'

interface PgResult { rows?: any[], rowCount?: number | null }

interface Client {
  query (text: string, values?: unknown[]): Promise<PgResult | PgResult[]>
}

interface PoolClient extends Client {
  on (event: 'error', listener: (error: Error) => void): unknown
  off (event: 'error', listener: (error: Error) => void): unknown
  release (destroy?: Error | boolean): void
}

interface Pool {
  connect (): Promise<PoolClient>
}

/** node-postgres' result as `{ rows, rowCount }`; a result without a row count is no pg result. */
export function pgResult (result: PgResult | undefined, from: string): SqlResult {
  const rowCount = result?.rowCount
  if (rowCount !== null && typeof rowCount !== 'number') {
    throw new TypeError(`fastify-precondition: ${from} resolved to no row count (got ${describe(result)}), as node-postgres' query(text, values) gives`)
  }
  return { rows: result?.rows ?? [], rowCount: rowCount ?? 0 }
}

export function pgExecutor (client: Client): SqlExecutor {
  return {
    async query (text, values) {
      if (values.length > 0) return pgResult(await client.query(text, values) as PgResult, 'query(text, values)')
      // Without values, the simple protocol: a migration's text may hold several statements, and
      // then gives one result each; the last one counts.
      const answer = await client.query(text)
      return pgResult(Array.isArray(answer) ? answer[answer.length - 1] : answer, 'query(text)')
    }
  }
}

export const nodePostgres: SqlLayer = {
  accepts: 'a node-postgres Client or PoolClient inside BEGIN … COMMIT (anything with its query(text, values) giving { rowCount })',
  opens: 'a node-postgres Pool',
  // On MySQL, what has a `query` is mysql2's (that layer refuses node-postgres' own clients).
  recognize (tx: unknown, dialect: SqlDialect) {
    return dialect === 'postgres' && hasMethod(tx, 'query')
  },
  executor: pgExecutor,
  isDatabase (db: unknown) {
    return hasMethod(db, 'connect') && hasMethod(db, 'query') && typeof (db as { totalCount?: unknown }).totalCount === 'number'
  },
  async transaction<T> (pool: Pool, _dialect: SqlDialect, fn: (tx: PoolClient) => Promise<T>): Promise<T> {
    const client = await pool.connect()
    // A checked-out client whose backend goes away (terminated, a restart, a failover) emits
    // 'error': without a listener that kills the process. Such a client is broken: released with
    // the error, the pool destroys it rather than handing it to the next request.
    let broken: Error | undefined
    const onError = (error: Error): void => { broken ??= error }
    client.on('error', onError)
    let result: T
    try {
      await client.query('BEGIN')
      result = await fn(client)
      await client.query('COMMIT')
    } catch (error) {
      if (broken === undefined) {
        try {
          await client.query('ROLLBACK')
        } catch (rollbackFailed) {
          broken = rollbackFailed as Error
        }
      }
      throw error
    } finally {
      client.off('error', onError)
      client.release(broken ?? false)
    }
    return result
  }
}
