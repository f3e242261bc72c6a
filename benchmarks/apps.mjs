// The servers the scenarios compare. Each builder returns { listen, close, app?, stats? }; a server
// process (server.mjs) runs exactly one of them. Every Fastify app has the logger off and the
// same route handlers, so a pair differs only in what the scenario measures.
import { hash } from 'node:crypto'
import Fastify from 'fastify'
import fastifyPrecondition, { MemoryIdempotencyStore, MemoryLockStore, strongEtag } from 'fastify-precondition'
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

/** A node-postgres pool on the PostgreSQL benchmark's cluster (benchmarks/postgres.mjs). */
async function pgPool () {
  const { default: pg } = await import('pg')
  const pool = new pg.Pool({ connectionString: process.env.BENCH_DATABASE_URL, max: 10 })
  pool.on('error', () => {})
  return pool
}

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
      const { rows: [order] } = await tx.query('INSERT INTO bench_orders (name) VALUES ($1) RETURNING id, name', [request.body.name])
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

function listenWithPool (app, pool) {
  return {
    ...listenFastify(app),
    async close () {
      await app.close()
      await pool.end()
    }
  }
}

export const builders = {
  /** Fastify with no plugin: the baseline of every PUT scenario. */
  async 'bare-put' () {
    const app = Fastify({ logger: false })
    app.put('/items/:id', { schema: putSchema }, putHandler)
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
   * the parser reads them (SHA-256 with the method and URL), the handler looks the key up and
   * claims it, an onSend hook keeps the answer (for 24 h, like the plugin's default ttl). No scope,
   * no lease or renewal, no 5xx release, no problem bodies, no client-gone handling.
   */
  async 'floor-post-idempotent' () {
    const records = new Map()
    const app = Fastify({ logger: false })
    app.post('/orders', {
      schema: postSchema,
      preParsing (request, reply, payload, done) {
        const key = request.headers['idempotency-key']
        if (typeof key === 'string') {
          const state = { key, head: request.method + ' ' + request.url + ' ', body: '', print: '', record: null }
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

  /** PostgreSQL, no plugin: the order's transaction alone (the floor of the PostgreSQL scenarios). */
  async 'pg-post-floor' () {
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    app.post('/orders', { schema: postSchema }, pgPostHandler(pool))
    return listenWithPool(app, pool)
  },

  /** PostgreSQL, the plugin with pgIdempotencyStore: the claim, then the answer recorded in the order's transaction. */
  async 'pg-post-idempotent' () {
    const { pgIdempotencyStore } = await import('fastify-precondition/postgres')
    const pool = await pgPool()
    const app = Fastify({ logger: false })
    await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
    app.post('/orders', { schema: postSchema, concurrency: { idempotency: true } }, pgPostHandler(pool))
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
