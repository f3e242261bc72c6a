// pgIdempotencyStore behind PgBouncer in transaction pooling, with fewer server connections (2)
// than client connections (10): consecutive statements of one client run on different server
// sessions, so anything the store kept in a session (a SET, an advisory lock, a named prepared
// statement) would break here. The recipe's transactions, concurrent duplicates and replays all
// go through the bouncer. Skipped where pgbouncer is not installed.
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { test } from 'tap'
import fastifyPrecondition from '../lib/index.js'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { send } from './helpers/http.js'
import { pgbouncerMissing, pgbouncerVersion, startBouncer } from './helpers/pg-bouncer.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing() || pgbouncerMissing()
if (skip !== false) console.log(`# ${skip}`)

test('the PostgreSQL store behind PgBouncer, transaction pooling', { skip }, async (t) => {
  const { server, pool: direct } = await startPostgres(t, pg.Pool)
  await direct.query(idempotencyTableSql())
  await direct.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL)')
  // The bouncer's user, with the timeouts the docs advise set on the role: PgBouncer passes no
  // startup parameters through.
  await direct.query("CREATE ROLE app LOGIN SUPERUSER; ALTER ROLE app SET lock_timeout = '2s'; ALTER ROLE app SET statement_timeout = '5s'")
  const bouncer = await startBouncer(t, server.port, ['app'], 2)
  t.comment(`PgBouncer ${pgbouncerVersion()}, pool_mode = transaction, default_pool_size = 2`)

  const pool = new pg.Pool({ connectionString: bouncer.url('app'), max: 10 })
  pool.on('error', () => {})
  t.teardown(() => pool.end())

  const app: FastifyInstance = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool, lease: 3000, sweepEvery: 5 }) })
  app.post<{ Body: { item: string } }>('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      const { rows: [order] } = await tx.query('INSERT INTO orders (item, key) VALUES ($1, $2) RETURNING id, item', [request.body.item, request.idempotency!.key])
      await tx.query('SELECT pg_sleep(0.05)') // concurrent requests overlap
      reply.code(201)
      await request.idempotency!.complete(tx, order)
      await tx.query('COMMIT')
      return order
    } catch (error) {
      await tx.query('ROLLBACK')
      throw error
    } finally {
      tx.release()
    }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const post = (key: string) => send(port, { method: 'POST', path: '/orders', headers: { 'idempotency-key': `"${key}"` }, body: { item: 'tea' } })
  const applied = async (key: string) => (await direct.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n as number

  t.test('the role\'s timeouts reach the sessions; a startup parameter does not get through', async (t) => {
    t.same((await pool.query('SHOW lock_timeout')).rows, [{ lock_timeout: '2s' }])
    const client = new pg.Client({ connectionString: bouncer.url('app'), options: '-c lock_timeout=1000' })
    client.on('error', () => {})
    await t.rejects(client.connect(), /unsupported/, 'PgBouncer refuses `options=-c lock_timeout=…`')
  })

  t.test('20 concurrent duplicates and 20 distinct keys at once: one run each', async (t) => {
    const started = Date.now()
    const answers = await Promise.all([
      ...Array.from({ length: 20 }, () => post('shared')),
      ...Array.from({ length: 20 }, (_, i) => post(`distinct-${i}`))
    ])
    const duplicates = answers.slice(0, 20)
    const ran = duplicates.filter((answer) => answer.status === 201 && answer.headers['idempotent-replayed'] === undefined)
    t.equal(ran.length, 1, `one run of the shared key (${Date.now() - started} ms for all 40)`)
    t.ok(duplicates.every((answer) => answer.status === 201 || answer.status === 409), 'the others 201 (replayed) or 409')
    t.equal(await applied('shared'), 1)
    t.same(answers.slice(20).map((answer) => answer.status), Array(20).fill(201), 'every distinct key ran')
    for (let i = 0; i < 20; i++) t.equal(await applied(`distinct-${i}`), 1, `distinct-${i}: one order`)
    const { rows: [sessions] } = await direct.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'app'")
    t.ok(sessions.n <= 2, `on at most 2 server sessions (${String(sessions.n)}), for 10 client connections`)
  })

  t.test('replays, through the bouncer', async (t) => {
    for (let i = 0; i < 20; i++) {
      const again = await post(`distinct-${i}`)
      t.equal(again.headers['idempotent-replayed'], 'true', `distinct-${i}`)
    }
    t.equal(await applied('distinct-0'), 1)
    const problems = bouncer.log().split('\n').filter((line) => /ERROR|WARNING/.test(line) && !/unsupported startup parameter/.test(line))
    t.same(problems, [], 'no error or warning in the bouncer\'s log but the refused startup parameter')
  })
})
