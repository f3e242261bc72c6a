// The servers the scenarios compare. Each builder returns { listen, close, app?, stats? }; a server
// process (server.mjs) runs exactly one of them. Every Fastify app has the logger off and the
// same route handlers, so a pair differs only in what the scenario measures.
import { hash } from 'node:crypto'
import Fastify from 'fastify'
import fastifyPrecondition, { defaultMessages, MemoryIdempotencyStore, MemoryLockStore, strongEtag } from 'fastify-precondition'
import { representation } from './payloads.mjs'

// A bounded set of resources: the load generator spreads writes over these keys.
const KEYS = 1024

// The handler every PUT runs, with and without the plugin: store the parsed body, answer JSON.
// Async, as most Fastify handlers are written.
async function putHandler (request) {
  bodies.set(request.params.id, request.body)
  return { id: request.params.id, saved: true }
}
const bodies = new Map()

const putSchema = {
  params: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
  body: { type: 'object', properties: { name: { type: 'string' }, count: { type: 'integer' } } }
}

// The version of each resource stays fixed, so every request's If-Match keeps matching (or,
// with a stale tag, keeps failing) for the whole run.
const versions = new Map()
for (let i = 0; i < KEYS; i++) versions.set(String(i), { etag: '"v1"' })
const putValidators = (request) => versions.get(request.params.id) ?? null

// The handler every POST runs, with and without the plugin: a new order, answered 201. It keeps
// nothing, so what a server holds after a run is the plugin's or Fastify's.
let orders = 0
async function postHandler (request, reply) {
  reply.code(201)
  return { id: String(++orders), name: request.body.name, saved: true }
}
const postSchema = { body: putSchema.body }

async function bareApp () {
  const app = Fastify({ logger: false })
  app.post('/orders', { schema: postSchema }, postHandler)
  return app
}

/** POST /orders with an Idempotency-Key policy and nothing else: no validators, so no lock. */
async function pluginPost (pluginOptions, idempotency = true) {
  const app = Fastify({ logger: false })
  await app.register(fastifyPrecondition, pluginOptions)
  app.post('/orders', { schema: postSchema, concurrency: { idempotency } }, postHandler)
  return app
}

function listenFastify (app) {
  return {
    app,
    async listen () {
      await app.listen({ host: '127.0.0.1', port: 0 })
      return app.server.address().port
    },
    close: () => app.close()
  }
}

async function pluginPut (concurrency, pluginOptions) {
  const app = Fastify({ logger: false })
  await app.register(fastifyPrecondition, pluginOptions)
  app.put('/items/:id', {
    schema: putSchema,
    concurrency: { require: 'if-match', validators: putValidators, ...concurrency }
  }, putHandler)
  return app
}

// GET representations: a small one for 200s and a 10 KB one for 304s, each with the validators
// a store would keep next to it.
function item (bytes) {
  const body = representation(bytes)
  return { body, etag: strongEtag(body), lastModified: new Date('2026-01-01T00:00:00Z') }
}
export const SMALL_ITEM = item(200)
export const ITEM_10K = item(10 * 1024)

function getRoute (app, stored, concurrency) {
  app.get('/items/:id', {
    schema: { params: putSchema.params },
    concurrency
  }, async function getHandler (_request, reply) {
    reply.type('application/json')
    return stored.body
  })
}

/** An ioredis client of the benchmark's redis-server, counting the commands it sends. */
async function redisClient () {
  const { default: Redis } = await import('ioredis')
  const client = new Redis({ host: '127.0.0.1', port: Number(process.env.BENCH_REDIS_PORT), lazyConnect: true })
  await client.connect()
  // Every command ioredis sends waits for its own reply: one round trip each, however the
  // writes are batched. (Redis' own statistics also count the commands a script runs.)
  const counter = { client, sent: 0 }
  const sendCommand = client.sendCommand
  client.sendCommand = function countedSendCommand (...args) {
    counter.sent++
    return sendCommand.apply(this, args)
  }
  return counter
}

