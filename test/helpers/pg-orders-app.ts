// One instance of an orders service on PostgreSQL, for the crash tests over HTTP
// (test/postgres-exactly-once.test.ts): the plugin with pgIdempotencyStore, and POST /orders written
// as DESIGN.md's recipe (BEGIN; INSERT … RETURNING; 201; request.idempotency.complete(tx, order);
// COMMIT; return order). Started with fork(): it reports its port over IPC, forwards its warnings
// (the plugin's log lines) over IPC, and stops on 'close'.
//
// Environment: DATABASE_URL; LAYER, the data layer whose transaction the handler opens and hands to
// `complete` (one of test/helpers/pg-layers.ts; default 'pg', the recipe written out below; with
// 'postgres.js' or 'drizzle-postgres.js' the store's pool is a postgres.js sql too); LEASE, the store's lease in ms (default 10000); CLAIM_TIMEOUT, how long
// a claim waits for the store (the plugin's lockTimeout; default 10000); STORE_LOCK_TIMEOUT, the
// lock_timeout of the store's own pool in ms (default none).
//
// Request headers that stage a fault (not part of the request's fingerprint, so a retry without
// them is the same request):
// - `x-test-stall: before-complete | before-commit | after-commit`: at that point the handler tells
//   the parent `{ stalled, pid, order }` and waits for `{ continue: point }`, so the parent can
//   SIGKILL or SIGSTOP the process there.
// - `x-test-hold: ms`: the handler waits that long after its INSERT, inside the transaction.
// - `x-test-after-commit: throw | store-down | store-down,throw`: after COMMIT, the idempotency store
//   fails every statement until this response has been sent, and/or the handler throws.
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
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
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 })
const ownPool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: 5,
  ...(process.env.STORE_LOCK_TIMEOUT === undefined ? {} : { options: `-c lock_timeout=${process.env.STORE_LOCK_TIMEOUT}` })
})
for (const each of [pool, ownPool]) each.on('error', ignore) // an idle client whose server went away

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

app.post<{ Body: { item: string } }>('/orders', {
  schema: { body },
  concurrency: { idempotency: { required: true } }
}, async (request, reply) => {
  const stall = request.headers['x-test-stall']
  const hold = Number(request.headers['x-test-hold'] ?? 0)
  const after = String(request.headers['x-test-after-commit'] ?? '').split(',')
  if (layer !== null) {
    // The layer's own transaction, as its users write one: the order, its Location, the answer.
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
    return order
  }
  const tx = await pool.connect()
  // A checked-out client whose server goes away emits 'error': without a listener, the process
  // would die of it (the pool listens only on its idle clients).
  tx.on('error', ignore)
  try {
    await tx.query('BEGIN')
    const { rows: [order] } = await tx.query('INSERT INTO orders (item, key, pid) VALUES ($1, $2, $3) RETURNING id, item', [request.body.item, request.idempotency!.key, process.pid])
    if (hold > 0) await sleep(hold)
    await point('before-complete', stall, order)
    reply.code(201).header('location', `/orders/${order.id}`)
    await request.idempotency!.complete(tx, order) // the answer, recorded in this transaction
    await point('before-commit', stall, order)
    await tx.query('COMMIT')
    await point('after-commit', stall, order)
    if (after.includes('store-down')) storeDown = true
    if (after.includes('throw')) throw new Error('the handler failed after COMMIT (test fault)')
    return order
  } catch (error) {
    await tx.query('ROLLBACK') // after COMMIT, only a warning from PostgreSQL: nothing to roll back
    throw error
  } finally {
    tx.off('error', ignore)
    tx.release()
  }
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
      await Promise.all([pool.end(), ownPool.end(), layer?.close(), postgresJs?.end({ timeout: 1 })])
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
