// The idempotency store in MySQL or MariaDB (InnoDB): one row per key, in a table whose DDL ships
// with the package (lib/mysql/idempotency.sql, or `idempotencyTableSql(table)` for a migration).
// Its point is `completeIn(tx, …)`: the answer is recorded in the handler's own transaction, so it
// commits or rolls back with the handler's data, and a crash between COMMIT and the reply cannot
// run the handler twice.
//
// Every change is one statement checked against the claimer's token, and every time is the
// database's clock, UTC_TIMESTAMP(6) (the statement's start, replication-safe, and the same
// whatever a session's time_zone), never a process's. What InnoDB does decides each statement:
//
// - Affected rows are ambiguous. mysql2 connects with CLIENT_FOUND_ROWS (rows matched), other
//   clients without it (rows changed); `INSERT … ON DUPLICATE KEY UPDATE` reports 1 for an insert,
//   2 for an update and, for a row left as it was, 0 — or 1 with FOUND_ROWS, the same as an insert.
//   So no statement here leans on that count: a claim is a plain INSERT (1 row, or ER_DUP_ENTRY),
//   and every UPDATE changes `token` or `expires_at` on the row it matches, so matched and changed
//   are the same number under either flag. (Were the takeover one upsert, the `IF()`s of its
//   ON DUPLICATE KEY UPDATE would be evaluated left to right, each seeing the columns set before
//   it, and `expires_at` would have to come last; two statements avoid both traps.)
// - A plain INSERT, not INSERT IGNORE: IGNORE turns "data too long" into a warning and a
//   truncated key, and two long keys into one.
// - REPEATABLE READ (InnoDB's default) does not get in the way: UPDATE and DELETE read the latest
//   committed row and lock it (a current read), whatever the transaction's snapshot; the plain
//   SELECT of a claim runs in autocommit, a snapshot of its own. So completeIn works under every
//   isolation level, and a lease renewed since the handler's transaction began does not fail it
//   (PostgreSQL's REPEATABLE READ would).
// - Locks: the INSERT of a key whose row exists waits for a shared lock on that row; completeIn's
//   UPDATE holds it exclusively until the handler's COMMIT or ROLLBACK. So a duplicate claim waits
//   for the handler's transaction and then replays the answer it committed, or finds the claim as
//   it was. Statements name one key by the primary key (a record lock; a key that does not exist
//   locks the gap where it would be, until the statement's transaction ends: in completeIn, until
//   the handler's transaction ends, which then rolls back on the lost claim).
// - The sweep reads expired keys without locking, then deletes them by primary key, each checked
//   again: a DELETE … ORDER BY expires_at LIMIT n would lock index ranges in the opposite order to
//   completes and renewals (secondary index, then row) and could deadlock them.
import { invalidOption, positiveInteger } from '../errors.js'

import { claimToken } from '../idempotency/token.js'
import type { ClaimResult, IdempotencyStore, SqlIdempotencyStoreOptions, StoredResponse, TransactionClient } from '../idempotency/store.js'
import { executorOf, inTransaction } from '../sql/executor.js'
import { hasMethod } from '../sql/shape.js'

/**
 * What the store needs of its pool: mysql2's promise `query(sql, values)`, which resolves to
 * `[rows or ResultSetHeader, fields]`. A `Pool` from `mysql2/promise` (or `pool.promise()`) has it.
 */
export interface MysqlIdempotencyPool {
  query (sql: string, values?: any): Promise<any>
}

export interface MysqlIdempotencyStoreOptions extends SqlIdempotencyStoreOptions {
  /** A mysql2 promise `Pool` (`createPool` from 'mysql2/promise'). The store never ends it: it is yours. */
  pool: MysqlIdempotencyPool
  /**
   * The table, optionally database-qualified (`'app.idempotency'`): lower-case letters, digits
   * and `_`, not starting with a digit; 64 characters at most. Default
   * `'fastify_precondition_idempotency'`.
   */
  table?: string
}

export const DEFAULT_TABLE = 'fastify_precondition_idempotency'
const PART = /^[a-z_][a-z0-9_]*$/
const MAX_NAME = 64
/** The longest store key, in bytes of UTF-8: the primary key's column, within InnoDB's 3072-byte index limit. */
export const MAX_KEY_BYTES = 3072
/** How many expired rows one sweep deletes at most. */
export const SWEEP_LIMIT = 100
/**
 * How many times a claim tries again when the row changed between its statements (deleted, or
 * taken over, after the insert found it): a retry sees the newer row, so this is only reached when
 * the key is changing all the time.
 */
