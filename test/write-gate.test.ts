// The write lifecycle state machine (lib/write-gate.ts) on every path it has: handlers that answer
// synchronously, later from a callback, or through a hijacked reply; leases that are lost before
// or during the handler; stores of the older shape; clients that leave while waiting or while
// validators fail. Each ends with the resource's lock given back.
import Fastify, { type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { LockLostError, MemoryLockStore, type Lease, type LeaseLossListener, type LockStore } from '../lib/index.js'
import { kGate } from '../lib/write-gate.js'
import { partialRequest, send, sleep } from './helpers/http.js'

function logLines () {
  const lines: Array<Record<string, unknown>> = []
  return { lines, logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } }
}

test('synchronous handlers: answered in the call, on return, later from a callback, or by a hijacked reply', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store })
  const seen: number[] = []
  const concurrency = { lock: true, key: () => 'one' }
  app.put('/in-call', { concurrency }, (_request, reply) => { reply.send('sent in the call') })
  app.put('/returns', { concurrency }, () => 'returned')
  app.put('/later', { concurrency }, (_request, reply) => {
    setTimeout(() => {
      seen.push(store.size)
      reply.send('sent later')
    }, 30)
  })
  app.put('/hijacked', { concurrency }, (_request, reply) => {
    reply.hijack()
    setTimeout(() => {
      seen.push(store.size)
      reply.raw.end('written by hand')
    }, 30)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  for (const path of ['/in-call', '/returns', '/later', '/hijacked']) {
    const res = await send(port, { method: 'PUT', path })
    t.equal(res.status, 200, path)
    await sleep(10)
    t.equal(store.size, 0, `${path}: lock given back`)
  }
  t.same(seen, [1, 1], 'the lock was held until the late answers were written')
})

test('a lock store that answers with promises: a callback-style handler answers by itself', async (t) => {
  const app = Fastify()
  const memory = new MemoryLockStore()
  // A store whose leases arrive later, as a remote store's do.
  const store: LockStore = {
    acquire: async (key, timeout) => {
      await sleep(5)
      return await memory.acquire(key, timeout)
    }
  }
  await app.register(fastifyPrecondition, { lockStore: store })
  const seen: number[] = []
  app.put('/later', { concurrency: { lock: true, key: () => 'one' } }, (_request, reply) => {
    setTimeout(() => {
      seen.push(memory.size)
      reply.send('sent later')
    }, 30)
  })
  app.put('/hijacked', { concurrency: { lock: true, key: () => 'one' } }, (_request, reply) => {
    reply.hijack()
    setTimeout(() => reply.raw.end('written by hand'), 30)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const res = await send(port, { method: 'PUT', path: '/later' })
  t.equal(res.body, 'sent later', 'the handler\'s own answer, not an empty one sent for it')
  t.same(seen, [1], 'the lock was held until it answered')
  t.equal((await send(port, { method: 'PUT', path: '/hijacked' })).body, 'written by hand')
  await sleep(10)
  t.equal(memory.size, 0, 'lock given back')

  // The memory store's lease comes at once; the validators' promise comes later.
  const app2 = Fastify()
  await app2.register(fastifyPrecondition)
  app2.put('/later', { concurrency: { validators: async () => ({ etag: '"v1"' }) } }, (_request, reply) => {
    setTimeout(() => reply.send('sent later'), 30)
  })
  await app2.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app2.close())
  const port2 = (app2.server.address() as { port: number }).port
  t.equal((await send(port2, { method: 'PUT', path: '/later', headers: { 'if-match': '"v1"' } })).body, 'sent later', 'async validators: the handler\'s own answer')
})

test('a synchronous handler that answers later for a client that left keeps the lock until it answers', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store })
  let answered = false
  app.put('/later', { concurrency: { lock: true } }, (_request, reply) => {
    setTimeout(() => {
      answered = true
      reply.send('too late')
    }, 80)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const socket = await partialRequest(port, 'PUT', '/later', {}, 2, '{}')
  await sleep(30)
  socket.destroy()
  await sleep(20)
  t.equal(store.size, 1, 'still held: the handler has not written yet')
  await sleep(80)
  t.ok(answered)
  t.equal(store.size, 0, 'given back once it answered')
})

function lostStore (when: 'before' | 'during' | 'release'): { store: LockStore, controllers: AbortController[] } {
  const controllers: AbortController[] = []
  let token = 0
  const store: LockStore = {
    acquire (key): Lease {
      const controller = new AbortController()
      controllers.push(controller)
      if (when === 'before') controller.abort(new LockLostError(key, 'deleted while validators ran'))
      return {
        token: ++token,
        signal: controller.signal,
        release () {
          if (when === 'release') controller.abort(new LockLostError(key, 'found at release'))
        }
      }
    }
  }
  return { store, controllers }
}

