// Every way a guarded write can end gives its lock back: success, 412, 4xx/5xx, thrown errors,
// clients that leave mid-body or mid-handler, connection and request timeouts, hijacked replies.
// Each case ends with the next write to the same key going through well within the lock timeout;
// a leaked lock would answer it 503 instead.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { createServer } from 'node:http'
import { test, type Test } from 'tap'
import fastifyPrecondition, { MemoryLockStore, ProblemCode, type LockStore } from '../lib/index.js'
import { closed, partialRequest, send, sleep } from './helpers/http.js'

const LOCK_TIMEOUT = 400

interface Harness {
  app: FastifyInstance
  port: number
  store: MemoryLockStore
  state: { version: number, handler: number, finished: number }
  etag (): string
  /** The next write to the shared key: 200 when the lock is free, with the current tag. */
  next (): Promise<number>
}

type Handler = (request: FastifyRequest, reply: FastifyReply, state: Harness['state']) => unknown

async function harness (t: Test, routes: Record<string, { handler: Handler, stage?: 'onRequest' | 'preHandler', validators?: () => unknown }>, serverOptions: FastifyServerOptions = {}): Promise<Harness> {
  const app = Fastify(serverOptions)
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: LOCK_TIMEOUT })
  const state = { version: 1, handler: 0, finished: 0 }
  const validators = () => ({ etag: `"v${state.version}"` })
  const all: Record<string, { handler: Handler, stage?: 'onRequest' | 'preHandler', validators?: () => unknown }> = {
    ...routes,
    '/ok': {
      handler: async () => {
        state.version++
        return { version: state.version }
      }
    }
  }
  for (const [url, route] of Object.entries(all)) {
    app.put(url, {
      concurrency: {
        validators: (route.validators ?? validators) as () => { etag: string },
        key: () => 'shared',
        stage: route.stage ?? 'preHandler'
      }
    }, function (request, reply) {
      state.handler++
      return route.handler(request, reply, state)
    })
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const etag = () => `"v${state.version}"`
  return {
    app,
    port,
    store,
    state,
    etag,
    next: async () => (await send(port, { method: 'PUT', path: '/ok', headers: { 'if-match': etag() }, body: {} })).status
  }
}

test('success, 412, 4xx, 5xx and thrown errors release the lock', async (t) => {
  const h = await harness(t, {
    '/throws': { handler: async () => { throw new Error('boom') } },
    '/throws-sync': { handler: () => { throw new Error('boom') } },
    '/conflict': { handler: async (_request, reply) => reply.code(409).send({ message: 'conflict' }) },
    '/unavailable': { handler: async (_request, reply) => reply.code(503).send({ message: 'later' }) },
    '/bad-validators': { handler: async () => 'never', validators: () => { throw new Error('db down') } }
  })
  t.equal(await h.next(), 200, 'success')
  const stale = await send(h.port, { method: 'PUT', path: '/ok', headers: { 'if-match': '"v0"' }, body: {} })
  t.equal(stale.status, 412)
  t.equal(await h.next(), 200, 'after a 412')
  for (const [path, status] of [['/throws', 500], ['/throws-sync', 500], ['/conflict', 409], ['/unavailable', 503], ['/bad-validators', 500]] as const) {
    const res = await send(h.port, { method: 'PUT', path, headers: { 'if-match': h.etag() }, body: {} })
    t.equal(res.status, status, path)
    t.equal(await h.next(), 200, `next write after ${path}`)
  }
  t.equal(h.store.size, 0, 'no key held')
})

test('a client that leaves mid-body (stage onRequest) releases the lock and the handler never runs', async (t) => {
  const h = await harness(t, {
    '/early': { stage: 'onRequest', handler: async () => { throw new Error('must not run') } }
  })
  const socket = await partialRequest(h.port, 'PUT', '/early', { 'if-match': h.etag() }, 1000, '{"name":')
  await sleep(50)
  t.equal(h.store.size, 1, 'the lock is held while the body is read')
  socket.destroy()
  await closed(socket)
  t.equal(await h.next(), 200)
  t.equal(h.state.handler, 1, 'only the next write ran a handler')
  t.equal(h.store.size, 0)
})

test('stage onRequest: reads on the same route take no lock', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store })
  let held = -1
  app.route({
    method: ['GET', 'PUT'],
    url: '/both',
    concurrency: { stage: 'onRequest', validators: () => ({ etag: '"1"' }) },
    handler: async () => {
      held = store.size
      return 'ok'
    }
  })
  t.equal((await app.inject({ method: 'GET', url: '/both' })).statusCode, 200)
  t.equal(held, 0, 'a GET holds no lock')
  t.equal((await app.inject({ method: 'PUT', url: '/both', headers: { 'if-match': '"1"' } })).statusCode, 200)
  t.equal(held, 1, 'a PUT holds one')
  t.equal(store.size, 0)
})

