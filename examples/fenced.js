// Fenced writes: many instances share a Redis lock store, and the data store itself refuses a
// write whose lock was lost. A lease on Redis can be lost while its handler still runs (the
// process paused longer than the lease's ttl, a Redis failover); another instance then takes the
// lock and writes, and the first one, when it resumes, would write over it. Here every write
// carries its lock's fencing token, `request.lock.token`, into one Lua script that refuses a token
// older than the last one that wrote, so the late write is answered 409 and changes nothing.
//
// Counters live in Redis hashes (value, version, fence); the ETag is the version.
//
//   node examples/fenced.js     (REDIS_URL, default redis://127.0.0.1:6379; PORT, default 3002)
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import fastifyPrecondition from 'fastify-precondition'
import { redisLockStore } from 'fastify-precondition/redis'

// KEYS[1] the counter's hash. ARGV[1] the writer's fencing token, ARGV[2] the version the plugin
// checked the request's preconditions against (0: no counter yet), ARGV[3] the new value.
// Answers {1, new version} once written, {0, fence} when refused as stale, {-1, version} when the
// counter changed since the check.
//
// The fence alone refuses a writer older than one that has already written. A stale write can
// also land first, between the newer holder's check and its write; the version comparison then
// refuses the newer write (a 412: its client read a value that is gone), so the stale one, which
// was acknowledged, is not silently overwritten either.
export const FENCED_WRITE = `
local fence = tonumber(redis.call('hget', KEYS[1], 'fence') or '0')
local token = tonumber(ARGV[1])
if token < fence then return {0, fence} end
local version = tonumber(redis.call('hget', KEYS[1], 'version') or '0')
-- The same lock's write seen again: ioredis resends a command whose answer a dropped connection
-- lost. It was applied; say so rather than refuse it.
if token == fence then return {1, version} end
if version ~= tonumber(ARGV[2]) then return {-1, version} end
redis.call('hset', KEYS[1], 'value', ARGV[3], 'version', version + 1, 'fence', token)
return {1, version + 1}`

const etagOf = (version) => `"v${version}"`

function problem (reply, status, title, detail, extra = {}) {
  if (status === 503) reply.header('retry-after', '1')
  return reply.code(status).type('application/problem+json').send({
    type: 'about:blank', title, status, detail, instance: reply.request.url, ...extra
  })
}

function unavailable () {
  return Object.assign(new Error('Redis is not connected'), { statusCode: 503 })
}

/**
 * The counter API. `redis` is an ioredis client, used for the counters and, unless `lockStore`
 * is given, for the locks (`redisLockStore({ client: redis, ttl })`). `beforeCommit(request)` is
 * awaited under the lock just before the write: the place of whatever else a real write does
 * first (the tests stall a write there).
 */
