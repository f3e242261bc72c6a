// The lock store for many processes: one Redis lease per resource key, with a fencing token. The
// protocol, its memory and its clock are described with its scripts, in lock-scripts.ts.
//
// Only this module knows about Redis, and it imports nothing from ioredis at run time: the
// client is the caller's.
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { invalidOption, LockLostError, LockTimeoutError, LockUnavailableError, positiveInteger } from '../errors.js'
import { ignore, message } from '../shared.js'
import { ACQUIRE, encodeResourceKey, RELEASE, RENEW } from './lock-scripts.js'
import { answerWithin, type PipelineClient, type ScriptPipeline } from './lua-script.js'
import { MemoryLockStore } from '../locks/memory.js'
import type { Lease, LeaseLossListener, LockStore } from '../locks/types.js'

/**
 * An ioredis client: a `Redis` or a `Cluster`. The store runs its scripts with EVALSHA (EVAL when
 * Redis does not know them yet), so any client with those two commands and ioredis' `status` works;
 * with `replicas`, it needs `pipeline` too.
 */
export type RedisLockClient = Pick<Redis, 'eval' | 'evalsha'> & { readonly status?: string, pipeline?: () => ScriptPipeline }

export interface RedisLockStoreOptions {
  /** The ioredis client. The store never connects, disconnects or quits it: it is yours. */
  client: RedisLockClient
  /**
   * Lease lifetime in milliseconds. The lease is renewed every `ttl / 3` while the request runs,
   * so `ttl` only bounds how long a key stays locked after its process died. Default 10000.
   */
  ttl?: number
  /**
   * How long (ms) a resource's Redis key, with the last fencing token handed out for it, is kept
   * after its lease ended (released, or expired unrenewed). Tokens keep growing across the key's
   * expiry as long as Redis' clock never steps back by this much or more; a longer one keeps the
   * keys of idle resources longer. Default 10000.
   */
  fenceTtl?: number
  /**
   * Prepended to the Redis keys: a resource's lease and fence are the hash
   * `<prefix>lock:{<key>}`, where the resource key is written with its control characters, `%`,
   * `{` and `}` percent-encoded (`/items/:id\nid=1:7` is `{/items/:id%0Aid=1:7}`). Default
   * `'fastify-precondition:'`.
   */
  prefix?: string
  /** How often (ms) a waiting write asks Redis again whether the key is free. Default 10. */
  retryInterval?: number
  /**
   * Called, besides aborting the lease's `signal`, when a held lease is found lost while its
   * request still ran (at a renewal, when no renewal succeeded within `ttl`, or at release):
   * another process may have written meanwhile. Default: none.
   */
  onLockLost?: (error: Error, key: string) => void
  /**
   * How many replicas must acknowledge a lease before its write runs (Redis `WAIT`, behind the
   * acquire on the same connection). A lease they do not acknowledge within `replicaTimeout` is
   * given back and the write answered 503 (`FST_PRECONDITION_LOCK_UNAVAILABLE`). Default 0: no wait.
   */
  replicas?: number
  /** How long (ms) an acquisition waits for the replicas' acknowledgement. Default 1000. */
  replicaTimeout?: number
  /**
   * How long (ms) an acquire command waits for Redis' answer (besides `replicaTimeout`) before the
   * write is answered 503: a Cluster client stays `ready` while the primary of a key's slot is
   * dead, and retries for seconds. What the command may have taken is deleted behind it. Default
   * 1000.
   */
  commandTimeout?: number
}

// ioredis states in which a command would wait in the offline queue (or fail) instead of reaching
// a server: answer 503 at once rather than letting the write wait for a reconnection.
const UNREACHABLE = new Set(['reconnecting', 'close', 'end'])

// Lease ids: random per process, counted within it, so no two acquisitions anywhere share one.
const PROCESS_ID = randomBytes(12).toString('base64url')
let acquisitions = 0

// A lease's one timer, a function of the lease rather than a closure per timer.
function onLeaseTimer (lease: RedisLease): void {
  lease.timerFired()
}

