// The transactional claim (`idempotency: { claim: 'transaction' }`, DESIGN.md "The transactional
// claim") across processes and crashes, over HTTP, against a real PostgreSQL: instances forked from
// test/helpers/pg-orders-app.ts with CLAIM=transaction (the key read before the handler; the key's
// row inserted first in the transaction `request.idempotency.transaction(pool, fn)` opens, then the
// order, then the answer, then COMMIT) race duplicates of one key, are killed with SIGKILL inside
// their transaction and after its COMMIT, and are asked about the key with another body. Each
// order row carries its Idempotency-Key, so the test counts how many times a request was applied;
// a line per run of the handler (RUNS_FILE) tells how many duplicates got past the read. Last, what
// a replay costs the server: no transaction ID, no WAL.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { idempotencyTableSql } from '../lib/postgres.js'
import { sleep, type HttpResponse } from './helpers/http.js'
import { bounded, Instance } from './helpers/forked-orders.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
// Five instances compile lib/ as they start: on a loaded machine that alone may take a minute.
t.setTimeout(240_000)

const script = fileURLToPath(new URL('./helpers/pg-orders-app.ts', import.meta.url))

/** Asks the instance to close and waits for its exit; SIGKILL after 5 s. */
async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  // With a callback, a channel that broke (the process is dying) is no error of the teardown.
  if (child.connected) child.send('close', ignore)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

function ignore (): void {}

/** Settles with the response, or with the Error of a connection that was cut. */
const settled = (promise: Promise<HttpResponse>): Promise<HttpResponse | Error> => promise.then((response) => response, (error: Error) => error)

