// The write lifecycle state machine (lib/locks/write-gate.ts) on every path it has: handlers that answer
// synchronously, later from a callback, or through a hijacked reply; leases that are lost before
// or during the handler; stores of the older shape; clients that leave while waiting or while
// validators fail. Each ends with the resource's lock given back.
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import Fastify, { type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { LockLostError, LockTimeoutError, LockUnavailableError, MemoryLockStore, type Lease, type LeaseLossListener, type LockStore } from '../lib/index.js'
import type { LockAcquireContext, LockReleaseMessage } from '../lib/observe.js'
import { kState } from '../lib/slots.js'
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
      const lost = lines.filter((line) => line.code === 'FST_PRECONDITION_LOCK_LOST')
      t.equal(lost.length, 1, 'before: a signal aborted before the gate listened is logged, once')
      t.match(lost[0], { level: 50, key: '/items/:id\nid=1:1', err: { message: /deleted while validators ran/ } })
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
    // Not the HEAD route Fastify adds for the GET: it takes no writes.
    if (routeOptions.url === '/captured' && ([] as string[]).concat(routeOptions.method).includes('PUT')) {
      hooks.preHandler = routeOptions.preHandler as Function[]
      hooks.onSend = routeOptions.onSend as Function[]
    }
  })
  // GET and PUT: the onSend hook reads a write's validators after it.
  app.route({ method: ['GET', 'PUT'], url: '/captured', concurrency: { validators: async () => ({ etag: '"1"' }) }, handler: async () => 'ok' })
  await app.ready()
  const check = hooks.preHandler[hooks.preHandler.length - 1]
  const onSend = hooks.onSend[hooks.onSend.length - 1]
  // A request as Fastify makes it, with the plugin's one slot.
  const request = { method: 'GET', headers: { 'if-none-match': '"1"' }, url: '/captured', log: app.log, [kState]: null } as unknown as FastifyRequest
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

  const put = { ...request, method: 'PUT', [kState]: null } as unknown as FastifyRequest
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

/** The lock's tracing events and release messages while `run` runs. */
function observeLocks () {
  const events: Array<{ name: string, key: string, token?: number, error?: unknown }> = []
  const releases: LockReleaseMessage[] = []
  const record = (name: string) => (context: LockAcquireContext) => {
    events.push({ name, key: context.key, token: context.result?.token, ...(context.error === undefined ? {} : { error: context.error }) })
  }
  const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
  const lock = tracingChannel<unknown, LockAcquireContext>('fastify-precondition:lock')
  const onRelease = (message: unknown) => { releases.push(message as LockReleaseMessage) }
  lock.subscribe(handlers)
  subscribe('fastify-precondition:lock:release', onRelease)
  return {
    events,
    releases,
    stop () {
      lock.unsubscribe(handlers)
      unsubscribe('fastify-precondition:lock:release', onRelease)
    }
  }
}

test('each lock acquisition is traced and each release published, with how long the lease was held', async (t) => {
  const observed = observeLocks()
  t.teardown(observed.stop)
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/items/:id', { concurrency: { lock: true } }, async (request) => {
    await sleep(30)
    return { token: request.lock!.token }
  })
  const [first, second] = await Promise.all([1, 2].map(() => app.inject({ method: 'PUT', url: '/items/1' })))
  const key = '/items/:id\nid=1:1'
  t.same(observed.events.map(({ name, key }) => [name, key]), [
    ['start', key], ['end', key], // the first write: a lease at once
    ['start', key], ['end', key], // the second one waits for it
    ['asyncStart', key], ['asyncEnd', key]
  ])
  t.equal(observed.events[1].token, first.json().token, 'end carries the lease')
  t.equal(observed.events[5].token, second.json().token, 'asyncEnd carries the lease that came later')
  t.equal(observed.releases.length, 2)
  for (const [index, release] of observed.releases.entries()) {
    t.match(release, { key, token: [first, second][index].json().token, lost: false }, `release ${index + 1}`)
    t.ok(release.heldMs >= 25 && release.heldMs < 1000, `held about as long as the handler ran (${release.heldMs.toFixed(1)} ms)`)
    t.equal(typeof release.request.id, 'string', 'with the request')
  }
  t.equal(observed.releases[0].request.lock, observed.releases[0].request.lock, 'the request that held it')
  await app.close()
})

