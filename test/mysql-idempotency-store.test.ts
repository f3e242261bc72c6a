// The MySQL idempotency store beyond the contract every store keeps
// (test/mysql-store-contract.test.ts): its options and DDL, the contract's rules for a lease that
// ran out and a record that is missing, answers recorded in the handler's own transaction
// (committed, rolled back, with a claim lost meanwhile, under every isolation level), two pools
// claiming at once as two instances would, a claim that meets a transaction holding the row, the
// database's clock whatever a session's time zone, the sweep, and a crash of the server. A real
// MariaDB, started by the test.
import { readFileSync } from 'node:fs'
import { createPool, type PoolConnection } from 'mysql2/promise'
import { test, type Test } from 'tap'
import { MysqlIdempotencyStore, mysqlIdempotencyStore, idempotencyTableSql, MAX_KEY_BYTES, type MysqlIdempotencyPool } from '../lib/mysql/idempotency-store.js'
import * as subpath from '../lib/mysql.js'
import { IdempotencyClaimLostError } from '../lib/errors.js'
import type { StoredResponse } from '../lib/idempotency/store.js'
import { sleep } from './helpers/http.js'
import { mariadbMissing, startMariaDb } from './helpers/mariadb-server.js'

const skip = mariadbMissing()
if (skip !== false) console.log(`# ${skip}`)

const order: StoredResponse = { status: 201, headers: { 'content-type': 'application/json; charset=utf-8', location: '/orders/1' }, body: '{"id":1}' }

type Answer = (sql: string, values?: unknown[]) => Promise<unknown>

/** A pool that answers from a script; `calls` records each statement's first word. */
function fakePool (answer: Answer) {
  const calls: string[] = []
  const pool: MysqlIdempotencyPool = {
    query: (sql, values) => {
      calls.push(sql.split(/\s/)[0])
      return answer(sql, values)
    }
  }
  return { pool, calls }
}
const header = (affectedRows: number) => [{ affectedRows }, undefined]
const rows = (list: unknown[]) => [list, []]
const duplicate = () => Object.assign(new Error("Duplicate entry 'k' for key 'PRIMARY'"), { errno: 1062, code: 'ER_DUP_ENTRY' })

