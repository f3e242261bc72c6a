// The transactional claim (idempotency.claim 'transaction') through every data layer, in one
// process against a real PostgreSQL: request.idempotency.transaction(db, fn) on the layer's own
// database object claims the key first in the transaction it opens; concurrent duplicates wait for
// it and replay its answer; another body is a 422; a failed transaction leaves nothing. And what
// is refused: a store without transactions (at declaration), a success answered without the helper.
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { test, type Test } from 'tap'
import fastifyPrecondition, { memoryIdempotencyStore } from '../lib/index.js'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { executorOf } from '../lib/sql/executor.js'
import { send } from './helpers/http.js'
import { LAYERS, openLayer } from './helpers/pg-layers.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

const INSERT = 'INSERT INTO orders (item, key, pid) VALUES ($1, $2, $3) RETURNING id, item'

async function listen (t: Test, app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return (app.server.address() as { port: number }).port
}

const order = (port: number, key: string, item: string) => send(port, {
  method: 'POST',
  path: '/orders',
  body: { item },
  headers: { 'idempotency-key': key }
})

test('the transactional claim through every data layer', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')
  const count = async (key: string) => (await pool.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n as number

  for (const name of LAYERS) {
    await t.test(name, async (t) => {
      const layer = await openLayer(name, server.connectionString)
      t.teardown(() => layer.close())
      const app = Fastify()
      await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
      let runs = 0
      app.post<{ Body: { item: string } }>('/orders', {
        concurrency: { idempotency: { required: true, claim: 'transaction' } }
      }, async (request, reply) => {
        runs++
        return await request.idempotency?.transaction(layer.db, async (tx) => {
          const { rows: [row] } = await executorOf(tx, 'postgres').query(INSERT, [request.body.item, request.idempotency?.key, process.pid])
          if (request.body.item === 'out of stock') throw Object.assign(new Error('out of stock'), { statusCode: 409 })
          reply.code(201).header('location', `/orders/${String(row.id)}`)
          return { id: row.id, item: row.item }
        })
      })
      const port = await listen(t, app)

      const first = await order(port, `${name}-1`, 'tea')
      t.equal(first.status, 201)
      const again = await order(port, `${name}-1`, 'tea')
      t.equal(again.status, 201)
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body, 'the same body')
      t.equal(again.headers.location, first.headers.location)
      t.equal(again.headers['content-type'], first.headers['content-type'])
      t.equal(runs, 1, 'the replay came before the handler')
      t.equal(await count(`${name}-1`), 1)

      // Ten at once: the nine that lost the race wait for the first transaction, then replay it.
      runs = 0
      const all = await Promise.all(Array.from({ length: 10 }, () => order(port, `${name}-2`, 'cake')))
      t.same(all.map((res) => res.status), Array(10).fill(201), 'no 409 needed')
      t.equal(all.filter((res) => res.headers['idempotent-replayed'] === undefined).length, 1, 'one original answer')
      t.equal(new Set(all.map((res) => res.body)).size, 1, 'the others replay it')
      t.equal(await count(`${name}-2`), 1, 'one order')

      const other = await order(port, `${name}-1`, 'coffee')
      t.equal(other.status, 422, 'another body under a used key')
      t.equal(await count(`${name}-1`), 1)

      const failed = await order(port, `${name}-3`, 'out of stock')
      t.equal(failed.status, 409, 'the handler\'s own error')
      t.equal(await count(`${name}-3`), 0, 'rolled back with the key\'s row')
      t.equal((await pool.query('SELECT count(*)::int AS n FROM fastify_precondition_idempotency WHERE key = $1', [`${name}-3`])).rows[0].n, 0)
      t.equal((await order(port, `${name}-3`, 'out of stock')).headers['idempotent-replayed'], undefined, 'a retry runs again')
    })
  }

  await t.test('a success answered without request.idempotency.transaction is an error, and logged', async (t) => {
    const lines: Array<{ level: number, msg: string }> = []
    const app = Fastify({ logger: { level: 'error', stream: { write (line: string) { lines.push(JSON.parse(line)) } } } })
    await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
    app.post('/orders', { concurrency: { idempotency: { claim: 'transaction' } } }, async (request, reply) => {
      await pool.query(INSERT, ['unguarded', request.idempotency?.key, process.pid])
      return reply.code(201).send({ ok: true })
    })
    app.post('/refused', { concurrency: { idempotency: { claim: 'transaction' } } }, async (_request, reply) => reply.code(400).send({ message: 'bad input' }))
    app.post('/twice', { concurrency: { idempotency: { claim: 'transaction' } } }, async (request) => {
      await request.idempotency?.transaction(pool, async () => 'one')
      return await request.idempotency?.transaction(pool, async () => 'two')
    })
    const port = await listen(t, app)
    const res = await send(port, { method: 'POST', path: '/orders', body: {}, headers: { 'idempotency-key': 'without' } })
    t.equal(res.status, 500)
    t.match(res.json().message, /open the handler's transaction with request\.idempotency\.transaction\(db, fn\)/)
    t.match(lines, [{ level: 50, msg: /answered without request\.idempotency\.transaction/ }])
    t.equal((await send(port, { method: 'POST', path: '/refused', body: {}, headers: { 'idempotency-key': 'r' } })).status, 400, 'a refusal of its own passes')
    const twice = await send(port, { method: 'POST', path: '/twice', body: {}, headers: { 'idempotency-key': 't' } })
    t.equal(twice.status, 500)
    t.match(twice.json().message, /runs once a request/)
  })

  await t.test('complete inside transaction, and transaction refused where the store has none', async (t) => {
    const app = Fastify()
    await app.register(fastifyPrecondition, { idempotencyStore: memoryIdempotencyStore() })
    t.throws(() => app.post('/orders', { concurrency: { idempotency: { claim: 'transaction' } } }, async () => 'x'),
      { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY', message: /POST \/orders: concurrency.idempotency.claim 'transaction' .* has no transactions/ })
    await app.close()
  })
})