const CLAIM_ATTEMPTS = 5
const DUPLICATE = 1062 // ER_DUP_ENTRY

function fail (message: string): never {
  throw invalidOption('idempotencyStore', `mysqlIdempotencyStore: ${message}`)
}

/** The table's name as SQL (each part backquoted), or throws. */
function tableName (table: unknown): string {
  if (typeof table !== 'string') fail(`table must be a string; got ${String(table)}`)
  const parts = table.split('.')
  if (parts.length > 2 || !parts.every((part) => PART.test(part) && part.length <= MAX_NAME)) {
    fail(`table must be a lower-case SQL name (letters, digits, _), optionally database-qualified, at most ${MAX_NAME} characters; got ${JSON.stringify(table)}`)
  }
  return parts.map((part) => `\`${part}\``).join('.')
}

/**
 * The DDL of the table `mysqlIdempotencyStore({ table })` uses (the same text as
 * lib/mysql/idempotency.sql for the default name), for a migration: one statement, so mysql2 runs
 * it without `multipleStatements`. Idempotent: IF NOT EXISTS.
 */
export function idempotencyTableSql (table: string = DEFAULT_TABLE): string {
  return `-- The Idempotency-Key records of fastify-precondition's mysqlIdempotencyStore, one row per key.
-- Running (token set): a request holds the key until expires_at, the end of its lease.
-- Done (token NULL): the answer, replayed until expires_at, the end of the route's ttl.
-- A row past expires_at is free: a claim takes it over, and the store deletes such rows.
-- Times are UTC_TIMESTAMP(6), the database's clock. Keys and tokens are compared byte for byte.
CREATE TABLE IF NOT EXISTS ${tableName(table)} (
  \`key\`        VARBINARY(${MAX_KEY_BYTES}) NOT NULL,
  fingerprint  VARBINARY(255)  NOT NULL,
  token        VARBINARY(64),
  expires_at   DATETIME(6)     NOT NULL,
  status       SMALLINT,
  headers      TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  body         LONGBLOB,
  body_is_text BOOLEAN,
  replayable   BOOLEAN,
  PRIMARY KEY (\`key\`),
  KEY expires_at_idx (expires_at),
  CHECK ((token IS NULL) = (status IS NOT NULL))
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
`
}

// A lease or a ttl in ms, from the database's now (in microseconds: an INTERVAL takes a whole number).
const after = 'UTC_TIMESTAMP(6) + INTERVAL (? * 1000) MICROSECOND'
const ANSWER = 'status = ?, headers = ?, body = ?, body_is_text = ?, replayable = ?'

function statements (table: string) {
  return {
    claim: `INSERT INTO ${table} (\`key\`, fingerprint, token, expires_at) VALUES (?, ?, ?, ${after})`,
    // The row that kept the claim out; its answer only for the same fingerprint.
    read: `SELECT fingerprint = ? AS same, token IS NULL AS done, expires_at <= UTC_TIMESTAMP(6) AS expired,
  TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at) AS us_left,
  status, headers, IF(fingerprint = ?, body, NULL) AS body, body_is_text, replayable
FROM ${table} WHERE \`key\` = ?`,
    // Checked again under the row's lock: of two takeovers, the second finds the first's lease.
    takeOver: `UPDATE ${table} SET fingerprint = ?, token = ?, expires_at = ${after},
  status = NULL, headers = NULL, body = NULL, body_is_text = NULL, replayable = NULL
WHERE \`key\` = ? AND expires_at <= UTC_TIMESTAMP(6)`,
    // Token-checked, not expiry-checked: a lease that ran out with nobody taking the key over is
    // still this claimer's.
    complete: `UPDATE ${table} SET token = NULL, expires_at = ${after}, ${ANSWER} WHERE \`key\` = ? AND token = ?`,
    // The key has no row (swept, or lost with the store): nobody holds it, the request that ran is this one.
    reviveDone: `INSERT INTO ${table} (\`key\`, fingerprint, token, expires_at, status, headers, body, body_is_text, replayable)
VALUES (?, ?, NULL, ${after}, ?, ?, ?, ?, ?)`,
    release: `DELETE FROM ${table} WHERE \`key\` = ? AND token = ?`,
    renew: `UPDATE ${table} SET expires_at = ${after} WHERE \`key\` = ? AND token = ?`,
    // Whether the key's row is this claimer's, in a snapshot of now.
    owner: `SELECT token = ? AS mine FROM ${table} WHERE \`key\` = ?`,
    // Which server and database a session is on, to tell a transaction on another one.
    where: 'SELECT DATABASE() AS db, @@hostname AS host, @@port AS port',
    expired: `SELECT \`key\` FROM ${table} WHERE expires_at < UTC_TIMESTAMP(6) ORDER BY expires_at LIMIT ?`,
    sweep: (count: number) => `DELETE FROM ${table} WHERE \`key\` IN (${Array(count).fill('?').join(', ')}) AND expires_at < UTC_TIMESTAMP(6)`
  }
}

