// The default idempotency store, for one process. Records expire: a claim after its lease, a
// finished response after its ttl. Expired records are dropped when their key is next claimed,
// and by a sweep every `sweepInterval` ms (an unref'd timer, so it never keeps a process alive).
//
// The store is bounded whatever the clients send: at most `maxBytes` of records (see
// RECORD_OVERHEAD for what a record counts) and `maxRecords` records. A claim or a completion
// that would pass a bound first evicts the oldest completed records (a retry of an evicted key
// runs its handler again), never a running claim: running claims are bounded by the requests in
// flight, and are admitted even when nothing else is left to evict. Evictions are reported in one
// warning line a minute at most. An answer whose body is larger than `maxAnswerBytes` is kept as
// not replayable (the request was applied, its answer is not kept).
//
// Eviction is fair between scopes (the owners `scope(request)` names): the oldest completed record
// of the scope holding the most completed records goes first, so one client's flood of keys
// evicts its own records before anyone else's. Completed records are linked in one list per scope
// in the order they completed, oldest first, and the scopes are kept in buckets by how many they
// hold, so an eviction is O(1). (Not a Map's insertion order: reading the first key of a Map after
// deleting the ones before it walks over their holes, which made eviction quadratic.)
import { invalidOption, positiveInteger } from '../errors.js'

import { scopeOf } from './fingerprint.js'
import { claimToken } from './token.js'
import type { ClaimResult, IdempotencyStore, StoredResponse } from './store.js'

/**
 * The bytes each record counts besides its strings: the record, its answer and headers objects,
 * its token and its Map entry, about 300 bytes on Node 20 for a record with two headers.
 */
export const RECORD_OVERHEAD = 300

/** At most one eviction warning per this many ms. */
export const EVICTION_WARNING_INTERVAL = 60_000

const MiB = 1_048_576

interface IdempotencyRecord {
  readonly key: string
  fingerprint: string
  /** The owner's token while running; null once done. */
  token: string | null
  response: StoredResponse | null
  /** When the lease (running) or the ttl (done) ends, in ms since the epoch. */
  expires: number
  /** What this record counts in the store's `bytes`. */
  bytes: number
  /** Its neighbours in its scope's list of completed records (null while running, and at the ends). */
  older: IdempotencyRecord | null
  newer: IdempotencyRecord | null
  /** Its scope's list, once completed. */
  list: ScopeRecords | null
}

/** The completed records of one scope, oldest first. */
interface ScopeRecords {
  readonly scope: string
  oldest: IdempotencyRecord | null
  newest: IdempotencyRecord | null
  count: number
}

/** Where eviction warnings go: a pino logger (`fastify.log`) or anything with `warn`. */
export interface IdempotencyStoreLogger {
  warn (details: object, message?: string): void
}

export interface MemoryIdempotencyStoreOptions {
  /** The lease of a claim, in ms. Default 10000. */
  lease?: number
  /** How often expired records are swept, in ms. Default 60000. */
  sweepInterval?: number
  /**
   * The most bytes of records kept: answer bodies (UTF-8 bytes of a string) and header names and
   * values, keys and fingerprints, and RECORD_OVERHEAD per record. Default 67108864 (64 MiB).
   */
  maxBytes?: number
  /** The most records kept, running claims included. Default 100000. */
  maxRecords?: number
  /**
   * The largest answer body kept, in bytes; a larger answer is kept as not replayable. At most
   * `maxBytes`. Default 1048576 (1 MiB), or `maxBytes` when that is smaller.
   */
  maxAnswerBytes?: number
  /** Where eviction warnings go. Default: `process.emitWarning`. */
  log?: IdempotencyStoreLogger
  /** The clock, in ms (for tests). Default `Date.now`. */
  now?: () => number
}

function bodyBytes (body: Buffer | string): number {
  return typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength
}

