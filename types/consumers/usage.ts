// What an application writes, compiled against the built package under one module setting per
// folder beside this file (see test/types-consumers.test.ts). Each `@ts-expect-error` is a misuse
// that must be refused: a type that silently became `any` would let it through and fail the check.
import Fastify from 'fastify'
import fastifyPrecondition, {
  LockTimeoutError, LockUnavailableError, ProblemCode, ProblemDetailsSchema, strongEtag, type ProblemDetails
} from 'fastify-precondition'
import { redisLockStore, type RedisLockStoreOptions } from 'fastify-precondition/redis'
import { idempotencyTableSql, mysqlIdempotencyStore } from 'fastify-precondition/mysql'
import {
  conditionalUpdate, idempotentWrite, OutcomeUnknownError, PreconditionFailedError, type ConditionalUpdateResult, type WriteResult
} from 'fastify-precondition/client'

const app = Fastify()
app.register(fastifyPrecondition, { lockTimeout: 500 })
app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => ({ etag: strongEtag('{}') }) } }, async () => 'ok')
// @ts-expect-error require takes the header names the plugin knows
app.put('/other', { concurrency: { require: 'if-range' } }, async () => 'ok')

const timeout = new LockTimeoutError(10, '/items/1')
export const timeoutCode: 'FST_PRECONDITION_LOCK_TIMEOUT' = timeout.code
export const timeoutStatus: 503 = timeout.statusCode
// @ts-expect-error an error class keeps its own code
export const wrongCode: 'FST_PRECONDITION_LOCK_UNAVAILABLE' = timeout.code
// @ts-expect-error an error is not a string
export const notString: string = new LockUnavailableError('down')
// @ts-expect-error errors have no such method
new LockUnavailableError('down').retry()
export const lost: Error = new LockTimeoutError(10, '/items/1')
export const failedCode: 'FST_PRECONDITION_FAILED' = ProblemCode.PRECONDITION_FAILED
export const etagMember: unknown = ProblemDetailsSchema.properties.etag
// @ts-expect-error status is a number
export const problem: ProblemDetails = { type: 'about:blank', title: 't', status: '412', detail: 'd', instance: '/', code: 'c' }

export function store (client: RedisLockStoreOptions['client']) {
  return redisLockStore({ client, ttl: 5000 })
}
// @ts-expect-error the client must be an ioredis client
redisLockStore({ client: 42 })

export async function update (): Promise<ConditionalUpdateResult<{ count: number }>> {
  try {
    return await conditionalUpdate<{ count: number }>('http://127.0.0.1/items/1', (item) => ({ count: item.count + 1 }))
  } catch (error) {
    if (error instanceof PreconditionFailedError) console.log(error.problem?.etag)
    throw error
  }
}
// @ts-expect-error maxAttempts is a number
conditionalUpdate('http://127.0.0.1/items/1', (item) => item, { maxAttempts: 'many' })

export async function order (): Promise<WriteResult<{ id: number }>> {
  try {
    return await idempotentWrite<{ id: number }>('http://127.0.0.1/orders', { item: 'tea' }, { maxResends: 2, timeout: 5000 })
  } catch (error) {
    // The change may or may not have been applied: the same write with the same key settles it.
    if (error instanceof OutcomeUnknownError && error.idempotencyKey !== null) {
      return await idempotentWrite(error.url, error.body, { method: error.method, headers: error.headers, idempotencyKey: error.idempotencyKey })
    }
    throw error
  }
}
// @ts-expect-error idempotencyKey is a string, or false for none
idempotentWrite('http://127.0.0.1/orders', {}, { idempotencyKey: true })

export const mysqlStore = mysqlIdempotencyStore({ pool: { query: async () => [[], []] }, lease: 5000 })
export const mysqlDdl: string = idempotencyTableSql('app.idem')
// @ts-expect-error the pool must have mysql2's query
mysqlIdempotencyStore({ pool: {} })
