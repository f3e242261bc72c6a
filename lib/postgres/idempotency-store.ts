// The idempotency store in PostgreSQL: one row per key, in a table whose DDL ships with the package
// (lib/postgres/idempotency.sql, or `idempotencyTableSql(table)` for a migration). Its point is
// `completeIn(tx, …)`: the answer is recorded in the handler's own transaction, so it commits or
// rolls back with the handler's data, and a crash between COMMIT and the reply cannot run the
// handler twice.
//
// Every change is one statement checked against the claimer's token, and every time is the
// database's clock (clock_timestamp()), never a process's, so many instances agree on who holds a
// key and when it frees. A row past expires_at (a lease that ran out, a ttl that ended) is free:
// a claim takes it over, and the store deletes such rows a bounded batch at a time (`sweep`).
import { invalidOption, positiveInteger } from '../errors.js'

import { ignore } from '../shared.js'
import { claimToken } from '../idempotency/token.js'
import type { ClaimResult, IdempotencyStore, SqlIdempotencyStoreOptions, StoredResponse, TransactionClient } from '../idempotency/store.js'
import { executorOf, inTransaction, type SqlExecutor, type SqlResult } from '../sql/executor.js'
import { pgExecutor } from '../sql/layers/node-postgres.js'
import { isPostgresJs, postgresJsExecutor } from '../sql/layers/postgres-js.js'
import { hasMethod } from '../sql/shape.js'
import { RenewalConnection } from './renewal-connection.js'
import { statements } from './statements.js'

/**
 * What the store takes as its pool: a node-postgres `Pool` (anything with its
 * `query(text, values)`: a `pg.Client` too, although a pool is what many requests at once need), or
 * a postgres.js `sql`.
 */
export type PgIdempotencyPool =
  | { query (text: string, values?: unknown[]): Promise<{ rows: any[], rowCount: number | null }> }
  | { unsafe (query: string, parameters?: any[], queryOptions?: any): PromiseLike<unknown>, begin: unknown }

export interface PgIdempotencyStoreOptions extends SqlIdempotencyStoreOptions {
  /**
   * A node-postgres `Pool` (`new pg.Pool(...)`) or a postgres.js `sql` (`postgres(...)`, without
   * a `transform` of what it reads). The store never ends it: it is yours.
   */
  pool: PgIdempotencyPool
  /**
   * The table, optionally schema-qualified (`'app.idempotency'`): lower-case letters, digits and
   * `_`, not starting with a digit; 48 characters at most, so its index's name fits PostgreSQL's 63.
   * Default `'fastify_precondition_idempotency'`.
   */
  table?: string
}

export const DEFAULT_TABLE = 'fastify_precondition_idempotency'
const PART = /^[a-z_][a-z0-9_]*$/
const MAX_TABLE = 48
const MAX_SCHEMA = 63
/** How many expired rows one sweep deletes at most. */
export const SWEEP_LIMIT = 100
/**
 * How many times a claim tries again when the row changed between its two statements (deleted or
 * expired after the insert found it live): a retry sees the newer row, so this is only reached
 * when the key is changing all the time.
 */
const CLAIM_ATTEMPTS = 5

function fail (message: string): never {
  throw invalidOption('idempotencyStore', `pgIdempotencyStore: ${message}`)
}

/** The table's name as SQL (each part double-quoted) and its index's name, or throws. */
function tableNames (table: unknown): { table: string, index: string } {
  if (typeof table !== 'string') fail(`table must be a string; got ${String(table)}`)
  const parts = table.split('.')
  const name = parts[parts.length - 1]
  if (parts.length > 2 || !parts.every((part) => PART.test(part)) || name.length > MAX_TABLE || parts[0].length > MAX_SCHEMA) {
    fail(`table must be a lower-case SQL name (letters, digits, _), optionally schema-qualified, at most ${MAX_TABLE} characters; got ${JSON.stringify(table)}`)
  }
  return { table: parts.map((part) => `"${part}"`).join('.'), index: `"${name}_expires_at_idx"` }
}

