// The lock store for many processes: one Redis mutex per resource key, from redis-semaphore, so
// the lock protocol (SET NX PX, owner-checked refresh and delete) is the library's, not ours.
// Only this subpath imports ioredis and redis-semaphore; the main entry never does.
import { Mutex } from 'redis-semaphore'
import { invalidOption, LockTimeoutError, LockUnavailableError } from '../errors.js'
import { MemoryLockStore } from './memory.js'
import type { Lease, LockStore } from './types.js'

/** An ioredis client: a `Redis` (what the tests use) or a `Cluster` (each lock is a single key). */
export type RedisLockClient = ConstructorParameters<typeof Mutex>[0] & { readonly status?: string }

export interface RedisLockStoreOptions {
  /** The ioredis client. The store never connects, disconnects or quits it: it is yours. */
  client: RedisLockClient
  /**
   * Lease lifetime in milliseconds. The lease is renewed every `ttl / 3` while the request runs,
   * so `ttl` only bounds how long a key stays locked after its process died. Default 10000.
   */
  ttl?: number
  /** Prepended to resource keys; the Redis key is `mutex:<prefix><key>`. Default `'fastify-precondition:'`. */
  prefix?: string
  /** How often (ms) a waiting write asks Redis again whether the key is free. Default 10. */
  retryInterval?: number
  /**
   * Called when a held lease was found expired or taken over while its request still ran: another
   * process may have written meanwhile. Default: a process warning `FST_PRECONDITION_LOCK_LOST`.
   */
  onLockLost?: (error: Error, key: string) => void
}

// ioredis states in which a command would wait in the offline queue (or fail) instead of reaching
// a server: answer 503 at once rather than letting the write wait for a reconnection.
const UNREACHABLE = new Set(['reconnecting', 'close', 'end'])

function warnLockLost (error: Error, key: string): void {
  process.emitWarning(`fastify-precondition: the Redis lease on "${key}" was lost while its request ran (${error.message}); another process may have written meanwhile. Raise the store's ttl or check the Redis link.`, {
    code: 'FST_PRECONDITION_LOCK_LOST'
  })
}

/**
 * redis-semaphore runs renewals from a timer and lets a failed Redis call escape as an unhandled
 * rejection, which ends a Node process. A renewal that failed to reach Redis proves nothing, so it
 * counts as "not lost yet": the next renewal asks again, and it reports the loss if by then the key
 * expired or changed owner.
 */
class LeaseMutex extends Mutex {
  protected override async _refresh (): Promise<boolean> {
    try {
      return await super._refresh()
    } catch {
      return true
    }
  }
}

class RedisLease implements Lease {
  private readonly mutex: LeaseMutex
  private readonly local: Lease

  constructor (mutex: LeaseMutex, local: Lease) {
    this.mutex = mutex
    this.local = local
  }

  release (): Promise<void> {
    // The delete is written to the connection before the next local waiter's SET, so handing the
    // local turn over at once costs that waiter no retry.
    const released = this.mutex.release()
    this.local.release()
    return released
  }
}

interface Attempt {
  fail (error: Error): void
}

function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || (value as number) <= 0) {
    throw invalidOption('lockStore', `redisLockStore: ${name} must be a positive whole number of milliseconds; got ${String(value)}`)
  }
  return value as number
}

/**
 * A lock store shared by every process that uses the same Redis. Within one process, writes to a
 * key queue first in memory (first come, first served, and one Redis poller per key per process);
 * across processes, the head of each queue polls Redis every `retryInterval`.
 */
export class RedisLockStore implements LockStore {
  readonly client: RedisLockClient
  readonly ttl: number
  readonly prefix: string
  readonly retryInterval: number
  private readonly onLockLost: (error: Error, key: string) => void
  private readonly queue = new MemoryLockStore()
  private readonly attempts = new Set<Attempt>()
  private closed = false