function listenWithRedis (app, redis) {
  return {
    ...listenFastify(app),
    stats: () => ({ redisRoundTrips: redis.sent }),
    async close () {
      await app.close()
      redis.client.disconnect()
    }
  }
}

/**
 * The statements every node-postgres connection of this process sends, by kind (`BEGIN`,
 * `INSERT orders`, `SELECT key`, …): the pools' connections and the lease store's renewal
 * connection alike, counted in `Client.prototype.query`. node-postgres sends a connection's next
 * statement only once the previous one has answered, so each is one round trip.
 */
const statements = { total: 0, kinds: Object.create(null) }
const statementKinds = new Map()
// The benchmark's tables by what they hold: the orders, and the Idempotency-Key rows (the
// plugin's table and the hand-written floor's).
const TABLE_ROLES = { bench_orders: 'orders', fastify_precondition_idempotency: 'key', bench_floor_idempotency: 'key' }

function statementKind (text) {
  let kind = statementKinds.get(text)
  if (kind === undefined) {
    const verb = /^\s*(\w+)/.exec(text)?.[1].toUpperCase() ?? '?'
    const table = Object.keys(TABLE_ROLES).find((name) => text.includes(name))
    kind = table === undefined ? verb : `${verb} ${TABLE_ROLES[table]}`
    statementKinds.set(text, kind)
  }
  return kind
}

function countStatements (pg) {
  const query = pg.Client.prototype.query
  if (query.counting === true) return
  pg.Client.prototype.query = function countedQuery (config, ...rest) {
    const kind = statementKind(typeof config === 'string' ? config : String(config?.text))
    statements.total++
    statements.kinds[kind] = (statements.kinds[kind] ?? 0) + 1
    return query.call(this, config, ...rest)
  }
  pg.Client.prototype.query.counting = true
}

/** A node-postgres pool on the PostgreSQL benchmark's cluster (benchmarks/postgres.mjs). */
async function pgPool () {
  const { default: pg } = await import('pg')
  countStatements(pg)
  const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 10 })
  pool.on('error', () => {})
  return pool
}

const INSERT_ORDER = 'INSERT INTO bench_orders (name) VALUES ($1) RETURNING id, name'

/**
 * The POST handler of the PostgreSQL scenarios, with and without the plugin: one order in a
 * transaction (BEGIN; INSERT … RETURNING; COMMIT), answered 201. With a key, the answer is
 * recorded in that transaction (DESIGN.md's recipe).
 */
function pgPostHandler (pool) {
  return async function pgPost (request, reply) {
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      const { rows: [order] } = await tx.query(INSERT_ORDER, [request.body.name])
      reply.code(201)
      if (request.idempotency) await request.idempotency.complete(tx, order)
      await tx.query('COMMIT')
      return order
    } catch (error) {
      await tx.query('ROLLBACK')
      throw error
    } finally {
      tx.release()
    }
  }
}

/**
 * The same order through `request.idempotency.transaction(pool, fn)`, as docs/postgresql.md
 * writes it: the plugin opens the transaction, claims the key in it (transactional claim) or
 * checks the lease's claim (lease claim), runs `fn`, records the answer and commits.
 */
function pgTransactionHandler (pool) {
  return async function pgPostInTransaction (request, reply) {
    return request.idempotency.transaction(pool, async (tx) => {
      const { rows: [order] } = await tx.query(INSERT_ORDER, [request.body.name])
      reply.code(201)
      return order
    })
  }
}

// The hand-written floor of the transactional claim's guarantee: the key's row and its answer in
// the order's own transaction, nothing else. Its table has the plugin's DDL (same row, same two
// indexes); a day's ttl, so no row expires during a run (no take-over of an expired row, which
// the plugin has and this floor leaves out).
export const FLOOR_TABLE = 'bench_floor_idempotency'
const FLOOR_SQL = {
  read: `SELECT fingerprint = $2 AS same, token IS NULL AS done, status, body FROM ${FLOOR_TABLE}
WHERE key = $1 AND expires_at > clock_timestamp()`,
  claim: `INSERT INTO ${FLOOR_TABLE} (key, fingerprint, token, expires_at) VALUES ($1, $2, 'floor', clock_timestamp() + interval '1 day')
ON CONFLICT (key) DO NOTHING`,
  answer: `UPDATE ${FLOOR_TABLE} SET token = NULL, expires_at = clock_timestamp() + interval '1 day', status = $2, body = $3
WHERE key = $1`
}

