// The example API on MySQL or MariaDB, with mysql2 (examples/orders-postgres.js on the other engine):
// - POST /orders requires an Idempotency-Key, and records its answer in its own transaction
//   (`request.idempotency.complete(tx, order)`), so an order is placed once even when the process
//   dies between its COMMIT and its answer: the retry is answered with the recorded answer.
// - PUT /items/:id is a compare-and-swap in one statement (`UPDATE … WHERE id = ? AND version IN
//   (…)`): the version comes from If-Match, through `request.preconditions`; no lock is held.
//   A missing row is a 404, a changed one a 412 from `reply.failPrecondition(current)`.
// It creates its tables if they are missing (in production, run that DDL from your migrations).
//
//   MYSQL_URL=mysql://user:password@host:3306/db node examples/orders-mysql.js   (PORT, default 3003)
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { createPool } from 'mysql2/promise'
import fastifyPrecondition from 'fastify-precondition'
import { idempotencyTableSql, mysqlIdempotencyStore } from 'fastify-precondition/mysql'

/** The example's tables, and the Idempotency-Key records' table; item 1 is seeded. Idempotent. */
export async function createTables (pool) {
  await pool.query(idempotencyTableSql())
  await pool.query(`CREATE TABLE IF NOT EXISTS items (
  id      varchar(64) PRIMARY KEY,
  name    varchar(255) NOT NULL,
  version int NOT NULL DEFAULT 1
) ENGINE=InnoDB`)
  await pool.query(`CREATE TABLE IF NOT EXISTS orders (
  id       int AUTO_INCREMENT PRIMARY KEY,
  item     varchar(255) NOT NULL,
  quantity int NOT NULL
) ENGINE=InnoDB`)
  await pool.query("INSERT IGNORE INTO items (id, name) VALUES ('1', 'first item')")
}

// The ETag is the row's version, so an If-Match tag converts straight into a WHERE clause.
const etagOf = (row) => `"v${row.version}"`
function versionOf (tag) {
  const match = /^"v(\d+)"$/.exec(tag) // weak tags (W/"…") never satisfy If-Match: no match
  return match === null ? null : Number(match[1])
}

/** The app on `pool` (a mysql2 promise Pool, which stays yours: it is not ended when the app closes). */
export async function buildOrdersApp ({ pool, logger = false, lease } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyPrecondition, { idempotencyStore: mysqlIdempotencyStore({ pool, lease }) })

  const params = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }

  async function findItem (id) {
    const [[row]] = await pool.query('SELECT id, name, version FROM items WHERE id = ?', [id])
    return row ?? null
  }

  // Reads: the plugin sends the ETag and answers If-None-Match with 304.
  app.get('/items/:id', {
    schema: { params },
    concurrency: {
      validators: async (request) => {
        const row = await findItem(request.params.id)
        return row === null ? null : { etag: etagOf(row) }
      }
    }
  }, async (request, reply) => {
    const row = await findItem(request.params.id)
    if (row === null) return reply.code(404).send({ message: 'no such item' })
    return { id: row.id, name: row.name }
  })

  // Writes: If-Match is required (428 without it); the UPDATE itself checks the version, so two
  // editors holding one tag cannot both win, and no lock is taken (`lock: false`).
  app.put('/items/:id', {
    schema: {
      params,
      body: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false }
    },
    concurrency: { require: 'if-match', lock: false }
  }, async (request, reply) => {
    const { id } = request.params
    const { ifMatch } = request.preconditions
    // '*': whatever version exists; otherwise the versions the client holds. A header with no
    // valid member leaves none: nothing can match, the write fails closed.
    const versions = ifMatch === '*' ? null : ifMatch.map(versionOf).filter((version) => version !== null)
    if (versions !== null && versions.length === 0) return await failed(id, reply)
    // MySQL has no RETURNING: the UPDATE and the read of the version it wrote share one
    // transaction, so the tag sent is this write's own, not a later writer's.
    const tx = await pool.getConnection()
    try {
      await tx.beginTransaction()
      const [updated] = versions === null
        ? await tx.query('UPDATE items SET name = ?, version = version + 1 WHERE id = ?', [request.body.name, id])
        : await tx.query('UPDATE items SET name = ?, version = version + 1 WHERE id = ? AND version IN (?)', [request.body.name, id, versions])
      if (updated.affectedRows === 0) {
        await tx.rollback()
        return await failed(id, reply)
      }
      const [[row]] = await tx.query('SELECT id, name, version FROM items WHERE id = ?', [id])
      await tx.commit()
      reply.header('etag', etagOf(row))
      return { id: row.id, name: row.name }
    } catch (error) {
      await tx.rollback()
      throw error
    } finally {
      tx.release()
    }
  })

  // No row changed: there is none (404), or its version is not one the client holds (412, with
  // the current tag, exactly as the plugin answers).
  async function failed (id, reply) {
    const current = await findItem(id)
    if (current === null) return reply.code(404).send({ message: 'no such item' })
    return reply.failPrecondition(etagOf(current))
  }

  const orderBody = {
    type: 'object',
    properties: { item: { type: 'string' }, quantity: { type: 'integer', minimum: 1, default: 1 } },
    required: ['item'],
    additionalProperties: false
  }

  // An order is new each time it runs: the route requires an Idempotency-Key, and the answer is
  // recorded in the order's own transaction, so it commits (or rolls back) with the order.
  app.post('/orders', {
    schema: { body: orderBody },
    concurrency: { idempotency: { required: true } }
  }, async (request, reply) => {
    const tx = await pool.getConnection()
    try {
      await tx.beginTransaction()
      const [inserted] = await tx.query('INSERT INTO orders (item, quantity) VALUES (?, ?)', [request.body.item, request.body.quantity])
      const order = { id: inserted.insertId, item: request.body.item, quantity: request.body.quantity }
      // Status and headers first: complete records the reply as it is now.
      reply.code(201).header('location', `/orders/${order.id}`)
      await request.idempotency.complete(tx, order) // throws IdempotencyClaimLostError if the key was lost: roll back
      await tx.commit()
      return order
    } catch (error) {
      await tx.rollback()
      throw error
    } finally {
      tx.release()
    }
  })

  app.get('/orders/:id', { schema: { params } }, async (request, reply) => {
    const [[order]] = await pool.query('SELECT id, item, quantity FROM orders WHERE id = ?', [Number(request.params.id) || 0])
    if (order === undefined) return reply.code(404).send({ message: 'no such order' })
    return order
  })

  return app
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { MYSQL_URL, PORT = '3003', HOST = '127.0.0.1', LOG } = process.env
  if (MYSQL_URL === undefined) {
    console.error('Set MYSQL_URL to a MySQL or MariaDB database, e.g. MYSQL_URL=mysql://root@127.0.0.1:3306/test node examples/orders-mysql.js')
    process.exit(2)
  }
  const pool = createPool({ uri: MYSQL_URL })
  await createTables(pool)
  const app = await buildOrdersApp({ pool, logger: LOG === '1' })
  app.addHook('onClose', () => pool.end())
  await app.listen({ port: Number(PORT), host: HOST })
  const origin = `http://${HOST}:${app.server.address().port}`
  const url = `${origin}/items/1`
  const [[current]] = await pool.query("SELECT version FROM items WHERE id = '1'")
  const tag = etagOf(current)
  console.log(`orders-mysql example on ${origin}
  curl -i ${url}
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"renamed"}'
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"again"}'   # 412: that version is gone
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'   # replayed: one order`)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => { app.close().then(() => process.exit(0)) })
  }
}
