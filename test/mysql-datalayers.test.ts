// Every data layer on MySQL hands `request.idempotency.complete(tx, body)` its transaction as it
// is: a mysql2 promise PoolConnection, Kysely (MysqlDialect), Drizzle (mysql2 driver), Knex
// (mysql2 client) and TypeORM (mysql driver), each against a real MariaDB started by the test.
// For each: the order and the answer commit together and a retry replays it; a claim taken over
// before complete makes complete throw, and the layer rolls the order back; a retry after a
// rolled-back attempt runs again; and `request.idempotency.transaction(db, fn)` opens the layer's
// transaction on its database object and records what `fn` returns.
import 'reflect-metadata'
import Fastify, { type FastifyInstance } from 'fastify'
import { drizzle } from 'drizzle-orm/mysql2'
import { sql } from 'drizzle-orm'
import knex from 'knex'
import { Kysely, MysqlDialect } from 'kysely'
import { createPool as createCallbackPool } from 'mysql2'
import { createPool, type Pool, type ResultSetHeader } from 'mysql2/promise'
import { test, type Test } from 'tap'
import { DataSource } from 'typeorm'
import fastifyPrecondition from '../lib/index.js'
import { idempotencyTableSql, mysqlIdempotencyStore } from '../lib/mysql.js'
import type { TransactionClient } from '../lib/idempotency/store.js'
import { mariadbMissing, startMariaDb, type MariaDbServer } from './helpers/mariadb-server.js'

const skip = mariadbMissing()
if (skip !== false) console.log(`# ${skip}`)

interface Order { id: number, item: string }

/**
 * A data layer: opens a transaction, inserts an order in it and hands it, as the layer gave it, to
 * `body` (which calls complete); commits when `body` resolves, rolls back when it throws.
 */
interface Layer {
  name: string
  make (server: MariaDbServer): {
    run: (item: string, key: string, body: (tx: TransactionClient, order: Order) => Promise<void>) => Promise<Order>
    /** The layer's database object, for `request.idempotency.transaction(db, fn)`, and an INSERT through its transaction. */
    db: () => Promise<unknown>
    insert: (tx: any, item: string, key: string) => Promise<Order>
    close: () => Promise<void>
  }
}

const insertSql = 'INSERT INTO orders (item, `key`) VALUES (?, ?)'