test('a lease lost before the handler: 503, the handler never runs; lost during it: the signal aborts and the loss is logged', async (t) => {
  for (const when of ['before', 'during', 'release'] as const) {
    const { lines, logger } = logLines()
    const app = Fastify({ logger })
    const { store, controllers } = lostStore(when)
    await app.register(fastifyPrecondition, { lockStore: store })
    let ran = 0
    let abortedInHandler: boolean | undefined
    app.put('/items/:id', { concurrency: { validators: async () => ({ etag: '"1"' }) } }, async (request) => {
      ran++
      if (when === 'during') controllers[0].abort(new LockLostError(request.lock!.key, 'renewal found another owner'))
      abortedInHandler = request.lock!.signal.aborted
      return { token: request.lock!.token }
    })
    const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"1"' } })
    if (when === 'before') {
      t.equal(res.statusCode, 503, 'before: 503')
      t.equal(res.json().code, 'FST_PRECONDITION_LOCK_UNAVAILABLE')
      t.equal(ran, 0, 'before: the handler did not run')
    } else {
      t.equal(res.statusCode, 200, `${when}: the handler ran`)
      t.equal(res.json().token, 1)
      t.equal(abortedInHandler, when === 'during', `${when}: the handler saw the signal`)
      const lost = lines.find((line) => line.code === 'FST_PRECONDITION_LOCK_LOST')
      t.ok(lost, `${when}: logged with the code`)
      t.equal(lost?.level, 50, `${when}: at error level`)
      t.equal(lost?.key, '/items/:id\nid=1:1', `${when}: with the key`)
      t.equal(lost?.route, 'PUT /items/:id', `${when}: and the route`)
      t.equal(typeof lost?.reqId, 'string', `${when}: through the request's logger`)
    }
    await app.close()
  }
})

test('a store of the older shape (no token, no signal) still guards writes', async (t) => {
  const app = Fastify()
  let held = 0
  await app.register(fastifyPrecondition, {
    lockStore: { acquire: () => { held++; return { release () { held-- } } as unknown as Lease } }
  })
  app.put('/old', { concurrency: { lock: true } }, async (request) => ({ aborted: request.lock!.signal.aborted, held }))
  const res = await app.inject({ method: 'PUT', url: '/old' })
  t.same(res.json(), { aborted: false, held: 1 })
  t.equal(held, 0)
})

test('a client that leaves while it waits, then its wait times out: no answer, no lock left', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 60 })
  let runs = 0
  app.put('/slow', { concurrency: { lock: true } }, async () => {
    runs++
    await sleep(150)
    return 'done'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const holder = send(port, { method: 'PUT', path: '/slow' })
  await sleep(20)
  const waiter = await partialRequest(port, 'PUT', '/slow', {}, 2, '{}')
  await sleep(10)
  waiter.destroy()
  await sleep(80)
  t.equal((await holder).status, 200)
  t.equal(runs, 1)
  t.equal(store.size, 0)
})

test('a client that leaves while its validators fail: the lock is given back once, the server answers on', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store })
  let fail = true
  app.put('/v', {
    concurrency: {
      validators: async () => {
        await sleep(50)
        if (fail) throw new Error('db went away')
        return { etag: '"1"' }
      }
    }
  }, async () => 'ok')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const socket = await partialRequest(port, 'PUT', '/v', { 'if-match': '"1"' }, 2, '{}')
  await sleep(20)
  socket.destroy()
  await sleep(60)
  t.equal(store.size, 0)
  fail = false
  t.equal((await send(port, { method: 'PUT', path: '/v', headers: { 'if-match': '"1"' }, body: {} })).status, 200)
})

test('validators that throw on a read, or turn invalid after a write', async (t) => {
  const { lines, logger } = logLines()
  const app = Fastify({ logger })
  await app.register(fastifyPrecondition)
  let version: unknown = '"1"'
  app.get('/throws', { concurrency: { validators: () => { throw new Error('db down') } } }, async () => 'never')
  app.put('/sync', { concurrency: { validators: () => ({ etag: version as string }) } }, async () => {
    version = 'not a tag'
    return 'written'
  })
  app.put('/async', { concurrency: { validators: async () => ({ etag: version as string }) } }, async () => {
    version = 'not a tag'
    return 'written'
  })
  t.equal((await app.inject({ url: '/throws' })).statusCode, 500)
  for (const url of ['/sync', '/async']) {
    version = '"1"'
    const res = await app.inject({ method: 'PUT', url, headers: { 'if-match': '"1"' } })
    t.equal(res.statusCode, 200, `${url}: the write stands`)
    t.equal(res.headers.etag, undefined, `${url}: no ETag`)
  }
  t.equal(lines.filter((line) => String(line.msg).includes('after the write were invalid')).length, 2, 'both logged')
})

