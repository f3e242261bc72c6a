// node-postgres (`pg`): a Client or a PoolClient inside BEGIN … COMMIT, or anything with its
// `query(text, values)` (a Pool, for a store); a Pool for `inTransaction`.
import type { SqlDialect, SqlExecutor, SqlLayer, SqlResult } from '../executor.js'
import { ENGINE_NAME, hasMethod } from '../shape.js'

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
export function pgResult (answer: PgResult | PgResult[] | undefined, from: string): SqlResult {
  // Several statements in one text (the simple protocol): one result each, the last one counts.
  const result = Array.isArray(answer) ? answer[answer.length - 1] : answer
  const rowCount = result?.rowCount
  if (rowCount !== null && typeof rowCount !== 'number') {
    throw new TypeError(`fastify-precondition: ${from} resolved to no row count (got ${typeof result === 'object' && result !== null ? `an object with ${Object.keys(result).join(', ')}` : String(result)}), as node-postgres' query(text, values) gives`)
  }
  return { rows: result?.rows ?? [], rowCount: rowCount ?? 0 }
}

export function pgExecutor (client: Client): SqlExecutor {
  return {
    async query (text, values) {
      // Without values, the simple protocol: a migration's text may hold several statements.
      return pgResult(await (values.length === 0 ? client.query(text) : client.query(text, values)), 'query(text, values)')
    }
  }
}

export const nodePostgres: SqlLayer = {
  accepts: 'a node-postgres Client or PoolClient inside BEGIN … COMMIT (anything with its query(text, values) giving { rowCount })',
  opens: 'a node-postgres Pool',
  recognize (tx: unknown, dialect: SqlDialect) {
    if (!hasMethod(tx, 'query')) return false
    return dialect === 'postgres' || `a node-postgres client is ${ENGINE_NAME.postgres}'s, and this store is ${ENGINE_NAME[dialect]}'s`
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
    try {
      await client.query('BEGIN')
      const result = await fn(client)
      await client.query('COMMIT')
      return result
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
  }
}