function headerBytes (headers: Record<string, string>): number {
  let bytes = 0
  for (const name in headers) bytes += name.length + headers[name].length
  return bytes
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly lease: number
  readonly sweepInterval: number
  readonly maxBytes: number
  readonly maxRecords: number
  readonly maxAnswerBytes: number
  private readonly records = new Map<string, IdempotencyRecord>()
  private readonly now: () => number
  private readonly log: IdempotencyStoreLogger | null
  private timer: NodeJS.Timeout | null = null
  private kept = 0
  // The completed records of each scope, and the scopes by how many they hold.
  private readonly scopes = new Map<string, ScopeRecords>()
  private readonly buckets = new Map<number, Set<ScopeRecords>>()
  private most = 0
  // Evictions not yet reported, by the bound that caused them, and when the last report went out.
  private evictedForBytes = 0
  private evictedForRecords = 0
  private warnedAt = -Infinity

  constructor (options: MemoryIdempotencyStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('idempotencyStore', 'memoryIdempotencyStore: options must be an object: { lease?, sweepInterval?, maxBytes?, maxRecords?, maxAnswerBytes?, log? }')
    }
    this.lease = positiveInteger('idempotencyStore', 'memoryIdempotencyStore', 'lease', options.lease, 10_000, 'milliseconds')
    this.sweepInterval = positiveInteger('idempotencyStore', 'memoryIdempotencyStore', 'sweepInterval', options.sweepInterval, 60_000, 'milliseconds')
    this.maxBytes = positiveInteger('idempotencyStore', 'memoryIdempotencyStore', 'maxBytes', options.maxBytes, 64 * MiB, 'bytes')
    this.maxRecords = positiveInteger('idempotencyStore', 'memoryIdempotencyStore', 'maxRecords', options.maxRecords, 100_000, 'records')
    this.maxAnswerBytes = positiveInteger('idempotencyStore', 'memoryIdempotencyStore', 'maxAnswerBytes', options.maxAnswerBytes, Math.min(MiB, this.maxBytes), 'bytes')
    if (this.maxAnswerBytes > this.maxBytes) {
      throw invalidOption('idempotencyStore', `memoryIdempotencyStore: maxAnswerBytes (${this.maxAnswerBytes}) must be at most maxBytes (${this.maxBytes})`)
    }
    const { log, now } = options
    if (log !== undefined && (typeof log !== 'object' || log === null || typeof log.warn !== 'function')) {
      throw invalidOption('idempotencyStore', 'memoryIdempotencyStore: log must be a logger with a warn method (e.g. fastify.log)')
    }
    if (now !== undefined && typeof now !== 'function') {
      throw invalidOption('idempotencyStore', 'memoryIdempotencyStore: now must be a function answering the time in ms')
    }
    this.log = log ?? null
    this.now = now ?? Date.now
  }

  /** How many records are kept now, expired ones not yet swept included (for tests and monitoring). */
  get size (): number {
    return this.records.size
  }

  /** The bytes the kept records count toward `maxBytes` (for tests and monitoring). */
  get bytes (): number {
    return this.kept
  }

  private live (key: string): IdempotencyRecord | undefined {
    const record = this.records.get(key)
    if (record === undefined || record.expires > this.now()) return record
    this.remove(record)
    return undefined
  }

  private remove (record: IdempotencyRecord): void {
    this.records.delete(record.key)
    this.kept -= record.bytes
    const list = record.list
    if (list === null) return
    const { older, newer } = record
    if (older === null) list.oldest = newer
    else older.newer = newer
    if (newer === null) list.newest = older
    else newer.older = older
    this.count(list, -1)
  }

  /** Appends a completed record to its scope's list. */
  private link (record: IdempotencyRecord): void {
    const scope = scopeOf(record.key)
    let list = this.scopes.get(scope)
    if (list === undefined) {
      list = { scope, oldest: null, newest: null, count: 0 }
      this.scopes.set(scope, list)
    }
    record.list = list
    record.older = list.newest
    if (list.newest === null) list.oldest = record
    else list.newest.newer = record
    list.newest = record
    this.count(list, 1)
  }

  /** Moves a scope's list to the bucket of its new count; a scope left with none is forgotten. */
  private count (list: ScopeRecords, delta: 1 | -1): void {
    const from = list.count
    const to = from + delta
    if (from > 0) {
      const bucket = this.buckets.get(from) as Set<ScopeRecords>
      bucket.delete(list)
      if (bucket.size === 0) {
        this.buckets.delete(from)
        if (this.most === from) this.most = to
      }
    }
    list.count = to
    if (to === 0) {
      this.scopes.delete(list.scope)
      return
    }
    let bucket = this.buckets.get(to)
    if (bucket === undefined) {
      bucket = new Set()
      this.buckets.set(to, bucket)
    }
    bucket.add(list)
    if (to > this.most) this.most = to
  }

  /** The oldest completed record of the scope holding the most, or null when none is completed. */
  private evictable (): IdempotencyRecord | null {
    if (this.most === 0) return null
    const list = (this.buckets.get(this.most) as Set<ScopeRecords>).values().next().value as ScopeRecords
    return list.oldest
  }

  claim (key: string, fingerprint: string, leaseMs: number): ClaimResult {
    const record = this.live(key)
    if (record === undefined) {
      const token = claimToken()
      this.add(key, fingerprint, token, leaseMs)
      return { state: 'claimed', token }
    }
    if (record.fingerprint !== fingerprint) return { state: 'mismatch' }
    if (record.response !== null) return { state: 'done', response: record.response }
    return { state: 'running', retryAfter: record.expires - this.now() }
  }

  /** A running claim of `key` for `token`, making room for it first. */
  private add (key: string, fingerprint: string, token: string, leaseMs: number): IdempotencyRecord {
    const bytes = key.length + fingerprint.length + RECORD_OVERHEAD
    if (this.records.size >= this.maxRecords || this.kept + bytes > this.maxBytes) this.makeRoom(bytes, 1)
    const record: IdempotencyRecord = { key, fingerprint, token, response: null, expires: this.now() + leaseMs, bytes, older: null, newer: null, list: null }
    this.records.set(key, record)
    this.kept += bytes
    this.schedule()
    return record
  }

  /**
   * Evicts the oldest completed records of the scope holding the most until `bytes` more and
   * `records` more fit, or none is left: running claims are admitted all the same.
   */
  private makeRoom (bytes: number, records: number): void {
    const maxRecords = this.maxRecords - records
    const maxBytes = this.maxBytes - bytes
    let evicted = false
    for (let oldest = this.evictable(); oldest !== null; oldest = this.evictable()) {
      if (this.records.size > maxRecords) this.evictedForRecords++
      else if (this.kept > maxBytes) this.evictedForBytes++
      else break
      this.remove(oldest)
      evicted = true
    }
    if (evicted) this.warnEvictions(this.now())
  }

  /** Reports the evictions since the last report, unless one went out within the interval. */
  private warnEvictions (now: number): void {
    if (now - this.warnedAt < EVICTION_WARNING_INTERVAL) return
    const first = this.warnedAt === -Infinity
    this.warnedAt = now
    const forBytes = this.evictedForBytes
    const forRecords = this.evictedForRecords
    this.evictedForBytes = 0
    this.evictedForRecords = 0
    const evicted = forBytes + forRecords
    const message = `fastify-precondition: the idempotency store is full; ${evicted} completed ${evicted === 1 ? 'record' : 'records'} evicted ` +
      `${first ? 'since it started' : 'since the last warning'} (${forBytes} over maxBytes ${this.maxBytes}, ` +
      `${forRecords} over maxRecords ${this.maxRecords}); a retry of an evicted key runs its handler again`
    if (this.log === null) {
      process.emitWarning(message, { code: 'FST_PRECONDITION_IDEMPOTENCY_EVICTED' })
      return
    }
    try {
      this.log.warn({ evicted, forBytes, forRecords, bytes: this.kept, records: this.records.size }, message)
    } catch {
      // A logger's own failure must not fail the claim or the completion that evicted.
    }
  }

  /**
   * The record `token` holds, also after its lease ran out (nobody claimed it since: a claim drops
   * an expired record first); a running record made for it when `key` has none and `fingerprint`
   * is known; else undefined.
   */
  private owned (key: string, token: string, fingerprint?: string): IdempotencyRecord | undefined {
    const record = this.records.get(key)
    if (record === undefined) return fingerprint === undefined ? undefined : this.add(key, fingerprint, token, this.lease)
    return record.token === token ? record : undefined
  }

  complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): boolean {
    const record = this.owned(key, token, fingerprint)
    if (record === undefined) return false
    let bytes = bodyBytes(response.body)
    if (bytes > this.maxAnswerBytes) {
      // The plugin passes such an answer as not replayable already; this keeps the bound if not.
      response = { status: response.status, headers: {}, body: '', replayable: false }
      bytes = 0
    } else {
      bytes += headerBytes(response.headers)
    }
    // Counted before it joins the list of completed records, so it is never its own eviction.
    record.bytes += bytes
    this.kept += bytes
    if (this.kept > this.maxBytes) this.makeRoom(0, 0)
    record.token = null
    record.response = response
    record.expires = this.now() + ttlMs
    this.link(record)
    return true
  }

  release (key: string, token: string): void {
    const record = this.owned(key, token)
    if (record !== undefined) this.remove(record)
  }

  renew (key: string, token: string, leaseMs: number, fingerprint?: string): boolean {
    const record = this.owned(key, token, fingerprint)
    if (record === undefined) return false
    record.expires = this.now() + leaseMs
    return true
  }

  /**
   * Drops every expired record, and reports evictions left unreported; runs by itself every
   * `sweepInterval` while records are kept.
   */
  sweep (): void {
    const now = this.now()
    for (const record of this.records.values()) {
      if (record.expires <= now) this.remove(record)
    }
    if (this.evictedForBytes + this.evictedForRecords > 0) this.warnEvictions(now)
    if (this.records.size === 0 && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  private schedule (): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => this.sweep(), this.sweepInterval)
    this.timer.unref()
  }

  /** Stops the sweep timer; records stay readable (the store may outlive one Fastify instance). */
  close (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}

/** The in-memory idempotency store (the default): `idempotencyStore: memoryIdempotencyStore({ lease })`. */
export function memoryIdempotencyStore (options?: MemoryIdempotencyStoreOptions): MemoryIdempotencyStore {
  return new MemoryIdempotencyStore(options)
}
