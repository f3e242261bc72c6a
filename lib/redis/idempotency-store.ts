// The idempotency store for many processes: one Redis hash per key, changed only by Lua scripts,
// so a claim is one atomic step and every later change is checked against the claimer's token.
// A stale claimer (its lease ran out, another claimed the key) can neither complete, renew nor
// release it, and a completed record is never overwritten.
//
// A record that is missing (its lease ran out while Redis or this process was stopped, or a
// failover lost it) belongs to nobody: the request that ran is the one completing or renewing it,
// so complete writes its answer and renew writes its claim again, each with the fingerprint the
// plugin passes. Nobody else can have run the key meanwhile without leaving a record of their own.
//
// A claim made while the connection is down fails at once (the request is answered 503) instead
// of waiting in ioredis' offline queue for a reconnection.
//
// With `replicas`, a claim and an answer count only once that many replicas have them (WAIT,
// sent behind the script on the same connection): a claim they did not acknowledge within
// `replicaTimeout` is let go and refused (503: the handler does not run); an answer they did not
// acknowledge is reported as not stored (the complete rejects), and storing it again by the same
// claim is allowed, so a retry waits for the replicas again.
import { answerWithin, LuaScript, type Acknowledged, type ScriptClient, type ScriptPipeline } from './lua-script.js'
import { invalidOption, positiveInteger } from '../errors.js'
import { ignore } from '../shared.js'
import { claimToken } from '../idempotency/token.js'
import type { ClaimResult, IdempotencyStore, StoredResponse } from '../idempotency/store.js'

/**
 * The commands the store uses, and ioredis' connection `status`; an ioredis `Redis` or `Cluster`
 * has them. `pipeline` is needed with `replicas`.
 */
export type RedisIdempotencyClient = ScriptClient & { readonly status?: string, pipeline?: () => ScriptPipeline }

export interface RedisIdempotencyStoreOptions {
  /** The ioredis client. The store never connects or quits it: it is yours. */
  client: RedisIdempotencyClient
  /** Prepended to every key. Default `'fastify-precondition:idem:'`. */
  prefix?: string
  /** The lease of a claim in ms, renewed every third of it while the request runs. Default 10000. */
  lease?: number
  /**
   * The largest answer body kept, in bytes (UTF-8 bytes of a string body); a larger answer is
   * kept as not replayable. Default 1048576 (1 MiB).
   */
  maxAnswerBytes?: number
  /**
   * How many replicas must acknowledge a claim and a stored answer (Redis `WAIT`) before they
   * count. A claim they do not acknowledge within `replicaTimeout` is answered 503 and its handler
   * does not run; an answer they do not acknowledge is reported as not stored. Default 0: no wait.
   */
  replicas?: number
  /** How long (ms) to wait for the replicas' acknowledgement. Default 1000. */
  replicaTimeout?: number
  /**
   * How long (ms) a claim waits for Redis' answer (besides `replicaTimeout`) before it fails (a
   * 503): a Cluster client stays `ready` while the primary of a key's slot is dead, and retries
   * for seconds. A claim that lands later is let go. Default 1000.
   */
  commandTimeout?: number
}

// ioredis states in which a command would wait in the offline queue (or fail) instead of reaching
// a server, as in the lock store: a claim then fails at once.
const UNREACHABLE = new Set(['reconnecting', 'close', 'end'])

