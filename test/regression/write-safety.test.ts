// Each finding of the hostile-client review of the write path, over real sockets: URL spellings,
// clients that leave at every step, HTTP/2 stream resets, validators that throw or return
// nonsense, stalled bodies, auth in later hooks, 304 headers. Each failed on 491e9ec.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2'
import { test, type Test } from 'tap'
import fastifyPrecondition, { MemoryLockStore } from '../../lib/index.js'
import { partialRequest, send, sleep, watchRejections } from '../helpers/http.js'

interface Resource {
  version: number
  /** Handlers running right now, and the most that ever ran at once. */
  active: number
  maxActive: number
  /** Handler runs, 2xx answers. */
  runs: number
}

/**
 * A resource at /items/:id with a version that a slow handler increments: a lost update shows as
 * two handlers at once, or fewer increments than 2xx answers.
 */
async function versionedApp (t: Test, options: {
  server?: FastifyServerOptions
  validatorsDelay?: number
  handlerDelay?: number
  preHandler?: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
  stage?: 'onRequest' | 'preHandler'
  lockTimeout?: number
} = {}) {
  const app = Fastify(options.server ?? {}) as unknown as FastifyInstance
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: options.lockTimeout ?? 2000 })
  const resource: Resource = { version: 1, active: 0, maxActive: 0, runs: 0 }
  const validators = async () => {
    if (options.validatorsDelay !== undefined) await sleep(options.validatorsDelay)
    return { etag: `"v${resource.version}"` }
  }
  app.put('/items/:id', {
    concurrency: { validators, stage: options.stage },
    ...(options.preHandler === undefined ? {} : { preHandler: options.preHandler })
  }, async (request) => {
    resource.runs++
    resource.active++
    resource.maxActive = Math.max(resource.maxActive, resource.active)
    const read = resource.version
    await sleep(options.handlerDelay ?? 20)
    resource.version = read + 1
    resource.active--
    return { version: resource.version, token: request.lock?.token }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, store, resource, port: (app.server.address() as { port: number }).port }
}

const spellings: Array<[string, FastifyServerOptions, string[]]> = [
  ['percent-encoded digits (default router)', {}, ['/items/1', '/items/%31']],
  ['ignoreTrailingSlash', { routerOptions: { ignoreTrailingSlash: true } }, ['/items/1', '/items/1/']],
  ['caseSensitive: false', { routerOptions: { caseSensitive: false } }, ['/items/1', '/ITEMS/1', '/Items/1']],
  ['ignoreDuplicateSlashes', { routerOptions: { ignoreDuplicateSlashes: true } }, ['/items/1', '//items//1', '/items//1']]
]

for (const [name, server, paths] of spellings) {
  test(`one resource spelled several ways shares one lock: ${name}`, async (t) => {
    const { resource, port } = await versionedApp(t, { server })
    const writes = await Promise.all(Array.from({ length: 12 }, (_, i) =>
      send(port, { method: 'PUT', path: paths[i % paths.length], headers: { 'if-match': '"v1"' }, body: {} })))
    const statuses = writes.map((res) => res.status)
    const ok = statuses.filter((status) => status === 200).length
    t.equal(ok, 1, `exactly one 2xx (${statuses.join(' ')})`)
    t.equal(statuses.filter((status) => status === 412).length, writes.length - 1, 'the others 412')
    t.equal(resource.version, 1 + ok, 'the version grew once per 2xx')
    t.equal(resource.maxActive, 1, 'never two handlers at once')
  })
}