test('a client that leaves mid-handler: the lock is kept until the handler has written', async (t) => {
  const h = await harness(t, {
    '/slow': {
      handler: async (_request, _reply, state) => {
        await sleep(150)
        state.version++
        state.finished++
        return { version: state.version }
      }
    }
  })
  const before = h.etag()
  const socket = await partialRequest(h.port, 'PUT', '/slow', { 'if-match': before }, 2, '{}')
  await sleep(50)
  socket.destroy()
  // Sent while the abandoned write still runs, with the tag it started from: it must wait for that
  // write and then fail, not slip in beside it.
  const racing = await send(h.port, { method: 'PUT', path: '/ok', headers: { 'if-match': before }, body: {} })
  t.equal(h.state.finished, 1, 'the abandoned write finished first')
  t.equal(racing.status, 412)
  t.equal(await h.next(), 200)
  t.equal(h.store.size, 0)
})

test('a client that leaves mid-handler of an async handler that answers by returning nothing', async (t) => {
  // Fastify sends nothing for a departed client when an async handler resolves undefined, so no
  // onSend runs: the end of the handler itself has to give the lock back.
  const h = await harness(t, {
    '/no-content': {
      handler: async (_request, reply, state) => {
        await sleep(100)
        state.version++
        state.finished++
        reply.code(204)
      }
    }
  })
  const socket = await partialRequest(h.port, 'PUT', '/no-content', { 'if-match': h.etag() }, 2, '{}')
  await sleep(30)
  socket.destroy()
  await sleep(150)
  t.equal(h.state.finished, 1)
  t.equal(await h.next(), 200, 'the lock was given back when the handler returned')
  t.equal(h.store.size, 0)
})

test('a handler that fails after its client left releases the lock', async (t) => {
  const h = await harness(t, {
    '/fails-late': {
      handler: async () => {
        await sleep(100)
        throw new Error('late failure')
      }
    }
  })
  const socket = await partialRequest(h.port, 'PUT', '/fails-late', { 'if-match': h.etag() }, 2, '{}')
  await sleep(30)
  socket.destroy()
  await sleep(150)
  t.equal(await h.next(), 200)
  t.equal(h.store.size, 0)
})

test('a callback-style handler whose client left releases once it answers', async (t) => {
  const h = await harness(t, {
    '/callback': {
      handler: (_request, reply, state) => {
        setTimeout(() => {
          state.version++
          reply.send({ version: state.version })
        }, 100)
        return reply
      }
    }
  })
  const socket = await partialRequest(h.port, 'PUT', '/callback', { 'if-match': h.etag() }, 2, '{}')
  await sleep(30)
  socket.destroy()
  await sleep(150)
  t.equal(h.state.version, 2)
  t.equal(await h.next(), 200)
  t.equal(h.store.size, 0)
})

test('Fastify\'s handlerTimeout answers early, but the lock stays until the handler is done', async (t) => {
  // Injected: over a socket, Fastify 5.12 clears the handler timer once the request body is read.
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 1000 })
  const item = { version: 1, finished: 0 }
  const validators = () => ({ etag: `"${item.version}"` })
  app.put('/slow', { handlerTimeout: 50, concurrency: { validators, key: () => 'item' } }, async () => {
    await sleep(150) // a write that ignores request.signal
    item.version++
    item.finished++
    return item
  })
  app.put('/fast', { concurrency: { validators, key: () => 'item' } }, async () => {
    item.version++
    return item
  })
  const timedOut = await app.inject({ method: 'PUT', url: '/slow', headers: { 'if-match': '"1"' } })
  t.equal(timedOut.statusCode, 503, 'the client is told the handler timed out')
  t.equal(timedOut.json().code, 'FST_ERR_HANDLER_TIMEOUT')
  t.equal(item.finished, 0, 'while the handler still runs')
  const racing = await app.inject({ method: 'PUT', url: '/fast', headers: { 'if-match': '"1"' } })
  t.equal(item.finished, 1, 'the next write waited for the timed-out one to finish')
  t.equal(racing.statusCode, 412, 'and then saw its change')
  t.equal((await app.inject({ method: 'PUT', url: '/fast', headers: { 'if-match': '"2"' } })).statusCode, 200)
  t.equal(store.size, 0)
  await app.close()
})

test('a hijacked reply releases the lock once its response has finished', async (t) => {
  const h = await harness(t, {
    '/hijack': {
      handler: async (_request, reply, state) => {
        reply.hijack()
        state.version++
        reply.raw.writeHead(200, { 'content-type': 'text/plain' })
        reply.raw.end('raw')
      }
    }
  })
  const res = await send(h.port, { method: 'PUT', path: '/hijack', headers: { 'if-match': h.etag() }, body: {} })
  t.equal(res.body, 'raw')
  t.equal(await h.next(), 200)
  t.equal(h.store.size, 0)
})

