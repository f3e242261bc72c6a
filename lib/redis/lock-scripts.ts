// The Lua scripts of the Redis lock store, and how a resource key becomes a Redis key.
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
import { LuaScript } from './lua-script.js'

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
export const ACQUIRE = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until', 'fence')
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
export const RENEW = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until')
if lease[1] ~= ARGV[1] or (tonumber(lease[2]) or 0) <= ms then return 0 end
redis.call('hset', KEYS[1], 'until', string.format('%.0f', ms + ARGV[2]))
redis.call('pexpire', KEYS[1], ARGV[2] + ARGV[3])
return 1`)

// ARGV[1] the id, ARGV[2] fenceTtl. 1 when this id's lease was given back in time; 0 when the hash
// held another's, or none, or this id's had ended (its owner is cleared all the same). The fence
// stays, for `fenceTtl` ms.
export const RELEASE = new LuaScript(`${CLOCK}local lease = redis.call('hmget', KEYS[1], 'owner', 'until')
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
