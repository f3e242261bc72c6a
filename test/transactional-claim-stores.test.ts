// The stores' transactional claim (read, claimIn) and the helpers around it, against scripted
// transactions and pools: the paths a real database reaches only by chance (a row that expired, or
// vanished, between two statements; a duplicate error wrapped by a data layer).
import { test } from 'tap'
import { PassThrough } from 'node:stream'
import { sameBody } from '../lib/idempotency/transaction.js'
import { RenewalConnection } from '../lib/postgres/renewal-connection.js'
import { pgIdempotencyStore } from '../lib/postgres.js'
import { mysqlIdempotencyStore } from '../lib/mysql.js'

type Run = (text: string, values: unknown[]) => Promise<{ rowCount: number, rows?: any[] }>

/** A transaction in the function form, answering `answer`, with the statements it saw. */
function scripted (answer: Run) {
  const calls: string[] = []
  const tx: Run = async (text, values) => {
    calls.push(text.split(/\s/)[0])
    return await answer(text, values)
  }
  return { tx, calls }
}

const none = { rowCount: 0, rows: [] }
const neverPool = { query: async () => { throw new Error('the pool is not used by claimIn') } }

test('PostgreSQL claimIn: an expired row is taken over in the transaction; a row that keeps vanishing gives up', async (t) => {
  const store = pgIdempotencyStore({ pool: neverPool, sweepEvery: 0 })
  const takeOver = scripted(async (text) => text.startsWith('UPDATE') ? { rowCount: 1 } : none)
  t.match(await store.claimIn(takeOver.tx, 'k', 'fp', 1000), { state: 'claimed' })
  t.same(takeOver.calls, ['INSERT', 'SELECT', 'UPDATE'])
  const vanishing = scripted(async () => none)
  await t.rejects(store.claimIn(vanishing.tx, 'k', 'fp', 1000), /changed under 5 claims in a row/)
  t.equal(vanishing.calls.length, 15)
  const done = scripted(async (text) => text.startsWith('SELECT') ? { rowCount: 1, rows: [{ same: false }] } : none)
  t.same(await store.claimIn(done.tx, 'k', 'fp', 1000), { state: 'mismatch' })
})

test('MySQL read and claimIn: expired rows, a duplicate wrapped by a data layer, a row that keeps vanishing', async (t) => {
  const duplicate = (wrapped: boolean) => {
    const error = Object.assign(new Error("Duplicate entry 'k' for key 'PRIMARY'"), { errno: 1062 })
    return wrapped ? Object.assign(new Error('Failed query'), { cause: error }) : error
  }
  const live = { same: 1, done: 0, expired: 0, us_left: 4000 }
  let rows: unknown[] = [{ ...live, expired: 1 }]
  const store = mysqlIdempotencyStore({ pool: { query: async () => [rows, []] }, sweepEvery: 0 } as any)
  t.equal(await store.read('k', 'fp'), null, 'an expired row reads as nothing')
  rows = []
  t.equal(await store.read('k', 'fp'), null, 'no row')
  rows = [live]
  t.same(await store.read('k', 'fp'), { state: 'running', retryAfter: 4 })
  rows = [{ ...live, same: 0 }]
  t.same(await store.read('k', 'fp'), { state: 'mismatch' })

  let inserts = 0
  const takeOver = scripted(async (text) => {
    if (text.startsWith('INSERT')) throw duplicate(++inserts === 1)
    if (text.startsWith('SELECT')) return { rowCount: 1, rows: [{ ...live, expired: 1 }] }
    return { rowCount: 1 }
  })
  t.match(await store.claimIn(takeOver.tx, 'k', 'fp', 1000), { state: 'claimed' }, 'Drizzle\'s wrapped duplicate, then an expired row taken over')
  t.same(takeOver.calls, ['INSERT', 'SELECT', 'UPDATE'])
  const vanishing = scripted(async (text) => {
    if (text.startsWith('INSERT')) throw duplicate(false)
    return none
  })
  await t.rejects(store.claimIn(vanishing.tx, 'k', 'fp', 1000), /changed under 5 claims in a row/)
  t.same(vanishing.calls.slice(0, 2), ['INSERT', 'SELECT'])
  const failing = scripted(async () => { throw new Error('connection lost') })
  await t.rejects(store.claimIn(failing.tx, 'k', 'fp', 1000), /connection lost/, 'another error is the request\'s')
  const fresh = scripted(async () => ({ rowCount: 1 }))
  t.match(await store.claimIn(fresh.tx, 'k', 'fp', 1000), { state: 'claimed' })
  const taken = scripted(async (text) => {
    if (text.startsWith('INSERT')) throw duplicate(false)
    if (text.startsWith('SELECT')) return { rowCount: 1, rows: [{ ...live, expired: 1 }] }
    return none
  })
  await t.rejects(store.claimIn(taken.tx, 'k', 'fp', 1000), /changed under 5 claims/, 'every take-over lost to another')
})

