// The interface every idempotency store implements: the in-memory default, Redis and PostgreSQL.
import type { SqlTransaction } from '../sql/transaction.js'

/** A finished response as it is stored and replayed. */
export interface StoredResponse {
  /** The HTTP status (2xx–4xx: 5xx answers are never stored). */
  status: number
  /**
   * The headers that matter to a client, lower-case names: content-type, content-encoding,
   * location, etag, last-modified.
   */
  headers: Record<string, string>
  /**
   * The body as it was sent: the string Fastify sent (its UTF-8 bytes went out), or the bytes.
   * Replayed as it is.
   */
  body: Buffer | string
  /**
   * `false`: the request was applied but its answer is not kept (the handler hijacked the reply,
   * or the answer was larger than the store keeps). `status` is the status it went out with (0 when
   * unknown), `headers` is empty and `body` is ''. A retry is told at once, with its own problem
   * code, that the request was applied, and the handler never runs twice. Absent: replayable.
   */
  replayable?: false
}

/**
 * What `completeIn` takes as a transaction: each data layer's own (a node-postgres client inside
 * BEGIN … COMMIT, postgres.js' `sql` of `sql.begin`, Kysely's, Drizzle's and Knex's `trx`, TypeORM's
 * EntityManager, a mysql2 connection), or a function `(text, values) => Promise<{ rowCount }>`.
 */
export type TransactionClient = SqlTransaction

/**
 * What `claim` found:
 * - `claimed`: the key was free (never used, expired, or its claimer's lease ran out); this caller
 *   owns it until `complete` or `release` with `token`.
 * - `running`: another request with the same fingerprint holds it; `retryAfter` is the number of
 *   milliseconds its lease has left, when the store knows.
 * - `done`: a request with the same fingerprint finished; replay `response`.
 * - `mismatch`: the key is held or was used by a request with another fingerprint.
 */
export type ClaimResult =
  | { state: 'claimed', token: string }
  | { state: 'running', retryAfter?: number }
  | { state: 'done', response: StoredResponse }
  | { state: 'mismatch' }

/**
 * Where Idempotency-Key records live. Every method may answer synchronously or with a promise; a
 * store that cannot reach its backend throws or rejects, and the request is answered 503 without
 * running its handler.
 *
 * Owner checks are by `token`: a claimer whose lease ran out and whose key was claimed again can
 * neither complete nor release nor renew it, so a completed record is never overwritten by a
 * stale claimer.
 */
export interface IdempotencyStore {
  /** The lease a claim gets, in milliseconds; renewed every third of it while the request runs. */
  readonly lease: number
  /**
   * The largest answer body the store keeps, in bytes. A larger answer is completed as not
   * replayable (`replayable: false`), so the handler still never runs twice for its key. Absent:
   * no limit of the store's own.
   */
  readonly maxAnswerBytes?: number
  /** Atomically: claim `key` for `leaseMs`, or say who has it. */
  claim (key: string, fingerprint: string, leaseMs: number): ClaimResult | Promise<ClaimResult>
  /**
   * Stores the response for `ttlMs` if `token` still owns the key (its lease may have ended, as
   * long as nobody claimed the key since), or if the key has no record at all (it expired or was
   * lost while the store was unreachable: nobody else holds it, and the request that ran is this
   * one), with `fingerprint`. False when another claim holds the key or it is done.
   */
  complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): boolean | Promise<boolean>
  /** Frees the key if `token` still owns it (the request failed, or its client left first). */
  release (key: string, token: string): void | Promise<void>
  /**
   * Extends the lease to `leaseMs` from now while `token` owns the key (also after the lease ran
   * out, as long as nobody claimed the key since); a key with no record at all is claimed again
   * for `token` with `fingerprint`. False when another claim holds the key or it is done.
   */
  renew (key: string, token: string, leaseMs: number, fingerprint?: string): boolean | Promise<boolean>
  /**
   * Stores the response through `tx`, the handler's own open transaction, if `token` still owns
   * the key: the record commits or rolls back with the handler's data (PostgreSQL). False when
   * `token` does not own it. `'later'` when the key is still this request's but `tx` cannot see
   * its claim (a snapshot taken before the claim, under REPEATABLE READ or SERIALIZABLE): nothing
   * was written through `tx`, and the answer is stored as with the stores without transactions,
   * once it is sent. Throws when `tx` can never record it (another database). Stores without
   * transactions leave it out, and `request.idempotency.complete` then throws.
   */
  completeIn? (tx: unknown, key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean | 'later'>
  /**
   * Opens a transaction on `db` (a pool, or a data layer's database object), runs `fn` with the
   * layer's own transaction object, commits, and rolls back when `fn` throws: what
   * `request.idempotency.transaction` runs in. Stores without transactions leave it out.
   */
  transaction? <T> (db: unknown, fn: (tx: any) => Promise<T>): Promise<T>
  /**
   * The transactional claim (`claim: 'transaction'`), before the handler: what the key's record
   * says now, read without writing anything; null when there is none (or it expired).
   */
  read? (key: string, fingerprint: string): Promise<Exclude<ClaimResult, { state: 'claimed' }> | null>
  /**
   * The transactional claim, first thing in the handler's transaction `tx`: inserts the key's
   * record (a duplicate's insert waits for this transaction, and meets its answer once it
   * committed), or says what another request committed under the key.
   */
  claimIn? (tx: unknown, key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult>
  /** Called when the Fastify instance closes: clear timers. */
  close? (): void | Promise<void>
}

/** The options the SQL stores (PostgreSQL, MySQL) share, besides their pool and table. */
export interface SqlIdempotencyStoreOptions {
  /** The lease of a claim in ms, renewed every third of it while the request runs. Default 10000. */
  lease?: number
  /** The largest answer body kept, in bytes; a larger one is recorded as not replayable. Default 1 MiB. */
  maxAnswerBytes?: number
  /**
   * Create the table (and its index) if it does not exist, before the first statement. Default
   * false: the table is made by your migrations, from `idempotencyTableSql(table)`.
   */
  createTable?: boolean
  /**
   * Delete expired rows (at most 100) after every `sweepEvery` claims of this store, in the
   * background. 0: never (run `sweep()` or your own DELETE from a scheduled job). Default 100.
   */
  sweepEvery?: number
}
