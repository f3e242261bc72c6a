// lib/sql against a real PostgreSQL, through each data layer as a user sets it up
// (test/helpers/pg-layers.ts): `inTransaction` opens the layer's own transaction, commits it, rolls
// it back on a throw; `executorOf` runs `$n` text through that transaction with the row counts of
// SELECT, INSERT, UPDATE and DELETE right, and values (text, JSON sent as text, booleans, bytes,
// NULL) neither lost nor encoded twice; a layer's database object where a transaction is wanted,
// and a layer of PostgreSQL where MySQL is wanted, are refused before any SQL runs.
import pg from 'pg'
import t from 'tap'
import { executorOf, inTransaction } from '../lib/sql/executor.js'
import { LAYERS, openLayer } from './helpers/pg-layers.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

t.test('every layer, on one PostgreSQL', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query('CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, data json, flag boolean, bytes bytea, note text)')
  const count = async (name: string): Promise<number> => (await pool.query('SELECT count(*)::int AS n FROM items WHERE name = $1', [name])).rows[0].n

  for (const name of LAYERS) {
    t.test(name, async (t) => {
      const layer = await openLayer(name, server.connectionString)
      t.teardown(() => layer.close())
      const item = `${name}-committed`

      const answer = await inTransaction(layer.db, 'postgres', async (tx) => {
        const run = executorOf(tx, 'postgres')
        const inserted = await run.query(
          'INSERT INTO items (name, data, flag, bytes, note) VALUES ($1, $2::text::json, $3, $4, \'$1 is text, ? too\') RETURNING id, name',
          [item, JSON.stringify({ location: '/orders/1', 'content-type': 'application/json' }), true, Buffer.from([0, 0x7b, 0xff])])
        t.equal(inserted.rowCount, 1, 'INSERT … RETURNING: one row')
        t.equal(inserted.rows[0].name, item, 'and the row it returned')
        await run.query('INSERT INTO items (name) VALUES ($1), ($1)', [`${item}-twice`])
        const updated = await run.query('UPDATE items SET flag = $2 WHERE name = $1', [`${item}-twice`, false])
        t.equal(updated.rowCount, 2, 'UPDATE: the rows it changed')
        t.equal((await run.query('UPDATE items SET flag = $2 WHERE name = $1', ['nobody', false])).rowCount, 0, 'UPDATE of nothing: 0')
        const selected = await run.query('SELECT name, data, flag, bytes, note, $2::int AS n FROM items WHERE name = $1 OR name = $3 ORDER BY id', [item, 7, `${item}-twice`])
        t.equal(selected.rowCount, 3, 'SELECT: the rows it gave')
        t.same(selected.rows[0].data, { location: '/orders/1', 'content-type': 'application/json' }, 'JSON sent as text is stored once, as the object')
        t.equal(selected.rows[0].flag, true)
        t.same(selected.rows[0].bytes, Buffer.from([0, 0x7b, 0xff]), 'bytes as they were')
        t.equal(selected.rows[0].note, '$1 is text, ? too', 'a $1 and a ? inside a literal are text')
        t.equal(selected.rows[0].n, 7)
        t.equal(selected.rows[1].data, null, 'NULL')
        const deleted = await run.query('DELETE FROM items WHERE name = $1', [`${item}-twice`])
        t.equal(deleted.rowCount, 2, 'DELETE: the rows it removed')
        return 'answer'
      })
      t.equal(answer, 'answer', 'inTransaction gives what fn gave')
      t.equal(await count(item), 1, 'and committed')

      await t.rejects(inTransaction(layer.db, 'postgres', async (tx) => {
        await executorOf(tx, 'postgres').query('INSERT INTO items (name) VALUES ($1)', [`${name}-rolled-back`])
        throw new Error('the handler failed')
      }), { message: 'the handler failed' }, 'a throw in fn rejects inTransaction with it')
      t.equal(await count(`${name}-rolled-back`), 0, 'and rolls back')

      // Kysely's transaction does not say its engine: its statements go to its driver as they are.
      if (name !== 'kysely') {
        await inTransaction(layer.db, 'postgres', async (tx) => {
          t.throws(() => executorOf(tx, 'mysql'), { name: 'TypeError', message: /PostgreSQL/ }, 'a PostgreSQL transaction is refused where MySQL is wanted')
        })
      }
    })
  }

  t.test('a layer\'s database where its transaction is wanted: refused, naming the transaction', async (t) => {
    for (const name of ['kysely', 'drizzle-pg', 'knex'] as const) {
      const layer = await openLayer(name, server.connectionString)
      t.throws(() => executorOf(layer.db, 'postgres'), { name: 'TypeError', message: /not a transaction: pass the (trx|tx) of/ }, name)
      await layer.close()
    }
    const typeorm = await openLayer('typeorm', server.connectionString)
    t.throws(() => executorOf((typeorm.db as { manager: unknown }).manager, 'postgres'), { name: 'TypeError', message: /in no transaction: pass the manager of dataSource.transaction/ }, 'TypeORM\'s manager outside a transaction')
    await typeorm.close()
  })

  t.test('node-postgres: a backend terminated inside inTransaction costs that call only; the client is destroyed, not reused', async (t) => {
    const layer = await openLayer('pg', server.connectionString)
    t.teardown(() => layer.close())
    const db = layer.db as pg.Pool
    let pid = 0
    await t.rejects(inTransaction(db, 'postgres', async (tx) => {
      const client = tx as pg.PoolClient
      pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
      await pool.query('SELECT pg_terminate_backend($1)', [pid])
      // The 'error' event comes while the client is checked out, idle in the transaction.
      await new Promise((resolve) => setTimeout(resolve, 200))
      await client.query('SELECT 1')
    }), 'the call fails')
    t.equal(db.totalCount, 0, 'the broken client left the pool')
    const next = await inTransaction(db, 'postgres', async (tx) => (await executorOf(tx, 'postgres').query('SELECT pg_backend_pid() AS pid', [])).rows[0].pid)
    t.not(next, pid, 'the next transaction runs on a new connection')
  })
})