function floorAnswer (reply, row) {
  if (!row.same) return reply.code(422).send({})
  if (!row.done) return reply.code(409).send({})
  return reply.code(row.status).type('application/json; charset=utf-8').header('idempotent-replayed', 'true').send(row.body)
}

/**
 * Fresh key: SELECT (nothing) · BEGIN · INSERT key (ON CONFLICT DO NOTHING) · INSERT order ·
 * UPDATE key with the answer · COMMIT. Replay: the SELECT, answered from its row. A duplicate
 * whose INSERT waited for another transaction's COMMIT reads the answer, rolls back and replays it.
 */
function pgFloorHandler (pool) {
  return async function pgPostFloor (request, reply) {
    const key = request.headers['idempotency-key']
    if (typeof key !== 'string') return reply.code(428).send({})
    const fingerprint = hash('sha256', JSON.stringify(request.body), 'base64url')
    const { rows: [stored] } = await pool.query(FLOOR_SQL.read, [key, fingerprint])
    if (stored !== undefined) return floorAnswer(reply, stored)
    const tx = await pool.connect()
    try {
      await tx.query('BEGIN')
      if ((await tx.query(FLOOR_SQL.claim, [key, fingerprint])).rowCount === 0) {
        const { rows: [row] } = await tx.query(FLOOR_SQL.read, [key, fingerprint])
        await tx.query('ROLLBACK')
        return row === undefined ? reply.code(409).send({}) : floorAnswer(reply, row)
      }
      const { rows: [order] } = await tx.query(INSERT_ORDER, [request.body.name])
      const body = JSON.stringify(order)
      await tx.query(FLOOR_SQL.answer, [key, 201, Buffer.from(body)])
      await tx.query('COMMIT')
      return reply.code(201).type('application/json; charset=utf-8').send(body)
    } catch (error) {
      await tx.query('ROLLBACK')
      throw error
    } finally {
      tx.release()
    }
  }
}

function listenWithPool (app, pool) {
  // The requests this server took, so that statements are counted per request it served: the
  // load generator counts only those answered within a burst, not the few still in flight.
  let served = 0
  app.server.on('request', () => { served++ })
  return {
    ...listenFastify(app),
    stats: () => ({ served, statements: statements.total, statementKinds: { ...statements.kinds } }),
    async close () {
      await app.close()
      await pool.end()
    }
  }
}

// The plugin's 428 and 412 bodies for this route, as strings made once: a hand-written hook that
// answers what the plugin answers (same status, headers and bytes) pays for these and no more.
const PROBLEM_TYPE = 'application/problem+json; charset=utf-8'
const problemHead = (status, detail) => '{"type":"about:blank","title":' + JSON.stringify(defaultMessages.titles[status]) +
  ',"status":' + status + ',"detail":' + JSON.stringify(detail) + ',"instance":'
const REQUIRED_HEAD = problemHead(428, defaultMessages.details.preconditionRequired.replaceAll('{hints}', defaultMessages.details.requireHintIfMatch))
const REQUIRED_TAIL = ',"code":"FST_PRECONDITION_REQUIRED","required":["If-Match"]}'
const FAILED_HEAD = problemHead(412, defaultMessages.details.ifMatchMismatch)
const FAILED_TAIL = ',"code":"FST_PRECONDITION_FAILED","etag":'
const instance = (url) => JSON.stringify(url.indexOf('?') === -1 ? url : url.slice(0, url.indexOf('?')))

/** 428 from preParsing, as the plugin sends it: after every onRequest hook, before the body is read. */
function floorRequire (request, reply, payload, done) {
  if (request.headers['if-match'] !== undefined) done(null, payload)
  else reply.code(428).header('content-type', PROBLEM_TYPE).send(REQUIRED_HEAD + instance(request.url) + REQUIRED_TAIL)
}