test('a release says whether the lease was lost, also when the loss was found at release or the release failed', async (t) => {
  const observed = observeLocks()
  t.teardown(observed.stop)
  const { logger } = logLines()
  const app = Fastify({ logger })
  let mode = ''
  const store: LockStore = {
    acquire (key): Lease {
      let listener: LeaseLossListener | undefined
      return {
        token: 1,
        signal: new AbortController().signal,
        onLost (given) { listener = given },
        release () {
          if (mode === 'lost at release') return Promise.resolve().then(() => listener!.leaseLost(new LockLostError(key, 'found at release')))
          if (mode === 'release rejects') return Promise.reject(new Error('connection closed'))
          if (mode === 'release throws') throw new Error('broken')
        }
      }
    }
  }
  await app.register(fastifyPrecondition, { lockStore: store })
  app.put('/x', { concurrency: { lock: true } }, async () => 'ok')
  for (mode of ['plain', 'lost at release', 'release rejects', 'release throws']) {
    t.equal((await app.inject({ method: 'PUT', url: '/x' })).statusCode, 200, mode)
    await sleep(5)
  }
  t.same(observed.releases.map(({ lost }) => lost), [false, true, false, false], 'lost only where the store said so')
  await app.close()
})

test('a lease that arrived before anyone listened: its release is not published', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let observed: ReturnType<typeof observeLocks> | undefined
  app.put('/x', { concurrency: { lock: true } }, async () => {
    observed = observeLocks()
    return 'ok'
  })
  t.equal((await app.inject({ method: 'PUT', url: '/x' })).statusCode, 200)
  t.teardown(() => observed?.stop())
  t.same(observed!.releases, [], 'no heldMs to give')
  await app.close()
})

test('a 503 for a lock timeout or an unavailable store: one warn line without a stack, and the error traced', async (t) => {
  const observed = observeLocks()
  t.teardown(observed.stop)
  const { lines, logger } = logLines()
  const app = Fastify({ logger })
  const memory = new MemoryLockStore()
  let failure: 'none' | 'rejects' | 'throws' | 'not an error' = 'none'
  const down = new LockUnavailableError('the Redis connection is reconnecting')
  const store: LockStore = {
    acquire (key, timeout) {
      if (failure === 'rejects') return Promise.reject(down)
      if (failure === 'throws') throw new Error('not connected')
      if (failure === 'not an error') return Promise.reject('gone') // eslint-disable-line prefer-promise-reject-errors
      return memory.acquire(key, timeout)
    }
  }
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 30 })
  app.put('/items/:id', { concurrency: { lock: true } }, async () => {
    await sleep(100)
    return 'ok'
  })
  const [held, timedOut] = await Promise.all([
    app.inject({ method: 'PUT', url: '/items/1' }),
    sleep(5).then(() => app.inject({ method: 'PUT', url: '/items/1' }))
  ])
  t.equal(held.statusCode, 200)
  t.equal(timedOut.statusCode, 503)
  t.equal(timedOut.json().code, 'FST_PRECONDITION_LOCK_TIMEOUT')
  failure = 'rejects'
  t.equal((await app.inject({ method: 'PUT', url: '/items/2' })).json().code, 'FST_PRECONDITION_LOCK_UNAVAILABLE')
  failure = 'throws'
  t.equal((await app.inject({ method: 'PUT', url: '/items/3' })).json().code, 'FST_PRECONDITION_LOCK_UNAVAILABLE')
  failure = 'not an error'
  t.equal((await app.inject({ method: 'PUT', url: '/items/4' })).json().code, 'FST_PRECONDITION_LOCK_UNAVAILABLE')
  const logged = lines.filter((line) => String(line.msg).startsWith('fastify-precondition:'))
  t.same(logged.map(({ level, code, key, route }) => ({ level, code, key, route })), [
    { level: 40, code: 'FST_PRECONDITION_LOCK_TIMEOUT', key: '/items/:id\nid=1:1', route: 'PUT /items/:id' },
    { level: 40, code: 'FST_PRECONDITION_LOCK_UNAVAILABLE', key: '/items/:id\nid=1:2', route: 'PUT /items/:id' },
    { level: 40, code: 'FST_PRECONDITION_LOCK_UNAVAILABLE', key: '/items/:id\nid=1:3', route: 'PUT /items/:id' },
    { level: 40, code: 'FST_PRECONDITION_LOCK_UNAVAILABLE', key: '/items/:id\nid=1:4', route: 'PUT /items/:id' }
  ], 'once per 503, at warn')
  t.same(logged.map(({ reason }) => reason), ['Timed out after 30 ms waiting for the lock on "/items/:id\nid=1:1"', down.message, 'not connected', 'gone'], 'with the reason')
  t.ok(logged.every((line) => line.err === undefined && !JSON.stringify(line).includes('    at ')), 'and no error object, no stack')
  t.match(String(logged[0].msg), /stayed held past lockTimeout/)
  t.match(String(logged[1].msg), /lock store failed/)
  const errors = observed.events.filter(({ name }) => name === 'error')
  t.equal(errors.length, 4, 'each failure published on the error channel')
  t.ok(errors[0].error instanceof LockTimeoutError)
  t.equal(errors[1].error, down)
  t.match(errors[2].error, { message: 'not connected' })
  await app.close()
})
