// One instance of an orders service on MySQL (MariaDB here), for the crash tests over HTTP
// (test/mysql-exactly-once.test.ts): the plugin with mysqlIdempotencyStore, and POST /orders written
// as docs/mysql.md's recipe (getConnection; beginTransaction; INSERT; 201;
// request.idempotency.complete(tx, order); commit; return order). Started with fork(): it reports
// its port over IPC, forwards its warnings (the plugin's log lines) over IPC, and stops on 'close'.
//
// Environment: MYSQL, the mysql2 connection options as JSON; LEASE, the store's lease in ms
// (default 10000); CLAIM_TIMEOUT, how long a claim waits for the store (the plugin's lockTimeout;
// default 10000); STORE_LOCK_WAIT, the innodb_lock_wait_timeout of the store's own pool in seconds
// (default the server's, 50).
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
import { createPool, type ResultSetHeader } from 'mysql2/promise'
import fastifyPrecondition from '../../lib/index.js'
import { mysqlIdempotencyStore } from '../../lib/mysql.js'

const send = (message: unknown): void => {
  if (process.connected) process.send!(message)
}

// The handlers' transactions, and a pool of the store's own, whose statements wait at most
// STORE_LOCK_WAIT s for a row lock (a claim meeting a transaction that holds the key's row).
const connection = JSON.parse(process.env.MYSQL as string)
const pool = createPool({ ...connection, connectionLimit: 10 })
const ownPool = createPool({ ...connection, connectionLimit: 5 })
if (process.env.STORE_LOCK_WAIT !== undefined) {
  ownPool.pool.on('connection', (each) => { each.query(`SET SESSION innodb_lock_wait_timeout = ${Number(process.env.STORE_LOCK_WAIT)}`) })
}

// The store's statements go through this, so a test can make the store fail while the handlers'
// own transactions still work.
let storeDown = false
const storePool = {
  query (sql: string, values?: unknown[]) {
    if (storeDown) return Promise.reject(new Error('the idempotency store is unreachable (test fault)'))
    return ownPool.query(sql, values)
  }
}
const store = mysqlIdempotencyStore({ pool: storePool, lease: Number(process.env.LEASE ?? 10_000) })

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
  const tx = await pool.getConnection()
  try {
    await tx.beginTransaction()
    const [inserted] = await tx.query<ResultSetHeader>('INSERT INTO orders (item, `key`, pid) VALUES (?, ?, ?)', [request.body.item, request.idempotency!.key, process.pid])
    const order = { id: inserted.insertId, item: request.body.item }
    if (hold > 0) await sleep(hold)
    await point('before-complete', stall, order)
    reply.code(201)
    await request.idempotency!.complete(tx, order) // the answer, recorded in this transaction
    await point('before-commit', stall, order)
    await tx.commit()
    await point('after-commit', stall, order)
    if (after.includes('store-down')) storeDown = true
    if (after.includes('throw')) throw new Error('the handler failed after COMMIT (test fault)')
    return order
  } catch (error) {
    await tx.rollback() // after COMMIT, nothing to roll back
    throw error
  } finally {
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
      await Promise.all([pool.end(), ownPool.end()])
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
