// The claim's less common paths, over real sockets through the plugin: the handler's own
// transaction (request.idempotency.complete), web streams, string chunks, a stream cut off or
// larger than the store keeps, a hijack from a callback, a keyed write checked in its handler,
// a gate that never ran the handler, a store that rejects with a non-Error; and the coding rules
// of replays.
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import * as zlib from 'node:zlib'
import { test, type Test } from 'tap'
import fastifyPrecondition, { IdempotencyClaimLostError, memoryIdempotencyStore, type FastifyPreconditionOptions, type IdempotencyStore, type TransactionClient } from '../lib/index.js'
import { acceptsCoding, decodeForClient } from '../lib/idempotency/encoding.js'
import { MemoryIdempotencyStore } from '../lib/idempotency/memory.js'
import { executorOf } from '../lib/sql/executor.js'
import { send, sleep } from './helpers/http.js'

async function start (t: Test, options: FastifyPreconditionOptions, routes: (app: FastifyInstance) => void): Promise<number> {
  const app = Fastify()
  await app.register(fastifyPrecondition, options)
  routes(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return (app.server.address() as { port: number }).port
}

const post = (port: number, path: string, key: string, body: unknown = {}) =>
  send(port, { method: 'POST', path, body, headers: { 'idempotency-key': key } })

/** A memory store that also records answers "in a transaction": completeIn through a fake tx. */
function transactionalStore (result: boolean | 'rolled back' | 'later' = true) {
  const memory = new MemoryIdempotencyStore()
  const statements: unknown[] = []
  const store: IdempotencyStore = {
    lease: memory.lease,
    maxAnswerBytes: 64,
    claim: memory.claim.bind(memory),
    complete: memory.complete.bind(memory),
    release: memory.release.bind(memory),
    renew: memory.renew.bind(memory),
    async completeIn (tx, key, token, response, ttl) {
      await executorOf(tx, 'postgres').query('record', [key])
      statements.push(response)
      // 'rolled back': recorded, then the transaction did not commit.
      if (result === 'rolled back') return true
      if (result === 'later') return 'later'
      return result ? memory.complete(key, token, response, ttl) : false
    },
    async transaction (db, fn) {
      statements.push(`BEGIN on ${String(db)}`)
      try {
        const value = await fn(tx)
        statements.push('COMMIT')
        return value
      } catch (error) {
        statements.push('ROLLBACK')
        throw error
      }
    }
  }
  return { store, statements, memory }
}

const tx: TransactionClient = { query: async () => ({ rowCount: 1 }) }

test('request.idempotency.complete records the answer in the handler\'s transaction, once', async (t) => {
  const { store, statements } = transactionalStore()
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request, reply) => {
      runs++
      reply.code(201)
      const order = { id: runs }
      await request.idempotency?.complete(tx, order)
      return order
    })
    app.post('/text', { concurrency: { idempotency: true } }, async (request, reply) => {
      reply.type('text/plain')
      await request.idempotency?.complete(tx, 'plain text')
      return 'plain text'
    })
    app.post('/big', { concurrency: { idempotency: true } }, async (request) => {
      const big = 'x'.repeat(100)
      await request.idempotency?.complete(tx, big)
      return big
    })
    app.post('/twice', { concurrency: { idempotency: true } }, async (request) => {
      await request.idempotency?.complete(tx, 'a')
      await request.idempotency?.complete(tx, 'a')
      return 'a'
    })
    app.post('/keyed', { concurrency: { idempotency: true } }, async (request) => ({ key: request.idempotency?.key ?? null }))
    app.post('/none', async (request) => ({ idempotency: request.idempotency }))
  })
  const first = await post(port, '/orders', 'k')
  t.equal(first.status, 201)
  t.same(first.json(), { id: 1 })
  t.equal(statements.length, 1, 'recorded through the transaction')
  t.match(statements[0], { status: 201, headers: { 'content-type': 'application/json; charset=utf-8' }, body: '{"id":1}' }, 'as the route serializes it')
  const replay = await post(port, '/orders', 'k')
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.equal(replay.body, first.body)
  t.equal(runs, 1)
  t.equal(statements.length, 1, 'and not stored a second time by the plugin')

  t.equal((await post(port, '/text', 't')).body, 'plain text')
  t.equal((await post(port, '/text', 't')).headers['idempotent-replayed'], 'true')
  t.equal((await post(port, '/big', 'b')).body.length, 100)
  const big = await post(port, '/big', 'b')
  t.equal(big.json().code, 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT', 'larger than the store keeps: recorded as applied')
  const twice = await post(port, '/twice', 'w')
  t.equal(twice.status, 409, 'a second complete throws IdempotencyClaimLostError (409)')
  t.equal(twice.json().code, 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST')
  t.same((await post(port, '/keyed', 'n')).json(), { key: 'n' }, 'request.idempotency carries the key')
  t.same((await send(port, { method: 'POST', path: '/keyed', body: {} })).json(), { key: null }, 'null without a key')
  t.same((await send(port, { method: 'POST', path: '/none', body: {} })).json(), { idempotency: null }, 'and on a route without the policy')
})