test('sameBody: the payload onSend has against the body recorded', async (t) => {
  t.equal(sameBody('{"a":1}', '{"a":1}'), true)
  t.equal(sameBody('{"a":1}', '{"a":2}'), false)
  t.equal(sameBody(Buffer.from('x'), 'x'), true)
  t.equal(sameBody('x', Buffer.from('x')), true)
  t.equal(sameBody(new PassThrough(), 'x'), false, 'a stream is not the body recorded')
})

test('RenewalConnection: a connection that could not be opened is closed without error, and tried again', async (t) => {
  let opened = 0
  class Client {
    async connect (): Promise<void> {
      if (++opened === 1) throw new Error('ECONNREFUSED')
    }

    async query (): Promise<{ rows: any[], rowCount: number }> { return { rows: [], rowCount: 1 } }
    on (): void {}
    async end (): Promise<void> {}
  }
  const renewals = new RenewalConnection({ Client, options: {} }, { query: async () => { throw new Error('not through the pool') } })
  await t.rejects(renewals.query('UPDATE', []), /ECONNREFUSED/)
  t.same(await renewals.query('UPDATE', []), { rows: [], rowCount: 1 }, 'opened anew')
  await renewals.close()
  const failed = new RenewalConnection({ Client: class extends Client { async connect (): Promise<void> { throw new Error('down') } }, options: {} }, { query: async () => ({ rows: [], rowCount: 0 }) })
  await t.rejects(failed.query('UPDATE', []), /down/)
  const pending = failed.query('UPDATE', []).catch(() => 'failed')
  await failed.close()
  t.equal(await pending, 'failed')
  t.same(await failed.query('UPDATE', []), { rows: [], rowCount: 0 }, 'closed: through the pool')
})

test('PostgreSQL completeIn that changed no row: where the transaction is, against where the store is (read once, again after a failure)', async (t) => {
  let reads = 0
  const where = { db: 'app', port: 5432, started: 'then' }
  const pool = {
    query: async (text: string) => {
      if (text.includes('current_database()') && ++reads === 1) throw new Error('ECONNREFUSED')
      if (text.includes('current_database()')) return { rows: [where], rowCount: 1 }
      return { rows: [], rowCount: 0 }
    }
  }
  const store = pgIdempotencyStore({ pool, sweepEvery: 0 })
  await store.claim('k', 'fp', 1000).catch(() => {}) // reads where the store is beside it: the first read fails
  const answer = { status: 201, headers: {}, body: '{}' }
  const tx = (isolation: string, db = 'app') => scripted(async (text) => text.includes('current_database()')
    ? { rowCount: 1, rows: [{ ...where, db, isolation }] }
    : none).tx
  t.equal(await store.completeIn(tx('read committed'), 'k', 'token', answer, 1000), false, 'READ COMMITTED: not this claim\'s')
  t.equal(reads, 2, 'read again after the failure')
  t.equal(await store.completeIn(tx('repeatable read'), 'k', 'token', answer, 1000), 'later')
  await t.rejects(store.completeIn(tx('read committed', 'other'), 'k', 'token', answer, 1000), /tx is on database "other"/)
  t.equal(reads, 2, 'and kept')
})