interface ReadRow {
  same: number
  done: number
  expired: number
  us_left: number | string
  status: number
  headers: string | Buffer
  body: Buffer
  body_is_text: number
  replayable: number
}

/** The number of rows a statement changed, from mysql2's `[ResultSetHeader, fields]`. */
function affected (result: [{ affectedRows: number }]): number {
  return result[0].affectedRows
}

function isDuplicate (error: unknown): boolean {
  const found = error as { errno?: number, cause?: { errno?: number } } | null
  // Drizzle wraps the driver's error in one of its own, the driver's as `cause`.
  return found?.errno === DUPLICATE || found?.cause?.errno === DUPLICATE
}

/** What a live row that is not this claim's says. */
function found (row: ReadRow): Exclude<ClaimResult, { state: 'claimed' }> {
  if (Number(row.same) !== 1) return { state: 'mismatch' }
  if (Number(row.done) !== 1) return { state: 'running', retryAfter: Math.max(0, Math.ceil(Number(row.us_left) / 1000)) }
  return { state: 'done', response: decode(row) }
}

/** Runs an INSERT: true when it inserted, false when the key already had a row. */
async function inserted (run: Promise<[{ affectedRows: number }]>): Promise<boolean> {
  try {
    return affected(await run) === 1
  } catch (error) {
    if (isDuplicate(error)) return false
    throw error
  }
}

export class MysqlIdempotencyStore implements IdempotencyStore {
  readonly pool: MysqlIdempotencyPool
  /** The table as SQL: each part backquoted. */
  readonly table: string
  readonly lease: number
  readonly maxAnswerBytes: number
  readonly createTable: boolean
  readonly sweepEvery: number
  private readonly sql: ReturnType<typeof statements>
  private readonly ddl: string
  private tableReady: Promise<void> | null = null
  private claims = 0