test('a connection timeout mid-body releases the lock', async (t) => {
  const h = await harness(t, {
    '/early': { stage: 'onRequest', handler: async () => { throw new Error('must not run') } }
  }, { connectionTimeout: 150 })
  const socket = await partialRequest(h.port, 'PUT', '/early', { 'if-match': h.etag() }, 1000, '{"name":')
  await closed(socket)
  t.equal(await h.next(), 200)
  t.equal(h.state.handler, 1)
  t.equal(h.store.size, 0)
})

test('a request timeout (408) mid-body releases the lock', async (t) => {
  const h = await harness(t, {
    '/early': { stage: 'onRequest', handler: async () => { throw new Error('must not run') } }
  }, {
    // Fastify's requestTimeout option, set on a server whose timeout check runs every 25 ms
    // instead of Node's default 30 s.
    serverFactory: (handler) => createServer({ requestTimeout: 150, headersTimeout: 150, connectionsCheckingInterval: 25 }, handler)
  })
  const socket = await partialRequest(h.port, 'PUT', '/early', { 'if-match': h.etag() }, 1000, '{"name":')
  let response = ''
  socket.on('data', (chunk: Buffer) => { response += chunk.toString() })
  await closed(socket)
  t.match(response, /^HTTP\/1\.1 408 /)
  t.equal(await h.next(), 200)
  t.equal(h.state.handler, 1)
  t.equal(h.store.size, 0)
})

test('waiters are served in arrival order', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const order: number[] = []
  app.post('/queue', { concurrency: { lock: true } }, async (request) => {
    const n = Number((request.query as { n: string }).n)
    order.push(n)
    await sleep(n === 0 ? 100 : 5)
    return n
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const pending = []
  for (let n = 0; n < 8; n++) {
    pending.push(send(port, { method: 'POST', path: `/queue?n=${n}` }))
    await sleep(8) // arrival order is the order sent
  }
  const results = await Promise.all(pending)
  t.same(results.map((r) => r.status), Array(8).fill(200))
  t.same(order, [0, 1, 2, 3, 4, 5, 6, 7])
})

test('a waiter whose client left hands the lock straight on', async (t) => {
  const h = await harness(t, {
    '/slow': {
      handler: async (_request, _reply, state) => {
        await sleep(100)
        state.version++
        return { version: state.version }
      }
    },
    '/never': { handler: async () => { throw new Error('must not run') } }
  })
  const holder = send(h.port, { method: 'PUT', path: '/slow', headers: { 'if-match': h.etag() }, body: {} })
  await sleep(20)
  const socket = await partialRequest(h.port, 'PUT', '/never', { 'if-match': '"v2"' }, 2, '{}')
  await sleep(20)
  socket.destroy()
  t.equal((await holder).status, 200)
  t.equal(await h.next(), 200, 'the departed waiter got the lock and gave it back unused')
  t.equal(h.state.handler, 2)
  t.equal(h.store.size, 0)
})

test('a waiter that times out gets a 503 problem with Retry-After', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition, { lockTimeout: 100, retryAfter: 3 })
  let ran = 0
  app.post('/busy', { concurrency: { lock: true } }, async () => {
    ran++
    await sleep(300)
    return 'done'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  let holderDone = 0
  const first = send(port, { method: 'POST', path: '/busy' }).then((res) => { holderDone = Date.now(); return res })
  await sleep(20)
  const started = Date.now()
  const waiter = await send(port, { method: 'POST', path: '/busy' })
  const waited = Date.now() - started
  t.equal(waiter.status, 503)
  t.equal(waiter.headers['retry-after'], '3')
  t.match(waiter.headers['content-type'], /^application\/problem\+json/)
  t.match(waiter.json(), { status: 503, code: ProblemCode.LOCK_TIMEOUT, instance: '/busy', title: 'Service Unavailable' })
  t.ok(waited >= 90, `gave up after the lock timeout (${waited} ms)`)
  t.equal(holderDone, 0, 'before the holder was done')
  t.equal((await first).status, 200)
  t.equal(ran, 1, 'the handler never ran for the waiter')
})

test('closing the server rejects waiting writes at once', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition, { lockTimeout: 5000 })
  app.post('/busy', { concurrency: { lock: true } }, async () => {
    await sleep(300)
    return 'done'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const holder = send(port, { method: 'POST', path: '/busy' })
  await sleep(20)
  const started = Date.now()
  const waiter = send(port, { method: 'POST', path: '/busy' })
  await sleep(20)
  const closing = app.close()
  const res = await waiter
  t.equal(res.status, 503)
  t.equal(res.json().code, ProblemCode.LOCK_UNAVAILABLE)
  t.ok(Date.now() - started < 1000, 'well before the 5 s lock timeout')
  t.equal((await holder).status, 200, 'the holder finished its write')
  await closing
})

test('a lock store of your own is closed with the server', async (t) => {
  const memory = new MemoryLockStore()
  let closes = 0
  const store: LockStore = {
    acquire: (key, timeout) => memory.acquire(key, timeout),
    close () { closes++ }
  }
  const app = Fastify()
  await app.register(fastifyPrecondition, { lockStore: store })
  app.post('/x', { concurrency: { lock: true } }, async () => 'ok')
  t.equal((await app.inject({ method: 'POST', url: '/x' })).statusCode, 200)
  await app.close()
  t.equal(closes, 1)
})

test('a lock store that fails to close is logged, and the server still closes', async (t) => {
  const memory = new MemoryLockStore()
  const store: LockStore = {
    acquire: (key, timeout) => memory.acquire(key, timeout),
    close: () => Promise.reject(new Error('cannot close'))
  }
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => lines.push(line) } } })
  await app.register(fastifyPrecondition, { lockStore: store })
  await app.close()
  t.match(lines.join(''), /closing the lock store failed/)
})

