// One instance of an orders service on PostgreSQL, for the crash and fault tests over HTTP
// (test/postgres-exactly-once.test.ts, test/faults/pg-*.test.ts): the plugin with
// pgIdempotencyStore, and POST /orders written as DESIGN.md's recipe (BEGIN; INSERT … RETURNING;
// 201; request.idempotency.complete(tx, order); COMMIT; return order). Started with fork(): it
// reports its port over IPC, forwards its warnings (the plugin's log lines) over IPC, and stops on
// 'close'.
//
// Environment: DATABASE_URL; LAYER, the data layer whose transaction the handler opens and hands to
// `complete` (one of test/helpers/pg-layers.ts; default 'pg', the recipe written out below; with
// 'postgres.js' or 'drizzle-postgres.js' the store's pool is a postgres.js sql too); LEASE, the store's lease in ms (default 10000); CLAIM_TIMEOUT, how long
// a claim waits for the store (the plugin's lockTimeout; default 10000); STORE_LOCK_TIMEOUT, the
// lock_timeout of the store's own pool in ms (default none); and for the fault matrix:
// - POOL_MAX: the size of the handlers' pool (default 10).
// - SHARED_POOL=1: the store runs on the handlers' pool, as the setup snippet of the docs shows,
//   instead of a pool of its own.
// - HANDLER=transaction: POST /orders through `request.idempotency.transaction(pool, fn)` (the
//   plugin opens, records the answer, commits or rolls back, releases) instead of the recipe.
// - RUNS_FILE: a file that gets a line `key<TAB>pid` each time the handler runs, written
//   synchronously before anything else the handler does: a side effect outside the database (an
//   email, a payment call), counted by the parent even when the process dies right after.
// - OTHER_DATABASE_URL: a second database, for `x-test-database: other`.
//
// Request headers that stage a fault (not part of the request's fingerprint, so a retry without
// them is the same request):
// - `x-test-stall: before-complete | before-commit | after-commit`: at that point the handler tells
//   the parent `{ stalled, pid, order }` and waits for `{ continue: point }`, so the parent can
//   SIGKILL or SIGSTOP the process there.
// - `x-test-hold: ms`: the handler waits that long after its INSERT, inside the transaction.
// - `x-test-after-commit: throw | store-down | store-down,throw`: after COMMIT, the idempotency store
//   fails every statement until this response has been sent, and/or the handler throws.
// - `x-test-isolation: read committed | repeatable read | serializable`: the handler's transaction
//   is opened at that level in a preHandler hook, before the claim (a per-request transaction);
//   with `x-test-snapshot: 1` the hook also runs a statement in it, so its snapshot predates the
//   claim; with `x-test-database: other` it is a transaction on OTHER_DATABASE_URL.
// - `x-test-fail-after-complete: status`: after `complete`, the handler throws an error with that
//   status (a validation of its own, say) before COMMIT: the transaction rolls back.
// - `x-test-complete-twice: 1`: the first attempt records the answer and rolls back, a second one
//   records it again and commits (a transaction tried again in the same request).
import { appendFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import pg from 'pg'
import fastifyPrecondition from '../../lib/index.js'
import postgres from 'postgres'
import { pgIdempotencyStore } from '../../lib/postgres.js'
import type { LayerName } from './pg-layers.js'

function ignore (): void {}

const send = (message: unknown): void => {
  if (process.connected) process.send!(message)
}

// The handlers' transactions, and a pool of the store's own, whose statements wait at most
// STORE_LOCK_TIMEOUT ms for a row lock (a claim meeting a transaction that holds the key's row).
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL_MAX ?? 10) })
const ownPool = process.env.SHARED_POOL === '1'
  ? pool
  : new pg.Pool({
    connectionString: process.env.DATABASE_URL,
    max: 5,
    ...(process.env.STORE_LOCK_TIMEOUT === undefined ? {} : { options: `-c lock_timeout=${process.env.STORE_LOCK_TIMEOUT}` })
  })
const otherPool = process.env.OTHER_DATABASE_URL === undefined ? null : new pg.Pool({ connectionString: process.env.OTHER_DATABASE_URL, max: 5 })
const pools = [...new Set([pool, ownPool]), ...(otherPool === null ? [] : [otherPool])]
for (const each of pools) each.on('error', ignore) // an idle client whose server went away

