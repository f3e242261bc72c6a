// What a replay, a 409 and a 422 cost PostgreSQL: they change nothing, so their claims should be
// read-only, with no transaction ID and no WAL (a write transaction with synchronous_commit on
// waits for a WAL flush: with a real disk, one per retried request). Measured on the server:
// the WAL insert position and the next transaction ID, before and after 50 claims.
import pg from 'pg'
import { test } from 'tap'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)


test('claims that find a live key write nothing', { skip }, async (t) => {
  const { pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  const store = pgIdempotencyStore({ pool, sweepEvery: 0 })
  const done = await store.claim('done', 'fp', 10_000)
  if (done.state !== 'claimed') throw new Error('not claimed')
  await store.complete('done', done.token, { status: 201, headers: {}, body: '{}' }, 60_000)
  t.equal((await store.claim('running', 'fp', 600_000)).state, 'claimed')

  const position = async () => (await pool.query('SELECT pg_current_wal_insert_lsn() AS lsn, pg_snapshot_xmax(pg_current_snapshot())::text AS xid')).rows[0] as { lsn: string, xid: string }
  /** WAL bytes and transaction IDs that 50 runs of `claim` cost, each. */
  async function cost (claim: () => Promise<unknown>): Promise<{ wal: number, xids: number }> {
    const before = await position()
    for (let i = 0; i < 50; i++) await claim()
    const after = await position()
    const { rows: [wal] } = await pool.query('SELECT pg_wal_lsn_diff($1, $2)::float8 AS bytes', [after.lsn, before.lsn])
    return { wal: wal.bytes / 50, xids: (Number(after.xid) - Number(before.xid)) / 50 }
  }

  const control = await cost(() => pool.query('SELECT * FROM fastify_precondition_idempotency WHERE key = $1', ['done']))
  t.same(control, { wal: 0, xids: 0 }, 'the measure: a SELECT costs nothing')
  const fresh = await cost(() => store.claim(`fresh-${Math.random()}`, 'fp', 10_000))
  t.ok(fresh.xids === 1 && fresh.wal > 0, `a new key is a write, as it must be: ${fresh.xids} transaction ID, ${fresh.wal} WAL bytes each`)

  for (const [name, key, fingerprint, state] of [['a replay', 'done', 'fp', 'done'], ['a 409', 'running', 'fp', 'running'], ['a 422', 'done', 'other', 'mismatch']] as const) {
    t.equal((await store.claim(key, fingerprint, 10_000)).state, state)
    const spent = await cost(() => store.claim(key, fingerprint, 10_000))
    t.same(spent, { wal: 0, xids: 0 }, `${name}: no transaction ID, no WAL (now ${spent.xids} transaction ID and ${spent.wal} WAL bytes each)`)
  }
})