/**
 * The DDL of the table `pgIdempotencyStore({ table })` uses (the same text as
 * lib/postgres/idempotency.sql for the default name), for a migration. Idempotent: IF NOT EXISTS.
 */
export function idempotencyTableSql (table: string = DEFAULT_TABLE): string {
  const names = tableNames(table)
  return `-- The Idempotency-Key records of fastify-precondition's pgIdempotencyStore, one row per key.
-- Running (token set): a request holds the key until expires_at, the end of its lease.
-- Done (token NULL): the answer, replayed until expires_at, the end of the route's ttl.
-- A row past expires_at is free: a claim takes it over, and the store deletes such rows.
CREATE TABLE IF NOT EXISTS ${names.table} (
  key          text COLLATE "C" PRIMARY KEY,
  fingerprint  text        NOT NULL,
  token        text,
  expires_at   timestamptz NOT NULL,
  status       smallint,
  headers      json,
  body         bytea,
  body_is_text boolean,
  replayable   boolean,
  CHECK ((token IS NULL) = (status IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS ${names.index} ON ${names.table} (expires_at);
`
}

/** Which database a session is on, and at which isolation. */
interface Where { db: string, port: number, started: string, isolation: string }

interface ReadRow {
  same: boolean
  done: boolean
  mine: boolean
  ms_left: number
  status: number
  headers: unknown
  body: Buffer
  body_is_text: boolean
  replayable: boolean
}

// How PostgreSQL refuses a CREATE … IF NOT EXISTS that raced another session's: a unique
// violation in its catalogs (23505), or the table (42P07) or its row type (42710) made meanwhile.
const CREATED_MEANWHILE = new Set(['23505', '42P07', '42710'])

function createdMeanwhile (error: unknown): boolean {
  return CREATED_MEANWHILE.has((error as { code?: string } | null)?.code as string)
}

export class PgIdempotencyStore implements IdempotencyStore {
  readonly pool: PgIdempotencyPool
  /** The table as SQL: each part double-quoted. */
  readonly table: string
  readonly lease: number
  readonly maxAnswerBytes: number
  readonly createTable: boolean
  readonly sweepEvery: number
  /** The pool, as one `query(text, values)` whatever the driver. */
  private readonly db: SqlExecutor
  private readonly sql: ReturnType<typeof statements>
  private readonly ddl: string
  private tableReady: Promise<void> | null = null
  /** Where leases are renewed: a connection of the store's own, beside the pool. */
  private readonly renewals: RenewalConnection
  private claims = 0

