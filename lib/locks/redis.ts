// The lock store for many processes: one Redis lease per resource key, with a fencing token.
//
// The lock protocol is ours, in three short Lua scripts, rather than redis-semaphore's: that
// library cannot hand out a fencing token (its issue #127 asks for one), and a token is only
// worth something if it is taken in the same atomic step as the lock. Each script acts on one
// Redis hash per resource, which holds the lease (`owner`, a random id per acquisition, and
// `until`, its end on Redis' clock) and the last fencing token handed out for it (`fence`). The
// acquire script takes a free or expired lease and the next token in one step; the renewal and the
// release act only while the hash still holds this lease's id. What the library did besides
// (polling, renewing) is a few timers here, and doing it ourselves lets a given-up acquisition
// delete what it may have taken, and lets a lost lease abort its signal.
//
// Memory: the hash expires `fenceTtl` ms after the lease ends (released, or expired unrenewed),
// so Redis holds a key only for resources written, or attempted, within about the last
// `ttl + fenceTtl` ms: 412s to random ids leave nothing for long. One resource's key measures 184
// bytes while its lease is held and 136 bytes after its release (MEMORY USAGE, Redis 7.0,
// jemalloc, the default prefix, route `/items/:id` and a one-digit id; a 36-character id adds 32),
// and 10,000 released ones raised used_memory by about 200 bytes each (with Redis' own tables for
// keys and expiries).
//
// Tokens: each one is the larger of the last token + 1 and Redis' clock in microseconds (TIME).
// While the hash lives they grow by the first rule whatever the clock does. A hash made again
// after its expiry starts from the clock alone, which is then past every earlier token: the last
// one was at most the clock of its acquisition (a few microseconds more when acquisitions came
// faster than the clock ticked), and the hash outlived that acquisition by `fenceTtl` or more.
// The assumption: Redis' clock never steps back by `fenceTtl` or more (a step back while the hash
// lives leaves its tokens ahead of the clock by that step, to be made up before its expiry). It
// is the clock of one primary; after a failover to a replica whose clock is behind by that much,
// or that had not yet received the last acquisitions (replication is asynchronous), a token may be
// handed out again, as with any counter kept in Redis. Microseconds since 1970 stay below 2^53 (a
// safe JS integer) until the year 2255; the script refuses a token past it (a 503), never hands
// out an inexact one.
//
// Only this subpath knows about Redis, and it imports nothing from ioredis at run time: the
// client is the caller's.
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { invalidOption, LockLostError, LockTimeoutError, LockUnavailableError } from '../errors.js'
import { LuaScript } from '../lua-script.js'
import { MemoryLockStore } from './memory.js'
import type { Lease, LeaseLossListener, LockStore } from './types.js'

/**
 * An ioredis client: a `Redis` or a `Cluster`. The store runs its scripts with EVALSHA (EVAL when
 * Redis does not know them yet), so any client with those two commands and ioredis' `status` works.
 */
export type RedisLockClient = Pick<Redis, 'eval' | 'evalsha'> & { readonly status?: string }

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
}

// ioredis states in which a command would wait in the offline queue (or fail) instead of reaching
// a server: answer 503 at once rather than letting the write wait for a reconnection.
const UNREACHABLE = new Set(['reconnecting', 'close', 'end'])

// Before TIME, so that Redis before 5 replicates what a script writes rather than the script
// (later ones always do). `now` is Redis' clock in microseconds, `ms` in milliseconds.
const CLOCK = `if redis.replicate_commands then redis.replicate_commands() end
local time = redis.call('time')
local now = time[1] * 1000000 + time[2]
local ms = math.floor(now / 1000)
`