// The store's statements go through this, so a test can make the store fail while the handlers'
// own transactions still work.
let storeDown = false
const storePool = {
  query (text: string, values?: unknown[]) {
    if (storeDown) return Promise.reject(new Error('the idempotency store is unreachable (test fault)'))
    return ownPool.query(text, values)
  }
}
const LAYER = (process.env.LAYER ?? 'pg') as LayerName
// Loaded only for a layer: the default instance starts with node-postgres alone.
const layer = LAYER === 'pg' ? null : await (await import('./pg-layers.js')).openLayer(LAYER, process.env.DATABASE_URL!)
const postgresJs = LAYER.endsWith('postgres.js') ? postgres(process.env.DATABASE_URL!, { max: 5, onnotice: ignore }) : null
const store = pgIdempotencyStore({ pool: postgresJs ?? storePool, lease: Number(process.env.LEASE ?? 10_000) })

const app = Fastify({
  logger: {
    level: 'warn',
    stream: { write (line: string) { send({ log: JSON.parse(line) }) } }
  }
})
await app.register(fastifyPrecondition, { idempotencyStore: store, lockTimeout: Number(process.env.CLAIM_TIMEOUT ?? 10_000) })

// The stall points waiting for the parent's `{ continue }`.
const stalled = new Map<string, () => void>()
async function point (name: string, header: unknown, order: unknown): Promise<void> {
  if (header !== name) return
  const resumed = new Promise<void>((resolve) => stalled.set(name, resolve))
  send({ stalled: name, pid: process.pid, order })
  await resumed
}

const body = { type: 'object', properties: { item: { type: 'string' } }, required: ['item'], additionalProperties: false } as const

interface Order { id: number, item: string }
type Request = FastifyRequest<{ Body: { item: string } }>

/**
 * `request.idempotency.transaction(db, fn)`, the plugin's own transaction around `fn` (DESIGN.md,
 * "Exactly once in operation"). Typed here until the plugin's types have it.
 */
interface TransactionalIdempotency {
  transaction <T> (db: pg.Pool, fn: (tx: pg.PoolClient) => Promise<T>): Promise<T>
}

/** The side effect outside the database: one line per run of the handler. */
function ran (key: string): void {
  if (process.env.RUNS_FILE !== undefined) appendFileSync(process.env.RUNS_FILE, `${key}\t${process.pid}\n`)
}

/** An error with an HTTP status, as a handler's own validation throws it. */
function failure (status: number): Error {
  return Object.assign(new Error(`the handler refused after complete (test fault, ${status})`), { statusCode: status })
}

// The transactions opened by the preHandler hook (`x-test-isolation`), by request.
const opened = new WeakMap<FastifyRequest, pg.PoolClient>()

/** BEGIN at the requested level (a per-request transaction opened before the claim). */
async function openInHook (request: FastifyRequest): Promise<void> {
  const isolation = request.headers['x-test-isolation']
  if (typeof isolation !== 'string') return
  if (!/^(read committed|repeatable read|serializable)$/.test(isolation)) throw new Error(`x-test-isolation: ${isolation}?`)
  const db = request.headers['x-test-database'] === 'other' ? otherPool : pool
  if (db === null) throw new Error('x-test-database: other needs OTHER_DATABASE_URL')
  const tx = await db.connect()
  tx.on('error', ignore)
  try {
    await tx.query(`BEGIN ISOLATION LEVEL ${isolation.toUpperCase()}`)
    // The snapshot is taken by the first statement: this one, before the claim.
    if (request.headers['x-test-snapshot'] === '1') await tx.query('SELECT count(*) FROM orders')
  } catch (error) {
    tx.off('error', ignore)
    tx.release(error as Error)
    throw error
  }
  opened.set(request, tx)
}

/** The order, inserted through `tx`, with the faults the request's headers ask for before and after complete. */
async function placeOrder (request: Request, reply: FastifyReply, tx: pg.PoolClient, complete: boolean): Promise<Order> {
  const stall = request.headers['x-test-stall']
  const hold = Number(request.headers['x-test-hold'] ?? 0)
  const { rows: [order] } = await tx.query('INSERT INTO orders (item, key, pid) VALUES ($1, $2, $3) RETURNING id, item', [request.body.item, request.idempotency!.key, process.pid])
  if (hold > 0) await sleep(hold)
  await point('before-complete', stall, order)
  reply.code(201).header('location', `/orders/${String(order.id)}`)
  if (complete) await request.idempotency!.complete(tx, order) // the answer, recorded in this transaction
  const fail = Number(request.headers['x-test-fail-after-complete'] ?? 0)
  if (fail > 0) throw failure(fail)
  return order as Order
}