test('a 5xx after complete lets a claim whose transaction rolled back go', async (t) => {
  const { store } = transactionalStore('rolled back')
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/fails', { concurrency: { idempotency: true } }, async (request, reply) => {
      runs++
      await request.idempotency?.complete(tx, 'recorded, then rolled back')
      return reply.code(500).send('failed after')
    })
  })
  t.equal((await post(port, '/fails', 'f')).status, 500)
  const retry = await post(port, '/fails', 'f')
  t.equal(retry.status, 500)
  t.equal(retry.headers['idempotent-replayed'], undefined, 'not replayed: run again')
  t.equal(runs, 2)
})

test('request.idempotency.complete: a lost claim, a store without transactions, and a call before the claim', async (t) => {
  const lost = transactionalStore(false)
  let rolledBack = 0
  const port = await start(t, { idempotencyStore: lost.store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request) => {
      try {
        await request.idempotency?.complete(tx, { id: 1 })
      } catch (error) {
        if (error instanceof IdempotencyClaimLostError) rolledBack++
        throw error
      }
      return { id: 1 }
    })
  })
  const res = await post(port, '/orders', 'k')
  t.equal(res.status, 409)
  t.equal(res.json().code, 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST')
  t.equal(rolledBack, 1, 'the handler sees IdempotencyClaimLostError and rolls back')
  const again = await post(port, '/orders', 'k')
  t.equal(again.headers['idempotent-replayed'], undefined, 'the 409 about the claim itself is never stored as the key\'s answer')
  t.equal(rolledBack, 2, 'the key was let go: the resend runs')

  const plain = await start(t, {}, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request) => {
      await request.idempotency?.complete(tx, 'x')
      return 'x'
    })
  })
  const memory = await post(plain, '/orders', 'k')
  t.equal(memory.status, 500)
  t.match(memory.json().message, /has none: use pgIdempotencyStore/, 'the memory store has no transactions: a clear error')
  const withTransactions = await start(t, { idempotencyStore: transactionalStore().store }, (app) => {
    app.post('/orders', {
      concurrency: { idempotency: true },
      preHandler: async (request) => { await request.idempotency?.complete(tx, 'early') }
    }, async () => 'x')
  })
  const early = await post(withTransactions, '/orders', 'e')
  t.equal(early.status, 409, 'IdempotencyClaimLostError, from a hook before the claim')
  t.match(early.json().message, /not claimed yet/)
})

function raw (port: number, path: string, key: string, onResponse?: (res: import('node:http').IncomingMessage, req: import('node:http').ClientRequest) => void): Promise<string> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path, headers: { 'idempotency-key': key } }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() })
      res.on('end', () => resolve(body))
      res.on('error', () => resolve(body))
      res.on('aborted', () => resolve(body))
      onResponse?.(res, req)
    })
    req.on('error', () => resolve(''))
    req.end()
  })
}

