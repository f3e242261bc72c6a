// Kysely: the `trx` of `db.transaction().execute(async (trx) => …)`, on any dialect (the text is
// handed to its driver as it is); `db.transaction().execute` for `inTransaction`.
import type { SqlDialect, SqlExecutor, SqlLayer } from '../executor.js'
import { hasMethod } from '../shape.js'

interface KyselyLike {
  readonly isTransaction: boolean
  executeQuery (query: unknown): Promise<{ rows: any[], numAffectedRows?: bigint }>
  transaction (): { execute<T> (fn: (trx: KyselyLike) => Promise<T>): Promise<T> }
}

let ids = 0

/**
 * What Kysely's `CompiledQuery.raw(text, values)` makes, built here so that Kysely is not imported:
 * the text, its parameters, the query as a raw node, and an id of its own (result plugins key on it).
 */
function compiledRaw (sql: string, parameters: unknown[]): unknown {
  return Object.freeze({
    sql,
    query: Object.freeze({ kind: 'RawNode', sqlFragments: Object.freeze([sql]), parameters: Object.freeze([]) }),
    parameters: Object.freeze([...parameters]),
    queryId: Object.freeze({ queryId: `fastify-precondition-${++ids}` })
  })
}

function isKysely (value: unknown): boolean {
  return hasMethod(value, 'executeQuery') && hasMethod(value, 'transaction') && typeof (value as KyselyLike).isTransaction === 'boolean'
}

export const kysely: SqlLayer = {
  accepts: 'the trx of Kysely\'s db.transaction().execute(async (trx) => …)',
  opens: 'a Kysely instance',
  recognize (tx: unknown) {
    if (!isKysely(tx)) return false
    return (tx as KyselyLike).isTransaction || 'a Kysely instance is not a transaction: pass the trx of db.transaction().execute(async (trx) => …)'
  },
  executor (trx: KyselyLike): SqlExecutor {
    return {
      async query (text, values) {
        const result = await trx.executeQuery(compiledRaw(text, values))
        // numAffectedRows: a bigint, for INSERT, UPDATE, DELETE and MERGE only.
        return { rows: result.rows, rowCount: result.numAffectedRows === undefined ? result.rows.length : Number(result.numAffectedRows) }
      }
    }
  },
  isDatabase (db: unknown) {
    return isKysely(db) && !(db as KyselyLike).isTransaction
  },
  async transaction<T> (db: KyselyLike, _dialect: SqlDialect, fn: (trx: KyselyLike) => Promise<T>): Promise<T> {
    return await db.transaction().execute(fn)
  }
}