test('the default key is the route and its decoded params; a route\'s own key wins', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const keys: Array<string | undefined> = []
  const handler = async (request: FastifyRequest) => {
    keys.push(request.lock?.key)
    return 'ok'
  }
  app.register(async (scoped) => {
    scoped.put('/a/:x/b/:y', { concurrency: { lock: true } }, handler)
    scoped.put('/own/:id', { concurrency: { lock: true, key: (request) => `item:${(request.params as { id: string }).id}` } }, handler)
    scoped.put('/static', { concurrency: { lock: true } }, handler)
  }, { prefix: '/v1' })
  await app.inject({ method: 'PUT', url: '/v1/a/1%7C2/b/3' })
  await app.inject({ method: 'PUT', url: '/v1/a/1/b/2%7C3' })
  await app.inject({ method: 'PUT', url: '/v1/own/7' })
  await app.inject({ method: 'PUT', url: '/v1/static' })
  t.equal(keys[0], '/v1/a/:x/b/:y\nx=3:1|2\ny=1:3')
  t.equal(keys[1], '/v1/a/:x/b/:y\nx=1:1\ny=3:2|3', 'a separator inside a value cannot pass for another split')
  t.not(keys[0], keys[1])
  t.equal(keys[2], 'item:7')
  t.equal(keys[3], '/v1/static')
})

test('a client that leaves while async validators run: its handler never runs, the next write is not blocked', async (t) => {
  const { resource, store, port } = await versionedApp(t, { validatorsDelay: 80 })
  const socket = await partialRequest(port, 'PUT', '/items/1', { 'if-match': '"v1"' }, 2, '{}')
  await sleep(30)
  t.equal(store.size, 1, 'the departing write holds the lock while its validators run')
  socket.destroy()
  const next = await send(port, { method: 'PUT', path: '/items/1', headers: { 'if-match': '"v1"' }, body: {} })
  t.equal(next.status, 200, 'the next write with the same tag wins')
  await sleep(100)
  t.equal(resource.runs, 1, 'only one handler ran')
  t.equal(resource.version, 2)
  t.equal(resource.maxActive, 1)
  t.equal(store.size, 0)
})

test('a client that leaves while waiting for the lock, or during its handler: one writer at a time, lock released', async (t) => {
  const { resource, store, port } = await versionedApp(t, { handlerDelay: 80 })
  const first = send(port, { method: 'PUT', path: '/items/1', headers: { 'if-match': '"v1"' }, body: {} })
  await sleep(20)
  const waiter = await partialRequest(port, 'PUT', '/items/1', { 'if-match': '"v1"' }, 2, '{}')
  await sleep(20)
  waiter.destroy()
  t.equal((await first).status, 200)
  await sleep(20)
  t.equal(store.size, 0, 'the departed waiter left no lock behind')
  const during = await partialRequest(port, 'PUT', '/items/1', { 'if-match': '"v2"' }, 2, '{}')
  await sleep(30)
  during.destroy()
  const next = await send(port, { method: 'PUT', path: '/items/1', headers: { 'if-match': '"v3"' }, body: {} })
  t.equal(next.status, 200, 'the next write waited for the abandoned handler, then saw its version')
  t.equal(resource.runs, 3)
  t.equal(resource.maxActive, 1)
  t.equal(store.size, 0)
})

function h2put (session: ClientHttp2Session, path: string, etag: string) {
  const stream = session.request({ ':method': 'PUT', ':path': path, 'if-match': etag, 'content-type': 'application/json' })
  stream.end('{}')
  const response = new Promise<{ status: number, body: string }>((resolve) => {
    let status = 0
    let body = ''
    stream.on('response', (headers) => { status = headers[':status'] as number })
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => { body += chunk })
    stream.on('close', () => resolve({ status, body }))
    stream.on('error', () => {})
  })
  return { stream, response }
}

