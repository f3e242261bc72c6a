/**
 * A held lock. `release` must be safe to call once per acquisition; the plugin calls it exactly
 * once, when the response has finished or the request was aborted.
 */
export interface Lease {
  release (): void | Promise<void>
}

/**
 * Where per-resource write locks live. Bring your own (a Postgres advisory lock, say) by
 * implementing this; the in-memory store and `redisLockStore` are the built-in ones.
 *
 * `acquire` resolves with a lease once the key is held by this caller. It must reject with
 * `LockTimeoutError` when the key stays held past `timeout` milliseconds, and with any other
 * error (ideally `LockUnavailableError`) when the backend cannot be reached: the plugin then
 * answers 503 and never runs the handler unguarded. Returning a lease synchronously is allowed
 * and saves a tick when the key is free.
 */
export interface LockStore {
  acquire (key: string, timeout: number): Lease | Promise<Lease>
  /** Called from the Fastify instance's onClose: clear timers, reject waiters. */
  close? (): void | Promise<void>
}