  constructor (options: PgIdempotencyStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      fail('needs options: { pool, table?, lease?, maxAnswerBytes?, createTable?, sweepEvery? }')
    }
    const { pool, table = DEFAULT_TABLE, createTable } = options
    this.db = poolExecutor(pool)
    if (createTable !== undefined && typeof createTable !== 'boolean') fail(`createTable must be a boolean; got ${String(createTable)}`)
    this.pool = pool
    this.table = tableNames(table).table
    this.lease = positiveInteger('idempotencyStore', 'pgIdempotencyStore', 'lease (ms)', options.lease, 10_000)
    this.maxAnswerBytes = positiveInteger('idempotencyStore', 'pgIdempotencyStore', 'maxAnswerBytes', options.maxAnswerBytes, 1024 * 1024)
    this.sweepEvery = positiveInteger('idempotencyStore', 'pgIdempotencyStore', 'sweepEvery', options.sweepEvery, 100, '', 0)
    this.createTable = createTable ?? false
    this.sql = statements(this.table)
    this.renewals = new RenewalConnection(pool, this.db)
    this.ddl = idempotencyTableSql(table)
  }

  /** Runs `text` through the pool, once the table exists when the store is to create it. */
  private async query (text: string, values: unknown[]): Promise<SqlResult> {
    if (this.createTable) await this.ensureTable()
    return await this.db.query(text, values)
  }

  private ensureTable (): Promise<void> {
    this.tableReady ??= this.db.query(this.ddl, [])
      .catch((error: unknown) => {
        // Two instances creating it at once: one wins, the other's IF NOT EXISTS sees it now.
        if (createdMeanwhile(error)) return this.db.query(this.ddl, [])
        throw error
      })
      .then(() => {}, (error: unknown) => {
        this.tableReady = null // not made: the next statement tries again
        throw error
      })
    return this.tableReady
  }

  async claim (key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    this.counted()
    // Where the store is, for a `complete` on another database, read now, before any transaction.
    this.whereStoreIs().catch(ignore)
    const token = claimToken()
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const inserted = await this.again(() => this.query(this.sql.claim, [key, fingerprint, token, leaseMs]))
      if (inserted.rowCount === 1) return { state: 'claimed', token }
      // The row was live when the insert met it; read it in a new snapshot (one that sees it even
      // when it was committed after the insert began).
      const { rows: [row] } = await this.again(() => this.query(this.sql.read, [key, fingerprint, token])) as { rows: ReadRow[] }
      if (row === undefined) {
        // Expired (or gone meanwhile): take it over, or insert again if it is gone.
        if ((await this.again(() => this.query(this.sql.takeOver, [key, fingerprint, token, leaseMs]))).rowCount === 1) return { state: 'claimed', token }
        continue
      }
      // This claim's own insert, committed before its connection broke and tried again.
      if (row.mine) return { state: 'claimed', token }
      return found(row)
    }
    throw new Error(`pgIdempotencyStore: the row of key ${JSON.stringify(key)} changed under ${CLAIM_ATTEMPTS} claims in a row`)
  }

  /** Counts a claim; after every `sweepEvery`, a sweep in the background (a failed one costs nothing: the next one deletes those rows). */
  private counted (): void {
    if (this.sweepEvery > 0 && ++this.claims % this.sweepEvery === 0) this.sweep().catch(() => {})
  }

  /** The transactional claim's read before the handler: the live record, if any; writes nothing. */
  async read (key: string, fingerprint: string): Promise<Exclude<ClaimResult, { state: 'claimed' }> | null> {
    const { rows: [row] } = await this.again(() => this.query(this.sql.read, [key, fingerprint, null])) as { rows: ReadRow[] }
    return row === undefined ? null : found(row)
  }

  /**
   * The transactional claim, first in the handler's transaction: the key's row inserted through
   * `tx`. A duplicate's insert waits on the unique index for this transaction: once it commits,
   * the duplicate's next statement (READ COMMITTED) reads the answer; once it rolls back, the
   * duplicate's insert goes on. A row whose ttl ended is taken over, in `tx` too.
   */
  async claimIn (tx: unknown, key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    this.counted()
    const through = executorOf(tx, 'postgres')
    const token = claimToken()
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      if ((await through.query(this.sql.claim, [key, fingerprint, token, leaseMs])).rowCount === 1) return { state: 'claimed', token }
      const { rows: [row] } = await through.query(this.sql.read, [key, fingerprint, token]) as { rows: ReadRow[] }
      if (row !== undefined) return found(row)
      if ((await through.query(this.sql.takeOver, [key, fingerprint, token, leaseMs])).rowCount === 1) return { state: 'claimed', token }
    }
    throw new Error(`pgIdempotencyStore: the row of key ${JSON.stringify(key)} changed under ${CLAIM_ATTEMPTS} claims in a row`)
  }

  /**
   * Runs `statement`, once more when its connection broke (a pooled connection whose backend was
   * terminated, or whose server restarted, fails once before the pool drops it): a claim then
   * reaches the database on a fresh connection instead of failing the request with a 503. Each
   * statement it is used for is safe to run twice (the claim by its token, the read).
   */
  private async again<T> (statement: () => Promise<T>): Promise<T> {
    try {
      return await statement()
    } catch (error) {
      if (!brokenConnection(error)) throw error
      return await statement()
    }
  }

  private completeValues (key: string, token: string, response: StoredResponse, ttlMs: number): unknown[] {
    const { status, headers, body } = response
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    if (bytes.length > this.maxAnswerBytes) {
      // Applied, but too large to keep: a retry is told so, and the handler never runs again.
      return [key, token, ttlMs, status, '{}', Buffer.alloc(0), true, false]
    }
    return [key, token, ttlMs, status, JSON.stringify(headers), bytes, typeof body === 'string', response.replayable !== false]
  }

  async complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): Promise<boolean> {
    const values = this.completeValues(key, token, response, ttlMs)
    if (fingerprint === undefined) return (await this.query(this.sql.completeOwned, values)).rowCount === 1
    values.push(fingerprint)
    return (await this.query(this.sql.complete, values)).rowCount === 1
  }

  /**
   * `complete`, through the handler's open transaction `tx`: the answer commits or rolls back with
   * the handler's data. The row stays locked by `tx` until it ends, so a claim of the same key
   * waits for the COMMIT (and then replays) or the ROLLBACK (and then finds the claim as it was).
   * Under REPEATABLE READ or SERIALIZABLE, a renewal of the lease committed after the transaction's
   * snapshot makes this UPDATE fail with a serialization error (40001): the transaction rolls back
   * and nothing is applied, but a transaction that outlives a third of the lease may be refused.
   * READ COMMITTED (PostgreSQL's default) has no such conflict.
   *
   * When the UPDATE finds no row, the store's pool tells why, in a snapshot of now: the key is
   * another request's (false: the claim is lost), or it is still this request's and `tx` cannot
   * see it: a snapshot taken before the claim ('later': the answer is stored once sent, as the
   * stores without transactions do) or another database (an Error saying so).
   */
  async completeIn (tx: TransactionClient, key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean | 'later'> {
    const through = executorOf(tx, 'postgres')
    if ((await through.query(this.sql.completeIn, this.completeValues(key, token, response, ttlMs))).rowCount === 1) return true
    // Nothing more through the pool while `tx` is open: a pool (or a PgBouncer) whose connections
    // are all held by transactions waiting for one more would never answer. Where `tx` is comes
    // through `tx`; where the store is was read once, by a claim, before any transaction.
    const { rows: [here] } = await through.query(this.sql.where, [])
    const store = await this.whereStoreIs()
    if (here.db !== store.db || here.port !== store.port || here.started !== store.started) {
      throw new Error(`fastify-precondition: request.idempotency.complete(tx, body): tx is on database ${JSON.stringify(here.db)}, and the idempotency store's table is on ${JSON.stringify(store.db)}: record the answer in a transaction on the store's database, or return the answer and let the plugin store it`)
    }
    // Under READ COMMITTED the UPDATE saw the latest row: not this claim's. Under REPEATABLE READ
    // or SERIALIZABLE it was not tried: the answer is stored once sent, checked by token then.
    return here.isolation === 'read committed' ? false : 'later'
  }

  private located: Promise<Where> | null = null

  /** Which database the store's pool is on, read once (again after a failure). */
  private whereStoreIs (): Promise<Where> {
    this.located ??= this.query(this.sql.where, []).then(({ rows: [row] }) => row as Where)
    this.located.catch(() => { this.located = null })
    return this.located
  }

  /**
   * Opens a transaction on `db` (a node-postgres Pool, a postgres.js `sql`, or a Kysely, Drizzle,
   * Knex or TypeORM database): `fn` gets the transaction as that layer hands it out; COMMIT, or
   * ROLLBACK when `fn` throws. A connection that breaks meanwhile (its backend terminated, the
   * server restarted) fails the statement in flight, never the process.
   */
  async transaction<T> (db: unknown, fn: (tx: any) => Promise<T>): Promise<T> {
    return await inTransaction(db, 'postgres', fn)
  }

  async release (key: string, token: string): Promise<void> {
    await this.query(this.sql.release, [key, token])
  }

  async renew (key: string, token: string, leaseMs: number): Promise<boolean> {
    return (await this.renewals.query(this.sql.renew, [key, token, leaseMs])).rowCount === 1
  }

  /** Ends the connection leases were renewed through; the pool is yours, and stays open. */
  async close (): Promise<void> {
    await this.renewals.close()
  }

  /**
   * Deletes up to `limit` expired rows (oldest first) and says how many. Runs by itself after every
   * `sweepEvery` claims; call it from a job of your own with `sweepEvery: 0`.
   */
  async sweep (limit: number = SWEEP_LIMIT): Promise<number> {
    return Number((await this.query(this.sql.sweep, [limit])).rowCount)
  }
}