  constructor (options: MysqlIdempotencyStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      fail('needs options: { pool, table?, lease?, maxAnswerBytes?, createTable?, sweepEvery? }')
    }
    const { pool, table = DEFAULT_TABLE, createTable } = options
    if (typeof pool !== 'object' || pool === null || typeof pool.query !== 'function') {
      fail('pool must be a mysql2 promise Pool (createPool of mysql2/promise)')
    }
    if (typeof (pool as { promise?: unknown }).promise === 'function') {
      fail('pool is a mysql2 callback Pool: pass pool.promise(), or createPool of mysql2/promise')
    }
    if (createTable !== undefined && typeof createTable !== 'boolean') fail(`createTable must be a boolean; got ${String(createTable)}`)
    this.pool = pool
    this.table = tableName(table)
    this.lease = positiveInteger('idempotencyStore', 'mysqlIdempotencyStore', 'lease (ms)', options.lease, 10_000)
    this.maxAnswerBytes = positiveInteger('idempotencyStore', 'mysqlIdempotencyStore', 'maxAnswerBytes', options.maxAnswerBytes, 1024 * 1024)
    this.sweepEvery = positiveInteger('idempotencyStore', 'mysqlIdempotencyStore', 'sweepEvery', options.sweepEvery, 100, '', 0)
    this.createTable = createTable ?? false
    this.sql = statements(this.table)
    this.ddl = idempotencyTableSql(table)
  }

  /** Runs `sql` through the pool, once the table exists when the store is to create it. */
  private async query (sql: string, values: unknown[]): Promise<any> {
    if (this.createTable) await this.ensureTable()
    return await this.pool.query(sql, values)
  }

  private ensureTable (): Promise<void> {
    // Two instances creating it at once: InnoDB's metadata lock orders them, and the second's
    // IF NOT EXISTS finds the table made (a note, not an error).
    this.tableReady ??= this.pool.query(this.ddl).then(() => {}, (error: unknown) => {
      this.tableReady = null // not made: the next statement tries again
      throw error
    })
    return this.tableReady
  }

  async claim (key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
      throw new Error(`mysqlIdempotencyStore: a key of more than ${MAX_KEY_BYTES} bytes (its scope is too long for the table's primary key)`)
    }
    if (this.sweepEvery > 0 && ++this.claims % this.sweepEvery === 0) {
      // In the background: a failed sweep costs nothing, the next one deletes those rows.
      this.sweep().catch(() => {})
    }
    const token = claimToken()
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      if (await inserted(this.query(this.sql.claim, [key, fingerprint, token, leaseMs]))) return { state: 'claimed', token }
      // In a snapshot of its own (autocommit), taken after the INSERT waited for any transaction
      // holding the row: what that transaction committed is seen.
      const [[row]] = await this.query(this.sql.read, [fingerprint, fingerprint, key]) as [ReadRow[]]
      if (row === undefined) continue // released or swept meanwhile: insert again
      if (Number(row.expired) === 1) {
        if (affected(await this.query(this.sql.takeOver, [fingerprint, token, leaseMs, key])) === 1) return { state: 'claimed', token }
        continue // another claim took it over first: read its row
      }
      return found(row)
    }
    throw new Error(`mysqlIdempotencyStore: the row of key ${JSON.stringify(key)} changed under ${CLAIM_ATTEMPTS} claims in a row`)
  }

  /** The transactional claim's read before the handler: the live record, if any; writes nothing. */
  async read (key: string, fingerprint: string): Promise<Exclude<ClaimResult, { state: 'claimed' }> | null> {
    const [[row]] = await this.query(this.sql.read, [fingerprint, fingerprint, key]) as [ReadRow[]]
    return row === undefined || Number(row.expired) === 1 ? null : found(row)
  }

  /**
   * The transactional claim: the key's row inserted first through `tx`. A duplicate's INSERT waits
   * for this transaction's lock on the key, then its locking read (the latest committed row, not a
   * snapshot) finds the answer, or its insert goes on after a ROLLBACK. An expired row is taken over.
   */
  async claimIn (tx: unknown, key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    const through = executorOf(tx, 'mysql')
    const token = claimToken()
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      try {
        if ((await through.query(this.sql.claim, [key, fingerprint, token, leaseMs])).rowCount === 1) return { state: 'claimed', token }
      } catch (error) {
        if (!isDuplicate(error)) throw error
      }
      const { rows: [row] } = await through.query(`${this.sql.read} LOCK IN SHARE MODE`, [fingerprint, fingerprint, key]) as { rows: ReadRow[] }
      if (row === undefined) continue
      if (Number(row.expired) !== 1) return found(row)
      if ((await through.query(this.sql.takeOver, [fingerprint, token, leaseMs, key])).rowCount === 1) return { state: 'claimed', token }
    }
    throw new Error(`mysqlIdempotencyStore: the row of key ${JSON.stringify(key)} changed under ${CLAIM_ATTEMPTS} claims in a row`)
  }

  /** status, headers, body, body_is_text, replayable: what an answer writes. */
  private answer (response: StoredResponse): unknown[] {
    const { status, headers, body } = response
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    // Applied, but too large to keep: a retry is told so, and the handler never runs again.
    if (bytes.length > this.maxAnswerBytes) return [status, '{}', Buffer.alloc(0), true, false]
    return [status, JSON.stringify(headers), bytes, typeof body === 'string', response.replayable !== false]
  }

  async complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): Promise<boolean> {
    const answer = this.answer(response)
    if (affected(await this.query(this.sql.complete, [ttlMs, ...answer, key, token])) === 1) return true
    if (fingerprint === undefined) return false
    return await inserted(this.query(this.sql.reviveDone, [key, fingerprint, ttlMs, ...answer]))
  }

  /**
   * `complete`, through the handler's open transaction `tx` as its data layer hands it over (a
   * mysql2 `PoolConnection` after `beginTransaction()`, Kysely's, Drizzle's or Knex's `trx`,
   * TypeORM's EntityManager, or a function): the answer commits or rolls back with the handler's
   * data. The row stays locked by `tx` until it ends, so a claim of the same key waits for the
   * COMMIT (and then replays) or the ROLLBACK (and then finds the claim as it was). Token-checked
   * only: an UPDATE reads the latest row whatever the transaction's isolation level and age.
   */
  async completeIn (tx: TransactionClient, key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean | 'later'> {
    if (hasMethod(tx, 'promise') && hasMethod(tx, 'beginTransaction')) {
      // Its query would run the statement and hand back no result: refused before it runs.
      throw new TypeError('fastify-precondition: this is a connection of mysql2\'s callback API: pass connection.promise(), or take it from a pool of mysql2/promise')
    }
    const through = executorOf(tx, 'mysql')
    if ((await through.query(this.sql.complete, [ttlMs, ...this.answer(response), key, token])).rowCount === 1) return true
    // No row changed: the key is another request's (the claim is lost), or it is still this
    // request's and `tx` is on another database (an Error saying so) or met the row in the instant
    // it was written again after a sweep ('later': the answer is stored once sent).
    const [[row]] = await this.query(this.sql.owner, [token, key]) as [Array<{ mine: number }>]
    if (row === undefined || Number(row.mine) !== 1) return false
    const [{ rows: [theirs] }, [[ours]]] = await Promise.all([through.query(this.sql.where, []), this.query(this.sql.where, [])])
    if (theirs.db !== ours.db || theirs.host !== ours.host || Number(theirs.port) !== Number(ours.port)) {
      throw new Error(`fastify-precondition: request.idempotency.complete(tx, body): tx is on database ${JSON.stringify(theirs.db)} of ${String(theirs.host)}:${String(theirs.port)}, and the idempotency store's table is on ${JSON.stringify(ours.db)} of ${String(ours.host)}:${String(ours.port)}: record the answer in a transaction on the store's database, or return the answer and let the plugin store it`)
    }
    return 'later'
  }

  /**
   * Opens a transaction on `db` (a mysql2 promise Pool, or a Kysely, Drizzle, Knex or TypeORM
   * database on MySQL): `fn` gets the transaction as that layer hands it out; COMMIT, or ROLLBACK
   * when `fn` throws. What `request.idempotency.transaction(db, fn)` runs in.
   */
  async transaction<T> (db: unknown, fn: (tx: any) => Promise<T>): Promise<T> {
    return await inTransaction(db, 'mysql', fn)
  }

  async release (key: string, token: string): Promise<void> {
    await this.query(this.sql.release, [key, token])
  }

  async renew (key: string, token: string, leaseMs: number, fingerprint?: string): Promise<boolean> {
    if (affected(await this.query(this.sql.renew, [leaseMs, key, token])) === 1) return true
    if (fingerprint === undefined) return false
    // No row (swept, or lost with the store): running again, with this claimer's token.
    return await inserted(this.query(this.sql.claim, [key, fingerprint, token, leaseMs]))
  }

  /**
   * Deletes up to `limit` expired rows (oldest first) and says how many. Runs by itself after every
   * `sweepEvery` claims; call it from a job of your own with `sweepEvery: 0`.
   */
  async sweep (limit: number = SWEEP_LIMIT): Promise<number> {
    const [rows] = await this.query(this.sql.expired, [limit]) as [Array<{ key: Buffer }>]
    if (rows.length === 0) return 0
    return affected(await this.query(this.sql.sweep(rows.length), rows.map((row) => row.key)))
  }
}

function decode (row: ReadRow): StoredResponse {
  const response: StoredResponse = {
    status: row.status,
    headers: JSON.parse(String(row.headers)),
    body: Number(row.body_is_text) === 1 ? row.body.toString('utf8') : row.body
  }
  if (Number(row.replayable) !== 1) response.replayable = false
  return response
}

/**
 * An idempotency store in MySQL or MariaDB, for many instances and for answers recorded in the
 * handler's own transaction: `idempotencyStore: mysqlIdempotencyStore({ pool })`. The table comes
 * from your migrations (`idempotencyTableSql()`), or `createTable: true`. The pool is not ended
 * with the instance: it is yours.
 */
export function mysqlIdempotencyStore (options: MysqlIdempotencyStoreOptions): MysqlIdempotencyStore {
  return new MysqlIdempotencyStore(options)
}