test('streams: string chunks, a web stream, one cut off by its client, one larger than the store keeps', async (t) => {
  let runs = 0
  const port = await start(t, { idempotencyStore: memoryIdempotencyStore({ maxAnswerBytes: 1000 }) }, (app) => {
    app.post('/strings', { concurrency: { idempotency: true } }, async () => {
      runs++
      const stream = Readable.from(['one ', 'two'], { objectMode: false })
      stream.setEncoding('utf8')
      return stream
    })
    app.post('/web', { concurrency: { idempotency: true } }, async (_request, reply) => {
      runs++
      reply.type('text/plain')
      return new ReadableStream({ start (controller) { controller.enqueue(new TextEncoder().encode('web')); controller.close() } })
    })
    app.post('/long', { concurrency: { idempotency: true } }, async () => {
      runs++
      return Readable.from((async function * () {
        for (let i = 0; i < 50; i++) {
          yield 'chunk\n'
          await sleep(20)
        }
      })(), { objectMode: false })
    })
    app.post('/large', { concurrency: { idempotency: true } }, async () => {
      runs++
      return Readable.from(Array.from({ length: 20 }, () => 'x'.repeat(100)), { objectMode: false })
    })
  })
  t.equal(await raw(port, '/strings', 's'), 'one two')
  t.equal(await raw(port, '/strings', 's'), 'one two', 'replayed from string chunks')
  t.equal(await raw(port, '/web', 'w'), 'web')
  await sleep(20)
  t.match(await raw(port, '/web', 'w'), /ANSWER_NOT_KEPT/, 'a web stream is not recorded: applied, not kept')
  await raw(port, '/long', 'l', (res, req) => { res.once('data', () => { req.destroy() }) })
  await sleep(100)
  t.match(await raw(port, '/long', 'l'), /ANSWER_NOT_KEPT/, 'cut off by its client: applied, its answer not whole')
  t.equal((await raw(port, '/large', 'g')).length, 2000, 'the first client gets it all')
  await sleep(20)
  t.match(await raw(port, '/large', 'g'), /ANSWER_NOT_KEPT/, 'past maxAnswerBytes: not kept')
  t.equal(runs, 4)
})

test('a callback handler that hijacks later; a keyed write checked in its handler; a store that rejects with a string', async (t) => {
  let runs = 0
  let version = 1
  const validators = async () => { await sleep(30); return { etag: `"v${version}"` } }
  const rejecting = new MemoryIdempotencyStore()
  rejecting.claim = () => { throw 'down' } // eslint-disable-line no-throw-literal
  const port = await start(t, {}, (app) => {
    app.post('/later', { concurrency: { idempotency: true } }, function (_request, reply: FastifyReply) {
      runs++
      setTimeout(() => {
        reply.hijack()
        reply.raw.end('by hand, later')
      }, 20)
    })
    app.put('/items/:id', { concurrency: { require: 'if-match', validators, lock: false, idempotency: true } }, async () => {
      runs++
      version++
      return { version }
    })
  })
  t.equal((await post(port, '/later', 'h')).body, 'by hand, later')
  await sleep(20)
  t.equal((await post(port, '/later', 'h')).json().code, 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT')

  const put = (key: string | undefined, ifMatch: string) => send(port, { method: 'PUT', path: '/items/1', body: {}, headers: key === undefined ? { 'if-match': ifMatch } : { 'idempotency-key': key, 'if-match': ifMatch } })
  t.equal((await put('p', '"v1"')).status, 200)
  const retry = await put('p', '"v1"')
  t.equal(retry.headers['idempotent-replayed'], 'true', 'the retry of a write without a lock is replayed, not refused for its stale tag')
  t.equal((await put('q', '"v1"')).status, 412, 'a new key with a stale tag is checked, after its claim')
  t.equal((await put('q', '"v1"')).status, 412, 'and its 412 replayed')
  t.equal((await put(undefined, '"v2"')).status, 200, 'without a key, checked in its hook')

  // Gone while the check reads the validators: the handler is not run, and the key is let go.
  await new Promise<void>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: 'PUT', path: '/items/1', headers: { 'idempotency-key': 'gone', 'if-match': '"v3"', 'content-type': 'application/json', 'content-length': '2' } })
    req.on('error', () => resolve())
    req.end('{}')
    setTimeout(() => { req.destroy(); resolve() }, 10)
  })
  await sleep(80)
  t.equal((await put('gone', '"v3"')).headers['idempotent-replayed'], undefined, 'the retry runs: nothing ran the first time')
  t.equal(runs, 4)

  const down = await start(t, { idempotencyStore: rejecting }, (app) => {
    app.post('/x', { concurrency: { idempotency: true } }, async () => 'x')
  })
  t.equal((await post(down, '/x', 'k')).status, 503)
})

