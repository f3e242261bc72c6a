// The example API on PostgreSQL, with node-postgres:
// - POST /orders requires an Idempotency-Key, and records its answer in its own transaction
//   (`request.idempotency.transaction(pool, fn)`: the order and its answer commit together), so an
//   order is placed once even when the process dies between its COMMIT and its answer: the retry
//   is answered with the recorded answer. A connection the database ends (a restart, a terminated
//   backend, idle_in_transaction_session_timeout) costs the requests on it a 5xx, not the process.
// - PUT /items/:id is a compare-and-swap in one statement (`UPDATE … WHERE id = $1 AND version =
//   ANY($2)`): the version comes from If-Match, through `request.preconditions`; no lock is held.
//   A missing row is a 404, a changed one a 412 from `reply.failPrecondition(current)`.
// It creates its tables if they are missing (in production, run that DDL from your migrations).
//
//   DATABASE_URL=postgresql://user@host/db node examples/orders-postgres.js   (PORT, default 3002)
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import pg from 'pg'
import fastifyPrecondition from 'fastify-precondition'
import { idempotencyTableSql, pgIdempotencyStore } from 'fastify-precondition/postgres'

/** The example's tables, and the Idempotency-Key records' table; item 1 is seeded. Idempotent. */
export async function createTables (pool) {
  await pool.query(idempotencyTableSql())
  await pool.query(`CREATE TABLE IF NOT EXISTS items (
  id      text PRIMARY KEY,
  name    text NOT NULL,
  version integer NOT NULL DEFAULT 1
)`)
  await pool.query(`CREATE TABLE IF NOT EXISTS orders (
  id       serial PRIMARY KEY,
  item     text NOT NULL,
  quantity integer NOT NULL
)`)
  await pool.query("INSERT INTO items (id, name) VALUES ('1', 'first item') ON CONFLICT (id) DO NOTHING")
}

// The ETag is the row's version, so an If-Match tag converts straight into a WHERE clause.
const etagOf = (row) => `"v${row.version}"`
function versionOf (tag) {
  const match = /^"v(\d+)"$/.exec(tag) // weak tags (W/"…") never satisfy If-Match: no match
  return match === null ? null : Number(match[1])
}

/** The app on `pool` (a pg.Pool, which stays yours: it is not ended when the app closes). */
export async function buildOrdersApp ({ pool, logger = false, lease } = {}) {
  const app = Fastify({ logger })
  await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool, lease }) })

  const params = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }

  async function findItem (id) {
    const { rows: [row] } = await pool.query('SELECT id, name, version FROM items WHERE id = $1', [id])
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
    let row = null
    if (versions === null) {
      ({ rows: [row] } = await pool.query('UPDATE items SET name = $2, version = version + 1 WHERE id = $1 RETURNING id, name, version', [id, request.body.name]))
    } else if (versions.length > 0) {
      ({ rows: [row] } = await pool.query('UPDATE items SET name = $3, version = version + 1 WHERE id = $1 AND version = ANY($2::int[]) RETURNING id, name, version', [id, versions, request.body.name]))
    }
    if (row === undefined || row === null) {
      // No row changed: there is none (404), or its version is not one the client holds (412,
      // with the current tag, exactly as the plugin answers).
      const current = await findItem(id)
      if (current === null) return reply.code(404).send({ message: 'no such item' })
      return reply.failPrecondition(etagOf(current))
    }
    // The tag of this write's own version, from RETURNING: a later read could see someone else's.
    reply.header('etag', etagOf(row))
    return { id: row.id, name: row.name }
  })

  const orderBody = {
    type: 'object',
    properties: { item: { type: 'string' }, quantity: { type: 'integer', minimum: 1, default: 1 } },
    required: ['item'],
    additionalProperties: false
  }

  // An order is new each time it runs: the route requires an Idempotency-Key, and the plugin's
  // transaction records the answer with the order, so they commit (or roll back) together.
  // `transaction` opens it on a client of the pool, runs the function, records what it returns
  // (with the status and headers set by then) as the key's answer, COMMITs and releases; a throw
  // rolls back. It listens for the client's errors: a connection the database ends mid-way fails
  // this request (5xx, the key released for a retry), never the process.
  app.post('/orders', {
    schema: { body: orderBody },
    concurrency: { idempotency: { required: true } }
  }, async (request, reply) => {
    return request.idempotency.transaction(pool, async (tx) => {
      const { rows: [order] } = await tx.query('INSERT INTO orders (item, quantity) VALUES ($1, $2) RETURNING id, item, quantity', [request.body.item, request.body.quantity])
      reply.code(201).header('location', `/orders/${order.id}`)
      return order
    })
  })

  app.get('/orders/:id', { schema: { params } }, async (request, reply) => {
    const { rows: [order] } = await pool.query('SELECT id, item, quantity FROM orders WHERE id = $1', [Number(request.params.id) || 0])
    if (order === undefined) return reply.code(404).send({ message: 'no such order' })
    return order
  })

  return app
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { DATABASE_URL, PORT = '3002', HOST = '127.0.0.1', LOG } = process.env
  if (DATABASE_URL === undefined) {
    console.error('Set DATABASE_URL to a PostgreSQL database, e.g. DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres node examples/orders-postgres.js')
    process.exit(2)
  }
  const pool = new pg.Pool({ connectionString: DATABASE_URL })
  // An idle client whose server went away (a restart, a failover) emits 'error' on the pool, and an
  // 'error' nobody listens for ends the process: log it. The pool replaces the client.
  pool.on('error', (error) => console.error(`idle PostgreSQL connection lost: ${error.message}`))
  await createTables(pool)
  const app = await buildOrdersApp({ pool, logger: LOG === '1' })
  app.addHook('onClose', () => pool.end())
  await app.listen({ port: Number(PORT), host: HOST })
  const origin = `http://${HOST}:${app.server.address().port}`
  const url = `${origin}/items/1`
  const tag = etagOf(await findVersion(pool, '1'))
  console.log(`orders-postgres example on ${origin}
  curl -i ${url}
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"renamed"}'
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"again"}'   # 412: that version is gone
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'   # replayed: one order`)
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => { app.close().then(() => process.exit(0)) })
  }
}

async function findVersion (pool, id) {
  const { rows: [row] } = await pool.query('SELECT version FROM items WHERE id = $1', [id])
  return row ?? { version: 1 }
}