const layers: Layer[] = [
  {
    name: 'mysql2 (a promise PoolConnection after beginTransaction)',
    make (server) {
      const pool = createPool({ ...server.connection, connectionLimit: 4 })
      return {
        async run (item, key, body) {
          const tx = await pool.getConnection()
          try {
            await tx.beginTransaction()
            const [inserted] = await tx.query<ResultSetHeader>('INSERT INTO orders (item, `key`) VALUES (?, ?)', [item, key])
            const order = { id: inserted.insertId, item }
            await body(tx, order)
            await tx.commit()
            return order
          } catch (error) {
            await tx.rollback()
            throw error
          } finally {
            tx.release()
          }
        },
        db: async () => pool,
        insert: async (tx, item, key) => ({ id: (await tx.query(insertSql, [item, key]))[0].insertId, item }),
        close: () => pool.end()
      }
    }
  },
  {
    name: 'Kysely (MysqlDialect)',
    make (server) {
      const db = new Kysely<any>({ dialect: new MysqlDialect({ pool: createCallbackPool({ ...server.connection, connectionLimit: 4 }) }) })
      return {
        run: (item, key, body) => db.transaction().execute(async (trx) => {
          const inserted = await trx.insertInto('orders').values({ item, key }).executeTakeFirstOrThrow()
          const order = { id: Number(inserted.insertId), item }
          await body(trx, order)
          return order
        }),
        db: async () => db,
        insert: async (trx, item, key) => ({ id: Number((await trx.insertInto('orders').values({ item, key }).executeTakeFirstOrThrow()).insertId), item }),
        close: () => db.destroy()
      }
    }
  },
  {
    name: 'Drizzle (mysql2 driver)',
    make (server) {
      const pool = createPool({ ...server.connection, connectionLimit: 4 })
      const db = drizzle(pool)
      return {
        run: (item, key, body) => db.transaction(async (tx) => {
          const [inserted] = await tx.execute(sql`INSERT INTO orders (item, \`key\`) VALUES (${item}, ${key})`)
          const order = { id: (inserted as ResultSetHeader).insertId, item }
          await body(tx, order)
          return order
        }),
        db: async () => db,
        insert: async (tx, item, key) => ({ id: (await tx.execute(sql`INSERT INTO orders (item, \`key\`) VALUES (${item}, ${key})`))[0].insertId, item }),
        close: () => pool.end()
      }
    }
  },
  {
    name: 'Knex (mysql2 client)',
    make (server) {
      const db = knex({ client: 'mysql2', connection: { ...server.connection }, pool: { min: 0, max: 4 } })
      return {
        run: (item, key, body) => db.transaction(async (trx) => {
          const [id] = await trx('orders').insert({ item, key })
          const order = { id: Number(id), item }
          await body(trx, order)
          return order
        }),
        db: async () => db,
        insert: async (trx, item, key) => ({ id: Number((await trx('orders').insert({ item, key }))[0]), item }),
        close: () => db.destroy()
      }
    }
  },
  {
    name: 'TypeORM (mysql driver)',
    make (server) {
      const { host, port, user, database } = server.connection
      const source = new DataSource({ type: 'mysql', host, port, username: user, database })
      const ready = source.initialize()
      return {
        run: async (item, key, body) => {
          await ready
          return await source.transaction(async (manager) => {
            const inserted = await manager.query('INSERT INTO orders (item, `key`) VALUES (?, ?)', [item, key])
            const order = { id: Number(inserted.insertId), item }
            await body(manager, order)
            return order
          })
        },
        db: () => ready,
        insert: async (manager, item, key) => ({ id: Number((await manager.query(insertSql, [item, key])).insertId), item }),
        close: async () => {
          await ready
          await source.destroy()
        }
      }
    }
  }
]

