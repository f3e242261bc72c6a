// TypeORM: the EntityManager of `dataSource.transaction(async (manager) => …)`, recognized by the
// mark TypeORM gives its own objects (`'@instanceof'`, a global symbol); `dataSource.transaction`
// for `inTransaction`. Its `manager.query` answers an UPDATE with `[rows, count]` and a SELECT with
// rows, so statements go through the manager's QueryRunner, asked for its structured result
// (`records`, `affected`), which has the same shape for every statement and driver.
import type { SqlDialect, SqlExecutor, SqlLayer } from '../executor.js'
import { ENGINE_NAME } from '../shape.js'

interface QueryRunner {
  query (text: string, values: unknown[], structured: true): Promise<{ records?: any[], affected?: number | null }>
}

interface EntityManager {
  readonly queryRunner?: QueryRunner
  readonly connection: { readonly options: { readonly type?: unknown } }
}

interface DataSource {
  transaction<T> (fn: (manager: EntityManager) => Promise<T>): Promise<T>
}

function marked (value: unknown, name: string): boolean {
  return typeof value === 'object' && value !== null && (value as Record<string, unknown>)['@instanceof'] === Symbol.for(name)
}

function engineOf (manager: EntityManager): SqlDialect | null {
  const type = String(manager.connection?.options?.type)
  if (/postgres|cockroach/i.test(type)) return 'postgres'
  if (/mysql|maria/i.test(type)) return 'mysql'
  return null
}

export const typeorm: SqlLayer = {
  accepts: 'the EntityManager of TypeORM\'s dataSource.transaction(async (manager) => …)',
  opens: 'a TypeORM DataSource',
  recognize (tx: unknown, dialect: SqlDialect) {
    if (!marked(tx, 'EntityManager')) return false
    const manager = tx as EntityManager
    const engine = engineOf(manager)
    if (engine !== null && engine !== dialect) return `a TypeORM DataSource on ${ENGINE_NAME[engine]} is not ${ENGINE_NAME[dialect]}'s`
    return manager.queryRunner !== undefined || 'this TypeORM EntityManager is in no transaction: pass the manager of dataSource.transaction(async (manager) => …)'
  },
  executor (manager: EntityManager): SqlExecutor {
    const runner = manager.queryRunner!
    return {
      async query (text, values) {
        const result = await runner.query(text, values, true)
        const rows = result.records ?? []
        return { rows, rowCount: typeof result.affected === 'number' ? result.affected : rows.length }
      }
    }
  },
  isDatabase (db: unknown) {
    return marked(db, 'DataSource')
  },
  async transaction<T> (db: DataSource, _dialect: SqlDialect, fn: (manager: EntityManager) => Promise<T>): Promise<T> {
    return await db.transaction(fn)
  }
}