test('HTTP/2: a stream reset at each step of a write leaves no lock held and runs no unguarded handler', async (t) => {
  const app = Fastify({ http2: true })
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 500 })
  const resource = { version: 1, runs: 0, active: 0, maxActive: 0 }
  const delays = { auth: 0, validators: 0, handler: 10 }
  app.put('/items/:id', {
    preHandler: async () => { await sleep(delays.auth) },
    concurrency: {
      validators: async () => {
        await sleep(delays.validators)
        return { etag: `"v${resource.version}"` }
      }
    }
  }, async () => {
    resource.runs++
    resource.active++
    resource.maxActive = Math.max(resource.maxActive, resource.active)
    const read = resource.version
    await sleep(delays.handler)
    resource.version = read + 1
    resource.active--
    return { version: resource.version }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const session = http2Connect(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`)
  session.on('error', () => {})
  t.teardown(() => session.close())
  const etag = () => `"v${resource.version}"`

  for (const step of ['auth', 'validators', 'handler'] as const) {
    delays.auth = step === 'auth' ? 60 : 0
    delays.validators = step === 'validators' ? 60 : 0
    delays.handler = step === 'handler' ? 60 : 10
    const runsBefore = resource.runs
    const { stream, response } = h2put(session, '/items/1', etag())
    await sleep(25)
    stream.close(h2.NGHTTP2_CANCEL)
    await response
    await sleep(80)
    t.equal(store.size, 0, `${step}: no lock held after the reset`)
    t.equal(resource.runs, runsBefore + (step === 'handler' ? 1 : 0), `${step}: a handler ran only if it had started`)
    delays.auth = delays.validators = 0
    delays.handler = 10
    const next = h2put(session, '/items/1', etag())
    t.equal((await next.response).status, 200, `${step}: the next write goes through`)
  }
  // Reset while waiting for the lock another stream holds.
  delays.handler = 80
  const holder = h2put(session, '/items/1', etag())
  await sleep(20)
  const waiter = h2put(session, '/items/1', etag())
  await sleep(20)
  waiter.stream.close(h2.NGHTTP2_CANCEL)
  t.equal((await holder.response).status, 200)
  await waiter.response
  await sleep(20)
  t.equal(store.size, 0, 'waiting: no lock held after the reset')
  t.equal(resource.maxActive, 1, 'never two handlers at once')
})

test('validators that return values no header can carry: 500 naming the route, never a crash or a bad header', async (t) => {
  const rejections = watchRejections(t)
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let result: unknown = null
  const validators = async () => result as never
  app.get('/r', { concurrency: { validators } }, async () => 'read')
  app.put('/w', { concurrency: { validators } }, async () => 'written')
  app.put('/sync', { concurrency: { validators: () => result as never } }, async () => 'written')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const bad: Array<[string, unknown]> = [
    ['a tag with a space', { etag: 'v1 2024' }],
    ['a tag with quotes inside', { etag: 'a"b"' }],
    ['a number as tag', { etag: 123 }],
    ['a tag beyond Latin-1', { etag: '"v€"' }],
    ['an invalid Date', { lastModified: new Date('nope') }],
    ['a string that is no date', { lastModified: 'yesterday' }],
    ['an infinite number', { lastModified: Infinity }],
    ['an object as tag', { etag: { v: 1 } }],
    ['null as tag', { etag: null }],
    ['a boolean as date', { lastModified: true }],
    ['nothing', undefined],
    ['an array', [{ etag: '"a"' }]],
    ['a string', 'v1']
  ]
  for (const [what, value] of bad) {
    result = value
    for (const [method, path, headers] of [['GET', '/r', {}], ['PUT', '/w', { 'if-match': '*' }], ['PUT', '/sync', { 'if-match': '*' }]] as const) {
      const res = await send(port, { method, path, headers, body: method === 'PUT' ? {} : undefined })
      t.equal(res.status, 500, `${what}: ${method} ${path} is a 500`)
      t.equal(res.headers.etag, undefined, `${what}: no ETag sent`)
      t.equal(res.headers['last-modified'], undefined, `${what}: no Last-Modified sent`)
      t.match(res.json().message, new RegExp(`${method} ${path}: concurrency.validators returned`), `${what}: the message names the route`)
    }
  }
  const good: Array<[unknown, string | undefined, string | undefined]> = [
    [{ etag: 'v1' }, '"v1"', undefined],
    [{ etag: 'W/"v1"' }, 'W/"v1"', undefined],
    [{ etag: '"a,b"', lastModified: '2026-01-02T03:04:05.678Z' }, '"a,b"', 'Fri, 02 Jan 2026 03:04:05 GMT'],
    [{ lastModified: 'Fri, 02 Jan 2026 03:04:05 GMT' }, undefined, 'Fri, 02 Jan 2026 03:04:05 GMT'],
    [{ lastModified: '2026-01-02' }, undefined, 'Fri, 02 Jan 2026 00:00:00 GMT'],
    [{ lastModified: Date.UTC(2026, 0, 2, 3, 4, 5) }, undefined, 'Fri, 02 Jan 2026 03:04:05 GMT']
  ]
  for (const [value, etag, lastModified] of good) {
    result = value
    const res = await send(port, { path: '/r' })
    t.equal(res.status, 200, `${JSON.stringify(value)} is accepted`)
    t.equal(res.headers.etag, etag)
    t.equal(res.headers['last-modified'], lastModified)
  }
  result = { etag: '"v1"', lastModified: '2026-01-02T03:04:05Z' }
  const notModified = await send(port, { path: '/r', headers: { 'if-modified-since': 'Fri, 02 Jan 2026 03:04:05 GMT' } })
  t.equal(notModified.status, 304, 'an ISO date string is compared as the date it names')
  t.same(rejections, [], 'no unhandled rejection')
})

test('a handler that sets an invalid header, with async validators after the write: a 500, not a crash', async (t) => {
  const rejections = watchRejections(t)
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/w', { concurrency: { validators: async () => ({ etag: '"a"' }) } }, async (_request, reply) => {
    reply.header('x-bad', 'line\nbreak')
    return 'written'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port
  const res = await send(port, { method: 'PUT', path: '/w', headers: { 'if-match': '"a"' }, body: {} })
  t.equal(res.status, 500)
  const again = await send(port, { method: 'PUT', path: '/w', headers: { 'if-match': '"a"' }, body: {} })
  t.equal(again.status, 500, 'the server still answers, and the lock was given back')
  t.same(rejections, [], 'no unhandled rejection')
})

test('If-None-Match with * among tags on a write is a 412, on one line or two', async (t) => {
  const { resource, port } = await versionedApp(t)
  for (const headers of [{ 'if-none-match': '*, "x"' }, { 'if-none-match': '"x", *' }]) {
    const res = await send(port, { method: 'PUT', path: '/items/1', headers, body: {} })
    t.equal(res.status, 412, JSON.stringify(headers))
    t.equal(res.json().code, 'FST_PRECONDITION_FAILED')
  }
  const socket = await partialRequest(port, 'PUT', '/items/1', { 'if-none-match': '*\r\nif-none-match: "x"' }, 2, '{}')
  const raw = await new Promise<string>((resolve) => {
    let text = ''
    socket.on('data', (chunk: Buffer) => { text += chunk.toString() })
    socket.on('end', () => resolve(text))
    setTimeout(() => { socket.destroy(); resolve(text) }, 500)
  })
  t.match(raw, /^HTTP\/1\.1 412 /, 'two header lines')
  t.equal(resource.runs, 0, 'no write ran')
})

test('a key() that throws is a 500 logged as the route\'s error, not a 503 that invites retries', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/k', { concurrency: { lock: true, key: () => { throw new Error('no tenant on this request') } } }, async () => 'ok')
  const res = await app.inject({ method: 'PUT', url: '/k' })
  t.equal(res.statusCode, 500)
  t.equal(res.headers['retry-after'], undefined)
  t.match(res.json().message, /no tenant/)
})

test('no lock while the body uploads or before the route\'s own hooks, whatever the stage', async (t) => {
  for (const stage of ['preHandler', 'onRequest'] as const) {
    let authorised = 0
    const { store, port, resource } = await versionedApp(t, {
      stage,
      preHandler: async (request, reply) => {
        await sleep(30)
        if (request.headers.authorization !== 'Bearer ok') return reply.code(401).send({ message: 'who are you?' })
        authorised++
      }
    })
    const stalled = await partialRequest(port, 'PUT', '/items/1', { 'if-match': '"v1"', authorization: 'Bearer ok' }, 1000, '{')
    await sleep(40)
    t.equal(store.size, 0, `${stage}: a stalled body holds no lock`)
    const unauthorised = send(port, { method: 'PUT', path: '/items/1', headers: { 'if-match': `"v${resource.version}"` }, body: {} })
    await sleep(15)
    t.equal(store.size, 0, `${stage}: a request in its auth hook holds no lock`)
    t.equal((await unauthorised).status, 401)
    const ok = await send(port, { method: 'PUT', path: '/items/1', headers: { 'if-match': `"v${resource.version}"`, authorization: 'Bearer ok' }, body: {} })
    t.equal(ok.status, 200, `${stage}: another client writes while the body stalls`)
    t.equal(authorised, 1)
    stalled.destroy()
  }
})

test('auth in the route\'s onRequest runs before the early check of stage onRequest; the default stage checks after preHandler auth', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let reads = 0
  const validators = () => {
    reads++
    return { etag: '"v1"' }
  }
  const auth = async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.headers.authorization !== 'Bearer ok') return reply.code(401).send({ message: 'who are you?' })
  }
  app.put('/early/:id', { onRequest: auth, concurrency: { validators, stage: 'onRequest' } }, async () => 'ok')
  app.put('/late/:id', { preHandler: auth, concurrency: { validators } }, async () => 'ok')
  app.get('/late/:id', { preHandler: auth, concurrency: { validators } }, async () => 'ok')
  for (const [method, url, headers] of [
    ['PUT', '/early/1', { 'if-match': '"stale"' }],
    ['PUT', '/late/1', { 'if-match': '"stale"' }],
    ['GET', '/late/1', { 'if-none-match': '"v1"' }]
  ] as const) {
    const res = await app.inject({ method, url, headers })
    t.equal(res.statusCode, 401, `${method} ${url}: unauthenticated gets 401, not 412 or 304`)
    t.equal(res.headers.etag, undefined, `${method} ${url}: no ETag revealed`)
  }
  t.equal(reads, 0, 'validators never ran for an unauthenticated client')
})

test('a 304 carries what a 200 would: route headers and headers set by earlier hooks', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id) })
  app.get('/items/:id', {
    concurrency: {
      validators: () => ({ etag: '"v1"' }),
      headers: { 'cache-control': 'private, max-age=60', vary: 'Authorization' }
    }
  }, async () => ({ id: 1 }))
  app.get('/things/:id', {
    concurrency: {
      validators: () => ({ etag: '"t1"' }),
      headers: (request) => ({ 'content-location': `/things/${(request.params as { id: string }).id}`, expires: 'Thu, 01 Jan 2026 00:00:00 GMT' })
    }
  }, async (_request, reply) => {
    reply.header('cache-control', 'no-cache')
    return { id: 1 }
  })
  const ok = await app.inject({ url: '/items/1' })
  const notModified = await app.inject({ url: '/items/1', headers: { 'if-none-match': '"v1"' } })
  t.equal(notModified.statusCode, 304)
  for (const name of ['cache-control', 'vary', 'etag', 'x-request-id']) {
    t.ok(ok.headers[name] !== undefined, `200 has ${name}`)
    t.ok(notModified.headers[name] !== undefined, `304 has ${name}`)
  }
  t.equal(notModified.headers['cache-control'], 'private, max-age=60')
  const thing = await app.inject({ url: '/things/7' })
  t.equal(thing.headers['cache-control'], 'no-cache', 'a header the handler set wins')
  t.equal(thing.headers['content-location'], '/things/7')
  const thing304 = await app.inject({ url: '/things/7', headers: { 'if-none-match': '"t1"' } })
  t.equal(thing304.statusCode, 304)
  t.equal(thing304.headers['content-location'], '/things/7')
  t.equal(thing304.headers.expires, 'Thu, 01 Jan 2026 00:00:00 GMT')
})
