// pgIdempotencyStore with a postgres.js `sql` as its pool, and `completeIn` through each data
// layer's transaction, against a real PostgreSQL: what a layer writes is read back exactly (the
// headers as an object of strings, never a JSON string a driver encoded twice), a row holding such
// a string is refused rather than replayed with other headers, an unknown transaction is refused
// before any SQL runs, and a postgres.js sql that transforms what it reads is refused at once.
import pg from 'pg'
import postgres from 'postgres'
import t from 'tap'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { LAYERS, openLayer } from './helpers/pg-layers.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

const HEADERS = { 'content-type': 'application/json; charset=utf-8', location: '/orders/1', etag: '"v1"' }

t.test('the store on PostgreSQL, through every layer', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')
  const sql = postgres(server.connectionString, { max: 3, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 1 }))
  const stores = { 'a node-postgres Pool': pgIdempotencyStore({ pool }), 'a postgres.js sql': pgIdempotencyStore({ pool: sql }) }

  for (const name of LAYERS) {
    t.test(`completeIn through ${name}: the answer read back exactly, by either pool`, async (t) => {
      const layer = await openLayer(name, server.connectionString)
      t.teardown(() => layer.close())
      for (const [pooled, store] of Object.entries(stores)) {
        const key = `${name}:${pooled}`
        const claim = await store.claim(key, 'fp', 5000)
        if (claim.state !== 'claimed') throw new Error(`not claimed: ${claim.state}`)
        const order = await layer.transaction(async (tx, order) => {
          const body = JSON.stringify(order)
          t.equal(await store.completeIn(tx, key, claim.token, { status: 201, headers: { ...HEADERS, location: `/orders/${order.id}` }, body }, 60_000), true, `${pooled}: recorded`)
          return order
        }, { item: 'tea', key, pid: process.pid })
        const replay = await store.claim(key, 'fp', 5000)
        t.same(replay, { state: 'done', response: { status: 201, headers: { ...HEADERS, location: `/orders/${order.id}` }, body: JSON.stringify(order) } }, `${pooled}: status, exactly the headers, and the body`)
        const stored = await pool.query('SELECT json_typeof(headers) AS type FROM fastify_precondition_idempotency WHERE key = $1', [key])
        t.equal(stored.rows[0].type, 'object', `${pooled}: the column holds an object, not a string`)
      }
    })
  }

  t.test('a row whose headers a driver encoded twice is refused, not replayed with other headers', async (t) => {
    await pool.query(`INSERT INTO fastify_precondition_idempotency (key, fingerprint, token, expires_at, status, headers, body, body_is_text, replayable)
      VALUES ('twice', 'fp', NULL, now() + interval '1 hour', 201, to_json($1::text), '\\x7b7d', true, true)`, [JSON.stringify(HEADERS)])
    for (const store of Object.values(stores)) {
      await t.rejects(store.claim('twice', 'fp', 5000), { message: /the stored headers are not an object of strings \(got "\{\\"content-type/ })
    }
    await pool.query('UPDATE fastify_precondition_idempotency SET headers = \'{"a": 1}\' WHERE key = \'twice\'')
    await t.rejects(stores['a node-postgres Pool'].claim('twice', 'fp', 5000), { message: /not an object of strings \(got \{"a":1\}\)/ })
    await pool.query('UPDATE fastify_precondition_idempotency SET headers = \'[]\' WHERE key = \'twice\'')
    await t.rejects(stores['a node-postgres Pool'].claim('twice', 'fp', 5000), { message: /not an object of strings \(got \[\]\)/ })
  })

  t.test('an unknown transaction is refused before any SQL runs', async (t) => {
    const store = stores['a node-postgres Pool']
    const claim = await store.claim('unknown-tx', 'fp', 5000)
    if (claim.state !== 'claimed') throw new Error('not claimed')
    for (const tx of [{}, { execute () {} }, null]) {
      await t.rejects(store.completeIn(tx as any, 'unknown-tx', claim.token, { status: 200, headers: {}, body: '' }, 60_000), { name: 'TypeError', message: /the transaction is none it knows for PostgreSQL/ })
    }
    t.same((await pool.query('SELECT token IS NOT NULL AS running FROM fastify_precondition_idempotency WHERE key = $1', ['unknown-tx'])).rows, [{ running: true }], 'the claim is as it was')
  })

  t.test('a postgres.js sql that transforms what it reads is refused at once; the pool must be one of the two', async (t) => {
    const camel = postgres(server.connectionString, { transform: postgres.camel, max: 1 })
    t.teardown(() => camel.end({ timeout: 1 }))
    t.throws(() => pgIdempotencyStore({ pool: camel }), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message: /transforms the rows it reads/ })
    const values = postgres(server.connectionString, { transform: { value: { from: (value: unknown) => value } }, max: 1 })
    t.teardown(() => values.end({ timeout: 1 }))
    t.throws(() => pgIdempotencyStore({ pool: values }), { message: /transforms the rows it reads/ })
    t.ok(pgIdempotencyStore({ pool: postgres(server.connectionString, { transform: { undefined: null }, max: 1 }) }), 'a transform of what it writes is fine')
    t.throws(() => pgIdempotencyStore({ pool: { connect () {} } as any }), { message: /pool must be a node-postgres Pool \(new pg\.Pool\(\.\.\.\)\) or a postgres\.js sql/ })
  })

  t.test('createTable through a postgres.js sql: the DDL runs as one text', async (t) => {
    const store = pgIdempotencyStore({ pool: sql, table: 'made_by_postgres_js', createTable: true })
    t.match(await store.claim('k', 'fp', 5000), { state: 'claimed' })
    t.equal((await pool.query('SELECT count(*)::int AS n FROM made_by_postgres_js')).rows[0].n, 1)
  })
})
