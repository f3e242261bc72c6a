// The fault matrix, PostgreSQL: what a client got is what its retry gets, and a 409 is worth
// waiting for (DESIGN.md, "Exactly once in operation"), over HTTP against a forked orders app with
// the store's default lease (10 s).
// - A handler that calls `complete` and then throws a 400 before COMMIT: the resend gets that 400
//   (stored) or runs at once, never a 409 for the rest of a lease nobody holds.
// - A second `complete` after an attempt that recorded the answer and rolled back: one order, its
//   201 replayed.
// - `idempotentWrite` with `timeout: 500` against a 1.5 s handler: the first send times out, the
//   resend meets the running claim's 409, and its Retry-After is a short hint, not the lease's end:
//   settled in under 5 s.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { idempotentWrite } from '../../lib/client.js'
import { idempotencyTableSql } from '../../lib/postgres.js'
import { sleep, type HttpResponse } from '../helpers/http.js'
import { describe, ordersApp } from '../helpers/pg-faults.js'
import { postgresMissing, startPostgres } from '../helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
t.setTimeout(180_000)

t.test('answers after complete, and the wait a 409 costs', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')
  const dir = mkdtempSync(join(tmpdir(), 'pg-answers-'))
  const runsFile = join(dir, 'runs')
  writeFileSync(runsFile, '')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const app = ordersApp({ DATABASE_URL: server.connectionString, RUNS_FILE: runsFile })
  t.teardown(() => app.stop())
  await app.ensure()

  const runs = (key: string): number => readFileSync(runsFile, 'utf8').split('\n').filter((line) => line.split('\t')[0] === key).length
  const orders = async (key: string): Promise<number> => (await pool.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n
  const record = async (key: string): Promise<{ done: boolean, status: number | null } | undefined> =>
    (await pool.query('SELECT token IS NULL AS done, status FROM fastify_precondition_idempotency WHERE key = $1', [key])).rows[0]

  t.test('complete, then a 400 thrown before COMMIT: the resend gets that 400 or runs, never a 409', async (t) => {
    const key = 'refused-after-complete'
    const headers = { 'x-test-fail-after-complete': '400' }
    const first = await app.post(key, 'tea', headers)
    t.equal(first.status, 400, `the client gets the handler's 400: ${describe(first)}`)
    const stored = await record(key)
    t.ok(stored === undefined || (stored.done && stored.status === 400), `the key is released or holds that 400 (record: ${JSON.stringify(stored ?? null)})`)
    const resends: HttpResponse[] = []
    for (let i = 0; i < 4; i++) {
      resends.push(await app.post(key, 'tea', headers))
      await sleep(150)
    }
    t.same(resends.map((answer) => answer.status), [400, 400, 400, 400], `each resend within the lease gets the 400 (${resends.map(describe).join(', ')})`)
    const replayed = resends.filter((answer) => answer.headers['idempotent-replayed'] === 'true').length
    t.ok(replayed === 0 || replayed === resends.length, `replayed every time or run every time (${replayed} of ${resends.length} replayed)`)
    if (replayed > 0) t.same(resends[0].json(), first.json(), 'the stored 400 is the one sent')
    t.equal(await orders(key), 0, 'no order committed')
  })

  t.test('a second complete after an attempt that recorded the answer and rolled back', async (t) => {
    const key = 'complete-twice'
    const first = await app.post(key, 'tea', { 'x-test-complete-twice': '1' })
    t.equal(first.status, 201, `the second attempt records and commits: ${describe(first)}`)
    const resend = await app.post(key, 'tea')
    t.equal(resend.headers['idempotent-replayed'], 'true', `the resend replays: ${describe(resend)}`)
    t.same(resend.json(), first.json())
    t.equal(await orders(key), 1, 'one order')
    t.equal(runs(key), 1, 'the handler ran once')
  })

  t.test('idempotentWrite with timeout 500 against a 1.5 s handler settles in under 5 s', async (t) => {
    const key = 'slow-handler'
    const started = Date.now()
    const result = await idempotentWrite(`http://127.0.0.1:${app.port}/orders`, { item: 'tea' }, {
      idempotencyKey: key,
      timeout: 500,
      headers: { 'x-test-hold': '1500' }
    }).then((written) => written, (error: Error) => error)
    const took = Date.now() - started
    t.notOk(result instanceof Error, `it settles: ${result instanceof Error ? result.message : `${result.status}, replayed: ${String(result.replayed)}`}`)
    t.ok(took < 5000, `in under 5 s: ${took} ms (lease 10 s)`)
    if (!(result instanceof Error)) {
      t.equal(result.status, 201)
      t.equal(result.replayed, true, 'with the answer of the send that timed out')
    }
    t.equal(await orders(key), 1, 'one order')
    t.equal(runs(key), 1, 'the handler ran once')
  })
})
