/**
 * A held lock. `release` must be safe to call once per acquisition; the plugin calls it exactly
 * once, when the response has finished (or the handler is over, whichever is later) or the
 * request was given up before its handler ran.
 */
export interface Lease {
  /**
   * A fencing token: it grows with every acquisition of the key, across every process sharing
   * the store, so a data store can refuse a write whose token is older than the last one it saw.
   */
  readonly token: number
  /**
   * Aborted, with a `LockLostError` as its reason, as soon as the store learns that the lease was
   * lost (found expired or owned by another at a renewal, or at release). Never aborted by a
   * store whose leases cannot be lost.
   */
  readonly signal: AbortSignal
  /** Gives the key back. Must not throw for a lease that was lost; report the loss through `signal`. */
  release (): void | Promise<void>
  /**
   * Optional: tells `listener` once, as the signal aborts, that the lease was lost (at once if it
   * already was). The plugin uses it instead of listening on `signal`, so a store may create its
   * AbortController only when a handler reads `request.lock.signal`.
   */
  onLost? (listener: LeaseLossListener): void
}

/** What `Lease.onLost` calls: an object, so a caller needs no closure per lease. */
export interface LeaseLossListener {
  leaseLost (error: Error): void
}

/**
 * Where per-resource write locks live. Bring your own (a Postgres advisory lock, say) by
 * implementing this; the in-memory store and `redisLockStore` are the built-in ones.
 *
 * `acquire` resolves with a lease once the key is held by this caller. It must reject with
 * `LockTimeoutError` when the key stays held past `timeout` milliseconds, and with any other
 * error (ideally `LockUnavailableError`) when the backend cannot be reached: the plugin then
 * answers 503 and never runs the handler unguarded. Returning a lease synchronously is allowed
 * and saves a tick when the key is free. An acquisition that is given up (timeout, failed
 * command, closing server) must not leave the key held.
 */
export interface LockStore {
  acquire (key: string, timeout: number): Lease | Promise<Lease>
  /** Called from the Fastify instance's preClose: clear timers, reject waiters. */
  close? (): void | Promise<void>
}

/** What a locked write's handler gets as `request.lock`. */
export interface RequestLock {
  /** The resource key the lock is held on. */
  readonly key: string
  /** The fencing token of this acquisition: larger than that of every earlier holder of the key. */
  readonly token: number
  /** Aborted as soon as the store learns the lease was lost; check it before committing. */
  readonly signal: AbortSignal
}