  constructor (options: RedisLockStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('lockStore', 'redisLockStore needs options: { client, ttl?, prefix?, retryInterval?, onLockLost? }')
    }
    const { client, prefix, onLockLost } = options
    if (typeof client !== 'object' || client === null || typeof client.set !== 'function' || typeof client.evalsha !== 'function') {
      throw invalidOption('lockStore', 'redisLockStore: client must be an ioredis client (new Redis(...))')
    }
    if (prefix !== undefined && typeof prefix !== 'string') {
      throw invalidOption('lockStore', `redisLockStore: prefix must be a string; got ${JSON.stringify(prefix)}`)
    }
    if (onLockLost !== undefined && typeof onLockLost !== 'function') {
      throw invalidOption('lockStore', 'redisLockStore: onLockLost must be a function (error, key) => void')
    }
    this.client = client
    this.ttl = positiveInteger('ttl', options.ttl, 10_000)
    this.retryInterval = positiveInteger('retryInterval', options.retryInterval, 10)
    this.prefix = prefix ?? 'fastify-precondition:'
    this.onLockLost = onLockLost ?? warnLockLost
  }

  /** How many keys this process holds or waits for now (for tests and monitoring). */
  get size (): number {
    return this.queue.size
  }

  private unreachable (): Error | null {
    const status = this.client.status
    return status !== undefined && UNREACHABLE.has(status) ? new LockUnavailableError(`the Redis connection is ${status}`) : null
  }

  acquire (key: string, timeout: number): Promise<Lease> {
    if (this.closed) return Promise.reject(new LockUnavailableError('the server is closing'))
    const unreachable = this.unreachable()
    if (unreachable !== null) return Promise.reject(unreachable)
    const deadline = Date.now() + timeout
    const local = this.queue.acquire(key, timeout)
    if (!(local instanceof Promise)) return this.acquireRedis(key, local, timeout, timeout)
    return local.then((held) => this.acquireRedis(key, held, timeout, deadline - Date.now()))
  }

  private acquireRedis (key: string, local: Lease, timeout: number, wait: number): Promise<Lease> {
    // Redis may have gone away while this write queued behind others in this process.
    const unreachable = this.unreachable()
    if (unreachable !== null) {
      local.release()
      return Promise.reject(unreachable)
    }
    const onLockLost = this.onLockLost
    const mutex = new LeaseMutex(this.client, this.prefix + key, {
      lockTimeout: this.ttl,
      // The wait ends by the timer below, which aborts the library's polling loop.
      acquireTimeout: Number.POSITIVE_INFINITY,
      retryInterval: this.retryInterval,
      refreshInterval: Math.max(Math.floor(this.ttl / 3), 1),
      onLockLost (error) { onLockLost(error, key) }
    })
    const controller = new AbortController()
    const attempts = this.attempts
    const client = this.client
    return new Promise<Lease>((resolve, reject) => {
      let done = false
      const attempt: Attempt = {
        fail (error: Error) {
          if (done) return
          done = true
          clearTimeout(timer)
          attempts.delete(attempt)
          controller.abort(error)
          local.release()
          reject(error)
        }
      }
      attempts.add(attempt)
      // Bounded here rather than by the library's acquireTimeout, which is only checked between
      // attempts: a Redis call can wait in ioredis' offline queue far longer.
      const timer = setTimeout(() => {
        attempt.fail(client.status === undefined || client.status === 'ready'
          ? new LockTimeoutError(timeout, key)
          : new LockUnavailableError(`the Redis connection is ${client.status}`))
      }, Math.max(wait, 1))
      mutex.acquire(controller.signal).then(() => {
        if (done) {
          // Given up on while the SET was in flight: hand the key straight back.
          mutex.release().catch(ignore)
          return
        }
        done = true
        clearTimeout(timer)
        attempts.delete(attempt)
        resolve(new RedisLease(mutex, local))
      }, (error: unknown) => {
        attempt.fail(new LockUnavailableError(error instanceof Error ? error.message : String(error)))
      })
    })
  }

  /** Rejects the writes waiting in this process; held leases are released by their requests. */
  close (): void {
    this.closed = true
    this.queue.close()
    for (const attempt of [...this.attempts]) attempt.fail(new LockUnavailableError('the server is closing'))
  }
}

function ignore (): void {}

/**
 * A lock store on Redis for running many instances:
 * `lockStore: redisLockStore({ client: new Redis(url) })`. Use one store per Fastify instance;
 * it is closed with the instance, the client is not.
 */
export function redisLockStore (options: RedisLockStoreOptions): RedisLockStore {
  return new RedisLockStore(options)
}

export default redisLockStore
