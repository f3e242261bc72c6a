// Exactly once across crashes, over HTTP, against a real PostgreSQL: server processes forked from
// test/helpers/pg-orders-app.ts (the plugin with pgIdempotencyStore, POST /orders recording its
// answer in its own transaction) are killed with SIGKILL or paused with SIGSTOP at chosen points
// of the handler, and their clients retry on another process. Each order row carries its
// Idempotency-Key, so the test counts how many times a request was applied.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { idempotencyTableSql } from '../lib/postgres.js'
import { sleep, type HttpResponse } from './helpers/http.js'
import { bounded, Instance } from './helpers/forked-orders.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
// Four instances compile lib/ as they start: on a loaded machine that alone may take a minute.
t.setTimeout(240_000)

const script = fileURLToPath(new URL('./helpers/pg-orders-app.ts', import.meta.url))
/** The store's lease in the instances, ms: renewed every 500 ms while a handler runs. */
const LEASE = 1500
/** The lock_timeout of each instance's idempotency store pool, ms. */
const STORE_LOCK_TIMEOUT = 1000

/** Asks the instance to close and waits for its exit; SIGKILL after 5 s. A stopped one is continued first. */
async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGCONT')
  // With a callback, a channel that broke (the process is dying) is no error of the teardown.
  if (child.connected) child.send('close', ignore)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

function ignore (): void {}

/** Settles with the response, or with the Error of a connection that was cut. */
const settled = (promise: Promise<HttpResponse>): Promise<HttpResponse | Error> => promise.then((response) => response, (error: Error) => error)