/**
 * The pool's executor: node-postgres' `query` or postgres.js' `unsafe`. A postgres.js `sql` that
 * transforms what it reads (`postgres.camel`, …) would hand the store rows it cannot read.
 */
function poolExecutor (pool: unknown): SqlExecutor {
  if (isPostgresJs(pool)) {
    const transform = (pool as { options?: { transform?: Record<string, { from?: unknown } | undefined> } }).options?.transform
    if (transform !== undefined && ['column', 'value', 'row'].some((what) => transform[what]?.from !== undefined)) {
      fail('pool: this postgres.js sql transforms the rows it reads; give the store one without `transform` (postgres(url) beside your own)')
    }
    return postgresJsExecutor(pool as Parameters<typeof postgresJsExecutor>[0])
  }
  if (!hasMethod(pool, 'query')) fail('pool must be a node-postgres Pool (new pg.Pool(...)) or a postgres.js sql (postgres(...))')
  return pgExecutor(pool as Parameters<typeof pgExecutor>[0])
}

/**
 * The stored headers as they were written: an object of strings. Anything else (a JSON string: a
 * value a driver encoded twice) would replay other headers than the answer had, and is refused.
 */
function storedHeaders (headers: unknown): Record<string, string> {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers) ||
    !Object.values(headers).every((value) => typeof value === 'string')) {
    throw new Error(`pgIdempotencyStore: the stored headers are not an object of strings (got ${JSON.stringify(headers).slice(0, 100)}); was the row written by a driver that encoded them twice?`)
  }
  return headers as Record<string, string>
}

