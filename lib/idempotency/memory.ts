// The default idempotency store, for one process. Records expire: a claim after its lease, a
// finished response after its ttl. Expired records are dropped when their key is next claimed,
// and by a sweep every `sweepInterval` ms (an unref'd timer, so it never keeps a process alive),
// so memory stays bounded by the keys of the last ttl, not by every key ever seen.
import { invalidOption } from '../errors.js'
import { claimToken } from './token.js'
import type { ClaimResult, IdempotencyStore, StoredResponse } from './store.js'

interface IdempotencyRecord {
  fingerprint: string
  /** The owner's token while running; null once done. */
  token: string | null
  response: StoredResponse | null
  /** When the lease (running) or the ttl (done) ends, in ms since the epoch. */
  expires: number
}

export interface MemoryIdempotencyStoreOptions {
  /** The lease of a claim, in ms. Default 10000. */
  lease?: number
  /** How often expired records are swept, in ms. Default 60000. */
  sweepInterval?: number
  /** The clock, in ms (for tests). Default `Date.now`. */
  now?: () => number
}

function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || (value as number) <= 0) {
    throw invalidOption('idempotencyStore', `memoryIdempotencyStore: ${name} must be a positive whole number of milliseconds; got ${String(value)}`)
  }
  return value as number
}

export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly lease: number
  readonly sweepInterval: number
  private readonly records = new Map<string, IdempotencyRecord>()
  private readonly now: () => number
  private timer: NodeJS.Timeout | null = null

  constructor (options: MemoryIdempotencyStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('idempotencyStore', 'memoryIdempotencyStore: options must be an object: { lease?, sweepInterval? }')
    }
    this.lease = positiveInteger('lease', options.lease, 10_000)
    this.sweepInterval = positiveInteger('sweepInterval', options.sweepInterval, 60_000)
    this.now = options.now ?? Date.now
  }

  /** How many records are kept now, expired ones not yet swept included (for tests and monitoring). */
  get size (): number {
    return this.records.size
  }

  private live (key: string): IdempotencyRecord | undefined {
    const record = this.records.get(key)
    if (record === undefined || record.expires > this.now()) return record
    this.records.delete(key)
    return undefined
  }

  claim (key: string, fingerprint: string, leaseMs: number): ClaimResult {
    const record = this.live(key)
    if (record === undefined) {
      const token = claimToken()
      this.records.set(key, { fingerprint, token, response: null, expires: this.now() + leaseMs })
      this.schedule()
      return { state: 'claimed', token }
    }
    if (record.fingerprint !== fingerprint) return { state: 'mismatch' }
    if (record.response !== null) return { state: 'done', response: record.response }
    return { state: 'running', retryAfter: record.expires - this.now() }
  }

  private owned (key: string, token: string): IdempotencyRecord | undefined {
    const record = this.live(key)
    return record !== undefined && record.token === token ? record : undefined
  }

  complete (key: string, token: string, response: StoredResponse, ttlMs: number): boolean {
    const record = this.owned(key, token)
    if (record === undefined) return false
    record.token = null
    record.response = response
    record.expires = this.now() + ttlMs
    return true
  }

  release (key: string, token: string): void {
    if (this.owned(key, token) !== undefined) this.records.delete(key)
  }

  renew (key: string, token: string, leaseMs: number): boolean {
    const record = this.owned(key, token)
    if (record === undefined) return false
    record.expires = this.now() + leaseMs
    return true
  }

  /** Drops every expired record; runs by itself every `sweepInterval` while records are kept. */
  sweep (): void {
    const now = this.now()
    for (const [key, record] of this.records) {
      if (record.expires <= now) this.records.delete(key)
    }
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