async function recipe (request: Request, reply: FastifyReply): Promise<Order> {
  const stall = request.headers['x-test-stall']
  const after = String(request.headers['x-test-after-commit'] ?? '').split(',')
  if (layer !== null) {
    // The layer's own transaction, as its users write one: the order, its Location, the answer.
    const hold = Number(request.headers['x-test-hold'] ?? 0)
    const order = await layer.transaction(async (tx, order) => {
      if (hold > 0) await sleep(hold)
      await point('before-complete', stall, order)
      reply.code(201).header('location', `/orders/${order.id}`)
      await request.idempotency!.complete(tx, order)
      await point('before-commit', stall, order)
      return order
    }, { item: request.body.item, key: request.idempotency!.key, pid: process.pid })
    await point('after-commit', stall, order)
    if (after.includes('throw')) throw new Error('the handler failed after COMMIT (test fault)')
    return order as Order
  }
  const inHook = opened.get(request)
  opened.delete(request)
  const twice = request.headers['x-test-complete-twice'] === '1'
  const tx = inHook ?? await pool.connect()
  // A checked-out client whose server goes away emits 'error': without a listener, the process
  // would die of it (the pool listens only on its idle clients).
  if (inHook === undefined) tx.on('error', ignore)
  try {
    if (inHook === undefined) await tx.query('BEGIN')
    if (twice) {
      // A first attempt that recorded the answer and rolled back (a serialization failure, say).
      await placeOrder(request, reply, tx, true)
      await tx.query('ROLLBACK')
      await tx.query('BEGIN')
    }
    const order = await placeOrder(request, reply, tx, true)
    await point('before-commit', stall, order)
    await tx.query('COMMIT')
    await point('after-commit', stall, order)
    if (after.includes('store-down')) storeDown = true
    if (after.includes('throw')) throw new Error('the handler failed after COMMIT (test fault)')
    return order
  } catch (error) {
    await tx.query('ROLLBACK').catch(ignore) // after COMMIT, only a warning from PostgreSQL: nothing to roll back
    throw error
  } finally {
    tx.off('error', ignore)
    tx.release()
  }
}

/** A transaction the hook opened for a request whose handler never ran (a replay, a 409): rolled back. */
async function closeUnused (request: FastifyRequest): Promise<void> {
  const tx = opened.get(request)
  if (tx === undefined) return
  opened.delete(request)
  await tx.query('ROLLBACK').catch(ignore)
  tx.off('error', ignore)
  tx.release()
}

app.post<{ Body: { item: string } }>('/orders', {
  schema: { body },
  concurrency: { idempotency: { required: true } },
  preHandler: openInHook,
  onResponse: closeUnused
}, async (request, reply) => {
  ran(request.idempotency!.key)
  if (process.env.HANDLER !== 'transaction' || opened.has(request)) return await recipe(request, reply)
  const idempotency = request.idempotency as unknown as TransactionalIdempotency
  return await idempotency.transaction(pool, (tx) => placeOrder(request, reply, tx, false))
})

// The store is back once the faulty answer has gone out.
app.addHook('onResponse', async () => { storeDown = false })

await app.listen({ host: '127.0.0.1', port: 0 })
send({ port: (app.server.address() as { port: number }).port })

process.on('message', (message: { continue?: string } | string) => {
  if (message === 'close') {
    // Not from inside the message handler: Node throws on messages still queued on the channel.
    setImmediate(async () => {
      await app.close()
      await Promise.all([...pools.map((each) => each.end()), layer?.close(), postgresJs?.end({ timeout: 1 })])
      process.disconnect()
    })
    return
  }
  if (typeof message === 'object' && message.continue !== undefined) {
    stalled.get(message.continue)?.()
    stalled.delete(message.continue)
  }
})
// The parent went away: do not linger.
process.on('disconnect', () => process.exit(0))