class RedisLease implements Lease {
  readonly token: number
  private readonly store: RedisLockStore
  private readonly key: string
  private readonly lockKey: string
  private readonly id: string
  private readonly local: Lease
  // Made when the signal is first read: most writes never read it, and the plugin learns of a
  // loss through `onLost`.
  private controller: AbortController | null = null
  private lossListener: LeaseLossListener | null = null
  private lossReason: Error | null = null
  // The lease is known to last until `deadline` (ms since the epoch): `ttl` after the command that
  // set or renewed it was sent, since Redis started its ttl later than that. Past it with no renewal
  // confirmed, the key may have expired in Redis, so the lease counts as lost.
  private deadline: number
  // One timer per lease, not one for renewals and one for the deadline: it waits for the next
  // renewal, or (`expiring`) for the deadline when a renewal is in flight or none would come in
  // time. Most writes hold their lease for a millisecond and never see it fire.
  private timer: NodeJS.Timeout | undefined
  private expiring = false
  private released = false
  private lost = false

  constructor (store: RedisLockStore, attempt: Acquisition, token: number) {
    this.store = store
    this.key = attempt.key
    this.lockKey = attempt.lockKey
    this.id = attempt.id
    this.local = attempt.local
    this.token = token
    this.deadline = attempt.sentAt + store.ttl
    this.scheduleNext()
  }

  get signal (): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController()
      if (this.lossReason !== null) this.controller.abort(this.lossReason)
    }
    return this.controller.signal
  }

  onLost (listener: LeaseLossListener): void {
    if (this.lossReason !== null) listener.leaseLost(this.lossReason)
    else this.lossListener = listener
  }

  private schedule (delay: number, expiring: boolean): void {
    this.expiring = expiring
    this.timer = setTimeout(onLeaseTimer, delay, this)
    this.timer.unref()
  }

  /** The next renewal, unless the deadline comes first. */
  private scheduleNext (): void {
    const left = this.deadline - Date.now()
    if (left > this.store.renewInterval) this.schedule(this.store.renewInterval, false)
    else this.schedule(Math.max(left, 0), true)
  }

  /** @internal */
  timerFired (): void {
    if (this.expiring) this.lose(`no renewal succeeded within its ttl of ${this.store.ttl} ms`)
    else this.renew()
  }

  private renew (): void {
    const sentAt = Date.now()
    // Until it answers, the timer watches the deadline.
    this.schedule(Math.max(this.deadline - sentAt, 0), true)
    RENEW.run(this.store.client, [this.lockKey], [this.id, this.store.ttl, this.store.fenceTtl]).then((renewed) => {
      if (this.released || this.lost) return
      if (renewed !== 1) {
        this.lose('a renewal found the key expired or held by another')
        return
      }
      clearTimeout(this.timer)
      this.deadline = sentAt + this.store.ttl
      this.scheduleNext()
    }, () => {
      // A renewal that did not reach Redis proves nothing: ask again at the next interval, or
      // declare the loss at the deadline if none can succeed in time.
      if (this.released || this.lost) return
      clearTimeout(this.timer)
      this.scheduleNext()
    })
  }

  private lose (reason: string): void {
    if (this.lost) return
    this.lost = true
    clearTimeout(this.timer)
    const error = new LockLostError(this.key, reason)
    this.lossReason = error
    this.controller?.abort(error)
    this.lossListener?.leaseLost(error)
    this.store.reportLoss(error, this.key)
  }

  release (): Promise<void> {
    if (this.released) return Promise.resolve()
    this.released = true
    clearTimeout(this.timer)
    // The delete is written to the connection before the next local waiter's acquire, so handing
    // the local turn over at once costs that waiter no retry.
    const deleted = RELEASE.run(this.store.client, [this.lockKey], [this.id, this.store.fenceTtl])
    this.local.release()
    return deleted.then((count) => {
      if (count !== 1) this.lose('at release, the key was found expired or held by another')
    }, ignore) // the release did not reach Redis: the lease ends with its ttl
  }
}

/** One write's wait for a key in Redis, from its turn in this process until it holds or gives up. */
class Acquisition {
  readonly store: RedisLockStore
  readonly key: string
  readonly lockKey: string
  readonly id = `${PROCESS_ID}:${++acquisitions}`
  readonly local: Lease
  private readonly resolve: (lease: Lease) => void
  private readonly reject: (error: Error) => void
  private readonly timer: NodeJS.Timeout
  private retry: NodeJS.Timeout | undefined
  sentAt = 0
  private inFlight = false
  private done = false