test('every data layer on MySQL passes its transaction as it is to complete', { skip }, async (t) => {
  const { server, pool } = await startMariaDb(t, createPool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, item varchar(100) NOT NULL, `key` varchar(255) NOT NULL) ENGINE=InnoDB')
  const store = mysqlIdempotencyStore({ pool })

  const applied = async (key: string): Promise<number> =>
    Number((await pool.query('SELECT count(*) AS n FROM orders WHERE `key` = ?', [key]) as any)[0][0].n)

  for (const layer of layers) {
    t.test(layer.name, async (t) => {
      const made = layer.make(server)
      t.teardown(made.close)
      const app = await ordersApp(t, store, pool, made)
      const post = (key: string, headers: Record<string, string> = {}) =>
        app.inject({ method: 'POST', url: '/orders', headers: { 'idempotency-key': `"${key}"`, ...headers }, payload: { item: 'tea' } })
      const key = `${layer.name.split(' ')[0]}-commit`

      const first = await post(key)
      t.equal(first.statusCode, 201, first.body)
      t.equal(first.headers.location, `/orders/${first.json().id}`)
      const retry = await post(key)
      t.equal(retry.headers['idempotent-replayed'], 'true', 'the retry replays the answer recorded in the transaction')
      t.same(retry.json(), first.json())
      t.equal(retry.headers.location, first.headers.location)
      t.equal(await applied(key), 1, 'one order')

      const lost = `${layer.name.split(' ')[0]}-lost`
      const refused = await post(lost, { 'x-test-take-over': '1' })
      t.equal(refused.statusCode, 409, 'another instance took the key over before complete')
      t.match(refused.json(), { code: 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST' })
      t.equal(await applied(lost), 0, 'the layer rolled the order back')

      const failed = `${layer.name.split(' ')[0]}-failed`
      t.equal((await post(failed, { 'x-test-fail-after-complete': '1' })).statusCode, 500, 'the handler fails after complete, before its commit')
      t.equal(await applied(failed), 0, 'nothing committed')
      const again = await post(failed)
      t.equal(again.statusCode, 201, 'a retry runs: the record rolled back with the order, and the failed run released the key')
      t.notOk(again.headers['idempotent-replayed'])
      t.equal(await applied(failed), 1)

      const opened = `${layer.name.split(' ')[0]}-transaction`
      const post2 = (headers: Record<string, string> = {}) =>
        app.inject({ method: 'POST', url: '/orders-in-transaction', headers: { 'idempotency-key': `"${opened}"`, ...headers }, payload: { item: 'jam' } })
      t.equal((await post2({ 'x-test-fail-after-insert': '1' })).statusCode, 500, 'transaction(db, fn): fn throws')
      t.equal(await applied(opened), 0, 'rolled back')
      const ran = await post2()
      t.equal(ran.statusCode, 201, 'transaction(db, fn): a retry runs')
      t.match(ran.json(), { item: 'jam' })
      const replayed = await post2()
      t.equal(replayed.headers['idempotent-replayed'], 'true', 'and is replayed from the answer recorded in that transaction')
      t.same(replayed.json(), ran.json())
      t.equal(await applied(opened), 1)

      // The transactional claim: the key's row inserted first in the layer's transaction.
      const claimed = `${layer.name.split(' ')[0]}-claim`
      const post3 = (item = 'cake') =>
        app.inject({ method: 'POST', url: '/orders-claimed', headers: { 'idempotency-key': `"${claimed}"` }, payload: { item } })
      const all = await Promise.all(Array.from({ length: 6 }, () => post3()))
      t.same(all.map((res) => res.statusCode), Array(6).fill(201), 'claim \'transaction\': six at once, all 201, no 409')
      t.equal(all.filter((res) => res.headers['idempotent-replayed'] === undefined).length, 1, 'one original answer, the others its replay')
      t.equal(new Set(all.map((res) => res.body)).size, 1)
      t.equal(await applied(claimed), 1, 'one order')
      t.equal((await post3('pie')).statusCode, 422, 'another body under the key')
      t.equal(await applied(claimed), 1)
    })
  }
})

/** The plugin on the MySQL store, and POST /orders through `run`, a layer's transaction. */
async function ordersApp (t: Test, store: ReturnType<typeof mysqlIdempotencyStore>, pool: Pool, { run, db, insert }: ReturnType<Layer['make']>): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyPrecondition, { idempotencyStore: store })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    const idempotency = request.idempotency!
    return await run((request.body as { item: string }).item, idempotency.key, async (tx, order) => {
      reply.code(201).header('location', `/orders/${order.id}`)
      if (request.headers['x-test-take-over'] !== undefined) {
        // What another instance does once this request's lease ran out: the key is its own now.
        await pool.query("UPDATE fastify_precondition_idempotency SET token = 'another-instance' WHERE `key` = ?", [idempotency.key])
      }
      await idempotency.complete(tx, order)
      if (request.headers['x-test-fail-after-complete'] !== undefined) throw new Error('the handler failed before its commit (test fault)')
    })
  })
  app.post('/orders-in-transaction', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    const idempotency = request.idempotency!
    return await idempotency.transaction(await db(), async (tx) => {
      const order = await insert(tx, (request.body as { item: string }).item, idempotency.key)
      if (request.headers['x-test-fail-after-insert'] !== undefined) throw new Error('the handler failed in its transaction (test fault)')
      reply.code(201)
      return order
    })
  })
  app.post('/orders-claimed', { concurrency: { idempotency: { required: true, claim: 'transaction' } } }, async (request, reply) => {
    const idempotency = request.idempotency!
    return await idempotency.transaction(await db(), async (tx) => {
      const order = await insert(tx, (request.body as { item: string }).item, idempotency.key)
      reply.code(201)
      return order
    })
  })
  await app.ready()
  return app
}
