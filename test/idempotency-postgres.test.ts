// The PostgreSQL idempotency store beyond the contract every store keeps
// (test/idempotency-store-contract.test.ts): its options and DDL, answers recorded in the
// handler's own transaction (committed, rolled back, or with a claim lost meanwhile), two pools
// claiming at once as two instances would, a claim that meets a transaction holding the row, the
// sweep of expired rows, and a server crash. A real cluster, started by the test.
import { readFileSync } from 'node:fs'
import pg from 'pg'
import { test, type Test } from 'tap'
import { PgIdempotencyStore, pgIdempotencyStore, idempotencyTableSql, type PgIdempotencyPool } from '../lib/postgres/idempotency-store.js'
import * as subpath from '../lib/postgres.js'
import { IdempotencyClaimLostError } from '../lib/errors.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { sleep } from './helpers/http.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

// Headers in an order jsonb would not keep (it sorts keys by length): the table uses json.
const order: StoredResponse = { status: 201, headers: { 'content-type': 'application/json; charset=utf-8', location: '/orders/1' }, body: '{"id":1}' }

/** A pool that answers from a script; `calls` records the statements. */
function fakePool (answer: (text: string, values?: unknown[]) => Promise<{ rows: any[], rowCount: number | null }>) {
  const calls: string[] = []
  const pool: PgIdempotencyPool = {
    query: (text, values) => {
      // Where the store is, read once beside the first claim: not one of the statements counted.
      if (text.includes('current_database()')) return Promise.resolve({ rows: [{ db: 'app', port: 5432, started: 'then', isolation: 'read committed' }], rowCount: 1 })
      calls.push(text.split(/\s/)[0])
      return answer(text, values)
    }
  }
  return { pool, calls }
}
const none = { rows: [], rowCount: 0 }

test('options are checked when the store is made', async (t) => {
  const pool = fakePool(async () => none).pool
  const rows: Array<[string, unknown, RegExp]> = [
    ['no options', undefined, /needs options/],
    ['null', null, /needs options/],
    ['no pool', {}, /pool must be a node-postgres Pool/],
    ['a pool without query', { pool: { connect () {} } }, /pool must be a node-postgres Pool/],
    ['table a number', { pool, table: 1 }, /table must be a string/],
    ['table with a quote', { pool, table: 'a"; DROP TABLE b; --' }, /table must be a lower-case SQL name/],
    ['table upper-case', { pool, table: 'Idempotency' }, /lower-case/],
    ['table empty', { pool, table: '' }, /lower-case/],
    ['table starting with a digit', { pool, table: '1abc' }, /lower-case/],
    ['table with three parts', { pool, table: 'a.b.c' }, /optionally schema-qualified/],
    ['an empty schema', { pool, table: '.b' }, /lower-case/],
    ['table too long for its index name', { pool, table: 'a'.repeat(49) }, /at most 48 characters/],
    ['schema too long', { pool, table: 's'.repeat(64) + '.t' }, /lower-case/],
    ['lease 0', { pool, lease: 0 }, /lease \(ms\) must be a positive whole number/],
    ['lease fractional', { pool, lease: 1.5 }, /lease/],
    ['maxAnswerBytes negative', { pool, maxAnswerBytes: -1 }, /maxAnswerBytes must be a positive whole number/],
    ['maxAnswerBytes Infinity', { pool, maxAnswerBytes: Infinity }, /maxAnswerBytes/],
    ['createTable a string', { pool, createTable: 'yes' }, /createTable must be a boolean/],
    ['sweepEvery negative', { pool, sweepEvery: -1 }, /sweepEvery must be a whole number, 0 or more/]
  ]
  for (const [name, options, message] of rows) {
    t.throws(() => pgIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message }, name)
  }
  const store = pgIdempotencyStore({ pool })
  t.ok(store instanceof PgIdempotencyStore)
  t.match(store, { table: '"fastify_precondition_idempotency"', lease: 10_000, maxAnswerBytes: 1024 * 1024, createTable: false, sweepEvery: 100 })
  t.match(pgIdempotencyStore({ pool, table: 'app.idem_1', lease: 500, maxAnswerBytes: 10, createTable: true, sweepEvery: 0 }),
    { table: '"app"."idem_1"', lease: 500, maxAnswerBytes: 10, createTable: true, sweepEvery: 0 })
  t.equal(pgIdempotencyStore({ pool, table: 'a'.repeat(48) }).table, `"${'a'.repeat(48)}"`, '48 characters fit')
})