/** 412 with the current ETag as a header and a member, as the plugin sends it. */
function floorFail (request, reply, etag) {
  reply.code(412).header('etag', etag).header('content-type', PROBLEM_TYPE)
    .send(FAILED_HEAD + instance(request.url) + FAILED_TAIL + JSON.stringify(etag) + '}')
}

/**
 * A per-key lock for one process, written by hand: the first writer of a key takes it at once
 * (a map entry), later ones queue; release hands it to the next or deletes the entry. No timeout,
 * no fencing token, no lease-loss signal: the least a correct in-memory lock does.
 */
class HandLocks {
  constructor () {
    this.held = new Map()
  }

  /** null when taken at once, else a promise of the lock. */
  acquire (key) {
    const queue = this.held.get(key)
    if (queue === undefined) {
      this.held.set(key, null)
      return null
    }
    return new Promise((resolve) => {
      if (queue === null) this.held.set(key, [resolve])
      else queue.push(resolve)
    })
  }

  release (key) {
    const queue = this.held.get(key)
    if (queue === null || queue === undefined || queue.length === 0) this.held.delete(key)
    else queue.shift()()
  }
}

/**
 * The floor of the plugin's guarded PUT, written by hand into a bare app: 428 from preParsing;
 * in preHandler (after the body, after the route's own hooks) the resource's lock taken, its
 * validators read and If-Match compared under it (one exact string comparison: enough for the
 * single strong tag these requests send; every resource here exists), a 412 that lets the lock
 * go at once, else the lock held until the response closes (finished, or its client gone); the
 * ETag set by the handler after the write. `locks` null: the same checks with no lock.
 */
function floorPutApp (locks) {
  const app = Fastify({ logger: false })
  app.put('/items/:id', {
    schema: putSchema,
    preParsing: floorRequire,
    preHandler (request, reply, done) {
      const key = request.params.id
      const check = () => {
        const current = putValidators(request)
        if (request.headers['if-match'] !== current.etag) {
          if (locks !== null) locks.release(key)
          floorFail(request, reply, current.etag)
          return
        }
        if (locks !== null) {
          const raw = reply.raw
          if (raw.destroyed) {
            locks.release(key)
            return
          }
          raw.on('close', () => locks.release(key))
        }
        done()
      }
      const waiting = locks === null ? null : locks.acquire(key)
      if (waiting === null) check()
      else waiting.then(check)
    }
  }, function floorPutHandler (request, reply) {
    // putHandler writes before it returns its promise: the ETag read now is the written one's.
    const result = putHandler(request)
    reply.header('etag', putValidators(request).etag)
    return result
  })
  return app
}

/**
 * A MeterProvider of @opentelemetry/sdk-metrics whose one reader never collects or exports: the
 * instruments aggregate every measurement, as under any real reader, and nothing leaves the
 * process.
 */
async function idleMeterProvider () {
  const { MeterProvider, MetricReader } = await import('@opentelemetry/sdk-metrics')
  class IdleReader extends MetricReader {
    async onForceFlush () {}
    async onShutdown () {}
  }
  return new MeterProvider({ readers: [new IdleReader()] })
}

// The key's syntax, as the plugin reads a bare key: 1 to 255 visible characters.
const FLOOR_KEY = /^[!-~]{1,255}$/

