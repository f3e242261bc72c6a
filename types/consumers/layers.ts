// Every data layer's own transaction passed to `request.idempotency.complete(tx, body)` as the
// layer hands it to the user, with no cast: compiled against the built package with strict on
// and skipLibCheck off (layers/tsconfig.json, run by test/types-consumers.test.ts).
import Fastify from 'fastify'
import fastifyPrecondition from 'fastify-precondition'
import { pgIdempotencyStore } from 'fastify-precondition/postgres'
import pg from 'pg'
import postgres from 'postgres'
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import { drizzle as drizzleNodePostgres } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import { drizzle as drizzleMysql } from 'drizzle-orm/mysql2'
import knex from 'knex'
import { DataSource } from 'typeorm'
import mysql from 'mysql2/promise'

interface Database { orders: { id: Generated<number>, item: string } }

const pool = new pg.Pool()
const sql = postgres()
const kysely = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
const drizzlePg = drizzleNodePostgres(pool)
const drizzleJs = drizzlePostgresJs(sql)
const mysqlPool = mysql.createPool({})
const drizzleMy = drizzleMysql(mysqlPool)
const db = knex({ client: 'pg' })
const dataSource = new DataSource({ type: 'postgres' })

const app = Fastify()
app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
// The store's pool: a node-postgres Pool, or a postgres.js sql.
pgIdempotencyStore({ pool: sql })
// @ts-expect-error a Kysely instance is no pool of the store
pgIdempotencyStore({ pool: kysely })

app.post('/orders', async (request) => {
  const idempotency = request.idempotency
  if (idempotency === null) return {}
  const order = { id: 1 }

  const client = await pool.connect()
  await idempotency.complete(client, order)
  client.release()
  await sql.begin(async (tx) => { await idempotency.complete(tx, order) })
  await kysely.transaction().execute(async (trx) => { await idempotency.complete(trx, order) })
  await drizzlePg.transaction(async (tx) => { await idempotency.complete(tx, order) })
  await drizzleJs.transaction(async (tx) => { await idempotency.complete(tx, order) })
  await drizzleMy.transaction(async (tx) => { await idempotency.complete(tx, order) })
  await db.transaction(async (trx) => { await idempotency.complete(trx, order) })
  await dataSource.transaction(async (manager) => { await idempotency.complete(manager, order) })
  const connection = await mysqlPool.getConnection()
  await connection.beginTransaction()
  await idempotency.complete(connection, order)
  // Anything else, Prisma's interactive transaction say: a function.
  await idempotency.complete(async (text, values) => ({ rowCount: text.length + values.length }), order)

  // @ts-expect-error an empty object is no transaction
  await idempotency.complete({}, order)
  // @ts-expect-error a function must say how many rows it changed
  await idempotency.complete(async () => 1, order)
  return order
})