  constructor (store: RedisLockStore, key: string, local: Lease, timeout: number, wait: number,
    resolve: (lease: Lease) => void, reject: (error: Error) => void) {
    this.store = store
    this.key = key
    this.lockKey = store.lockKey(key)
    this.local = local
    this.resolve = resolve
    this.reject = reject
    // Bounded here rather than between attempts: a Redis call can wait in ioredis' offline queue
    // far longer than the write may.
    this.timer = setTimeout(() => {
      const status = store.client.status
      this.giveUp(status === undefined || status === 'ready'
        ? new LockTimeoutError(timeout, key)
        : new LockUnavailableError(`the Redis connection is ${status}`))
    }, Math.max(wait, 1))
    this.attempt()
  }

  private attempt (): void {
    this.sentAt = Date.now()
    this.inFlight = true
    const { store } = this
    const args = [this.id, store.ttl, store.fenceTtl]
    const sent = store.replicas === 0
      ? ACQUIRE.run(store.client, [this.lockKey], args)
      : ACQUIRE.runAndWait(store.client as PipelineClient, [this.lockKey], args, store.replicas, store.replicaTimeout).then(({ result, replicas }) => {
        // A lease a failover could forget would let a second writer in: given back, and a 503.
        if (result !== 0 && replicas < store.replicas) {
          throw new Error(`the lease was written to the Redis primary, and ${replicas} of the ${store.replicas} replicas it needs acknowledged it within ${store.replicaTimeout} ms`)
        }
        return result
      })
    answerWithin(sent, store.commandTimeout + (store.replicas === 0 ? 0 : store.replicaTimeout)).then((token) => { this.answered(token) }, (error: unknown) => {
      this.inFlight = false
      // The script may have run though its answer was lost (a timeout, a dropped connection).
      this.giveUp(new LockUnavailableError(message(error)), true)
    })
  }

  private answered (token: unknown): void {
    this.inFlight = false
    if (this.done) {
      // Given up while the command was in flight. The delete sent then reached Redis after it, so
      // this one is only for a client that does not keep a connection's order (a redirection).
      if (token !== 0) this.store.forget(this.lockKey, this.id)
      return
    }
    if (typeof token === 'number' && token > 0) {
      this.done = true
      clearTimeout(this.timer)
      this.store.attempts.delete(this)
      this.resolve(new RedisLease(this.store, this, token))
      return
    }
    this.retry = setTimeout(() => { this.attempt() }, this.store.retryInterval)
  }

  /**
   * Ends the wait with `error`. When a command may have taken the key (one is in flight, or one
   * `failed` without saying whether it ran), the owner-checked delete for this id follows it on
   * the same connection, so no key is left that nobody holds or renews. Between attempts there is
   * nothing to delete: every attempt so far answered that the key was held by another.
   */
  giveUp (error: Error, failed = false): void {
    if (this.done) return
    this.done = true
    clearTimeout(this.timer)
    clearTimeout(this.retry)
    this.store.attempts.delete(this)
    if (failed || this.inFlight) this.store.forget(this.lockKey, this.id)
    this.local.release()
    this.reject(error)
  }
}

/**
 * A lock store shared by every process that uses the same Redis. Within one process, writes to a
 * key queue first in memory (first come, first served, and one Redis poller per key per process);
 * across processes, the head of each queue polls Redis every `retryInterval`.
 */
export class RedisLockStore implements LockStore {
  readonly client: RedisLockClient
  readonly ttl: number
  /** How long (ms) a resource's key outlives its lease, with its fence. */
  readonly fenceTtl: number
  readonly prefix: string
  readonly retryInterval: number
  /** How often (ms) a held lease is renewed: `ttl / 3`, at least 1. */
  readonly renewInterval: number
  /** How many replicas must acknowledge a lease; 0: none. */
  readonly replicas: number
  /** How long (ms) an acquisition waits for them. */
  readonly replicaTimeout: number
  /** How long (ms) an acquire command waits for Redis' answer, besides replicaTimeout. */
  readonly commandTimeout: number
  private readonly onLockLost: ((error: Error, key: string) => void) | undefined
  private readonly queue = new MemoryLockStore()
  /** @internal The acquisitions waiting on Redis now, for `close`. */
  readonly attempts = new Set<Acquisition>()
  private closed = false

