// docs/postgresql.md's recipe for each data layer ("Your data layer"), run as printed: each block
// becomes the body of a keyed POST /orders handler, with the layer's database object set up as
// its users do, against a real PostgreSQL. Each answers 201 with a Location, and its resend is
// the identical replay with one order.
import 'reflect-metadata'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { drizzle as drizzleNodePostgres } from 'drizzle-orm/node-postgres'
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js'
import { pgTable, serial, text } from 'drizzle-orm/pg-core'
import Fastify from 'fastify'
import knex from 'knex'
import { Kysely, PostgresDialect } from 'kysely'
import pg from 'pg'
import postgres from 'postgres'
import { test } from 'tap'
import { DataSource } from 'typeorm'
import fastifyPrecondition from '../lib/index.js'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { send } from './helpers/http.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

const guide = readFileSync(join(import.meta.dirname, '..', 'docs', 'postgresql.md'), 'utf8')
const layers = guide.slice(guide.indexOf('## Your data layer'), guide.indexOf('## What it guarantees'))

/** The code block that follows the paragraph starting with `label`, as printed. */
function recipe (label: string): string {
  const at = layers.indexOf(`\n${label}`)
  if (at === -1) throw new Error(`no recipe labelled ${label}`)
  const from = layers.indexOf('```js\n', at) + 6
  return layers.slice(from, layers.indexOf('```', from))
}

type Handler = (request: unknown, reply: unknown, layer: Record<string, unknown>) => Promise<unknown>
const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => Handler

const orders = pgTable('orders', { id: serial('id').primaryKey(), item: text('item').notNull() })

test('docs/postgresql.md: each data layer\'s recipe, as printed', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)')
  const url = server.connectionString
  const sql = postgres(url, { max: 3, onnotice: () => {} })
  const kyselyPool = new pg.Pool({ connectionString: url, max: 3 })
  const drizzlePool = new pg.Pool({ connectionString: url, max: 3 })
  // Idle clients whose server stops first, at the end: not the process's end.
  for (const each of [kyselyPool, drizzlePool]) each.on('error', () => {})
  const knexDb = knex({ client: 'pg', connection: url, pool: { min: 0, max: 3 } })
  const dataSource = await new DataSource({ type: 'postgres', url, poolSize: 3 }).initialize()
  t.teardown(async () => {
    await Promise.all([sql.end({ timeout: 1 }), new Kysely({ dialect: new PostgresDialect({ pool: kyselyPool }) }).destroy(), drizzlePool.end(), knexDb.destroy(), dataSource.destroy()])
  })
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['postgres.js', 'postgres.js:', { sql }],
    ['Kysely', 'Kysely:', { db: new Kysely({ dialect: new PostgresDialect({ pool: kyselyPool }) }) }],
    ['Drizzle on node-postgres', 'Drizzle ORM', { db: drizzleNodePostgres(drizzlePool), orders }],
    ['Drizzle on postgres.js', 'Drizzle ORM', { db: drizzlePostgresJs(sql), orders }],
    ['Knex', 'Knex:', { knex: knexDb }],
    ['TypeORM', 'TypeORM:', { dataSource }]
  ]
  for (const [name, label, layer] of cases) {
    await t.test(name, async (t) => {
      const code = recipe(label)
      const names = Object.keys(layer)
      const body = new AsyncFunction('request', 'reply', '{ ' + names.join(', ') + ' }', code)
      const app = Fastify()
      await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
      app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => await body(request, reply, layer))
      await app.listen({ host: '127.0.0.1', port: 0 })
      t.teardown(() => app.close())
      const port = (app.server.address() as { port: number }).port
      const post = () => send(port, { method: 'POST', path: '/orders', body: { item: name }, headers: { 'idempotency-key': `"${name.replace(/\W/g, '-')}"` } })
      const first = await post()
      t.equal(first.status, 201, first.body)
      t.match(first.headers.location, /^\/orders\/\d+$/)
      const again = await post()
      t.equal(again.headers['idempotent-replayed'], 'true')
      t.equal(again.body, first.body)
      t.equal(again.headers.location, first.headers.location)
      t.equal((await pool.query('SELECT count(*)::int AS n FROM orders WHERE item = $1', [name])).rows[0].n, 1, 'one order')
    })
  }
})