test('the DDL ships as a file and as idempotencyTableSql(table)', async (t) => {
  const file = readFileSync(new URL('../lib/postgres/idempotency.sql', import.meta.url), 'utf8')
  t.equal(idempotencyTableSql(), file, 'the file is the DDL of the default table')
  const qualified = idempotencyTableSql('app.idem')
  t.match(qualified, /CREATE TABLE IF NOT EXISTS "app"\."idem" \(/)
  t.match(qualified, /CREATE INDEX IF NOT EXISTS "idem_expires_at_idx" ON "app"\."idem" \(expires_at\);/)
  t.throws(() => idempotencyTableSql('x; DROP'), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE' })
})

test('fastify-precondition/postgres exports the store, the DDL and the error', async (t) => {
  t.same(Object.keys(subpath).sort(), ['IdempotencyClaimLostError', 'PgIdempotencyStore', 'idempotencyTableSql', 'pgIdempotencyStore'])
  t.equal(subpath.pgIdempotencyStore, pgIdempotencyStore)
  t.equal(subpath.IdempotencyClaimLostError, IdempotencyClaimLostError)
})

test('IdempotencyClaimLostError', async (t) => {
  const error = new IdempotencyClaimLostError('abc', 'its lease ended and another request claimed it')
  t.ok(error instanceof Error)
  t.match(error, { code: 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST', statusCode: 409, message: /Idempotency-Key "abc" is not held by this request: its lease ended/ })
})

test('a claim whose row keeps changing between its two statements', async (t) => {
  t.test('tries again, and claims once the row is gone', async (t) => {
    let inserts = 0
    const { pool, calls } = fakePool(async (text) => text.startsWith('INSERT') && ++inserts === 2 ? { rows: [], rowCount: 1 } : none)
    const store = pgIdempotencyStore({ pool })
    t.equal((await store.claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['INSERT', 'SELECT', 'UPDATE', 'INSERT'], 'the insert met a row, which was neither live nor there to take over: insert again')
  })
  t.test('takes over a row whose lease or ttl ended', async (t) => {
    const { pool, calls } = fakePool(async (text) => text.startsWith('UPDATE') ? { rows: [], rowCount: 1 } : none)
    t.equal((await pgIdempotencyStore({ pool }).claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['INSERT', 'SELECT', 'UPDATE'], 'the insert met a row, the read found it expired, the update took it')
  })
  t.test('gives up after five tries, so the request is answered 503 rather than spin', async (t) => {
    const { pool, calls } = fakePool(async () => none)
    await t.rejects(pgIdempotencyStore({ pool }).claim('k', 'fp', 1000), /changed under 5 claims in a row/)
    t.equal(calls.length, 15)
  })
})

test('a claim whose connection broke is sent once more; a statement the database refused is not', async (t) => {
  t.test('a socket that closed: sent again, and claimed', async (t) => {
    let inserts = 0
    const { pool, calls } = fakePool(async (text) => {
      if (text.startsWith('INSERT') && ++inserts === 1) throw new Error('Connection terminated unexpectedly')
      return { rows: [], rowCount: 1 }
    })
    t.equal((await pgIdempotencyStore({ pool }).claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['INSERT', 'INSERT'])
  })
  t.test('its first insert had committed before the connection broke: the row is this claim\'s own', async (t) => {
    let inserts = 0
    const { pool, calls } = fakePool(async (text) => {
      if (text.startsWith('INSERT') && ++inserts === 1) throw Object.assign(new Error('server conn crashed?'), { code: '08P01' })
      if (text.startsWith('SELECT')) return { rows: [{ same: true, done: false, mine: true, ms_left: 900 }], rowCount: 1 }
      return none
    })
    t.equal((await pgIdempotencyStore({ pool }).claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['INSERT', 'INSERT', 'SELECT'])
  })
  t.test('the server shutting down (57P01) is a broken connection too; twice in a row fails', async (t) => {
    const { pool, calls } = fakePool(async () => { throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }) })
    await t.rejects(pgIdempotencyStore({ pool }).claim('k', 'fp', 1000), /administrator command/)
    t.same(calls, ['INSERT', 'INSERT'])
  })
  t.test('a refusal with a SQLSTATE of its own is not sent again', async (t) => {
    const { pool, calls } = fakePool(async () => { throw Object.assign(new Error('relation does not exist'), { code: '42P01' }) })
    await t.rejects(pgIdempotencyStore({ pool }).claim('k', 'fp', 1000), /does not exist/)
    t.same(calls, ['INSERT'])
  })
})

test('the background sweep: every sweepEvery claims; a failure is left for the next one', async (t) => {
  const { pool, calls } = fakePool(async (text) => {
    if (text.startsWith('DELETE')) throw new Error('connection refused')
    return { rows: [], rowCount: 1 }
  })
  const store = pgIdempotencyStore({ pool, sweepEvery: 3 })
  for (let i = 0; i < 7; i++) await store.claim(`k${i}`, 'fp', 1000)
  await sleep(10)
  t.equal(calls.filter((call) => call === 'DELETE').length, 2, 'after the 3rd and the 6th claim')
  const never = fakePool(async () => ({ rows: [], rowCount: 1 }))
  const off = pgIdempotencyStore({ pool: never.pool, sweepEvery: 0 })
  for (let i = 0; i < 200; i++) await off.claim(`k${i}`, 'fp', 1000)
  t.notOk(never.calls.includes('DELETE'), 'sweepEvery: 0 never sweeps')
})

test('createTable: true, against a scripted pool', async (t) => {
  t.test('a table made meanwhile by another instance is not an error', async (t) => {
    let creates = 0
    const { pool, calls } = fakePool(async (text) => {
      if (text.startsWith('--') && ++creates === 1) throw Object.assign(new Error('duplicate key value violates unique constraint "pg_type_typname_nsp_index"'), { code: '23505' })
      return { rows: [], rowCount: 1 }
    })
    const store = pgIdempotencyStore({ pool, createTable: true })
    t.equal((await store.claim('k', 'fp', 1000)).state, 'claimed')
    t.equal(await store.renew('k', 'x', 1000), true)
    t.same(calls, ['--', '--', 'INSERT', 'UPDATE'], 'created once, before the first statement')
    for (const code of ['42P07', '42710']) {
      const raced = fakePool(async (text) => {
        if (text.startsWith('--') && raced.calls.length === 1) throw Object.assign(new Error('already exists'), { code })
        return { rows: [], rowCount: 1 }
      })
      t.equal((await pgIdempotencyStore({ pool: raced.pool, createTable: true }).claim('k', 'fp', 1000)).state, 'claimed', code)
    }
  })
  t.test('a failed creation is tried again by the next statement', async (t) => {
    let creates = 0
    const { pool, calls } = fakePool(async (text) => {
      if (text.startsWith('--') && ++creates === 1) throw Object.assign(new Error('permission denied for schema public'), { code: '42501' })
      return { rows: [], rowCount: 1 }
    })
    const store = pgIdempotencyStore({ pool, createTable: true })
    await t.rejects(store.claim('k', 'fp', 1000), /permission denied/)
    t.equal((await store.claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['--', '--', 'INSERT'])
  })
})

/** Claims `key` and says its token, or fails the test. */
async function claim (t: Test, store: PgIdempotencyStore, key: string, lease = 5000): Promise<string> {
  const result = await store.claim(key, 'fp', lease)
  if (result.state !== 'claimed') t.fail(`${key}: ${JSON.stringify(result)}`)
  return (result as { token: string }).token
}

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter (promise: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol('pending')
  return await Promise.race([promise, sleep(ms).then(() => pending)]) === pending
}

test('postgresql idempotency store', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)')
  const store = pgIdempotencyStore({ pool })
  const other = new pg.Pool({ connectionString: server.connectionString, max: 10 })
  other.on('error', () => {})
  t.teardown(() => other.end())
  const second = pgIdempotencyStore({ pool: other })

  /** The handler's side: BEGIN, an order, the answer recorded with completeIn, then `end`. */
  async function handler (key: string, token: string, end: 'COMMIT' | 'ROLLBACK' | ((tx: pg.PoolClient) => Promise<void>)) {
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      await tx.query("INSERT INTO orders (item) VALUES ('book')")
      const recorded = await store.completeIn(tx, key, token, order, 60_000)
      if (typeof end === 'function') await end(tx)
      else await tx.query(end)
      return recorded
    } finally {
      tx.release()
    }
  }

  t.test('without the table, and without createTable, a claim rejects (the request is answered 503)', async (t) => {
    await t.rejects(pgIdempotencyStore({ pool, table: 'missing' }).claim('k', 'fp', 1000), { code: '42P01' })
  })

  t.test('createTable: true makes a schema-qualified table, once, from two instances at once', async (t) => {
    await pool.query('CREATE SCHEMA app')
    const stores = [pgIdempotencyStore({ pool, table: 'app.idem', createTable: true }), pgIdempotencyStore({ pool: other, table: 'app.idem', createTable: true })]
    const results = await Promise.all(stores.map((s, i) => s.claim(`k${i}`, 'fp', 1000)))
    t.same(results.map((r) => r.state), ['claimed', 'claimed'])
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM app.idem')
    t.equal(rows[0].n, 2)
    const { rows: [index] } = await pool.query("SELECT indexname FROM pg_indexes WHERE schemaname = 'app' AND indexname = 'idem_expires_at_idx'")
    t.ok(index, 'with its index on expires_at')
  })

  t.test('leases and ttls are counted on the database clock', async (t) => {
    const key = 'clock'
    const token = await claim(t, store, key, 7000)
    const lease = await pool.query('SELECT extract(epoch FROM expires_at - now()) * 1000 AS ms FROM fastify_precondition_idempotency WHERE key = $1', [key])
    t.ok(Math.abs(Number(lease.rows[0].ms) - 7000) < 1000, `the lease ends 7 s after the database's now: ${String(lease.rows[0].ms)}`)
    await store.complete(key, token, order, 3_600_000)
    const ttl = await pool.query('SELECT extract(epoch FROM expires_at - now()) AS s FROM fastify_precondition_idempotency WHERE key = $1', [key])
    t.ok(Math.abs(Number(ttl.rows[0].s) - 3600) < 2, 'the answer is kept for the ttl')
    const long = await claim(t, store, 'long-ttl')
    t.equal(await store.complete('long-ttl', long, order, 90 * 86_400_000), true, 'a ttl of 90 days (more ms than an int4 holds)')
  })

  t.test('completeIn inside BEGIN … COMMIT records the answer with the data', async (t) => {
    const key = 'commit'
    const token = await claim(t, store, key)
    t.equal(await handler(key, token, 'COMMIT'), true)
    const replayed = await second.claim(key, 'fp', 5000)
    t.same(replayed, { state: 'done', response: order }, 'another instance replays it')
    t.same(Object.keys((replayed as { response: StoredResponse }).response.headers), Object.keys(order.headers), 'headers in their order')
    t.equal(await store.complete(key, token, { ...order, status: 200 }, 60_000), false, 'the plugin cannot store it a second time')
    t.equal(await store.renew(key, token, 5000), false)
  })

  t.test('completeIn inside a ROLLBACK leaves the claim running, still its owner\'s', async (t) => {
    const key = 'rollback'
    const token = await claim(t, store, key)
    t.equal(await handler(key, token, 'ROLLBACK'), true, 'recorded inside the transaction')
    t.equal((await second.claim(key, 'fp', 5000)).state, 'running', 'rolled back with it')
    t.equal(await store.renew(key, token, 5000), true, 'the claim is as it was')
    await store.release(key, token)
    t.equal((await second.claim(key, 'fp', 5000)).state, 'claimed', 'and the handler failing frees it')
  })

  t.test('completeIn after the claim was lost returns false, and the transaction rolls back', async (t) => {
    const key = 'lost'
    const stale = await claim(t, store, key, 200)
    await sleep(320)
    const fresh = await claim(t, second, key)
    const count = async () => (await pool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n as number
    const before = await count()
    const recorded = await handler(key, stale, async (tx) => {
      const { rows: [row] } = await tx.query('SELECT count(*)::int AS n FROM orders')
      t.equal(row.n, before + 1, 'the stale handler wrote its order inside its transaction')
      await tx.query('ROLLBACK') // what throwing IdempotencyClaimLostError does
    })
    t.equal(recorded, false)
    t.equal(await count(), before, 'nothing of the stale run was applied')
    t.equal((await store.claim(key, 'fp', 5000)).state, 'running', 'the new claim is untouched')
    t.equal(await handler(key, fresh, 'COMMIT'), true, 'the new owner records its answer')
    t.equal(await count(), before + 1, 'one order in all')

    const expired = await claim(t, store, 'lost-nobody', 200)
    await sleep(320)
    t.equal(await handler('lost-nobody', expired, 'ROLLBACK'), true, 'a lease that ran out with nobody claiming since is still its claimer\'s')
  })

  t.test('under REPEATABLE READ and SERIALIZABLE, completeIn records nothing through the transaction and says later: no serialization failure from a renewal, nor from a snapshot older than the claim', async (t) => {
    for (const isolation of ['REPEATABLE READ', 'SERIALIZABLE']) {
      for (const snapshot of ['after the claim', 'before the claim']) {
        const key = `${isolation}-${snapshot}`
        const tx = await pool.connect()
        let token = ''
        try {
          await tx.query(`BEGIN ISOLATION LEVEL ${isolation}`)
          if (snapshot === 'before the claim') await tx.query('SELECT 1')
          token = await claim(t, store, key)
          await tx.query("INSERT INTO orders (item) VALUES ('cup')")
          t.equal(await store.renew(key, token, 5000), true, 'the plugin renews the lease meanwhile')
          t.equal(await store.completeIn(tx, key, token, order, 60_000), 'later', `${isolation}, snapshot ${snapshot}: later`)
          await tx.query('COMMIT')
        } finally {
          tx.release()
        }
        t.equal((await second.claim(key, 'fp', 5000)).state, 'running', 'the claim is as it was, and the plugin stores the answer once sent')
        t.equal(await store.complete(key, token, order, 60_000, 'fp'), true)
        t.match(await second.claim(key, 'fp', 5000), { state: 'done', response: { status: 201 } })
      }
    }
    t.same((await pool.query("SELECT count(*)::int AS n FROM orders WHERE item = 'cup'")).rows[0].n, 4, 'each applied once')
  })

  t.test('completeIn through a transaction on another database throws an error that says so; the claim is as it was', async (t) => {
    await pool.query('CREATE DATABASE other')
    const elsewhere = new pg.Pool({ connectionString: server.connectionString.replace(/\/postgres$/, '/other'), max: 1 })
    t.teardown(() => elsewhere.end())
    await elsewhere.query(idempotencyTableSql())
    const key = 'elsewhere'
    const token = await claim(t, store, key)
    const tx = await elsewhere.connect()
    try {
      await tx.query('BEGIN')
      await t.rejects(store.completeIn(tx, key, token, order, 60_000), /tx is on database "other"/)
      await tx.query('ROLLBACK')
    } finally {
      tx.release()
    }
    t.equal(await store.renew(key, token, 5000), true, 'still its claimer\'s')
  })

  t.test('completeIn keeps maxAnswerBytes and the body\'s type', async (t) => {
    const small = pgIdempotencyStore({ pool, maxAnswerBytes: 7 }) // the order's body is 8 bytes
    const tx = await pool.connect()
    try {
      const big = await claim(t, small, 'in-big')
      const bytes = await claim(t, small, 'in-bytes')
      await tx.query('BEGIN')
      t.equal(await small.completeIn(tx, 'in-big', big, order, 60_000), true)
      t.equal(await small.completeIn(tx, 'in-bytes', bytes, { status: 200, headers: {}, body: Buffer.from([0, 1, 2]) }, 60_000), true)
      await tx.query('COMMIT')
    } finally {
      tx.release()
    }
    t.same(await small.claim('in-big', 'fp', 5000), { state: 'done', response: { status: 201, headers: {}, body: '', replayable: false } })
    t.same(await small.claim('in-bytes', 'fp', 5000), { state: 'done', response: { status: 200, headers: {}, body: Buffer.from([0, 1, 2]) } })
  })

  t.test('two pools as two instances, 20 concurrent claims of one key: exactly one claimed', async (t) => {
    for (let round = 0; round < 3; round++) {
      const key = `race-${round}`
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : second).claim(key, 'fp', 5000)))
      t.equal(results.filter((r) => r.state === 'claimed').length, 1, `round ${round}: one claim`)
      t.equal(results.filter((r) => r.state === 'running').length, 19, 'the others see it running')
    }
    // And the same over a key whose lease has just run out: one takes it over.
    const key = 'race-expired'
    await claim(t, store, key, 100)
    await sleep(200)
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : second).claim(key, 'fp', 5000)))
    t.equal(results.filter((r) => r.state === 'claimed').length, 1, 'one takeover of an expired claim')
  })

  t.test('a claim that meets a transaction which recorded the answer waits for that transaction', async (t) => {
    t.test('COMMIT: the claim then replays the answer', async (t) => {
      const key = 'wait-commit'
      const token = await claim(t, store, key)
      const recorded = await handler(key, token, async (tx) => {
        const duplicate = second.claim(key, 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 300), 'the duplicate waits on the row the transaction holds')
        await tx.query('COMMIT')
        t.same(await duplicate, { state: 'done', response: order }, 'then replays what was committed')
      })
      t.equal(recorded, true)
    })
    t.test('ROLLBACK after the lease ran out: the claim then takes the key (nothing was applied)', async (t) => {
      const key = 'wait-rollback'
      const token = await claim(t, store, key, 200)
      await handler(key, token, async (tx) => {
        const duplicate = second.claim(key, 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 400), 'waits, past the end of the lease')
        await tx.query('ROLLBACK')
        t.equal((await duplicate).state, 'claimed')
      })
    })
    t.test('ROLLBACK while the lease lasts: the claim then sees it running', async (t) => {
      const key = 'wait-rollback-live'
      const token = await claim(t, store, key)
      await handler(key, token, async (tx) => {
        const duplicate = second.claim(key, 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 200), 'waits')
        await tx.query('ROLLBACK')
        t.equal((await duplicate).state, 'running')
      })
    })
    t.test('a renewal by the owner waits too, and finds the claim done after COMMIT', async (t) => {
      const key = 'wait-renew'
      const token = await claim(t, store, key)
      await handler(key, token, async (tx) => {
        const renewal = store.renew(key, token, 5000)
        t.ok(await pendingAfter(renewal, 200), 'the renewal waits on the row')
        await tx.query('COMMIT')
        t.equal(await renewal, false, 'false: the claim is no longer running, it is done')
      })
    })
  })

  t.test('a transaction that has not recorded yet does not hold the key: a lease that runs out is taken over', async (t) => {
    const stale = await claim(t, store, 'takeover', 200)
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      await tx.query("INSERT INTO orders (item) VALUES ('pen')")
      await sleep(320)
      t.equal((await second.claim('takeover', 'fp', 5000)).state, 'claimed', 'no wait: the row is not the transaction\'s yet')
      t.equal(await store.completeIn(tx, 'takeover', stale, order, 60_000), false, 'and the stale handler learns it lost the claim')
      await tx.query('ROLLBACK')
    } finally {
      tx.release()
    }
  })

  t.test('sweep deletes expired rows, 100 at a time, and never a live one', async (t) => {
    await pool.query(idempotencyTableSql('sweep_test'))
    const swept = pgIdempotencyStore({ pool, table: 'sweep_test', sweepEvery: 0 })
    await Promise.all(Array.from({ length: 150 }, (_, i) => swept.claim(`expired-${i}`, 'fp', 1)))
    const live = await claim(t, swept, 'live')
    const done = await claim(t, swept, 'done')
    await swept.complete('done', done, order, 60_000)
    const doneExpired = await claim(t, swept, 'done-expired')
    await swept.complete('done-expired', doneExpired, order, 1)
    await sleep(20)
    const count = async () => (await pool.query('SELECT count(*)::int AS n FROM sweep_test')).rows[0].n as number
    t.equal(await count(), 153)
    t.equal(await swept.sweep(), 100)
    t.equal(await swept.sweep(), 51, 'an expired answer too')
    t.equal(await swept.sweep(), 0)
    t.same((await pool.query('SELECT key FROM sweep_test ORDER BY key')).rows.map((row) => row.key), ['done', 'live'])
    t.equal(await swept.renew('live', live, 5000), true)

    const auto = pgIdempotencyStore({ pool, table: 'sweep_test', sweepEvery: 5 })
    await Promise.all(Array.from({ length: 4 }, (_, i) => auto.claim(`auto-${i}`, 'fp', 1)))
    await sleep(20)
    t.equal(await count(), 6)
    await auto.claim('auto-4', 'fp', 5000)
    for (let waited = 0; waited < 5000 && await count() !== 3; waited += 50) await sleep(50)
    t.equal(await count(), 3, 'the 5th claim swept the 4 expired rows in the background')
  })

  t.test('the records survive a crash of the server; while it is down, claims reject', async (t) => {
    const token = await claim(t, store, 'crash')
    t.equal(await store.complete('crash', token, order, 60_000), true)
    const running = await claim(t, store, 'crash-running')
    server.kill()
    await sleep(100) // the pools see their connections close (kill blocked the event loop while it ran)
    await t.rejects(store.claim('crash', 'fp', 5000), 'no server: the request is answered 503 and its handler never runs')
    await server.start()
    t.same(await store.claim('crash', 'fp', 5000), { state: 'done', response: order }, 'replayed after the restart')
    t.equal((await second.claim('crash-running', 'fp', 5000)).state, 'running', 'a claim is still held after the restart')
    t.equal(await store.renew('crash-running', running, 5000), true)
  })
})