// KEYS[1] the record; ARGV: fingerprint, token, lease ms.
const CLAIM = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[1], 'token', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {'claimed'}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return {'mismatch'} end
if state == 'done' then return {'done', redis.call('HGET', KEYS[1], 'response')} end
return {'running', tostring(redis.call('PTTL', KEYS[1]))}
`
// ARGV: token, response, ttl ms, and the fingerprint when the plugin passes one. A done record
// keeps its token: the same claim storing the same answer again (a retry whose first reply was
// lost, or whose replicas had not acknowledged it) is told it is stored.
const COMPLETE = `
local record = redis.call('HMGET', KEYS[1], 'state', 'token', 'response')
if not record[1] then
  if not ARGV[4] then return 0 end
  redis.call('HSET', KEYS[1], 'state', 'done', 'fp', ARGV[4], 'token', ARGV[1], 'response', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if record[2] ~= ARGV[1] then return 0 end
if record[1] == 'done' then
  if record[3] == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`
// ARGV: token.
const RELEASE = `
if redis.call('HGET', KEYS[1], 'state') == 'running' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`
// ARGV: token, lease ms, and the fingerprint when the plugin passes one.
const RENEW = `
local record = redis.call('HMGET', KEYS[1], 'state', 'token')
if not record[1] then
  if not ARGV[3] then return 0 end
  redis.call('HSET', KEYS[1], 'state', 'running', 'fp', ARGV[3], 'token', ARGV[1])
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if record[1] ~= 'running' or record[2] ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
`

const scripts = {
  claim: new LuaScript(CLAIM),
  complete: new LuaScript(COMPLETE),
  release: new LuaScript(RELEASE),
  renew: new LuaScript(RENEW)
}

// A string body is kept as text (t), bytes as base64 (b), so each is replayed as it was sent. An
// answer that is not replayable is its status and r:0.
function encode (response: StoredResponse): string {
  const { status, headers, body } = response
  if (response.replayable === false) return JSON.stringify({ s: status, r: 0 })
  return typeof body === 'string'
    ? JSON.stringify({ s: status, h: headers, t: body })
    : JSON.stringify({ s: status, h: headers, b: body.toString('base64') })
}

function decode (text: string): StoredResponse {
  const { s, h, t, b, r } = JSON.parse(text) as { s: number, h?: Record<string, string>, t?: string, b?: string, r?: 0 }
  if (r === 0) return { status: s, headers: {}, body: '', replayable: false }
  return { status: s, headers: h as Record<string, string>, body: t ?? Buffer.from(b as string, 'base64') }
}

export class RedisIdempotencyStore implements IdempotencyStore {
  readonly client: RedisIdempotencyClient
  readonly prefix: string
  readonly lease: number
  readonly maxAnswerBytes: number
  /** How many replicas must acknowledge a claim or an answer; 0: none. */
  readonly replicas: number
  /** How long (ms) a claim or an answer waits for them. */
  readonly replicaTimeout: number
  /** How long (ms) a claim waits for Redis' answer, besides replicaTimeout. */
  readonly commandTimeout: number

  constructor (options: RedisIdempotencyStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('idempotencyStore', 'redisIdempotencyStore needs options: { client, prefix?, lease?, maxAnswerBytes?, replicas?, replicaTimeout?, commandTimeout? }')
    }
    const { client, prefix, lease, maxAnswerBytes } = options
    if (typeof client !== 'object' || client === null || typeof client.evalsha !== 'function' || typeof client.eval !== 'function') {
      throw invalidOption('idempotencyStore', 'redisIdempotencyStore: client must be an ioredis client (new Redis(...))')
    }
    if (prefix !== undefined && typeof prefix !== 'string') {
      throw invalidOption('idempotencyStore', `redisIdempotencyStore: prefix must be a string; got ${JSON.stringify(prefix)}`)
    }
    if (lease !== undefined && !(Number.isInteger(lease) && lease > 0)) {
      throw invalidOption('idempotencyStore', `redisIdempotencyStore: lease must be a positive whole number of milliseconds; got ${String(lease)}`)
    }
    if (maxAnswerBytes !== undefined && !(Number.isSafeInteger(maxAnswerBytes) && maxAnswerBytes > 0)) {
      throw invalidOption('idempotencyStore', `redisIdempotencyStore: maxAnswerBytes must be a positive whole number of bytes; got ${String(maxAnswerBytes)}`)
    }
    this.replicas = positiveInteger('idempotencyStore', 'redisIdempotencyStore', 'replicas', options.replicas, 0, '', 0)
    this.replicaTimeout = positiveInteger('idempotencyStore', 'redisIdempotencyStore', 'replicaTimeout', options.replicaTimeout, 1000, 'milliseconds')
    this.commandTimeout = positiveInteger('idempotencyStore', 'redisIdempotencyStore', 'commandTimeout', options.commandTimeout, 1000, 'milliseconds')
    if (this.replicas > 0 && typeof client.pipeline !== 'function') {
      throw invalidOption('idempotencyStore', 'redisIdempotencyStore: replicas needs a client with pipeline() (an ioredis Redis or Cluster)')
    }
    this.client = client
    this.prefix = prefix ?? 'fastify-precondition:idem:'
    this.lease = lease ?? 10_000
    this.maxAnswerBytes = maxAnswerBytes ?? 1_048_576
  }

  async claim (key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    const status = this.client.status
    if (status !== undefined && UNREACHABLE.has(status)) throw new Error(`the Redis connection is ${status}`)
    const token = claimToken()
    const keys = [this.prefix + key]
    const args = [fingerprint, token, leaseMs]
    const sent = this.replicas === 0
      ? scripts.claim.run(this.client, keys, args)
      : scripts.claim.runAndWait(this.client as Required<RedisIdempotencyClient>, keys, args, this.replicas, this.replicaTimeout)
    let answer: unknown
    try {
      answer = await answerWithin(sent, this.commandTimeout + (this.replicas === 0 ? 0 : this.replicaTimeout))
    } catch (error) {
      // Given up on: a claim that lands later is nobody's.
      sent.then(() => scripts.release.run(this.client, keys, [token])).catch(ignore)
      throw error
    }
    if (this.replicas !== 0) {
      const { result, replicas } = answer as Acknowledged
      if ((result as string[])[0] === 'claimed' && replicas < this.replicas) {
        // A claim a failover could forget would let a second request run the key: not taken.
        scripts.release.run(this.client, keys, [token]).catch(ignore)
        throw new Error(this.unacknowledged('the claim', replicas))
      }
      answer = result
    }
    const [state, value] = answer as [string, string?]
    if (state === 'claimed') return { state, token }
    if (state === 'done') return { state, response: decode(value as string) }
    if (state === 'running') return { state, retryAfter: Math.max(Number(value), 0) }
    return { state: 'mismatch' }
  }

  async complete (key: string, token: string, response: StoredResponse, ttlMs: number, fingerprint?: string): Promise<boolean> {
    const { body } = response
    // The plugin passes such an answer as not replayable already; this keeps the limit if not.
    if ((typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength) > this.maxAnswerBytes) {
      response = { status: response.status, headers: {}, body: '', replayable: false }
    }
    const keys = [this.prefix + key]
    const args = fingerprint === undefined ? [token, encode(response), ttlMs] : [token, encode(response), ttlMs, fingerprint]
    if (this.replicas === 0) return await scripts.complete.run(this.client, keys, args) === 1
    const { result, replicas } = await scripts.complete.runAndWait(this.client as Required<RedisIdempotencyClient>, keys, args, this.replicas, this.replicaTimeout)
    if (result !== 1) return false
    if (replicas < this.replicas) throw new Error(this.unacknowledged('the answer', replicas))
    return true
  }

  async release (key: string, token: string): Promise<void> {
    await scripts.release.run(this.client, [this.prefix + key], [token])
  }

  async renew (key: string, token: string, leaseMs: number, fingerprint?: string): Promise<boolean> {
    const args = fingerprint === undefined ? [token, leaseMs] : [token, leaseMs, fingerprint]
    return await scripts.renew.run(this.client, [this.prefix + key], args) === 1
  }

  private unacknowledged (what: string, replicas: number): string {
    return `${what} was written to the Redis primary, and ${replicas} of the ${this.replicas} replicas it needs acknowledged it within ${this.replicaTimeout} ms: a failover could lose it`
  }
}

/**
 * An idempotency store on Redis, for running many instances:
 * `idempotencyStore: redisIdempotencyStore({ client: new Redis(url) })`. The client is not closed
 * with the instance: it is yours.
 */
export function redisIdempotencyStore (options: RedisIdempotencyStoreOptions): RedisIdempotencyStore {
  return new RedisIdempotencyStore(options)
}