  constructor (options: RedisLockStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('lockStore', 'redisLockStore needs options: { client, ttl?, fenceTtl?, prefix?, retryInterval?, onLockLost?, replicas?, replicaTimeout?, commandTimeout? }')
    }
    const { client, prefix, onLockLost } = options
    if (typeof client !== 'object' || client === null || typeof client.eval !== 'function' || typeof client.evalsha !== 'function') {
      throw invalidOption('lockStore', 'redisLockStore: client must be an ioredis client (new Redis(...))')
    }
    if (prefix !== undefined && typeof prefix !== 'string') {
      throw invalidOption('lockStore', `redisLockStore: prefix must be a string; got ${JSON.stringify(prefix)}`)
    }
    // A '{' the prefix does not close would make Redis Cluster hash on it and the start of the
    // resource's own tag: keys are spread over slots by something that is not the resource.
    if (prefix !== undefined && /\{[^}]*$/.test(prefix)) {
      throw invalidOption('lockStore', `redisLockStore: prefix must not hold an unclosed '{'; got ${JSON.stringify(prefix)}`)
    }
    if (onLockLost !== undefined && typeof onLockLost !== 'function') {
      throw invalidOption('lockStore', 'redisLockStore: onLockLost must be a function (error, key) => void')
    }
    this.client = client
    this.ttl = positiveInteger('lockStore', 'redisLockStore', 'ttl', options.ttl, 10_000, 'milliseconds')
    this.fenceTtl = positiveInteger('lockStore', 'redisLockStore', 'fenceTtl', options.fenceTtl, 10_000, 'milliseconds')
    this.retryInterval = positiveInteger('lockStore', 'redisLockStore', 'retryInterval', options.retryInterval, 10, 'milliseconds')
    this.renewInterval = Math.max(Math.floor(this.ttl / 3), 1)
    this.replicas = positiveInteger('lockStore', 'redisLockStore', 'replicas', options.replicas, 0, '', 0)
    this.replicaTimeout = positiveInteger('lockStore', 'redisLockStore', 'replicaTimeout', options.replicaTimeout, 1000, 'milliseconds')
    this.commandTimeout = positiveInteger('lockStore', 'redisLockStore', 'commandTimeout', options.commandTimeout, 1000, 'milliseconds')
    if (this.replicas > 0 && typeof client.pipeline !== 'function') {
      throw invalidOption('lockStore', 'redisLockStore: replicas needs a client with pipeline() (an ioredis Redis or Cluster)')
    }
    this.prefix = prefix ?? 'fastify-precondition:'
    this.onLockLost = onLockLost
  }

  /** How many keys this process holds or waits for now (for tests and monitoring). */
  get size (): number {
    return this.queue.size
  }

  /**
   * The Redis key of a resource: a hash with its lease and last fencing token. The resource key,
   * encoded, is its hash tag `{…}` (its `{` and `}` are encoded, so the tag is the whole of it),
   * which keeps a resource's key in the slot of that resource on Redis Cluster whatever the prefix
   * (unless the prefix holds a tag of its own, which then decides the slot). An empty resource key
   * makes an empty tag, which Redis ignores: the whole name is hashed, still one slot for one key.
   */
  lockKey (key: string): string {
    return `${this.prefix}lock:{${encodeResourceKey(key)}}`
  }

  /** @internal The owner-checked delete of a lease this process may hold; a failure leaves it to its ttl. */
  forget (lockKey: string, id: string): void {
    RELEASE.run(this.client, [lockKey], [id, this.fenceTtl]).catch(ignore)
  }

  /** @internal Passes a lost lease to `onLockLost`. */
  reportLoss (error: Error, key: string): void {
    if (this.onLockLost === undefined) return
    try {
      this.onLockLost(error, key)
    } catch {
      // A reporting callback's own failure must not fail a release or escape a renewal timer.
    }
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
    return new Promise<Lease>((resolve, reject) => {
      this.attempts.add(new Acquisition(this, key, local, timeout, wait, resolve, reject))
    })
  }

  /** Rejects the writes waiting in this process; held leases are released by their requests. */
  close (): void {
    this.closed = true
    this.queue.close()
    for (const attempt of [...this.attempts]) attempt.giveUp(new LockUnavailableError('the server is closing'))
  }
}

/**
 * A lock store on Redis for running many instances:
 * `lockStore: redisLockStore({ client: new Redis(url) })`. Use one store per Fastify instance;
 * it is closed with the instance, the client is not.
 */
export function redisLockStore (options: RedisLockStoreOptions): RedisLockStore {
  return new RedisLockStore(options)
}

export default redisLockStore