/**
 * Whether `error` is a connection that broke rather than a statement the database refused: no
 * SQLSTATE at all (the socket closed), a connection exception (class 08, also PgBouncer's
 * "server conn crashed?"), or the server shutting down (57P01–57P03).
 */
function brokenConnection (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code) || code.startsWith('08') || /^57P0[123]$/.test(code)
}

/** What a live row that is not this claim's says. */
function found (row: ReadRow): Exclude<ClaimResult, { state: 'claimed' }> {
  if (!row.same) return { state: 'mismatch' }
  if (!row.done) return { state: 'running', retryAfter: Math.max(0, Math.ceil(row.ms_left)) }
  return { state: 'done', response: decode(row) }
}

function decode (row: ReadRow): StoredResponse {
  const response: StoredResponse = {
    status: row.status,
    headers: storedHeaders(row.headers),
    body: row.body_is_text ? row.body.toString('utf8') : row.body
  }
  if (!row.replayable) response.replayable = false
  return response
}

/**
 * An idempotency store in PostgreSQL, for many instances and for answers recorded in the
 * handler's own transaction: `idempotencyStore: pgIdempotencyStore({ pool })`. The table comes
 * from your migrations (`idempotencyTableSql()`), or `createTable: true`. The pool is not ended
 * with the instance: it is yours.
 */
export function pgIdempotencyStore (options: PgIdempotencyStoreOptions): PgIdempotencyStore {
  return new PgIdempotencyStore(options)
}