test('a running claim whose store does not say how long its lease has left: the plugin\'s Retry-After', async (t) => {
  const memory = new MemoryIdempotencyStore()
  const store: IdempotencyStore = {
    lease: memory.lease,
    claim: (key, print, lease) => {
      const result = memory.claim(key, print, lease)
      return result.state === 'running' ? { state: 'running' } : result
    },
    complete: memory.complete.bind(memory),
    release: memory.release.bind(memory),
    renew: memory.renew.bind(memory)
  }
  let open: () => void = () => {}
  const port = await start(t, { idempotencyStore: store, retryAfter: 4 }, (app) => {
    app.post('/slow', { concurrency: { idempotency: true } }, async () => { await new Promise<void>((resolve) => { open = resolve }); return 'done' })
  })
  const first = post(port, '/slow', 'k')
  await sleep(50)
  t.equal((await post(port, '/slow', 'k')).headers['retry-after'], '4')
  open()
  await first
})

test('Accept-Encoding and the decoding of a stored answer', async (t) => {
  t.equal(acceptsCoding(undefined, 'gzip'), false, 'no field: identity, as the encoder sends it')
  t.equal(acceptsCoding('gzip, br', 'br'), true)
  t.equal(acceptsCoding('gzip;q=0', 'gzip'), false)
  t.equal(acceptsCoding('*', 'br'), true)
  t.equal(acceptsCoding('*;q=0, gzip', 'br'), false)
  t.equal(acceptsCoding(['identity', 'deflate'], 'deflate'), true)
  t.equal(acceptsCoding('identity', 'gzip'), false)
  const headers: Record<string, string> = {}
  const reply = {
    getHeader: (name: string) => headers[name],
    removeHeader: (name: string) => { delete headers[name] }
  } as unknown as FastifyReply
  const text = 'the answer'
  for (const [coding, encode] of [['gzip', zlib.gzipSync], ['x-gzip', zlib.gzipSync], ['deflate', zlib.deflateSync], ['br', zlib.brotliCompressSync]] as const) {
    headers['content-encoding'] = coding
    const encoded = encode(text)
    t.equal(decodeForClient(reply, encoded, coding), encoded, `${coding}: as it is to a client that accepts it`)
    t.equal(String(decodeForClient(reply, encoded, 'identity')), text, `${coding}: decoded for one that does not`)
    t.equal(headers['content-encoding'], undefined, `${coding}: and its Content-Encoding taken off`)
  }
  headers['content-encoding'] = 'gzip'
  t.equal(decodeForClient(reply, 'not gzip at all', 'identity'), 'not gzip at all', 'bytes that are not what their header says: sent as they were')
  headers['content-encoding'] = 'compress'
  t.equal(decodeForClient(reply, 'x', 'identity'), 'x', 'a coding not known here: as it is')
})

test('a keyed write checked in its handler: validators that throw, a handler that throws', async (t) => {
  const port = await start(t, {}, (app) => {
    app.put('/broken/:id', { concurrency: { validators: () => { throw new Error('no database') }, lock: false, idempotency: true } }, async () => 'never')
    app.put('/throws/:id', { concurrency: { validators: () => ({ etag: '"v1"' }), lock: false, idempotency: true } }, function () {
      throw Object.assign(new Error('refused'), { statusCode: 400 })
    })
  })
  const put = (path: string, key: string) => send(port, { method: 'PUT', path, body: {}, headers: { 'idempotency-key': key, 'if-match': '"v1"' } })
  t.equal((await put('/broken/1', 'a')).status, 500, 'validators that throw: a 500')
  t.equal((await put('/broken/1', 'a')).headers['idempotent-replayed'], undefined, 'released: not replayed')
  t.equal((await put('/throws/1', 'b')).status, 400)
  const again = await put('/throws/1', 'b')
  t.equal(again.status, 400)
  t.equal(again.headers['idempotent-replayed'], 'true', 'a thrown 4xx is stored and replayed')
})

test('after complete, another answer than the one recorded (its transaction rolled back) is what a retry gets', async (t) => {
  const { store } = transactionalStore('rolled back')
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request, reply) => {
      runs++
      reply.code(201)
      await request.idempotency?.complete(tx, { id: runs })
      // ROLLBACK, then the handler answers a 4xx of its own.
      return reply.code(400).send({ message: 'refused after complete' })
    })
  })
  const first = await post(port, '/orders', 'k')
  t.equal(first.status, 400)
  const again = await post(port, '/orders', 'k')
  t.equal(again.status, 400, 'not a 409 for the rest of the lease')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(again.body, first.body)
  t.equal(runs, 1)
})