test('handlers that answer inside their call, or return the reply and answer later, while connected', async (t) => {
  const h = await harness(t, {
    '/sync-send': {
      handler: (_request, reply, state) => {
        state.version++
        reply.send({ version: state.version })
      }
    },
    '/async-send-early': {
      handler: async (_request, reply, state) => {
        state.version++
        reply.send({ version: state.version })
        return reply
      }
    },
    '/async-later': {
      handler: async (_request, reply, state) => {
        setTimeout(() => {
          state.version++
          state.finished++
          reply.send({ version: state.version })
        }, 100)
        return reply
      }
    }
  })
  for (const path of ['/sync-send', '/async-send-early', '/async-later']) {
    const res = await send(h.port, { method: 'PUT', path, headers: { 'if-match': h.etag() }, body: {} })
    t.equal(res.status, 200, path)
    t.equal(res.headers.etag, h.etag(), `${path} sends the tag of its own write`)
    t.equal(await h.next(), 200, `next write after ${path}`)
  }
  t.equal(h.store.size, 0)
})

test('a lock store that throws is a 503, and one that fails to release is logged', async (t) => {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => lines.push(line) } } })
  let mode = 'throw'
  const store: LockStore = {
    acquire () {
      if (mode === 'throw') throw new Error('backend exploded')
      return { token: 1, signal: new AbortController().signal, release: mode === 'reject' ? () => Promise.reject(new Error('release rejected')) : () => { throw new Error('release threw') } }
    },
    close () { throw new Error('close threw') }
  }
  await app.register(fastifyPrecondition, { lockStore: store })
  let ran = 0
  app.post('/x', { concurrency: { lock: true } }, async () => { ran++; return 'ok' })
  const failed = await app.inject({ method: 'POST', url: '/x' })
  t.equal(failed.statusCode, 503)
  t.equal(failed.json().code, ProblemCode.LOCK_UNAVAILABLE)
  t.equal(ran, 0, 'the handler never runs unguarded')
  mode = 'reject'
  t.equal((await app.inject({ method: 'POST', url: '/x' })).statusCode, 200)
  mode = 'release-throws'
  t.equal((await app.inject({ method: 'POST', url: '/x' })).statusCode, 200)
  await new Promise((resolve) => setImmediate(resolve))
  await app.close()
  const log = lines.join('')
  t.match(log, /lock store failed; answering 503/)
  t.match(log, /release rejected/)
  t.match(log, /release threw/)
  t.match(log, /closing the lock store failed/)
})

test('a client that left before the lock was asked for: no lock is taken, no handler runs', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: LOCK_TIMEOUT })
  let handled = 0
  app.put('/late', {
    // Slow work before the plugin's hook: the client is gone by the time it runs.
    preHandler: async () => { await sleep(80) },
    concurrency: { validators: () => ({ etag: '"1"' }), key: () => 'shared' }
  }, async () => {
    handled++
    return 'written'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const socket = await partialRequest(port, 'PUT', '/late', { 'if-match': '"1"' }, 2, '{}')
  await sleep(20)
  socket.destroy()
  await sleep(120)
  t.equal(handled, 0, 'the handler did not run for the departed client')
  t.equal(store.size, 0, 'no lock is held')
  const next = await send(port, { method: 'PUT', path: '/late', headers: { 'if-match': '"1"' }, body: {} })
  t.equal(next.status, 200)
  t.equal(handled, 1)
})