export async function buildFencedApp (options) {
  const { redis, prefix = 'fenced:', ttl = 10_000, beforeCommit } = options
  const lockStore = options.lockStore ?? redisLockStore({ client: redis, ttl })
  const app = Fastify({ logger: options.logger ?? false })
  await app.register(fastifyPrecondition, { lockStore })
  redis.defineCommand('fencedWrite', { numberOfKeys: 1, lua: FENCED_WRITE })
  // The version the preconditions of this write were checked against, under the lock.
  app.decorateRequest('checkedVersion', 0)

  const keyOf = (id) => `${prefix}counter:${id}`
  async function read (id) {
    // Answer 503 at once while Redis is away, as the lock store does, rather than queue.
    if (redis.status !== 'ready') throw unavailable()
    const [value, version] = await redis.hmget(keyOf(id), 'value', 'version')
    return version === null ? null : { value: Number(value), version: Number(version) }
  }
  async function validators (request) {
    const counter = await read(request.params.id)
    request.checkedVersion = counter?.version ?? 0
    return counter === null ? null : { etag: etagOf(counter.version) }
  }

  app.setErrorHandler((error, request, reply) => {
    if (error.statusCode !== 503) return reply.send(error)
    return problem(reply, 503, 'Service Unavailable', 'The counters cannot be reached just now. Retry after the Retry-After delay.')
  })

  const params = { type: 'object', properties: { id: { type: 'string', pattern: '^[\\w-]{1,64}$' } }, required: ['id'] }
  const body = { type: 'object', properties: { value: { type: 'integer' } }, required: ['value'], additionalProperties: false }

  app.get('/counters/:id', { schema: { params }, concurrency: { validators } }, async (request, reply) => {
    const counter = await read(request.params.id)
    if (counter === null) return reply.code(404).send({ message: 'no such counter' })
    return { id: request.params.id, value: counter.value }
  })

  // If-Match with the current tag updates; If-None-Match: * creates. 428 without either.
  app.put('/counters/:id', { schema: { params, body }, concurrency: { require: ['if-match', 'if-none-match'], validators } }, async (request, reply) => {
    const { id } = request.params
    const { token, signal } = request.lock
    if (beforeCommit !== undefined) await beforeCommit(request)
    // The store already knows the lease is gone (a renewal found the key taken or deleted): write
    // nothing. A lease can also be lost unnoticed, so the script checks the token whatever this says.
    if (signal.aborted) {
      return problem(reply, 503, 'Service Unavailable', 'The lock on this counter was lost before the write; nothing was written. Retry.', { code: signal.reason.code })
    }
    const [written, version] = await redis.fencedWrite(keyOf(id), token, request.checkedVersion, request.body.value)
    if (written === 0) {
      return problem(reply, 409, 'Conflict', 'The lock this write held was lost, and a later write to the counter has been made; nothing was written. Read the counter again and retry with its new ETag.', { code: 'STALE_FENCING_TOKEN', token, fence: version })
    }
    if (written === -1) return reply.preconditionFailed(etagOf(version))
    // The tag of this write's own version: a later read could see someone else's.
    reply.header('etag', etagOf(version))
    return reply.code(request.checkedVersion === 0 ? 201 : 200).send({ id, value: request.body.value })
  })

  return app
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { REDIS_URL = 'redis://127.0.0.1:6379', PORT = '3002', HOST = '127.0.0.1', LOG } = process.env
  const redis = new Redis(REDIS_URL)
  const reachable = await new Promise((resolve) => {
    redis.once('ready', () => resolve(null))
    redis.once('error', (error) => resolve(error))
  })
  if (reachable !== null) {
    redis.disconnect()
    console.error(`No Redis at ${REDIS_URL} (${reachable.message}). This example keeps its counters and locks in Redis.
Start one, then run it again:
  redis-server --port 6379 --save '' --appendonly no      # apt-get install -y redis-server
  docker run --rm -p 6379:6379 redis:7
or point it at yours: REDIS_URL=redis://host:6379 node examples/fenced.js`)
    process.exit(1)
  }
  const app = await buildFencedApp({ redis, logger: LOG === '1' })
  redis.on('error', (error) => app.log.warn({ err: error }, 'redis'))
  // Counter 1 is created on first run; later runs find it as the last one left it.
  await app.inject({ method: 'PUT', url: '/counters/1', headers: { 'if-none-match': '*' }, payload: { value: 0 } })
  await app.listen({ port: Number(PORT), host: HOST })
  const current = await app.inject({ method: 'GET', url: '/counters/1' })
  const tag = current.headers.etag
  const next = current.json().value + 1
  const url = `http://${HOST}:${app.server.address().port}/counters/1`
  console.log(`fenced writes example on ${url} (Redis at ${REDIS_URL}); counter 1 is ${next - 1}, its ETag ${tag}. Try:

  # 200 with the ETag
  curl -i ${url}

  # 428 Precondition Required: a write with no precondition
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -d '{"value":${next}}'

  # 200: the next value, written with this lock's fencing token (run it twice: the second is a 412)
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"value":${next}}'
`)
  for (const name of ['SIGINT', 'SIGTERM']) {
    process.once(name, () => {
      app.close().then(() => {
        redis.disconnect()
        process.exit(0)
      })
    })
  }
}