test('errors thrown where no Fastify runner would catch them go to Fastify or the log', async (t) => {
  const { lines, logger } = logLines()
  const app = Fastify({ logger })
  const hooks: Record<string, Function[]> = {}
  await app.register(fastifyPrecondition)
  app.addHook('onRoute', (routeOptions: RouteOptions) => {
    if (routeOptions.url === '/captured') {
      hooks.preHandler = routeOptions.preHandler as Function[]
      hooks.onSend = routeOptions.onSend as Function[]
    }
  })
  app.get('/captured', { concurrency: { validators: async () => ({ etag: '"1"' }) } }, async () => 'ok')
  await app.ready()
  const check = hooks.preHandler[hooks.preHandler.length - 1]
  const onSend = hooks.onSend[hooks.onSend.length - 1]
  const request = { method: 'GET', headers: { 'if-none-match': '"1"' }, url: '/captured', log: app.log } as unknown as FastifyRequest
  const sent: unknown[] = []
  const failing = (alreadySent: boolean) => ({
    sent: alreadySent,
    raw: { headersSent: alreadySent },
    code () { return this },
    header () { return this },
    send (payload: unknown) {
      if (payload instanceof Error) {
        sent.push(payload)
        return this
      }
      throw new Error('send failed')
    }
  }) as unknown as FastifyReply
  await new Promise<void>((resolve) => {
    check(request, failing(false), () => {})
    setTimeout(resolve, 20)
  })
  t.match(sent, [{ message: 'send failed' }], 'before an answer: to Fastify\'s error path')
  await new Promise<void>((resolve) => {
    check(request, failing(true), () => {})
    setTimeout(resolve, 20)
  })
  t.ok(lines.some((line) => String(line.msg).includes('error after the response started')), 'after it: logged')

  const put = { ...request, method: 'PUT', [kGate]: null } as unknown as FastifyRequest
  const reply = { statusCode: 200, hasHeader: () => false, header () { return this } } as unknown as FastifyReply
  const calls: unknown[] = []
  await new Promise<void>((resolve) => {
    onSend(put, reply, 'body', (error: Error | null) => {
      calls.push(error)
      if (calls.length === 1) throw new Error('writeHead failed')
      if (calls.length === 2) {
        setTimeout(resolve, 10)
        throw new Error('and so did the error answer')
      }
    })
  })
  t.match(calls, [null, { message: 'writeHead failed' }], 'the failure is handed to Fastify')
  t.ok(lines.some((line) => String(line.msg).includes('could not be sent')), 'what even that throws is logged')
})

test('a route that reads and writes: reads are checked in the stage hook, writes once, under the lock', async (t) => {
  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store })
  let reads = 0
  let held = -1
  app.route({
    method: ['GET', 'PUT'],
    url: '/both',
    concurrency: {
      validators: () => {
        reads++
        return { etag: '"1"' }
      }
    },
    handler: async () => {
      held = store.size
      return 'ok'
    }
  })
  t.equal((await app.inject({ url: '/both', headers: { 'if-none-match': '"1"' } })).statusCode, 304)
  t.equal(reads, 1)
  t.equal((await app.inject({ method: 'PUT', url: '/both', headers: { 'if-match': '"1"' } })).statusCode, 200)
  t.equal(held, 1, 'the write held the lock')
  t.equal(reads, 3, 'the write read its validators once before and once after, not in the stage hook too')
})

test('validators of a locked write see request.lock, reads and unlocked writes see null', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const seen: Array<[string, number | null]> = []
  const validators = (request: FastifyRequest) => {
    seen.push([request.method, request.lock === null ? null : request.lock.token])
    return { etag: '"1"' }
  }
  app.route({ method: ['GET', 'PUT'], url: '/x', concurrency: { validators }, handler: async () => 'ok' })
  app.patch('/x', { concurrency: { validators, lock: false } }, async () => 'ok')
  await app.inject({ url: '/x' })
  await app.inject({ method: 'PUT', url: '/x', headers: { 'if-match': '"1"' } })
  await app.inject({ method: 'PATCH', url: '/x', headers: { 'if-match': '"1"' } })
  t.same(seen.map(([method, token]) => [method, token === null ? null : typeof token]), [
    ['GET', null], ['PUT', 'number'], ['PUT', 'number'], ['PATCH', null], ['PATCH', null]
  ], 'the write read its validators before and after the handler, both under its lock')
})

test('a store that reports losses through onLost: 503 before the handler, logged during it', async (t) => {
  for (const when of ['before', 'during'] as const) {
    const { lines, logger } = logLines()
    const app = Fastify({ logger })
    let listener: LeaseLossListener | undefined
    let signalReads = 0
    await app.register(fastifyPrecondition, {
      lockStore: {
        acquire (key): Lease {
          const lost = new LockLostError(key, 'taken over')
          return {
            token: 7,
            get signal () { signalReads++; return AbortSignal.abort(lost) },
            release () {},
            onLost (given) {
              if (when === 'before') given.leaseLost(lost)
              else listener = given
            }
          }
        }
      }
    })
    let ran = 0
    app.put('/x', { concurrency: { lock: true } }, async (request) => {
      ran++
      listener?.leaseLost(new LockLostError(request.lock!.key, 'taken over'))
      return { token: request.lock!.token }
    })
    const res = await app.inject({ method: 'PUT', url: '/x' })
    t.equal(res.statusCode, when === 'before' ? 503 : 200, when)
    t.equal(ran, when === 'before' ? 0 : 1, `${when}: the handler ran only with its lease`)
    t.equal(signalReads, 0, `${when}: the signal was never made`)
    t.ok(lines.some((line) => line.code === 'FST_PRECONDITION_LOCK_LOST'), `${when}: logged`)
  }
})
