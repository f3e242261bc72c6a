// The idempotency store for many processes: one Redis hash per key, changed only by Lua scripts,
// so a claim is one atomic step and every later change is checked against the claimer's token.
// A stale claimer (its lease ran out, another claimed the key) can neither complete, renew nor
// release it, and a completed record is never overwritten: complete only acts on a running claim.
// A claim made while the connection is down fails at once (the request is answered 503) instead
// of waiting in ioredis' offline queue for a reconnection.
import { LuaScript, type ScriptClient } from './lua-script.js'
import { invalidOption } from '../errors.js'
import { claimToken } from '../idempotency/token.js'
import type { ClaimResult, IdempotencyStore, StoredResponse } from '../idempotency/store.js'

/**
 * The commands the store uses, and ioredis' connection `status`; an ioredis `Redis` or `Cluster`
 * has them.
 */
export type RedisIdempotencyClient = ScriptClient & { readonly status?: string }

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
// ARGV: token, response, ttl ms.
const COMPLETE = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('HDEL', KEYS[1], 'token')
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
// ARGV: token, lease ms.
const RENEW = `
if redis.call('HGET', KEYS[1], 'state') ~= 'running' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
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

  constructor (options: RedisIdempotencyStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw invalidOption('idempotencyStore', 'redisIdempotencyStore needs options: { client, prefix?, lease?, maxAnswerBytes? }')
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
    this.client = client
    this.prefix = prefix ?? 'fastify-precondition:idem:'
    this.lease = lease ?? 10_000
    this.maxAnswerBytes = maxAnswerBytes ?? 1_048_576
  }

  async claim (key: string, fingerprint: string, leaseMs: number): Promise<ClaimResult> {
    const status = this.client.status
    if (status !== undefined && UNREACHABLE.has(status)) throw new Error(`the Redis connection is ${status}`)
    const token = claimToken()
    const [state, value] = await scripts.claim.run(this.client, [this.prefix + key], [fingerprint, token, leaseMs]) as [string, string?]
    if (state === 'claimed') return { state, token }
    if (state === 'done') return { state, response: decode(value as string) }
    if (state === 'running') return { state, retryAfter: Math.max(Number(value), 0) }
    return { state: 'mismatch' }
  }

  async complete (key: string, token: string, response: StoredResponse, ttlMs: number): Promise<boolean> {
    const { body } = response
    // The plugin passes such an answer as not replayable already; this keeps the limit if not.
    if ((typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength) > this.maxAnswerBytes) {
      response = { status: response.status, headers: {}, body: '', replayable: false }
    }
    return await scripts.complete.run(this.client, [this.prefix + key], [token, encode(response), ttlMs]) === 1
  }

  async release (key: string, token: string): Promise<void> {
    await scripts.release.run(this.client, [this.prefix + key], [token])
  }

  async renew (key: string, token: string, leaseMs: number): Promise<boolean> {
    return await scripts.renew.run(this.client, [this.prefix + key], [token, leaseMs]) === 1
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