t.test('the transactional claim across processes and crashes, over HTTP', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  // Nothing of the server's own writes into the measure of the last subtest.
  await pool.query('ALTER SYSTEM SET autovacuum = off')
  await pool.query('SELECT pg_reload_conf()')
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')

  const dir = mkdtempSync(join(tmpdir(), 'transaction-claim-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const runsFile = join(dir, 'runs')

  // Forking an instance costs seconds on a loaded machine (it compiles lib/): five, all at once,
  // serve every subtest. `a` and `b` live through the file; each of the others is killed by one.
  const children: ChildProcess[] = []
  t.teardown(() => Promise.all(children.map(stop)))
  const started = Date.now()
  const [a, b, killedBeforeComplete, killedBeforeCommit, killedAfterCommit] = await Promise.all(Array.from({ length: 5 }, async () => {
    const child = fork(script, {
      env: { ...process.env, DATABASE_URL: server.connectionString, CLAIM: 'transaction', RUNS_FILE: runsFile },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    children.push(child)
    const instance = new Instance(child)
    instance.port = (await instance.message((message) => message.port !== undefined, 'port', 60_000)).port as number
    return instance
  }))
  t.comment(`five instances listening after ${Date.now() - started} ms`)

  /** How many orders the requests carrying `key` applied (committed), and their items. */
  const orders = async (key: string): Promise<string[]> =>
    (await pool.query('SELECT item FROM orders WHERE key = $1 ORDER BY id', [key])).rows.map((row: { item: string }) => row.item)
  const applied = async (key: string): Promise<number> => (await orders(key)).length

  /** The key's record (without a scope, the store key is the key): running (token set) or done. */
  const record = async (key: string): Promise<{ done: boolean, status: number | null } | undefined> =>
    (await pool.query('SELECT token IS NULL AS done, status FROM fastify_precondition_idempotency WHERE key = $1', [key])).rows[0]

  /** How many times the handler ran for `key` (got past the read before it), on any instance. */
  const runs = (key: string): number => readFileSync(runsFile, 'utf8').split('\n').filter((line) => line.startsWith(`${key}\t`)).length

  /** The sessions inside a transaction, not running a statement (a handler stalled in one). */
  const openTransactions = async (): Promise<number> =>
    (await pool.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction'")).rows[0].n

  t.test('50 concurrent duplicates split across two processes: one order, one original 201, 49 replays of it; no 409', async (t) => {
    for (const [round, hold] of [[1, '500'], [2, '0']] as const) {
      const key = `duplicates-${round}`
      const began = Date.now()
      // With a hold, the first transaction stays open 500 ms after its INSERTs: the duplicates
      // that read nothing run their handler, and their INSERT of the key's row waits on it.
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? a : b).post(key, 'tea', { 'x-test-hold': hold })))
      const statuses = answers.map((answer) => answer.status)
      const original = answers.filter((answer) => answer.headers['idempotent-replayed'] === undefined)
      const replays = answers.filter((answer) => answer.headers['idempotent-replayed'] === 'true')
      t.same([...new Set(statuses)], [201], `round ${round} (hold ${hold} ms): every answer is a 201 (${Date.now() - began} ms; the handler ran ${runs(key)} times)`)
      t.equal(original.length, 1, 'one original answer')
      t.equal(replays.length, 49, 'the other 49 are replays')
      for (const replay of replays) {
        if (replay.body !== original[0]?.body || replay.headers.location !== original[0]?.headers.location) {
          t.fail(`a replay differs from the original: ${replay.body} (location ${String(replay.headers.location)})`)
          break
        }
      }
      t.pass('every replay has the original body and Location')
      t.match(original[0]?.json(), { item: 'tea' })
      t.equal(await applied(key), 1, 'one order row')
      t.match(await record(key), { done: true, status: 201 }, 'the key is done, with the answer')
      if (round === 1) t.ok(runs(key) > 1, `duplicates got past the read and waited on the key's row in their transaction: ${runs(key)} handler runs`)
    }
    t.same([...a.errors, ...b.errors], [], 'nothing logged at error')
  })

  for (const [point, victim] of [['before-complete', killedBeforeComplete], ['before-commit', killedBeforeCommit]] as const) {
    t.test(`kill -9 mid-transaction (${point}): no row for the key, and a retry on the other process runs once`, async (t) => {
      const key = `killed-${point}`
      const first = settled(victim.post(key, 'coffee', { 'x-test-stall': point }))
      await victim.stalled(point)
      t.ok(await openTransactions() >= 1, 'the victim is inside its transaction')
      t.equal(await applied(key), 0, 'its order is not committed')
      await victim.kill()
      const killed = Date.now()
      const lost = await first
      t.ok(lost instanceof Error, `the first client never got an answer (${String((lost as Error).message)})`)

      // PostgreSQL ends the dead client's session, and rolls its transaction back.
      while (await openTransactions() > 0) {
        if (Date.now() - killed > 5000) throw new Error('the killed instance\'s transaction is still open after 5 s')
        await sleep(50)
      }
      t.comment(`its transaction rolled back ${Date.now() - killed} ms after the kill`)
      t.equal(await applied(key), 0, 'no order for the key')
      t.equal(await record(key), undefined, 'no row for the key in the idempotency table')

      const retry = await b.post(key, 'coffee')
      t.equal(retry.status, 201, `the retry on the other process runs at once (${Date.now() - killed} ms after the kill), no lease to wait for`)
      t.notOk(retry.headers['idempotent-replayed'], 'a run, not a replay')
      t.match(retry.json(), { item: 'coffee' })
      t.equal(await applied(key), 1, 'one order')
      t.match(await record(key), { done: true, status: 201 })
      const again = await a.post(key, 'coffee')
      t.equal(again.headers['idempotent-replayed'], 'true', 'from then on it is replayed, on any instance')
      t.equal(again.body, retry.body)
      t.equal(await applied(key), 1, 'still one order')
    })
  }

  t.test('kill -9 after COMMIT, before the answer went out: the retry on the other process replays it; one order', async (t) => {
    const key = 'killed-after-commit'
    const victim = killedAfterCommit
    const first = settled(victim.post(key, 'tea', { 'x-test-stall': 'after-commit' }))
    const order = await victim.stalled('after-commit')
    t.equal(await applied(key), 1, 'the order is committed')
    t.match(await record(key), { done: true, status: 201 }, 'with the key\'s answer')
    await victim.kill()
    const lost = await first
    t.ok(lost instanceof Error, `the first client never got its answer (${String((lost as Error).message)})`)

    const retry = await b.post(key, 'tea')
    t.equal(retry.status, 201, 'the retry gets the status the dead process would have sent')
    t.equal(retry.headers['idempotent-replayed'], 'true', 'replayed')
    t.same(retry.json(), order, 'and its body')
    t.equal(retry.headers.location, `/orders/${order.id}`, 'and its Location')
    t.match(retry.headers['content-type'], /^application\/json/)
    t.equal(await applied(key), 1, 'exactly one order')
  })

  t.test('another body under the key: 422 and no second order, after it completed and while it runs', async (t) => {
    const key = 'other-body-after'
    const done = await a.post(key, 'tea')
    t.equal(done.status, 201)
    for (const instance of [b, a]) {
      const other = await instance.post(key, 'coffee')
      t.equal(other.status, 422, 'another body under a done key')
      t.match(other.json(), { status: 422, code: 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISMATCH' })
    }
    t.equal(runs(key), 1, 'answered by the read, before the handler')
    t.same(await orders(key), ['tea'], 'no second order')

    const running = 'other-body-during'
    const first = settled(a.post(running, 'tea', { 'x-test-stall': 'before-complete' }))
    await a.stalled('before-complete')
    let answered = false
    const other = settled(b.post(running, 'coffee')).then((answer) => {
      answered = true
      return answer
    })
    await sleep(500)
    t.notOk(answered, 'another body while the first transaction is open waits (its INSERT of the key\'s row, on the first one\'s)')
    a.resume('before-complete')
    const firstAnswer = await bounded(first, 10_000, 'the first request to end')
    if (firstAnswer instanceof Error) throw firstAnswer
    t.equal(firstAnswer.status, 201, 'the first commits')
    const otherAnswer = await bounded(other, 10_000, 'the other body\'s answer')
    if (otherAnswer instanceof Error) throw otherAnswer
    t.equal(otherAnswer.status, 422, 'then the other body is refused')
    t.match(otherAnswer.json(), { code: 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISMATCH' })
    t.equal(runs(running), 2, 'its handler ran, and its transaction rolled back')
    t.same(await orders(running), ['tea'], 'no second order')
  })

  t.test('a replay writes nothing: no transaction ID, no WAL', async (t) => {
    let walinspect = true
    try {
      await pool.query('CREATE EXTENSION IF NOT EXISTS pg_walinspect')
    } catch {
      walinspect = false
      t.comment('pg_walinspect is not installed: the WAL is measured by its position alone')
    }
    interface Position { insert: string, written: string, xid: string }
    const position = async (): Promise<Position> => (await pool.query(
      'SELECT pg_current_wal_insert_lsn()::text AS insert, pg_current_wal_lsn()::text AS written, pg_snapshot_xmax(pg_current_snapshot())::text AS xid')).rows[0]
    /** Until all the WAL inserted is written (what earlier transactions left in the buffers), at most 3 s. */
    async function settle (): Promise<Position> {
      const until = Date.now() + 3000
      for (;;) {
        const now = await position()
        if (now.insert === now.written || Date.now() > until) return now
        await sleep(50)
      }
    }
    /** The WAL bytes, the records other than the background writer's, and the transaction IDs that `requests` cost. */
    async function cost (requests: () => Promise<void>): Promise<{ bytes: number, records: string[], xids: number, written: boolean }> {
      const before = await settle()
      await requests()
      const after = await position()
      const { rows: [{ bytes }] } = await pool.query('SELECT pg_wal_lsn_diff($1, $2)::float8 AS bytes', [after.insert, before.insert])
      let records: string[] = []
      if (bytes > 0 && walinspect) {
        // Every 15 s with WAL written since, the background writer logs the running transactions
        // (for standbys): not the requests'.
        const until = Date.now() + 3000
        while ((await pool.query('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS flushed', [after.insert])).rows[0].flushed !== true && Date.now() < until) await sleep(50)
        const { rows } = await pool.query('SELECT resource_manager || \'/\' || record_type AS record FROM pg_get_wal_records_info($1, $2)', [before.insert, after.insert])
        records = rows.map((row: { record: string }) => row.record).filter((record: string) => record !== 'Standby/RUNNING_XACTS')
      } else if (bytes > 0) {
        records = [`${bytes} bytes`]
      }
      return { bytes, records, xids: Number(after.xid) - Number(before.xid), written: after.written !== before.written }
    }

    const key = 'replayed'
    const done = await a.post(key, 'tea')
    t.equal(done.status, 201)
    const fresh = await cost(async () => {
      t.equal((await b.post('fresh', 'tea')).status, 201)
    })
    t.ok(fresh.xids >= 1 && fresh.bytes > 0, `the measure: a new key is a write, as it must be (${fresh.xids} transaction ID, ${fresh.bytes} WAL bytes)`)

    const replays = await cost(async () => {
      for (let i = 0; i < 20; i++) {
        const replay = await (i % 2 === 0 ? a : b).post(key, 'tea')
        if (replay.status !== 201 || replay.headers['idempotent-replayed'] !== 'true' || replay.body !== done.body) t.fail(`replay ${i + 1}: ${replay.status} ${replay.body}`)
      }
    })
    t.equal(replays.xids, 0, '20 replays: no transaction ID (the next one is where it was)')
    t.same(replays.records, [], `20 replays: no WAL (${replays.bytes} bytes inserted, pg_current_wal_lsn() ${replays.written ? 'moved' : 'where it was'})`)

    const refusals = await cost(async () => {
      for (let i = 0; i < 5; i++) {
        const refused = await (i % 2 === 0 ? a : b).post(key, 'coffee')
        if (refused.status !== 422) t.fail(`another body ${i + 1}: ${refused.status} ${refused.body}`)
      }
    })
    t.same({ xids: refusals.xids, records: refusals.records }, { xids: 0, records: [] }, '5 × 422 for another body: no transaction ID, no WAL')
    t.equal(runs(key), 1, 'all answered by the read, before the handler')
    t.equal(await applied(key), 1, 'one order')
  })
})