test('complete on a transaction that cannot see the claim (\'later\'): the answer is stored once sent', async (t) => {
  const { store } = transactionalStore('later')
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request, reply) => {
      reply.code(201)
      const order = { id: ++runs }
      await request.idempotency?.complete(tx, order)
      return order
    })
  })
  t.equal((await post(port, '/orders', 'k')).status, 201)
  const again = await post(port, '/orders', 'k')
  t.equal(again.status, 201)
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.same(again.json(), { id: 1 })
  t.equal(runs, 1)
})

test('request.idempotency.transaction: opens, records what fn returns, commits; rolls back on a throw; a store without transactions says so', async (t) => {
  const { store, statements } = transactionalStore()
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
      return await request.idempotency?.transaction('pool', async (client) => {
        t.equal(client, tx, 'fn gets the store\'s transaction')
        runs++
        reply.code(201)
        return { id: runs }
      })
    })
    app.post('/fails', { concurrency: { idempotency: true } }, async (request) => {
      return await request.idempotency?.transaction('pool', async () => { throw new Error('no stock') })
    })
  })
  const first = await post(port, '/orders', 'k')
  t.equal(first.status, 201)
  t.same(first.json(), { id: 1 })
  t.match(statements, ['BEGIN on pool', { status: 201, body: '{"id":1}' }, 'COMMIT'])
  const again = await post(port, '/orders', 'k')
  t.equal(again.headers['idempotent-replayed'], 'true')
  t.equal(runs, 1)
  t.equal((await post(port, '/fails', 'f')).status, 500)
  t.equal(statements.at(-1), 'ROLLBACK')

  const plain = await start(t, {}, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (request) => await request.idempotency?.transaction('pool', async () => 'x'))
  })
  t.match((await post(plain, '/orders', 'k')).json().message, /transaction\(db, fn\) records the answer in a database transaction, and this idempotency store has none/)
})

test('an answer the store failed to take is stored when the store is back, the lease kept meanwhile, before a retry can claim again', async (t) => {
  const memory = new MemoryIdempotencyStore({ lease: 300 })
  let down = true
  let renewed = 0
  const store: IdempotencyStore = {
    lease: 300,
    claim: (...args) => memory.claim(...args),
    complete: (...args) => {
      if (down) throw new Error('store down')
      return memory.complete(...args)
    },
    release: (...args) => memory.release(...args),
    renew: (...args) => {
      renewed++
      return memory.renew(...args)
    }
  }
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (_request, reply) => {
      reply.code(201)
      return { id: ++runs }
    })
  })
  t.equal((await post(port, '/orders', 'k')).status, 201, 'the client has its answer')
  const before = renewed
  await sleep(700) // past the 300 ms lease, the store still down
  t.ok(renewed > before, 'the lease is renewed while the answer waits for the store')
  t.equal((await post(port, '/orders', 'k')).status, 409, 'the key is still held: a retry does not run')
  down = false
  await sleep(500)
  const again = await post(port, '/orders', 'k')
  t.equal(again.headers['idempotent-replayed'], 'true', 'stored once the store was back')
  t.equal(runs, 1)
})

test('a release the store failed to take is tried again until the lease ends: a retry after a short outage runs at once', async (t) => {
  const memory = new MemoryIdempotencyStore({ lease: 400 })
  let failing = 2
  const store: IdempotencyStore = {
    lease: 400,
    claim: (...args) => memory.claim(...args),
    complete: (...args) => memory.complete(...args),
    release: (...args) => {
      if (failing-- > 0) return Promise.reject(new Error('store restarting'))
      memory.release(...args)
    },
    renew: (...args) => memory.renew(...args)
  }
  let runs = 0
  const port = await start(t, { idempotencyStore: store }, (app) => {
    app.post('/orders', { concurrency: { idempotency: true } }, async (_request, reply) => reply.code(++runs === 1 ? 503 : 201).send({ runs }))
  })
  t.equal((await post(port, '/orders', 'k')).status, 503)
  await sleep(150) // two failures: 0 ms and 100 ms later, then released at 300 ms, before the 400 ms lease ends
  await sleep(200)
  t.equal(failing, -1, 'tried three times')
  t.equal((await post(port, '/orders', 'k')).status, 201, 'released: the retry runs')
  t.equal(runs, 2)
})