export const builders = {
  /** Fastify with no plugin: the baseline of every PUT scenario. */
  async 'bare-put' () {
    const app = Fastify({ logger: false })
    app.put('/items/:id', { schema: putSchema }, putHandler)
    return listenFastify(app)
  },

  /**
   * The floor of the guarded PUT (and of its 428 and 412): the same answers from hand-written
   * hooks, with a hand-written in-memory per-key lock (see floorPutApp).
   */
  async 'floor-put' () {
    return listenFastify(floorPutApp(new HandLocks()))
  },

  /** The same hand-written hooks with no lock: what the lock costs when written by hand. */
  async 'floor-put-nolock' () {
    return listenFastify(floorPutApp(null))
  },

  /** The plugin registered, the PUT route without `concurrency`: what its decorations cost alone. */
  async 'plugin-put-registered' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    app.put('/items/:id', { schema: putSchema }, putHandler)
    return listenFastify(app)
  },

  /** The plugin's PUT with `require: 'if-match'` alone: its 428 hook and its onSend hook. */
  async 'plugin-put-require' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    app.put('/items/:id', { schema: putSchema, concurrency: { require: 'if-match' } }, putHandler)
    return listenFastify(app)
  },

  /** The plugin's PUT with validators and `lock: false`: the check in preHandler, no lock. */
  async 'plugin-put-nolock' () {
    return listenFastify(await pluginPut({ lock: false }))
  },

  /**
   * The plugin's PUT with `preconditionMetrics()` from fastify-precondition/otel subscribed, on a
   * real MeterProvider (@opentelemetry/sdk-metrics) whose reader never exports.
   */
  async 'plugin-put-otel' () {
    const { preconditionMetrics } = await import('fastify-precondition/otel')
    preconditionMetrics({ meterProvider: await idleMeterProvider() })
    return listenFastify(await pluginPut({}))
  },

  /**
   * The same with `preconditionMetrics()` on the global provider, which is the API's no-op one
   * while no SDK is registered: the channels and the attributes, no aggregation.
   */
  async 'plugin-put-otel-noop' () {
    const { preconditionMetrics } = await import('fastify-precondition/otel')
    preconditionMetrics()
    return listenFastify(await pluginPut({}))
  },

  /**
   * A hand-written Redis lock in the floor's hooks: SET key token NX PX to take it (retried
   * every 5 ms while taken), and a delete-if-owner script to give it back when the response
   * closes: two round trips, the least a lock that never deletes another holder's does. No
   * fencing token, renewal or timeout. redis-server's port comes from the environment.
   */
  async 'floor-put-redis' () {
    const redis = await redisClient()
    const { client } = redis
    client.defineCommand('floorRelease', {
      numberOfKeys: 1,
      lua: 'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0'
    })
    const owner = process.pid + ':'
    let acquisitions = 0
    const app = Fastify({ logger: false })
    app.put('/items/:id', {
      schema: putSchema,
      preParsing: floorRequire,
      preHandler (request, reply, done) {
        const key = 'floor:' + request.params.id
        const token = owner + (++acquisitions)
        const release = () => { client.floorRelease(key, token).catch(() => {}) }
        const take = () => client.set(key, token, 'PX', 10_000, 'NX').then((taken) => {
          if (taken === null) {
            setTimeout(take, 5)
            return
          }
          const current = putValidators(request)
          if (request.headers['if-match'] !== current.etag) {
            release()
            floorFail(request, reply, current.etag)
            return
          }
          const raw = reply.raw
          if (raw.destroyed) {
            release()
            return
          }
          raw.on('close', release)
          done()
        }, done)
        take()
      }
    }, function floorPutHandler (request, reply) {
      const result = putHandler(request)
      reply.header('etag', putValidators(request).etag)
      return result
    })
    return listenWithRedis(app, redis)
  },

  /**
   * The floor of the GET with validators: a hand-written preHandler hook sets ETag and
   * Last-Modified (the date formatted once: the plugin formats it once a second) and answers 304
   * when If-None-Match is the current tag (one exact comparison: the single tag these requests
   * send).
   */
  async 'floor-get' () {
    const lastModified = SMALL_ITEM.lastModified.toUTCString()
    const app = Fastify({ logger: false })
    app.get('/items/:id', {
      schema: { params: putSchema.params },
      preHandler (request, reply, done) {
        const current = SMALL_ITEM
        reply.header('etag', current.etag).header('last-modified', lastModified)
        if (request.headers['if-none-match'] === current.etag) reply.code(304).send()
        else done()
      }
    }, async function getHandler (_request, reply) {
      reply.type('application/json')
      return SMALL_ITEM.body
    })
    return listenFastify(app)
  },

  /** The plugin registered, the GET route without `concurrency`. */
  async 'plugin-get-registered' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    getRoute(app, SMALL_ITEM)
    return listenFastify(app)
  },

  /** The plugin registered, the POST route without `concurrency`. */
  async 'plugin-post-registered' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    app.post('/orders', { schema: postSchema }, postHandler)
    return listenFastify(app)
  },

  /** The plugin's PUT: If-Match required, sync validators, memory lock (the default). */
  async 'plugin-put' () {
    return listenFastify(await pluginPut({}))
  },

  async 'plugin-put-onrequest' () {
    return listenFastify(await pluginPut({ stage: 'onRequest' }))
  },

  async 'plugin-put-prehandler' () {
    return listenFastify(await pluginPut({ stage: 'preHandler' }))
  },

  /** Fastify with no plugin: the baseline of every POST scenario (it ignores Idempotency-Key). */
  async 'bare-post' () {
    return listenFastify(await bareApp())
  },

  /** POST with `idempotency: true` over the default (memory) idempotency store. */
  async 'plugin-post-idempotent' () {
    return listenFastify(await pluginPost({}))
  },

  /**
   * The floor of any Idempotency-Key path built from Fastify's hooks, written by hand into a bare
   * app: what every correct one does and nothing more. A preParsing hook hashes the body bytes as
   * the parser reads them (SHA-256 with the method, the URL and the body's media type: the same
   * bytes as JSON and as text are two requests), a key that is not 1 to 255 visible characters is
   * refused with a 400, the handler looks the key up and claims it, an onSend hook keeps the answer
   * (for 24 h, like the plugin's default ttl). No scope, no lease or renewal, no 5xx release, no
   * problem bodies, no client-gone handling.
   */
  async 'floor-post-idempotent' () {
    const records = new Map()
    const app = Fastify({ logger: false })
    app.post('/orders', {
      schema: postSchema,
      preParsing (request, reply, payload, done) {
        const key = request.headers['idempotency-key']
        if (typeof key === 'string') {
          if (!FLOOR_KEY.test(key)) {
            reply.code(400).send({})
            return
          }
          // Method, URL and media type hold no space: spaces keep them apart.
          const type = request.headers['content-type']
          const media = type === undefined ? '' : (type.indexOf(';') === -1 ? type : type.slice(0, type.indexOf(';'))).trim().toLowerCase()
          const state = { key, head: request.method + ' ' + request.url + ' ' + media + ' ', body: '', print: '', record: null }
          request.idempotency = state
          const emit = payload.emit
          payload.emit = function (event, chunk) {
            if (event === 'data') state.body += chunk.toString('latin1')
            else if (event === 'end') state.print = hash('sha256', state.head + state.body, 'base64url')
            return emit.apply(this, arguments)
          }
        }
        done(null, payload)
      },
      onSend (request, reply, payload, done) {
        const record = request.idempotency?.record
        if (record && record.body === null) {
          record.status = reply.statusCode
          record.type = reply.getHeader('content-type')
          record.body = payload
        }
        done(null, payload)
      }
    }, async function floorHandler (request, reply) {
      const state = request.idempotency
      if (state === undefined) return postHandler(request, reply)
      const record = records.get(state.key)
      if (record === undefined || record.expires < Date.now()) {
        state.record = { print: state.print, status: 0, type: '', body: null, expires: Date.now() + 86_400_000 }
        records.set(state.key, state.record)
        return postHandler(request, reply)
      }
      if (record.print !== state.print) return reply.code(422).send({})
      if (record.body === null) return reply.code(409).send({})
      return reply.code(record.status).header('content-type', record.type).header('idempotent-replayed', 'true').send(record.body)
    })
    return listenFastify(app)
  },

  /** The same over `redisIdempotencyStore`; redis-server's port comes from the environment. */
  async 'plugin-post-idempotent-redis' () {
    const { redisIdempotencyStore } = await import('fastify-precondition/redis')
    const redis = await redisClient()
    return listenWithRedis(await pluginPost({ idempotencyStore: redisIdempotencyStore({ client: redis.client }) }), redis)
  },

  /**
   * The idempotency memory run's server: its own MemoryIdempotencyStore with a short sweep, so
   * its record map can be inspected, and answers kept for 1 s.
   */
  async 'memory-post-idempotent' () {
    const store = new MemoryIdempotencyStore({ sweepInterval: 1000 })
    const app = await pluginPost({ idempotencyStore: store }, { ttl: 1 })
    return { ...listenFastify(app), stats: () => ({ idempotencyRecords: store.size }) }
  },

  /** PostgreSQL, no plugin: the order's transaction alone (key ignored). */
  async 'pg-post-bare' () {
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    app.post('/orders', { schema: postSchema }, pgPostHandler(pool))
    return listenWithPool(app, pool)
  },

  /** PostgreSQL, no plugin: the hand-written floor of the transactional claim's guarantee (pgFloorHandler). */
  async 'pg-post-key-floor' () {
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    app.post('/orders', { schema: postSchema }, pgFloorHandler(pool))
    return listenWithPool(app, pool)
  },

  /**
   * PostgreSQL, the plugin with pgIdempotencyStore and the lease claim: the claim, then the
   * answer recorded by `complete(tx, order)` in the order's transaction (the 2026-12-01 runs).
   */
  async 'pg-post-idempotent' () {
    const { pgIdempotencyStore } = await import('fastify-precondition/postgres')
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
    app.post('/orders', { schema: postSchema, concurrency: { idempotency: true } }, pgPostHandler(pool))
    return listenWithPool(app, pool)
  },

  /** PostgreSQL, the lease claim, the handler through `request.idempotency.transaction(pool, fn)`. */
  async 'pg-post-claim-lease' () {
    const { pgIdempotencyStore } = await import('fastify-precondition/postgres')
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
    app.post('/orders', { schema: postSchema, concurrency: { idempotency: { required: true, claim: 'lease' } } }, pgTransactionHandler(pool))
    return listenWithPool(app, pool)
  },

  /** PostgreSQL, the transactional claim: a read before the handler, the key's row first in the order's transaction. */
  async 'pg-post-claim-transaction' () {
    const { pgIdempotencyStore } = await import('fastify-precondition/postgres')
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
    app.post('/orders', { schema: postSchema, concurrency: { idempotency: { required: true, claim: 'transaction' } } }, pgTransactionHandler(pool))
    return listenWithPool(app, pool)
  },

  /** The plugin's PUT with the Redis lock store; redis-server's port comes from the environment. */
  async 'plugin-put-redis' () {
    const { redisLockStore } = await import('fastify-precondition/redis')
    const redis = await redisClient()
    return listenWithRedis(await pluginPut({}, { lockStore: redisLockStore({ client: redis.client }) }), redis)
  },

  /**
   * The floor under any Redis lock that takes two round trips through ioredis: a store that only
   * sends SET NX PX and DEL, with no owner check, renewal or timeout. Not safe; a yardstick.
   */
  async 'plugin-put-redis-floor' () {
    const redis = await redisClient()
    const { client } = redis
    const release = function () { return client.del(this.key) }
    const store = {
      acquire (key) {
        const lease = { key: 'floor:' + key, release }
        return client.set(lease.key, '1', 'PX', 10_000, 'NX').then(() => lease)
      }
    }
    return listenWithRedis(await pluginPut({}, { lockStore: store }), redis)
  },

  /**
   * The memory run's server: its own MemoryLockStore, so the lock map can be inspected, and a
   * handler that keeps nothing, so what grows is the plugin's or Fastify's.
   */
  async 'memory-put' () {
    const store = new MemoryLockStore()
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition, { lockStore: store })
    const current = { etag: '"v1"' }
    app.put('/items/:id', {
      schema: { params: putSchema.params },
      concurrency: { require: 'if-match', validators: () => current }
    }, function handler (request, reply) {
      reply.send({ id: request.params.id, saved: true })
    })
    return { ...listenFastify(app), stats: () => ({ lockMapSize: store.size }) }
  },

  /** The memory run's baseline: the same route with no plugin, to tell whose memory grows. */
  async 'memory-bare' () {
    const app = Fastify({ logger: false })
    app.put('/items/:id', { schema: { params: putSchema.params } }, function handler (request, reply) {
      reply.send({ id: request.params.id, saved: true })
    })
    return listenFastify(app)
  },

  /** Fastify with no plugin, serving a 200 B representation. */
  async 'bare-get' () {
    const app = Fastify({ logger: false })
    getRoute(app, SMALL_ITEM)
    return listenFastify(app)
  },

  /** A GET that sets ETag and Last-Modified by hand, as a route without the plugin would. */
  async 'bare-get-validators' () {
    const app = Fastify({ logger: false })
    app.get('/items/:id', { schema: { params: putSchema.params } }, async function getHandler (_request, reply) {
      reply.header('etag', SMALL_ITEM.etag).header('last-modified', SMALL_ITEM.lastModified.toUTCString()).type('application/json')
      return SMALL_ITEM.body
    })
    return listenFastify(app)
  },

  /**
   * The PUT checks written by hand in two hooks, as the issue measured them: 428 from onRequest,
   * 412 from preHandler, the ETag set by the handler; no lock, no problem details.
   */
  async 'hand-put' () {
    const app = Fastify({ logger: false })
    app.put('/items/:id', {
      schema: putSchema,
      onRequest (request, reply, done) {
        if (request.headers['if-match'] === undefined) reply.code(428).send({ title: 'Precondition Required' })
        else done()
      },
      preHandler (request, reply, done) {
        const current = putValidators(request)
        if (current === null || request.headers['if-match'] !== current.etag) reply.code(412).send({ title: 'Precondition Failed' })
        else done()
      }
    }, async function handler (request, reply) {
      reply.header('etag', putValidators(request).etag)
      return putHandler(request)
    })
    return listenFastify(app)
  },

  /** The same GET with validators: 200 with ETag and Last-Modified, or 304. */
  async 'plugin-get' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    getRoute(app, SMALL_ITEM, { validators: () => SMALL_ITEM })
    return listenFastify(app)
  },

  async 'plugin-get-10k' () {
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition)
    getRoute(app, ITEM_10K, { validators: () => ITEM_10K })
    return listenFastify(app)
  },

  /** @fastify/etag hashing the 10 KB representation the handler produced, answering 304 on a match. */
  async 'etag-get-10k' () {
    const { default: fastifyEtag } = await import('@fastify/etag')
    const app = Fastify({ logger: false })
    await app.register(fastifyEtag)
    getRoute(app, ITEM_10K)
    return listenFastify(app)
  },

  /**
   * restify 11 with its conditionalRequest plugin, set up as its docs show: a handler sets
   * res.etag before the checks. The 428 check is a hand-written handler before the body is read,
   * as restify has none; errors are restify-errors, as restify apps answer them.
   */
  async 'restify-put' () {
    const { default: restify } = await import('restify')
    const { default: errors } = await import('restify-errors')
    const server = restify.createServer({ handleUncaughtExceptions: false })
    server.put('/items/:id',
      function requireIfMatch (req, _res, next) {
        if (req.headers['if-match'] === undefined) return next(new errors.PreconditionRequiredError('send If-Match with the ETag a GET returned'))
        next()
      },
      ...restify.plugins.bodyParser(),
      function setValidators (req, res, next) {
        const current = versions.get(req.params.id)
        // restify compares If-Match members with their quotes removed against res.etag.
        if (current !== undefined) res.etag = current.etag.slice(1, -1)
        next()
      },
      ...restify.plugins.conditionalRequest(),
      function handler (req, res, next) {
        bodies.set(req.params.id, req.body)
        res.header('ETag', versions.get(req.params.id).etag)
        res.send({ id: req.params.id, saved: true })
        next()
      })
    return {
      listen: () => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port))),
      close: () => new Promise((resolve) => server.close(() => resolve()))
    }
  }
}

export { KEYS }
