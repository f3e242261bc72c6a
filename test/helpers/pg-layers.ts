// Each PostgreSQL data layer as a user sets it up, for the tests of lib/sql and of
// `request.idempotency.complete` through each: `openLayer(name, url)` gives the layer's database
// object, a way to run an order's INSERT in its own transaction the way that layer writes it, and
// how to close it. Imported by the tests only: the plugin imports none of these packages.
import 'reflect-metadata'
import pg from 'pg'
import postgres from 'postgres'
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import { drizzle as drizzleNodePostgres } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import knex from 'knex'
import { DataSource } from 'typeorm'

export const LAYERS = ['pg', 'postgres.js', 'kysely', 'drizzle-pg', 'drizzle-postgres.js', 'knex', 'typeorm'] as const
export type LayerName = typeof LAYERS[number]

export interface Order { id: number, item: string }

export interface Layer {
  readonly name: LayerName
  /** What `inTransaction` opens a transaction on: the layer's own database object. */
  readonly db: unknown
  /**
   * Runs `fn` in a transaction of the layer, written as its docs write one, with the layer's own
   * transaction object and the order `INSERT INTO orders (item, key, pid) … RETURNING id, item`
   * made through it; commits when `fn` resolves.
   */
  transaction<T> (fn: (tx: any, order: Order) => Promise<T>, row: { item: string, key: string, pid: number }): Promise<T>
  close (): Promise<void>
}

interface Database { orders: { id: Generated<number>, item: string, key: string, pid: number } }

const orders = pgTable('orders', { id: serial('id').primaryKey(), item: text('item').notNull(), key: text('key').notNull(), pid: integer('pid').notNull() })

const INSERT = 'INSERT INTO orders (item, key, pid) VALUES ($1, $2, $3) RETURNING id, item'

function ignore (): void {}

export async function openLayer (name: LayerName, url: string): Promise<Layer> {
  switch (name) {
    case 'pg': {
      const pool = new pg.Pool({ connectionString: url, max: 5 })
      pool.on('error', ignore)
      return {
        name,
        db: pool,
        // The recipe of docs/postgresql.md: BEGIN … COMMIT on a checked-out client that listens for 'error'.
        async transaction (fn, row) {
          const tx = await pool.connect()
          tx.on('error', ignore)
          try {
            await tx.query('BEGIN')
            const { rows: [order] } = await tx.query(INSERT, [row.item, row.key, row.pid])
            const result = await fn(tx, order)
            await tx.query('COMMIT')
            return result
          } catch (error) {
            await tx.query('ROLLBACK').catch(ignore)
            throw error
          } finally {
            tx.off('error', ignore)
            tx.release()
          }
        },
        close: () => pool.end()
      }
    }
    case 'postgres.js': {
      const sql = postgres(url, { max: 5, onnotice: ignore })
      return {
        name,
        db: sql,
        transaction: (fn, row) => sql.begin(async (tx) => {
          const [order] = await tx`INSERT INTO orders (item, key, pid) VALUES (${row.item}, ${row.key}, ${row.pid}) RETURNING id, item`
          return await fn(tx, order as unknown as Order)
        }) as Promise<any>,
        close: () => sql.end({ timeout: 1 })
      }
    }
    case 'kysely': {
      const pool = new pg.Pool({ connectionString: url, max: 5 })
      pool.on('error', ignore)
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
      return {
        name,
        db,
        transaction: (fn, row) => db.transaction().execute(async (trx) => {
          const order = await trx.insertInto('orders').values(row).returning(['id', 'item']).executeTakeFirstOrThrow()
          return await fn(trx, order)
        }),
        close: () => db.destroy()
      }
    }
    case 'drizzle-pg': {
      const pool = new pg.Pool({ connectionString: url, max: 5 })
      pool.on('error', ignore)
      const db = drizzleNodePostgres(pool)
      return {
        name,
        db,
        transaction: (fn, row) => db.transaction(async (tx) => {
          const [order] = await tx.insert(orders).values(row).returning({ id: orders.id, item: orders.item })
          return await fn(tx, order)
        }),
        close: () => pool.end()
      }
    }
    case 'drizzle-postgres.js': {
      const sql = postgres(url, { max: 5, onnotice: ignore })
      const db = drizzlePostgresJs(sql)
      return {
        name,
        db,
        transaction: (fn, row) => db.transaction(async (tx) => {
          const [order] = await tx.insert(orders).values(row).returning({ id: orders.id, item: orders.item })
          return await fn(tx, order)
        }),
        close: () => sql.end({ timeout: 1 })
      }
    }
    case 'knex': {
      const db = knex({ client: 'pg', connection: url, pool: { min: 0, max: 5 } })
      return {
        name,
        db,
        transaction: (fn, row) => db.transaction(async (trx) => {
          const [order] = await trx('orders').insert(row).returning(['id', 'item'])
          return await fn(trx, order)
        }),
        close: () => db.destroy()
      }
    }
    case 'typeorm': {
      const dataSource = new DataSource({ type: 'postgres', url, poolSize: 5 })
      await dataSource.initialize()
      return {
        name,
        db: dataSource,
        transaction: (fn, row) => dataSource.transaction(async (manager) => {
          const [order] = await manager.query(INSERT, [row.item, row.key, row.pid])
          return await fn(manager, order)
        }),
        close: () => dataSource.destroy()
      }
    }
  }
}