t.test('exactly once across crashes, over HTTP', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')

  // Forking an instance costs seconds on a loaded machine (it compiles lib/): four, all at once,
  // serve every subtest. `a` and `b` live through the file; each of the two others is killed by one.
  const children: ChildProcess[] = []
  t.teardown(() => Promise.all(children.map(stop)))
  const started = Date.now()
  const [a, b, killedAfterCommit, killedBeforeCommit] = await Promise.all(Array.from({ length: 4 }, async () => {
    const child = fork(script, {
      env: { ...process.env, DATABASE_URL: server.connectionString, LEASE: String(LEASE), STORE_LOCK_TIMEOUT: String(STORE_LOCK_TIMEOUT) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    children.push(child)
    const instance = new Instance(child)
    instance.port = (await instance.message((message) => message.port !== undefined, 'port', 60_000)).port as number
    return instance
  }))
  t.comment(`four instances listening after ${Date.now() - started} ms`)

  /** How many orders the requests carrying `key` applied (committed). */
  const applied = async (key: string): Promise<number> =>
    (await pool.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n

  /** The key's record (without a scope, the store key is the key): running (token set) or done. */
  const record = async (key: string): Promise<{ done: boolean, status: number | null } | undefined> =>
    (await pool.query('SELECT token IS NULL AS done, status FROM fastify_precondition_idempotency WHERE key = $1', [key])).rows[0]

  t.test('kill -9 after COMMIT, before the answer went out: the retry on another process replays it; one order', async (t) => {
    const key = 'after-commit'
    const victim = killedAfterCommit
    const first = settled(victim.post(key, 'tea', { 'x-test-stall': 'after-commit' }))
    const order = await victim.stalled('after-commit')
    t.equal(await applied(key), 1, 'the order is committed')
    await victim.kill()
    const killed = Date.now()
    const lost = await first
    t.ok(lost instanceof Error, `the first client never got its answer (${String((lost as Error).message)})`)

    const retry = await b.post(key, 'tea')
    t.equal(retry.status, 201, `the retry is answered at once (${Date.now() - killed} ms after the kill)`)
    t.equal(retry.headers['idempotent-replayed'], 'true', 'by the answer recorded in the transaction')
    t.same(retry.json(), order, 'the body the dead process would have sent')
    t.match(retry.headers['content-type'], /^application\/json/)
    t.equal(await applied(key), 1, 'exactly one order')
  })

  t.test('kill -9 before COMMIT: the retry gets 409 until the lease ends, then runs once; one order', async (t) => {
    const key = 'before-commit'
    const victim = killedBeforeCommit
    const first = settled(victim.post(key, 'coffee', { 'x-test-stall': 'before-commit' }))
    await victim.stalled('before-commit')
    t.equal(await applied(key), 0, 'the answer is recorded in the transaction, which is not committed')
    await victim.kill()
    const killed = Date.now()
    t.ok(await first instanceof Error, 'the first client never got an answer')

    const refusals: HttpResponse[] = []
    let retry: HttpResponse
    for (;;) {
      retry = await b.post(key, 'coffee')
      if (retry.status !== 409 || Date.now() - killed > LEASE + 5000) break
      refusals.push(retry)
      await sleep(100)
    }
    const waited = Date.now() - killed
    t.ok(refusals.length > 0, `answered 409 while the dead request's lease ran (${refusals.length} times)`)
    t.match(refusals[0]?.json(), { status: 409, code: 'FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE' })
    t.ok(Number(refusals[0]?.headers['retry-after']) >= 1, `with Retry-After: ${String(refusals[0]?.headers['retry-after'])}`)
    t.equal(retry.status, 201, `then it runs, ${waited} ms after the kill (lease ${LEASE} ms)`)
    t.notOk(retry.headers['idempotent-replayed'], 'a run, not a replay')
    t.ok(waited < LEASE + 1000, 'no later than the lease allows')
    t.equal(await applied(key), 1, 'one order in total')
    const again = await a.post(key, 'coffee')
    t.equal(again.headers['idempotent-replayed'], 'true', 'and from then on it is replayed, on any instance')
    t.same(again.json(), retry.json())
  })

  t.test('a claim lost mid-handler (SIGSTOP past the lease): complete throws IdempotencyClaimLostError, the transaction rolls back; one order', async (t) => {
    const key = 'claim-lost'
    const first = settled(a.post(key, 'cake', { 'x-test-stall': 'before-complete' }))
    await a.stalled('before-complete')
    a.child.kill('SIGSTOP') // a long pause (GC, a frozen VM): no renewal reaches the database
    const stopped = Date.now()
    try {
      await sleep(LEASE + 300)
      const taken = await b.post(key, 'cake')
      t.equal(taken.status, 201, `another instance claims the key once the lease has ended, and runs (${Date.now() - stopped} ms after the pause began)`)
      t.notOk(taken.headers['idempotent-replayed'])
      t.equal(await applied(key), 1, 'its order is committed')

      a.child.kill('SIGCONT')
      a.resume('before-complete')
      const late = await bounded(first, 10_000, 'the paused request to end')
      if (late instanceof Error) throw late
      t.equal(late.status, 409, 'the paused request, resumed, is refused')
      t.match(late.json(), { code: 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST', message: /not held by this request/ }, 'by IdempotencyClaimLostError from complete')
      t.equal(await applied(key), 1, 'its own INSERT rolled back: one order in total')
      t.match(await record(key), { done: true, status: 201 }, "the key keeps the other instance's answer")
      const retry = await a.post(key, 'cake')
      t.equal(retry.headers['idempotent-replayed'], 'true', 'a retry on the resumed instance replays it')
      t.same(retry.json(), taken.json())
      const warned = await a.message((message) => message.log?.key === key, 'a warning about the key')
      t.comment(`the resumed instance logged: ${String(warned.log?.msg)}`)
    } finally {
      a.child.kill('SIGCONT')
    }
  })

  t.test('a process paused between complete and COMMIT, past its lease: nobody takes the key over; it commits, and is replayed', async (t) => {
    const key = 'paused-before-commit'
    const first = settled(a.post(key, 'bread', { 'x-test-stall': 'before-commit' }))
    await a.stalled('before-commit')
    a.child.kill('SIGSTOP')
    try {
      await sleep(LEASE + 300)
      const asked = Date.now()
      const duplicate = await b.post(key, 'bread')
      const waited = Date.now() - asked
      t.equal(duplicate.status, 503, `a duplicate past the lease waits on the transaction's row lock, and is refused when the store's lock_timeout (${STORE_LOCK_TIMEOUT} ms) ends it: ${waited} ms`)
      t.match(duplicate.json(), { code: 'FST_PRECONDITION_IDEMPOTENCY_UNAVAILABLE' })
      t.ok(waited < STORE_LOCK_TIMEOUT + 2000, 'long before the claim timeout (10 s)')
      t.equal(await applied(key), 0, 'nothing is committed yet')

      a.child.kill('SIGCONT')
      a.resume('before-commit')
      const answer = await bounded(first, 10_000, 'the paused request to end')
      if (answer instanceof Error) throw answer
      t.equal(answer.status, 201, 'resumed, the transaction commits: its lease ran out, but its record was locked all along')
      const retry = await b.post(key, 'bread')
      t.equal(retry.headers['idempotent-replayed'], 'true', 'the retry replays')
      t.same(retry.json(), answer.json())
      t.equal(await applied(key), 1, 'one order')
    } finally {
      a.child.kill('SIGCONT')
    }
  })

  t.test('two processes on one database, 20 concurrent duplicates split between them: one run', async (t) => {
    for (let round = 0; round < 3; round++) {
      const key = `duplicates-${round}`
      const started = Date.now()
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).post(key, 'tea', { 'x-test-hold': '200' })))
      const ran = answers.filter((answer) => answer.status === 201 && answer.headers['idempotent-replayed'] === undefined)
      const replayed = answers.filter((answer) => answer.status === 201 && answer.headers['idempotent-replayed'] === 'true')
      const refused = answers.filter((answer) => answer.status === 409)
      t.equal(ran.length, 1, `round ${round + 1}: one run (${replayed.length} replays, ${refused.length} × 409, ${Date.now() - started} ms)`)
      t.equal(ran.length + replayed.length + refused.length, 20, 'every answer is 201 (replayed) or 409')
      for (const answer of replayed) t.same(answer.json(), ran[0]?.json(), 'a replay is the run\'s answer')
      t.equal(await applied(key), 1, 'one order row')
    }
  })

  t.test('an exception after COMMIT does not cause a second run: the retry replays', async (t) => {
    const key = 'throw-after-commit'
    const first = await a.post(key, 'pie', { 'x-test-after-commit': 'throw' })
    t.equal(first.status, 500, 'the handler failed after its COMMIT')
    t.match(await record(key), { done: true, status: 201 }, 'the record committed with the order is not released by the 5xx')
    const retry = await b.post(key, 'pie')
    t.equal(retry.status, 201)
    t.equal(retry.headers['idempotent-replayed'], 'true')
    t.match(retry.json(), { item: 'pie' })
    t.equal(await applied(key), 1, 'one order')
  })

  t.test('the idempotency store failing after COMMIT does not cause a second run', async (t) => {
    const answered = await a.post('store-down', 'jam', { 'x-test-after-commit': 'store-down' })
    t.equal(answered.status, 201, 'the answer needs nothing more of the store')
    const failed = await a.post('store-down-throw', 'jam', { 'x-test-after-commit': 'store-down,throw' })
    t.equal(failed.status, 500, 'a handler failing after COMMIT, while releasing the key fails too')
    const logged = await a.message((message) => message.log?.key === 'store-down-throw', 'the failed release logged')
    t.match(logged.log?.msg, /releasing an Idempotency-Key failed/, 'the failed release is logged')
    for (const key of ['store-down', 'store-down-throw']) {
      const retry = await b.post(key, 'jam')
      t.equal(retry.headers['idempotent-replayed'], 'true', `${key}: the retry, on another instance, replays`)
      t.equal(retry.status, 201)
      t.equal(await applied(key), 1, `${key}: one order`)
    }
  })

  t.test('PostgreSQL itself crashing after COMMIT: the commit survives it, the retry replays', async (t) => {
    const key = 'database-crash'
    const first = a.post(key, 'soup', { 'x-test-stall': 'after-commit' })
    const order = await a.stalled('after-commit')
    server.kill() // pg_ctl stop -m immediate: no checkpoint, every connection cut
    a.resume('after-commit')
    const answer = await bounded(first, 10_000, 'the answer')
    t.equal(answer.status, 201, 'the first client gets its answer: nothing after COMMIT needs the database')
    const down = await b.post(key, 'soup')
    t.equal(down.status, 503, 'a retry while the database is down is refused, not run')
    const restarting = Date.now()
    await server.start()
    const retry = await b.post(key, 'soup')
    t.equal(retry.headers['idempotent-replayed'], 'true', `after the restart (${Date.now() - restarting} ms) the retry replays`)
    t.same(retry.json(), order)
    t.equal(await applied(key), 1, 'one order')
  })
})
