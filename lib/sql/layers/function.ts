// Anything else: a function `(text, values) => Promise<{ rowCount, rows? }>` that runs the
// statement in the caller's open transaction (Prisma's `tx.$executeRawUnsafe(text, ...values)`,
// wrapped; a driver of your own).
import type { SqlExecutor, SqlLayer } from '../executor.js'

type Run = (text: string, values: unknown[]) => Promise<{ rowCount?: unknown, rows?: any[] }>

export const sqlFunction: SqlLayer = {
  accepts: 'or a function (text, values) => Promise<{ rowCount, rows? }> that runs it in your transaction',
  recognize (tx: unknown) {
    return typeof tx === 'function'
  },
  executor (run: Run): SqlExecutor {
    return {
      async query (text, values) {
        const result = await run(text, values)
        const rowCount = result?.rowCount
        if (typeof rowCount !== 'number') {
          throw new TypeError(`fastify-precondition: the function given as a transaction resolved to ${JSON.stringify(result) ?? String(result)}; it must resolve to { rowCount: number, rows? }`)
        }
        return { rows: result.rows ?? [], rowCount }
      }
    }
  }
}
