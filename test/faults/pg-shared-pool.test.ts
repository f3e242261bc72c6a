// The fault matrix, PostgreSQL: one small pool shared by the store and the handlers (as the setup
// snippet of the docs shows), saturated. Two processes, each with one pool of 2 connections for
// both; 100 keys, each sent once at the start (half to each process) and sent again to the other
// process once its lease (2 s) could have ended (50 keys through PgBouncer, whose 2 server
// connections serve both processes), as a client that timed out resends; every handler
// holds its transaction 400 ms, so requests wait for a connection far longer than a lease. Each
// run of a handler appends a line to a file (a side effect outside the database: an email, a
// payment call). Asserted: no key's handler runs twice, no client is told CLAIM_LOST, one order at
// most per key (DESIGN.md, "Exactly once in operation": renewals do not starve behind a saturated
// pool). Then the same through PgBouncer in transaction pooling (2 server connections).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t, { type Test } from 'tap'
import { idempotencyTableSql } from '../../lib/postgres.js'
import { sleep, type HttpResponse } from '../helpers/http.js'
import { pgbouncerMissing, startBouncer } from '../helpers/pg-bouncer.js'
import { ordersApp, settled, type AppProcess } from '../helpers/pg-faults.js'
import { postgresMissing, startPostgres } from '../helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
t.setTimeout(300_000)

const LEASE = 2000
const HOLD = 400

t.test('a saturated pool shared by the store and the handlers', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')
  await pool.query('CREATE ROLE app LOGIN SUPERUSER')
  const dir = mkdtempSync(join(tmpdir(), 'pg-shared-pool-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))

  /** Two processes on `databaseUrl`, 2 POSTs for each of KEYS keys; the runs, answers and orders per key checked. */
  async function run (t: Test, name: string, databaseUrl: string, KEYS: number): Promise<void> {
    const runsFile = join(dir, `${name}.runs`)
    writeFileSync(runsFile, '')
    const env = {
      DATABASE_URL: databaseUrl,
      SHARED_POOL: '1',
      POOL_MAX: '2',
      LEASE: String(LEASE),
      CLAIM_TIMEOUT: '60000', // the claims wait in the pool's queue too: no 503 for that
      RUNS_FILE: runsFile
    }
    const apps: AppProcess[] = [ordersApp(env), ordersApp(env)]
    t.teardown(() => Promise.all(apps.map((app) => app.stop())))
    await Promise.all(apps.map((app) => app.ensure()))

    const key = (i: number): string => `${name}-${i}`
    const headers = { 'x-test-hold': String(HOLD) }
    const started = Date.now()
    const first = Array.from({ length: KEYS }, (_, i) => settled(apps[i % 2].post(key(i), 'tea', headers)))
    await sleep(LEASE * 1.5)
    const second = Array.from({ length: KEYS }, (_, i) => settled(apps[(i + 1) % 2].post(key(i), 'tea', headers)))
    const answers = await Promise.all([...first, ...second])
    const took = Date.now() - started

    const runs = new Map<string, number>()
    for (const line of readFileSync(runsFile, 'utf8').split('\n')) {
      if (line !== '') runs.set(line.split('\t')[0], (runs.get(line.split('\t')[0]) ?? 0) + 1)
    }
    const twice = [...runs].filter(([, n]) => n > 1).map(([k]) => k)
    const summary = new Map<string, number>()
    for (const answer of answers) {
      const what = answer instanceof Error
        ? `error ${answer.message}`
        : `${answer.status} ${String((answer as HttpResponse).headers['idempotent-replayed'] === 'true' ? 'replayed' : (() => { try { return answer.json().code ?? '' } catch { return '' } })())}`
      summary.set(what, (summary.get(what) ?? 0) + 1)
    }
    t.comment(`${answers.length} answers in ${took} ms: ${[...summary].map(([what, n]) => `${n} × ${what}`).join(', ')}`)
    t.same(twice, [], `no key's handler ran twice (${twice.length} of ${KEYS} did; ${[...runs.values()].reduce((a, b) => a + b, 0)} runs)`)
    const lost = answers.filter((answer) => !(answer instanceof Error) && /CLAIM_LOST/.test(answer.body)).length
    t.equal(lost, 0, `no client told CLAIM_LOST (${lost} were)`)
    t.equal(answers.filter((answer) => answer instanceof Error).length, 0, 'every request answered')
    const { rows } = await pool.query('SELECT key, count(*)::int AS n FROM orders WHERE key LIKE $1 GROUP BY key HAVING count(*) > 1', [`${name}-%`])
    t.same(rows, [], 'at most one order per key')
    const { rows: [{ n: placed }] } = await pool.query('SELECT count(DISTINCT key)::int AS n FROM orders WHERE key LIKE $1', [`${name}-%`])
    t.equal(placed, KEYS, `every key's order placed (${placed})`)
  }

  t.test('straight to PostgreSQL', (t) => run(t, 'direct', server.connectionString.replace('postgres@', 'app@'), 100))
  t.test('through PgBouncer, transaction pooling, 2 server connections', { skip: pgbouncerMissing() }, async (t) => {
    const bouncer = await startBouncer(t, server.port, ['app'], 2)
    await run(t, 'bouncer', bouncer.url('app'), 50)
  })
})