// KEYS[1] the resource's hash; ARGV[1] this acquisition's id, ARGV[2] the ttl, ARGV[3] fenceTtl.
// Answers the fencing token, or 0 while another's lease has not ended. Numbers are written with
// %.0f: whole, never in an exponent form.
const ACQUIRE = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until', 'fence')
if lease[1] and (tonumber(lease[2]) or 0) > ms then return 0 end
local token = now
local last = tonumber(lease[3])
if last and last >= token then token = last + 1 end
if token > 9007199254740991 then return redis.error_reply('the next fencing token would pass 2^53 - 1') end
redis.call('hset', KEYS[1], 'owner', ARGV[1], 'until', string.format('%.0f', ms + ARGV[2]), 'fence', string.format('%.0f', token))
redis.call('pexpire', KEYS[1], ARGV[2] + ARGV[3])
return token`)

// ARGV as for ACQUIRE. 1 when the lease was still this id's and got a new ttl, 0 when it had
// ended or changed owner.
const RENEW = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until')
if lease[1] ~= ARGV[1] or (tonumber(lease[2]) or 0) <= ms then return 0 end
redis.call('hset', KEYS[1], 'until', string.format('%.0f', ms + ARGV[2]))
redis.call('pexpire', KEYS[1], ARGV[2] + ARGV[3])
return 1`)

// ARGV[1] the id, ARGV[2] fenceTtl. 1 when this id's lease was given back in time; 0 when the hash
// held another's, or none, or this id's had ended (its owner is cleared all the same). The fence
// stays, for `fenceTtl` ms.
const RELEASE = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until')
if lease[1] ~= ARGV[1] then return 0 end
redis.call('hdel', KEYS[1], 'owner', 'until')
if (tonumber(lease[2]) or 0) <= ms then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
return 1`)

/** @internal The SHA1 of each script, for tests whose fake clients tell them apart. */
export const SCRIPT_SHAS = { acquire: ACQUIRE.sha, renew: RENEW.sha, release: RELEASE.sha } as const

// What makes a resource key unprintable in a Redis key name or moves its hash tag, and `%` itself
// so no two keys encode alike: each becomes `%XX`. A lone surrogate becomes `%uXXXX`: UTF-8 cannot
// carry it, and ioredis would send it as U+FFFD, so two keys would share one lease.
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const ESCAPED = /[\u0000-\u001f\u007f-\u009f%{}]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

function escapeChar (char: string): string {
  const code = char.charCodeAt(0)
  return code > 0xff ? '%u' + code.toString(16).toUpperCase() : '%' + code.toString(16).toUpperCase().padStart(2, '0')
}

/** A resource key as written inside a Redis key name: printable, and distinct for distinct keys. */
export function encodeResourceKey (key: string): string {
  return key.replace(ESCAPED, escapeChar)
}

// Lease ids: random per process, counted within it, so no two acquisitions anywhere share one.
const PROCESS_ID = randomBytes(12).toString('base64url')
let acquisitions = 0

function positiveInteger (name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || (value as number) <= 0) {
    throw invalidOption('lockStore', `redisLockStore: ${name} must be a positive whole number of milliseconds; got ${String(value)}`)
  }
  return value as number
}

function message (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function ignore (): void {}

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
    ACQUIRE.run(this.store.client, [this.lockKey], [this.id, this.store.ttl, this.store.fenceTtl])
      .then((token) => { this.answered(token) }, (error: unknown) => {
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
  private readonly onLockLost: ((error: Error, key: string) => void) | undefined
  private readonly queue = new MemoryLockStore()
  /** @internal The acquisitions waiting on Redis now, for `close`. */
  readonly attempts = new Set<Acquisition>()
  private closed = false

  constructor (options: RedisLockStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('lockStore', 'redisLockStore needs options: { client, ttl?, fenceTtl?, prefix?, retryInterval?, onLockLost? }')
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
    this.ttl = positiveInteger('ttl', options.ttl, 10_000)
    this.fenceTtl = positiveInteger('fenceTtl', options.fenceTtl, 10_000)
    this.retryInterval = positiveInteger('retryInterval', options.retryInterval, 10)
    this.renewInterval = Math.max(Math.floor(this.ttl / 3), 1)
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

export { redisIdempotencyStore, RedisIdempotencyStore, type RedisIdempotencyStoreOptions, type RedisIdempotencyClient } from '../idempotency/redis.js'

export default redisLockStore