test('options are checked when the store is made', async (t) => {
  const pool = fakePool(async () => header(0)).pool
  const rows: Array<[string, unknown, RegExp]> = [
    ['no options', undefined, /needs options/],
    ['null', null, /needs options/],
    ['no pool', {}, /pool must be a mysql2 promise Pool/],
    ['a pool without query', { pool: { getConnection () {} } }, /pool must be a mysql2 promise Pool/],
    ['a callback pool', { pool: { query () {}, promise () {} } }, /a mysql2 callback Pool: pass pool.promise\(\)/],
    ['table a number', { pool, table: 1 }, /table must be a string/],
    ['table with a backquote', { pool, table: 'a`; DROP TABLE b; --' }, /table must be a lower-case SQL name/],
    ['table upper-case', { pool, table: 'Idempotency' }, /lower-case/],
    ['table empty', { pool, table: '' }, /lower-case/],
    ['table starting with a digit', { pool, table: '1abc' }, /lower-case/],
    ['table with three parts', { pool, table: 'a.b.c' }, /optionally database-qualified/],
    ['an empty database', { pool, table: '.b' }, /lower-case/],
    ['table too long', { pool, table: 'a'.repeat(65) }, /at most 64 characters/],
    ['database too long', { pool, table: 's'.repeat(65) + '.t' }, /at most 64 characters/],
    ['lease 0', { pool, lease: 0 }, /lease \(ms\) must be a positive whole number/],
    ['lease fractional', { pool, lease: 1.5 }, /lease/],
    ['maxAnswerBytes negative', { pool, maxAnswerBytes: -1 }, /maxAnswerBytes must be a positive whole number/],
    ['maxAnswerBytes Infinity', { pool, maxAnswerBytes: Infinity }, /maxAnswerBytes/],
    ['createTable a string', { pool, createTable: 'yes' }, /createTable must be a boolean/],
    ['sweepEvery negative', { pool, sweepEvery: -1 }, /sweepEvery must be a whole number, 0 or more/]
  ]
  for (const [name, options, message] of rows) {
    t.throws(() => mysqlIdempotencyStore(options as never), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE', message: /^mysqlIdempotencyStore: / }, name)
    t.throws(() => mysqlIdempotencyStore(options as never), { message }, name)
  }
  const store = mysqlIdempotencyStore({ pool })
  t.ok(store instanceof MysqlIdempotencyStore)
  t.match(store, { table: '`fastify_precondition_idempotency`', lease: 10_000, maxAnswerBytes: 1024 * 1024, createTable: false, sweepEvery: 100 })
  t.match(mysqlIdempotencyStore({ pool, table: 'app.idem_1', lease: 500, maxAnswerBytes: 10, createTable: true, sweepEvery: 0 }),
    { table: '`app`.`idem_1`', lease: 500, maxAnswerBytes: 10, createTable: true, sweepEvery: 0 })
  t.equal(mysqlIdempotencyStore({ pool, table: 'a'.repeat(64) }).table, `\`${'a'.repeat(64)}\``, '64 characters fit')
})

test('the DDL ships as a file and as idempotencyTableSql(table)', async (t) => {
  const file = readFileSync(new URL('../lib/mysql/idempotency.sql', import.meta.url), 'utf8')
  t.equal(idempotencyTableSql(), file, 'the file is the DDL of the default table')
  const qualified = idempotencyTableSql('app.idem')
  t.match(qualified, /CREATE TABLE IF NOT EXISTS `app`\.`idem` \(/)
  t.match(qualified, /ENGINE=InnoDB/, 'InnoDB: transactions and row locks')
  t.equal(qualified.split(';').length, 2, 'one statement: mysql2 runs it without multipleStatements')
  t.throws(() => idempotencyTableSql('x; DROP'), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE' })
})

test('fastify-precondition/mysql exports the store, the DDL and the error', async (t) => {
  t.same(Object.keys(subpath).sort(), ['IdempotencyClaimLostError', 'MysqlIdempotencyStore', 'idempotencyTableSql', 'mysqlIdempotencyStore'])
  t.equal(subpath.mysqlIdempotencyStore, mysqlIdempotencyStore)
  t.equal(subpath.IdempotencyClaimLostError, IdempotencyClaimLostError)
})

test('a claim against a scripted pool', async (t) => {
  t.test('a key longer than the primary key holds is refused before any statement', async (t) => {
    const { pool, calls } = fakePool(async () => header(1))
    const store = mysqlIdempotencyStore({ pool })
    await t.rejects(store.claim(' 3000:' + 'o'.repeat(3000) + 'k'.repeat(100), 'fp', 1000), /a key of more than 3072 bytes/)
    t.equal((await store.claim('é'.repeat(MAX_KEY_BYTES / 2), 'fp', 1000)).state, 'claimed', 'counted in bytes: 3072 fit')
    t.same(calls, ['INSERT'])
  })
  t.test('a row gone between the insert and the read: insert again', async (t) => {
    let inserts = 0
    const { pool, calls } = fakePool(async (sql) => {
      if (sql.startsWith('INSERT')) {
        if (++inserts === 1) throw duplicate()
        return header(1)
      }
      return rows([])
    })
    t.equal((await mysqlIdempotencyStore({ pool }).claim('k', 'fp', 1000)).state, 'claimed')
    t.same(calls, ['INSERT', 'SELECT', 'INSERT'])
  })
  t.test('an expired row taken over; a takeover that lost the race reads again', async (t) => {
    let takeovers = 0
    const { pool, calls } = fakePool(async (sql) => {
      if (sql.startsWith('INSERT')) throw duplicate()
      if (sql.startsWith('SELECT')) return rows([{ expired: takeovers === 0 ? 1 : 0, same: 1, done: 0, us_left: 4_000_500 }])
      return header(++takeovers === 1 ? 0 : 1)
    })
    const store = mysqlIdempotencyStore({ pool })
    t.same(await store.claim('k', 'fp', 1000), { state: 'running', retryAfter: 4001 }, 'another claim took it over first: it runs')
    t.same(calls, ['INSERT', 'SELECT', 'UPDATE', 'INSERT', 'SELECT'])
    const taken = fakePool(async (sql) => {
      if (sql.startsWith('INSERT')) throw duplicate()
      return sql.startsWith('SELECT') ? rows([{ expired: 1 }]) : header(1)
    })
    t.equal((await mysqlIdempotencyStore({ pool: taken.pool }).claim('k', 'fp', 1000)).state, 'claimed', 'taken over')
    t.same(taken.calls, ['INSERT', 'SELECT', 'UPDATE'])
  })
  t.test('a lease already over reads as retryAfter 0', async (t) => {
    const { pool } = fakePool(async (sql) => {
      if (sql.startsWith('INSERT')) throw duplicate()
      return rows([{ expired: 0, same: 1, done: 0, us_left: '-20' }])
    })
    t.same(await mysqlIdempotencyStore({ pool }).claim('k', 'fp', 1000), { state: 'running', retryAfter: 0 })
  })
  t.test('gives up after five tries, so the request is answered 503 rather than spin', async (t) => {
    const { pool, calls } = fakePool(async (sql) => {
      if (sql.startsWith('INSERT')) throw duplicate()
      return rows([])
    })
    await t.rejects(mysqlIdempotencyStore({ pool }).claim('k', 'fp', 1000), /changed under 5 claims in a row/)
    t.equal(calls.length, 10)
  })
  t.test('any other error of the insert rejects', async (t) => {
    for (const error of [Object.assign(new Error('Lock wait timeout exceeded'), { errno: 1205 }), null]) {
      const { pool } = fakePool(async () => { throw error })
      await t.rejects(mysqlIdempotencyStore({ pool }).claim('k', 'fp', 1000))
    }
  })
})

test('the background sweep: every sweepEvery claims; a failure is left for the next one', async (t) => {
  const { pool, calls } = fakePool(async (sql) => {
    if (sql.startsWith('SELECT')) throw new Error('connection refused')
    return header(1)
  })
  const store = mysqlIdempotencyStore({ pool, sweepEvery: 3 })
  for (let i = 0; i < 7; i++) await store.claim(`k${i}`, 'fp', 1000)
  await sleep(10)
  t.equal(calls.filter((call) => call === 'SELECT').length, 2, 'after the 3rd and the 6th claim')
  const never = fakePool(async () => header(1))
  const off = mysqlIdempotencyStore({ pool: never.pool, sweepEvery: 0 })
  for (let i = 0; i < 200; i++) await off.claim(`k${i}`, 'fp', 1000)
  t.notOk(never.calls.includes('SELECT'), 'sweepEvery: 0 never sweeps')
})

test('createTable: true, against a scripted pool: made once; a failed creation is tried again', async (t) => {
  let creates = 0
  const { pool, calls } = fakePool(async (sql) => {
    if (sql.startsWith('--') && ++creates === 1) throw Object.assign(new Error('CREATE command denied to user'), { errno: 1142 })
    return header(1)
  })
  const store = mysqlIdempotencyStore({ pool, createTable: true })
  await t.rejects(store.claim('k', 'fp', 1000), /CREATE command denied/)
  t.equal((await store.claim('k', 'fp', 1000)).state, 'claimed')
  t.equal(await store.renew('k', 'x', 1000), true)
  t.same(calls, ['--', '--', 'INSERT', 'UPDATE'])
})

test('completeIn takes a data layer\'s transaction, and refuses anything else before any statement', async (t) => {
  const store = mysqlIdempotencyStore({ pool: fakePool(async () => header(1)).pool })
  const calls: unknown[] = []
  const callbackApi = { query: (...args: unknown[]) => calls.push(args), beginTransaction () {}, promise () {} }
  await t.rejects(store.completeIn(callbackApi as never, 'k', 'token', order, 1000), { name: 'TypeError', message: /mysql2's callback API: pass connection.promise\(\)/ })
  t.same(calls, [], 'no statement ran')
  for (const tx of [undefined, null, 'tx', {}]) {
    await t.rejects(store.completeIn(tx as never, 'k', 'token', order, 1000), { name: 'TypeError', message: /is none it knows for MySQL/ }, String(tx))
  }
  const connection = { query: async () => [{ affectedRows: 1 }, undefined], beginTransaction: async () => {} }
  t.equal(await store.completeIn(connection, 'k', 'token', order, 1000), true, 'a mysql2 promise connection')
  t.equal(await store.completeIn(async () => ({ rowCount: 1 }), 'k', 'token', order, 1000), true, 'a function')
})

test('completeIn that changed no row asks the store\'s pool why', async (t) => {
  const here = { db: 'test', host: 'db1', port: 3306 }
  const scripted = (owner: unknown[], where = here) => mysqlIdempotencyStore({
    pool: fakePool(async (sql) => sql.includes('AS mine') ? rows(owner) : rows([where])).pool
  })
  const tx = (where: unknown) => async (text: string) => text.includes('DATABASE()') ? { rowCount: 1, rows: [where] } : { rowCount: 0 }
  t.equal(await scripted([]).completeIn(tx(here), 'k', 'token', order, 1000), false, 'no row: nobody holds it for this request')
  t.equal(await scripted([{ mine: 0 }]).completeIn(tx(here), 'k', 'token', order, 1000), false, 'another request\'s: the claim is lost')
  t.equal(await scripted([{ mine: 1 }]).completeIn(tx(here), 'k', 'token', order, 1000), 'later', 'still this request\'s, on the same database: stored once sent')
  for (const there of [{ ...here, db: 'other' }, { ...here, host: 'db2' }, { ...here, port: '3307' }]) {
    await t.rejects(scripted([{ mine: 1 }]).completeIn(tx(there), 'k', 'token', order, 1000),
      /tx is on database "(test|other)" of db[12]:330[67], and the idempotency store's table is on "test" of db1:3306/, JSON.stringify(there))
  }
})

test('transaction(db, fn) opens a transaction on a data layer\'s database, and refuses anything else', async (t) => {
  const store = mysqlIdempotencyStore({ pool: fakePool(async () => header(1)).pool })
  await t.rejects(store.transaction({}, async () => 1), { name: 'TypeError', message: /the database is none it knows for MySQL/ })
})

/** Claims `key` and says its token, or fails the test. */
async function claim (t: Test, store: MysqlIdempotencyStore, key: string, lease = 5000, fingerprint = 'fp'): Promise<string> {
  const result = await store.claim(key, fingerprint, lease)
  if (result.state !== 'claimed') t.fail(`${key}: ${JSON.stringify(result)}`)
  return (result as { token: string }).token
}

/** Whether `promise` is still pending after `ms`. */
async function pendingAfter (promise: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol('pending')
  return await Promise.race([promise, sleep(ms).then(() => pending)]) === pending
}

test('mysql idempotency store on MariaDB', { skip }, async (t) => {
  const { server, pool } = await startMariaDb(t, createPool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id int AUTO_INCREMENT PRIMARY KEY, item varchar(100) NOT NULL) ENGINE=InnoDB')
  const store = mysqlIdempotencyStore({ pool })
  // Another instance, whose sessions run in another time zone: it must agree on every lease.
  const other = createPool({ ...server.connection, connectionLimit: 10 })
  other.pool.on('connection', (connection) => { connection.query("SET time_zone = '+09:00'") })
  t.teardown(() => other.end())
  const second = mysqlIdempotencyStore({ pool: other })
  const table = async (key: string) => (await pool.query('SELECT token, status, fingerprint FROM fastify_precondition_idempotency WHERE `key` = ?', [key]) as any)[0][0]

  /** The handler's side: beginTransaction, an order, the answer recorded with completeIn, then `end`. */
  async function handler (key: string, token: string, end: 'commit' | 'rollback' | ((tx: PoolConnection) => Promise<void>), isolation?: string) {
    const tx = await pool.getConnection()
    try {
      if (isolation !== undefined) await tx.query(`SET TRANSACTION ISOLATION LEVEL ${isolation}`)
      await tx.beginTransaction()
      await tx.query("INSERT INTO orders (item) VALUES ('book')")
      const recorded = await store.completeIn(tx, key, token, order, 60_000)
      if (typeof end === 'function') await end(tx)
      else await tx[end]()
      return recorded
    } finally {
      tx.release()
    }
  }
  const count = async (item = 'book') => Number((await pool.query('SELECT count(*) AS n FROM orders WHERE item = ?', [item]) as any)[0][0].n)

  t.test('without the table, and without createTable, a claim rejects (the request is answered 503)', async (t) => {
    await t.rejects(mysqlIdempotencyStore({ pool, table: 'missing' }).claim('k', 'fp', 1000), { code: 'ER_NO_SUCH_TABLE' })
  })

  t.test('createTable: true makes a database-qualified table, once, from two instances at once', async (t) => {
    await pool.query('CREATE DATABASE app')
    const stores = [mysqlIdempotencyStore({ pool, table: 'app.idem', createTable: true }), mysqlIdempotencyStore({ pool: other, table: 'app.idem', createTable: true })]
    const results = await Promise.all(stores.map((s, i) => s.claim(`k${i}`, 'fp', 1000)))
    t.same(results.map((r) => r.state), ['claimed', 'claimed'])
    t.equal(Number((await pool.query('SELECT count(*) AS n FROM app.idem') as any)[0][0].n), 2)
    const [indexes] = await pool.query("SHOW INDEX FROM app.idem WHERE Key_name = 'expires_at_idx'") as any
    t.equal(indexes.length, 1, 'with its index on expires_at')
  })

  t.test('the DDL file runs as it is, with its trailing semicolon', async (t) => {
    await pool.query(readFileSync(new URL('../lib/mysql/idempotency.sql', import.meta.url), 'utf8'))
    t.pass('IF NOT EXISTS: a second run is a no-op')
  })

  t.test('leases and ttls are counted on the database clock (UTC), whatever the session\'s time zone', async (t) => {
    const token = await claim(t, store, 'clock', 7000)
    const lease = await pool.query('SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) / 1000 AS ms FROM fastify_precondition_idempotency WHERE `key` = ?', ['clock']) as any
    t.ok(Math.abs(Number(lease[0][0].ms) - 7000) < 1000, `the lease ends 7 s after the database's now: ${String(lease[0][0].ms)}`)
    const running = await second.claim('clock', 'fp', 5000) as { state: string, retryAfter: number }
    t.equal(running.state, 'running', 'a session at +09:00 sees it held')
    t.ok(running.retryAfter > 5000 && running.retryAfter <= 7000, `for what the lease has left, not 9 hours more or less: ${running.retryAfter}`)
    await claim(t, second, 'clock-short', 200)
    await sleep(320)
    t.equal((await store.claim('clock-short', 'fp', 5000)).state, 'claimed', 'a lease taken at +09:00 ends on time for a UTC session')
    t.equal(await store.complete('clock', token, order, 3_600_000), true)
    const ttl = await pool.query('SELECT TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(6), expires_at) AS s FROM fastify_precondition_idempotency WHERE `key` = ?', ['clock']) as any
    t.ok(Math.abs(Number(ttl[0][0].s) - 3600) < 2, 'the answer is kept for the ttl')
    const long = await claim(t, store, 'long-ttl')
    t.equal(await store.complete('long-ttl', long, order, 90 * 86_400_000), true, 'a ttl of 90 days')
  })

  t.test('a claimer whose lease ran out, with nobody taking the key over since, still completes and renews it', async (t) => {
    const completed = await claim(t, store, 'late-complete', 200)
    const renewed = await claim(t, store, 'late-renew', 200)
    await sleep(320)
    t.equal(await store.complete('late-complete', completed, order, 60_000), true)
    t.same(await second.claim('late-complete', 'fp', 5000), { state: 'done', response: order })
    t.equal(await store.renew('late-renew', renewed, 5000), true)
    t.equal((await second.claim('late-renew', 'fp', 5000)).state, 'running', 'held again')
  })

  t.test('a missing record: complete records the answer, renew makes it running again, both with the fingerprint given', async (t) => {
    const token = await claim(t, store, 'swept-complete', 5000, 'print')
    await pool.query('DELETE FROM fastify_precondition_idempotency WHERE `key` = ?', ['swept-complete'])
    t.equal(await store.complete('swept-complete', token, order, 60_000), false, 'without a fingerprint it cannot be made again')
    t.equal(await store.complete('swept-complete', token, order, 60_000, 'print'), true)
    t.same(await second.claim('swept-complete', 'print', 5000), { state: 'done', response: order }, 'replayed to the same request')
    t.same(await second.claim('swept-complete', 'other', 5000), { state: 'mismatch' }, 'refused to another')

    const running = await claim(t, store, 'swept-renew', 5000, 'print')
    await pool.query('DELETE FROM fastify_precondition_idempotency WHERE `key` = ?', ['swept-renew'])
    t.equal(await store.renew('swept-renew', running, 5000), false, 'without a fingerprint it cannot be made again')
    t.equal(await store.renew('swept-renew', running, 5000, 'print'), true)
    t.equal((await second.claim('swept-renew', 'print', 5000)).state, 'running')
    t.equal(await store.complete('swept-renew', running, order, 60_000, 'print'), true, 'its owner completes it')

    const done = await claim(t, store, 'not-revived')
    t.equal(await store.complete('not-revived', done, order, 60_000), true)
    t.equal(await store.complete('not-revived', done, order, 60_000, 'fp'), false, 'a done record is not written again')
    t.equal(await store.renew('not-revived', done, 5000, 'fp'), false, 'nor renewed')
    const held = await claim(t, store, 'held-by-another', 200)
    await sleep(320)
    const taker = await claim(t, second, 'held-by-another')
    t.equal(await store.complete('held-by-another', held, order, 60_000, 'fp'), false, 'taken over: false, whatever the fingerprint')
    t.equal(await store.renew('held-by-another', held, 5000, 'fp'), false)
    t.equal(await second.complete('held-by-another', taker, order, 60_000), true)
  })

  t.test('completeIn inside beginTransaction … commit records the answer with the data', async (t) => {
    const token = await claim(t, store, 'commit')
    t.equal(await handler('commit', token, 'commit'), true)
    const replayed = await second.claim('commit', 'fp', 5000)
    t.same(replayed, { state: 'done', response: order }, 'another instance replays it')
    t.same(Object.keys((replayed as { response: StoredResponse }).response.headers), Object.keys(order.headers), 'headers in their order')
    t.equal(await store.complete('commit', token, { ...order, status: 200 }, 60_000), false, 'the plugin cannot store it a second time')
    t.equal(await store.renew('commit', token, 5000), false)
  })

  t.test('completeIn inside a rollback leaves the claim running, still its owner\'s', async (t) => {
    const token = await claim(t, store, 'rollback')
    t.equal(await handler('rollback', token, 'rollback'), true, 'recorded inside the transaction')
    t.equal((await second.claim('rollback', 'fp', 5000)).state, 'running', 'rolled back with it')
    t.equal(await store.renew('rollback', token, 5000), true, 'the claim is as it was')
    await store.release('rollback', token)
    t.equal((await second.claim('rollback', 'fp', 5000)).state, 'claimed', 'and the handler failing frees it')
  })

  t.test('completeIn after the claim was taken over returns false, and the transaction rolls back', async (t) => {
    const stale = await claim(t, store, 'lost', 200)
    await sleep(320)
    const fresh = await claim(t, second, 'lost')
    const before = await count()
    const recorded = await handler('lost', stale, async (tx) => {
      const [[row]] = await tx.query('SELECT count(*) AS n FROM orders') as any
      t.ok(Number(row.n) >= before + 1, 'the stale handler wrote its order inside its transaction')
      await tx.rollback() // what throwing IdempotencyClaimLostError does
    })
    t.equal(recorded, false)
    t.equal(await count(), before, 'nothing of the stale run was applied')
    t.equal((await store.claim('lost', 'fp', 5000)).state, 'running', 'the new claim is untouched')
    t.equal(await handler('lost', fresh, 'commit'), true, 'the new owner records its answer')
    t.equal(await count(), before + 1, 'one order in all')
  })

  t.test('completeIn after the lease ran out, with nobody taking the key over, records the answer', async (t) => {
    const token = await claim(t, store, 'late-in', 200)
    await sleep(320)
    t.equal(await handler('late-in', token, 'commit'), true)
    t.same(await second.claim('late-in', 'fp', 5000), { state: 'done', response: order })
  })

  for (const isolation of ['READ UNCOMMITTED', 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE']) {
    t.test(`${isolation}: a renewal committed since the transaction began does not stop completeIn (UPDATE reads the latest row)`, async (t) => {
      const key = `isolation-${isolation}`
      const token = await claim(t, store, key)
      const tx = await pool.getConnection()
      try {
        await tx.query(`SET TRANSACTION ISOLATION LEVEL ${isolation}`)
        await tx.beginTransaction()
        await tx.query("INSERT INTO orders (item) VALUES ('cup')")
        await tx.query('SELECT count(*) FROM orders') // the snapshot, under REPEATABLE READ
        t.equal(await store.renew(key, token, 5000), true, 'the plugin renews the lease meanwhile')
        t.equal(await store.completeIn(tx, key, token, order, 60_000), true, 'recorded all the same')
        await tx.commit()
      } finally {
        await tx.rollback()
        tx.release()
      }
      t.same(await second.claim(key, 'fp', 5000), { state: 'done', response: order })
    })
  }

  t.test('completeIn through a transaction on another database throws, and is not taken for a lost claim', async (t) => {
    await pool.query('CREATE DATABASE other')
    await pool.query(idempotencyTableSql('other.fastify_precondition_idempotency'))
    const elsewhere = createPool({ ...server.connection, database: 'other', connectionLimit: 2 })
    t.teardown(() => elsewhere.end())
    const token = await claim(t, store, 'other-db')
    const tx = await elsewhere.getConnection()
    try {
      await tx.beginTransaction()
      await t.rejects(store.completeIn(tx, 'other-db', token, order, 60_000), { message: /tx is on database "other" of .*, and the idempotency store's table is on "test"/ })
    } finally {
      await tx.rollback()
      tx.release()
    }
    t.equal((await second.claim('other-db', 'fp', 5000)).state, 'running', 'the claim is as it was')
  })

  t.test('completeIn keeps maxAnswerBytes and the body\'s type', async (t) => {
    const small = mysqlIdempotencyStore({ pool, maxAnswerBytes: 7 }) // the order's body is 8 bytes
    const tx = await pool.getConnection()
    try {
      const big = await claim(t, small, 'in-big')
      const bytes = await claim(t, small, 'in-bytes')
      await tx.beginTransaction()
      t.equal(await small.completeIn(tx, 'in-big', big, order, 60_000), true)
      t.equal(await small.completeIn(tx, 'in-bytes', bytes, { status: 200, headers: {}, body: Buffer.from([0, 1, 2]) }, 60_000), true)
      await tx.commit()
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
    await claim(t, store, 'race-expired', 100)
    await sleep(200)
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? store : second).claim('race-expired', 'fp', 5000)))
    t.equal(results.filter((r) => r.state === 'claimed').length, 1, 'one takeover of an expired claim')
    t.equal(results.filter((r) => r.state === 'running').length, 19)
  })

  t.test('a claim that meets a transaction which recorded the answer waits for that transaction', async (t) => {
    t.test('commit: the claim then replays the answer', async (t) => {
      const token = await claim(t, store, 'wait-commit')
      t.equal(await handler('wait-commit', token, async (tx) => {
        const duplicate = second.claim('wait-commit', 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 300), 'the duplicate waits on the row the transaction holds')
        await tx.commit()
        t.same(await duplicate, { state: 'done', response: order }, 'then replays what was committed')
      }), true)
    })
    t.test('rollback after the lease ran out: the claim then takes the key (nothing was applied)', async (t) => {
      const token = await claim(t, store, 'wait-rollback', 200)
      await handler('wait-rollback', token, async (tx) => {
        const duplicate = second.claim('wait-rollback', 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 400), 'waits, past the end of the lease')
        await tx.rollback()
        t.equal((await duplicate).state, 'claimed')
      })
    })
    t.test('rollback while the lease lasts: the claim then sees it running', async (t) => {
      const token = await claim(t, store, 'wait-rollback-live')
      await handler('wait-rollback-live', token, async (tx) => {
        const duplicate = second.claim('wait-rollback-live', 'fp', 5000)
        t.ok(await pendingAfter(duplicate, 200), 'waits')
        await tx.rollback()
        t.equal((await duplicate).state, 'running')
      })
    })
    t.test('a renewal by the owner waits too, and finds the claim done after commit', async (t) => {
      const token = await claim(t, store, 'wait-renew')
      await handler('wait-renew', token, async (tx) => {
        const renewal = store.renew('wait-renew', token, 5000)
        t.ok(await pendingAfter(renewal, 200), 'the renewal waits on the row')
        await tx.commit()
        t.equal(await renewal, false, 'false: the claim is no longer running, it is done')
      })
    })
  })

  t.test('a transaction that has not recorded yet does not hold the key: a lease that runs out is taken over', async (t) => {
    const stale = await claim(t, store, 'takeover', 200)
    const tx = await pool.getConnection()
    try {
      await tx.beginTransaction()
      await tx.query("INSERT INTO orders (item) VALUES ('pen')")
      await sleep(320)
      t.equal((await second.claim('takeover', 'fp', 5000)).state, 'claimed', 'no wait: the row is not the transaction\'s yet')
      t.equal(await store.completeIn(tx, 'takeover', stale, order, 60_000), false, 'and the stale handler learns it lost the claim')
      await tx.rollback()
    } finally {
      tx.release()
    }
    t.equal(await count('pen'), 0)
  })

  t.test('affected rows: the pools really differ in CLIENT_FOUND_ROWS, and the store does not care', async (t) => {
    const changed = createPool({ ...server.connection, connectionLimit: 2, flags: ['-FOUND_ROWS'] })
    t.teardown(() => changed.end())
    await pool.query("INSERT INTO orders (item) VALUES ('same')")
    const noop = "UPDATE orders SET item = 'same' WHERE item = 'same'"
    t.equal((await pool.query(noop) as any)[0].affectedRows, 1, 'mysql2 by default: rows matched')
    t.equal((await changed.query(noop) as any)[0].affectedRows, 0, 'without FOUND_ROWS: rows changed')
    const plain = mysqlIdempotencyStore({ pool: changed })
    const token = await claim(t, plain, 'found-rows', 200)
    t.equal(await plain.renew('found-rows', token, 200), true)
    await sleep(320)
    const again = await claim(t, plain, 'found-rows')
    t.equal(await plain.complete('found-rows', again, order, 60_000), true)
    t.same(await plain.claim('found-rows', 'fp', 5000), { state: 'done', response: order })
  })

  t.test('sweep deletes expired rows, 100 at a time, and never a live one', async (t) => {
    await pool.query(idempotencyTableSql('sweep_test'))
    const swept = mysqlIdempotencyStore({ pool, table: 'sweep_test', sweepEvery: 0 })
    await Promise.all(Array.from({ length: 150 }, (_, i) => swept.claim(`expired-${i}`, 'fp', 1)))
    const live = await claim(t, swept, 'live')
    const done = await claim(t, swept, 'done')
    await swept.complete('done', done, order, 60_000)
    const doneExpired = await claim(t, swept, 'done-expired')
    await swept.complete('done-expired', doneExpired, order, 1)
    await sleep(20)
    const rows = async () => Number((await pool.query('SELECT count(*) AS n FROM sweep_test') as any)[0][0].n)
    t.equal(await rows(), 153)
    t.equal(await swept.sweep(), 100)
    t.equal(await swept.sweep(), 51, 'an expired answer too')
    t.equal(await swept.sweep(), 0)
    t.same((await pool.query('SELECT CAST(`key` AS CHAR) AS k FROM sweep_test ORDER BY `key`') as any)[0].map((row: { k: string }) => row.k), ['done', 'live'])
    t.equal(await swept.renew('live', live, 5000), true)

    const auto = mysqlIdempotencyStore({ pool, table: 'sweep_test', sweepEvery: 5 })
    await Promise.all(Array.from({ length: 4 }, (_, i) => auto.claim(`auto-${i}`, 'fp', 1)))
    await sleep(20)
    t.equal(await rows(), 6)
    await auto.claim('auto-4', 'fp', 5000)
    for (let waited = 0; waited < 5000 && await rows() !== 3; waited += 50) await sleep(50)
    t.equal(await rows(), 3, 'the 5th claim swept the 4 expired rows in the background')
  })

  t.test('the records survive a crash of the server; while it is down, claims reject', async (t) => {
    const token = await claim(t, store, 'crash')
    t.equal(await store.complete('crash', token, order, 60_000), true)
    const running = await claim(t, store, 'crash-running')
    server.kill() // SIGKILL to mariadbd
    await sleep(100)
    await t.rejects(store.claim('crash', 'fp', 5000), 'no server: the request is answered 503 and its handler never runs')
    await server.start()
    t.same(await store.claim('crash', 'fp', 5000), { state: 'done', response: order }, 'replayed after the restart')
    t.equal((await second.claim('crash-running', 'fp', 5000)).state, 'running', 'a claim is still held after the restart')
    t.equal(await store.renew('crash-running', running, 5000), true)
    t.match(await table('crash-running'), { status: null })
  })
})
