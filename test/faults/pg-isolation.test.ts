// The fault matrix, PostgreSQL: `request.idempotency.complete(tx, body)` whatever the handler's
// transaction is. A per-request transaction opened in a preHandler hook, before the claim, at READ
// COMMITTED, REPEATABLE READ and SERIALIZABLE; with a statement run in the hook (so its snapshot
// predates the claim) and without; and a transaction on another database of the same cluster
// (which has the record table too, as migrations run on each make it). Whatever happens, no 409
// `IDEMPOTENCY_CLAIM_LOST` is stored as the key's answer: the order is placed once and its 201
// replayed, or the request fails with an error that says what is wrong, and the key is free for
// the retry (DESIGN.md, "Exactly once in operation").
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { idempotencyTableSql } from '../../lib/postgres.js'
import { describe, ordersApp } from '../helpers/pg-faults.js'
import { postgresMissing, startPostgres } from '../helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
t.setTimeout(180_000)

const CLAIM_LOST = 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST'
const ORDERS = 'CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)'

t.test('complete in a transaction begun before the claim, or on another database', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query(ORDERS)
  await pool.query('CREATE DATABASE other')
  const otherUrl = `postgresql://postgres@127.0.0.1:${server.port}/other`
  const other = new pg.Pool({ connectionString: otherUrl, max: 2 })
  other.on('error', () => {})
  t.teardown(() => other.end())
  await other.query(idempotencyTableSql())
  await other.query(ORDERS)

  const dir = mkdtempSync(join(tmpdir(), 'pg-isolation-'))
  const runsFile = join(dir, 'runs')
  writeFileSync(runsFile, '')
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const app = ordersApp({ DATABASE_URL: server.connectionString, OTHER_DATABASE_URL: otherUrl, RUNS_FILE: runsFile })
  t.teardown(() => app.stop())
  await app.ensure()

  const runs = (key: string): number => readFileSync(runsFile, 'utf8').split('\n').filter((line) => line.split('\t')[0] === key).length
  const orders = async (key: string, db = pool): Promise<number> => (await db.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n
  const record = async (key: string): Promise<{ done: boolean, status: number | null } | undefined> =>
    (await pool.query('SELECT token IS NULL AS done, status FROM fastify_precondition_idempotency WHERE key = $1', [key])).rows[0]
  const codeOf = (answer: { json: () => any }): string | undefined => { try { return answer.json().code } catch { return undefined } }

  for (const isolation of ['read committed', 'repeatable read', 'serializable']) {
    for (const snapshot of [false, true]) {
      const what = `${isolation}, begun in a hook${snapshot ? ' and a statement run in it (its snapshot predates the claim)' : ''}`
      t.test(what, async (t) => {
        const key = `${isolation.replace(' ', '-')}${snapshot ? '-snapshot' : ''}`
        const headers: Record<string, string> = { 'x-test-isolation': isolation, ...(snapshot ? { 'x-test-snapshot': '1' } : {}) }
        const first = await app.post(key, 'tea', headers)
        t.not(codeOf(first), CLAIM_LOST, `not told its claim was lost while it held the key: ${describe(first)}`)
        const stored = await record(key)
        t.notMatch(stored, { done: true, status: 409 }, `no 409 stored as the key's answer (record: ${JSON.stringify(stored ?? null)})`)
        const resend = await app.post(key, 'tea', headers)
        if (first.status === 201) {
          t.equal(resend.status, 201, `the resend gets the 201: ${describe(resend)}`)
          t.equal(resend.headers['idempotent-replayed'], 'true', 'replayed')
          t.same(resend.json(), first.json(), 'the same order')
          t.equal(await orders(key), 1, 'one order')
        } else {
          t.ok(first.status >= 500, `or a clear error, a 5xx the key is released on: ${describe(first)}`)
          t.equal(stored, undefined, 'the key is free for a retry')
          t.not(resend.headers['idempotent-replayed'], 'true', `the resend is not a replay: ${describe(resend)}`)
          const plain = await app.post(`${key}-plain`, 'tea')
          t.equal(plain.status, 201, 'and a handler without the hook\'s transaction works')
          t.equal(await orders(key), resend.status === 201 ? 1 : 0, 'no order but a committed one')
        }
        t.ok(runs(key) <= 2, `the handler ran ${runs(key)} time(s) for 2 sends`)
      })
    }
  }

  t.test('a transaction on another database: a clear error, not CLAIM_LOST, and the key released', async (t) => {
    const key = 'other-database'
    const headers = { 'x-test-isolation': 'read committed', 'x-test-database': 'other' }
    const first = await app.post(key, 'tea', headers)
    t.not(codeOf(first), CLAIM_LOST, `not told its claim was lost: ${describe(first)}`)
    t.ok(first.status >= 500, `an error (5xx): ${describe(first)}`)
    t.comment(`message: ${String((() => { try { return first.json().message } catch { return first.body } })())}`)
    const stored = await record(key)
    t.equal(stored, undefined, `the key is released (record: ${JSON.stringify(stored ?? null)})`)
    t.equal(await orders(key, other), 0, 'nothing committed on the other database')
    const retry = await app.post(key, 'tea')
    t.equal(retry.status, 201, `a retry on the right database runs: ${describe(retry)}`)
    t.not(retry.headers['idempotent-replayed'], 'true', 'not a replay')
    t.equal(await orders(key), 1, 'one order')
  })
})
