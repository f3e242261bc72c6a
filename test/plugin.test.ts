// The plugin through Fastify: every response it gives, and that it gives it before the handler.
import { test } from 'tap'
import Fastify from 'fastify'
import fastifyPrecondition, { ProblemCode } from '../lib/index.js'
import { itemsApp } from './helpers/app.js'

const PROBLEM = 'application/problem+json; charset=utf-8'

test('GET 200 carries ETag and Last-Modified from validators', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'GET', url: '/items/1' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.etag, '"v1"')
  t.equal(res.headers['last-modified'], 'Thu, 01 Jan 2026 10:00:00 GMT')
  t.equal(calls.handler, 1)
})

test('GET of a missing item: the handler answers 404, with no validator headers', async (t) => {
  const { app } = await itemsApp()
  const res = await app.inject({ method: 'GET', url: '/items/2', headers: { 'if-none-match': '*' } })
  t.equal(res.statusCode, 404, 'preconditions are ignored when no representation exists (§13.2.1)')
  t.notOk(res.headers.etag)
  t.notOk(res.headers['last-modified'])
})

test('If-None-Match with the current tag: 304 before the handler, with ETag and Last-Modified', async (t) => {
  const { app, calls } = await itemsApp()
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await app.inject({ method, url: '/items/1', headers: { 'if-none-match': 'W/"v1", "other"' } })
    t.equal(res.statusCode, 304, method)
    t.equal(res.body, '')
    t.equal(res.headers.etag, '"v1"')
    t.equal(res.headers['last-modified'], 'Thu, 01 Jan 2026 10:00:00 GMT')
  }
  t.equal(calls.handler, 0)
})

test('If-Modified-Since at the Last-Modified second: 304 (sub-second part ignored)', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'GET', url: '/items/1', headers: { 'if-modified-since': 'Thu, 01 Jan 2026 10:00:00 GMT' } })
  t.equal(res.statusCode, 304)
  const older = await app.inject({ method: 'GET', url: '/items/1', headers: { 'if-modified-since': 'Thu, 01 Jan 2026 09:59:59 GMT' } })
  t.equal(older.statusCode, 200)
  t.equal(calls.handler, 1)
})

test('automatic HEAD route behaves like its GET and runs validators once', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'HEAD', url: '/items/1' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.etag, '"v1"')
  t.equal(calls.validators, 1)
})

test('a write without a required header: 428 problem, before the handler', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'PUT', url: '/items/1?x=1', payload: { name: 'x' } })
  t.equal(res.statusCode, 428)
  t.equal(res.headers['content-type'], PROBLEM)
  const body = res.json()
  t.same(Object.keys(body), ['type', 'title', 'status', 'detail', 'instance', 'code', 'required'])
  t.equal(body.type, 'about:blank')
  t.equal(body.title, 'Precondition Required')
  t.equal(body.status, 428)
  t.match(body.detail, /Send If-Match with the ETag that a GET of this resource returned, or If-None-Match: \* to create/)
  t.equal(body.instance, '/items/1', 'instance is the path without the query')
  t.equal(body.code, ProblemCode.PRECONDITION_REQUIRED)
  t.same(body.required, ['If-Match', 'If-None-Match'])
  t.equal(calls.handler, 0)
  t.equal(calls.validators, 0)
})

test('428 is decided before the body is read: an unparsable body still gets 428', async (t) => {
  const { app } = await itemsApp()
  const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'content-type': 'application/json' }, payload: '{not json' })
  t.equal(res.statusCode, 428)
})

test('an invalid If-Unmodified-Since does not satisfy require; a valid one does', async (t) => {
  const { app } = await itemsApp()
  const bad = await app.inject({ method: 'PATCH', url: '/items/1', headers: { 'if-unmodified-since': 'yesterday' }, payload: { name: 'x' } })
  t.equal(bad.statusCode, 428)
  t.same(bad.json().required, ['If-Match', 'If-Unmodified-Since'])
  const good = await app.inject({ method: 'PATCH', url: '/items/1', headers: { 'if-unmodified-since': 'Thu, 01 Jan 2026 10:00:00 GMT' }, payload: { name: 'x' } })
  t.equal(good.statusCode, 200)
  const stale = await app.inject({ method: 'PATCH', url: '/items/1', headers: { 'if-unmodified-since': 'Thu, 01 Jan 2026 10:00:00 GMT' }, payload: { name: 'y' } })
  t.equal(stale.statusCode, 412, 'the first PATCH moved Last-Modified past the date')
  t.match(stale.json().detail, /If-Unmodified-Since/)
})

test('safe methods are never refused with 428', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.route({ method: ['GET', 'POST', 'OPTIONS'], url: '/r', concurrency: { require: 'if-match' }, handler: async () => 'ok' })
  t.equal((await app.inject({ method: 'GET', url: '/r' })).statusCode, 200)
  t.equal((await app.inject({ method: 'OPTIONS', url: '/r' })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/r' })).statusCode, 428)
})

test('a stale If-Match: 412 problem with the current ETag, before the handler', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v0"' }, payload: { name: 'x' } })
  t.equal(res.statusCode, 412)
  t.equal(res.headers['content-type'], PROBLEM)
  t.equal(res.headers.etag, '"v1"')
  const body = res.json()
  t.same(Object.keys(body), ['type', 'title', 'status', 'detail', 'instance', 'code', 'etag'])
  t.equal(body.title, 'Precondition Failed')
  t.equal(body.status, 412)
  t.match(body.detail, /If-Match does not match/)
  t.equal(body.instance, '/items/1')
  t.equal(body.code, ProblemCode.PRECONDITION_FAILED)
  t.equal(body.etag, '"v1"')
  t.equal(calls.handler, 0)
})

test('a weak tag in If-Match: 412 that says weak tags never satisfy If-Match', async (t) => {
  const { app } = await itemsApp()
  const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': 'W/"v1"' }, payload: { name: 'x' } })
  t.equal(res.statusCode, 412)
  t.match(res.json().detail, /weak entity-tag/)
})

test('a garbage If-Match: 412, never an unguarded write', async (t) => {
  const { app, calls, items } = await itemsApp()
  for (const value of ['', 'v1', 'garbage, "unterminated', ',,,']) {
    const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': value }, payload: { name: 'x' } })
    t.equal(res.statusCode, 412, JSON.stringify(value))
    t.match(res.json().detail, /no valid entity-tag/)
  }
  t.equal(calls.handler, 0)
  t.equal(items.get('1')?.name, 'one')
})

test('a matching If-Match: the write runs, and the response carries the new ETag', async (t) => {
  const { app, calls } = await itemsApp()
  const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' }, payload: { name: 'x' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.etag, '"v2"', 'validators are read again after the write')
  t.equal(calls.handler, 1)
  const again = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' }, payload: { name: 'y' } })
  t.equal(again.statusCode, 412, 'the tag the first write used is stale now')
  t.equal(again.json().etag, '"v2"')
})

test('PUT on a missing resource: If-None-Match: * creates, If-Match fails, If-None-Match: * on an existing one fails', async (t) => {
  const { app } = await itemsApp()
  const created = await app.inject({ method: 'PUT', url: '/items/9', headers: { 'if-none-match': '*' }, payload: { name: 'new' } })
  t.equal(created.statusCode, 201)
  t.ok(created.headers.etag)
  const missing = await app.inject({ method: 'PUT', url: '/items/8', headers: { 'if-match': '*' }, payload: { name: 'x' } })
  t.equal(missing.statusCode, 412)
  t.notOk(missing.headers.etag)
  t.notOk('etag' in missing.json())
  t.match(missing.json().detail, /has none/)
  const exists = await app.inject({ method: 'PUT', url: '/items/9', headers: { 'if-none-match': '*' }, payload: { name: 'again' } })
  t.equal(exists.statusCode, 412)
  t.match(exists.json().detail, /If-None-Match/)
})

test('DELETE of a missing resource ignores preconditions: the handler answers 404', async (t) => {
  const { app } = await itemsApp()
  const res = await app.inject({ method: 'DELETE', url: '/items/7', headers: { 'if-match': '"v1"' } })
  t.equal(res.statusCode, 404)
  t.notOk(res.headers.etag)
  const gone = await app.inject({ method: 'DELETE', url: '/items/1', headers: { 'if-match': '"v1"' } })
  t.equal(gone.statusCode, 204)
  t.notOk(gone.headers.etag, 'a deleted resource has no validators to send')
})

test('exposeEtag: false keeps the current tag out of 412s', async (t) => {
  const { app } = await itemsApp({ exposeEtag: false })
  const res = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v0"' }, payload: { name: 'x' } })
  t.equal(res.statusCode, 412)
  t.notOk(res.headers.etag)
  t.notOk('etag' in res.json())
})

test('neither a route 4xx schema nor setErrorHandler changes the problem bodies', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let errorHandlerCalls = 0
  app.setErrorHandler((error, _request, reply) => {
    errorHandlerCalls++
    reply.code(500).send({ rewritten: true, message: (error as Error).message })
  })
  const narrow = { type: 'object', properties: { message: { type: 'string' } } }
  app.put('/r', {
    schema: { response: { '4xx': narrow, 412: narrow, 428: narrow } },
    concurrency: { require: 'if-match', validators: () => ({ etag: '"a"' }) }
  }, async () => ({ message: 'ok' }))
  const required = await app.inject({ method: 'PUT', url: '/r' })
  t.equal(required.statusCode, 428)
  t.equal(required.json().code, ProblemCode.PRECONDITION_REQUIRED)
  t.same(required.json().required, ['If-Match'])
  const failed = await app.inject({ method: 'PUT', url: '/r', headers: { 'if-match': '"b"' } })
  t.equal(failed.statusCode, 412)
  t.equal(failed.json().etag, '"a"')
  t.equal(failed.json().status, 412)
  t.equal(errorHandlerCalls, 0)
})

test('the handler\'s own ETag or Last-Modified wins, and 4xx/5xx carry none', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const validators = () => ({ etag: 'bare', lastModified: Date.UTC(2026, 0, 2) })
  app.get('/own', { concurrency: { validators } }, async (_request, reply) => reply.header('etag', '"mine"').send('x'))
  app.get('/own-date', { concurrency: { validators } }, async (_request, reply) => reply.header('last-modified', 'Fri, 02 Jan 2026 00:00:00 GMT').send('x'))
  app.get('/bare', { concurrency: { validators } }, async () => 'x')
  app.get('/fail', { concurrency: { validators } }, async () => { throw new Error('boom') })
  app.get('/teapot', { concurrency: { validators } }, async (_request, reply) => reply.code(418).send('x'))
  app.get('/moved', { concurrency: { validators } }, async (_request, reply) => reply.redirect('/bare'))
  t.equal((await app.inject('/own')).headers.etag, '"mine"')
  const ownDate = await app.inject('/own-date')
  t.equal(ownDate.headers.etag, '"bare"', 'each header is the handler\'s own only when it set it')
  t.equal(ownDate.headers['last-modified'], 'Fri, 02 Jan 2026 00:00:00 GMT')
  const bare = await app.inject('/bare')
  t.equal(bare.headers.etag, '"bare"', 'a bare validator tag is quoted')
  t.equal(bare.headers['last-modified'], 'Fri, 02 Jan 2026 00:00:00 GMT', 'a numeric lastModified is accepted')
  for (const url of ['/fail', '/teapot', '/moved']) {
    const res = await app.inject(url)
    t.notOk(res.headers.etag, url)
    t.notOk(res.headers['last-modified'], url)
  }
})

test('a write whose handler set both validators keeps them, and its validators are not read again', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let reads = 0
  const validators = () => {
    reads++
    return { etag: '"v2"', lastModified: Date.UTC(2026, 0, 2) }
  }
  const both = (reply: { header: (name: string, value: string) => unknown }) => {
    reply.header('etag', '"mine"')
    reply.header('last-modified', 'Sat, 03 Jan 2026 00:00:00 GMT')
  }
  // A value to serialize gets its validators in preSerialization, a string in onSend.
  app.put('/object', { concurrency: { validators, lock: false } }, async (_request, reply) => { both(reply); return { saved: true } })
  app.put('/string', { concurrency: { validators, lock: false } }, async (_request, reply) => { both(reply); return 'saved' })
  app.put('/etag-only', { concurrency: { validators, lock: false } }, async (_request, reply) => { reply.header('etag', '"mine"'); return 'saved' })
  for (const url of ['/object', '/string']) {
    reads = 0
    const res = await app.inject({ method: 'PUT', url, headers: { 'if-match': '"v2"' } })
    t.equal(res.statusCode, 200, url)
    t.equal(res.headers.etag, '"mine"', url)
    t.equal(res.headers['last-modified'], 'Sat, 03 Jan 2026 00:00:00 GMT', url)
    t.equal(reads, 1, `${url}: read for the check alone`)
  }
  reads = 0
  const one = await app.inject({ method: 'PUT', url: '/etag-only', headers: { 'if-match': '"v2"' } })
  t.equal(one.headers.etag, '"mine"', 'the handler\'s ETag stays')
  t.equal(one.headers['last-modified'], 'Fri, 02 Jan 2026 00:00:00 GMT', 'and Last-Modified comes from the validators read after the write')
  t.equal(reads, 2)
})

test('async validators, and validators that throw or return nonsense', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/async', { concurrency: { validators: async () => ({ etag: '"a"' }) } }, async () => 'ok')
  app.put('/throws', { concurrency: { validators: () => { throw new Error('db down') } } }, async () => 'ok')
  app.put('/rejects', { concurrency: { validators: async () => { throw new Error('db down') } } }, async () => 'ok')
  app.put('/nonsense', { concurrency: { validators: (() => 'abc') as never } }, async () => 'ok')
  const ok = await app.inject({ method: 'PUT', url: '/async', headers: { 'if-match': '"a"' } })
  t.equal(ok.statusCode, 200)
  t.equal(ok.headers.etag, '"a"', 'async validators are read again after the write')
  t.equal((await app.inject({ method: 'PUT', url: '/async', headers: { 'if-match': '"b"' } })).statusCode, 412)
  t.equal((await app.inject({ method: 'PUT', url: '/throws', headers: { 'if-match': '"a"' } })).statusCode, 500)
  t.equal((await app.inject({ method: 'PUT', url: '/rejects', headers: { 'if-match': '"a"' } })).statusCode, 500)
  const nonsense = await app.inject({ method: 'PUT', url: '/nonsense', headers: { 'if-match': '"a"' } })
  t.equal(nonsense.statusCode, 500)
  t.match(nonsense.json().message, /PUT \/nonsense: concurrency.validators returned .*"abc"; expected \{ etag\?, lastModified\? \} or null/)
})

test('validators that fail after the write cost the response its ETag, not its status', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let reads = 0
  app.put('/sync', { concurrency: { validators: () => { if (++reads > 1) throw new Error('gone'); return { etag: '"a"' } } } }, async () => 'ok')
  let asyncReads = 0
  app.put('/async', { concurrency: { validators: async () => { if (++asyncReads > 1) throw new Error('gone'); return { etag: '"a"' } } } }, async () => 'ok')
  for (const url of ['/sync', '/async']) {
    const res = await app.inject({ method: 'PUT', url, headers: { 'if-match': '"a"' } })
    t.equal(res.statusCode, 200, url)
    t.notOk(res.headers.etag, url)
  }
})

test('stage onRequest: a stale write is refused before its body is parsed', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let parsed = 0
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    parsed++
    done(null, JSON.parse(body as string))
  })
  app.put('/early', { concurrency: { require: 'if-match', validators: () => ({ etag: '"a"' }), stage: 'onRequest' } }, async (request) => request.body)
  app.put('/late', { concurrency: { require: 'if-match', validators: () => ({ etag: '"a"' }) } }, async (request) => request.body)
  const early = await app.inject({ method: 'PUT', url: '/early', headers: { 'if-match': '"b"', 'content-type': 'application/json' }, payload: '{"a":1}' })
  t.equal(early.statusCode, 412)
  t.equal(parsed, 0)
  const late = await app.inject({ method: 'PUT', url: '/late', headers: { 'if-match': '"b"', 'content-type': 'application/json' }, payload: '{"a":1}' })
  t.equal(late.statusCode, 412)
  t.equal(parsed, 1, 'the default stage reads the body first')
  const ok = await app.inject({ method: 'PUT', url: '/early', headers: { 'if-match': '"a"', 'content-type': 'application/json' }, payload: '{"a":1}' })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { a: 1 })
})

test('If-Range that fails drops Range so the handler serves the whole representation', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.get('/file', { concurrency: { validators: () => ({ etag: '"a"', lastModified: Date.UTC(2026, 0, 1) }) } },
    async (request) => ({ range: request.headers.range ?? null }))
  const holds = await app.inject({ url: '/file', headers: { range: 'bytes=0-1', 'if-range': '"a"' } })
  t.same(holds.json(), { range: 'bytes=0-1' })
  const fails = await app.inject({ url: '/file', headers: { range: 'bytes=0-1', 'if-range': '"b"' } })
  t.same(fails.json(), { range: null })
  const date = await app.inject({ url: '/file', headers: { range: 'bytes=0-1', 'if-range': 'Thu, 01 Jan 2026 00:00:00 GMT' } })
  t.same(date.json(), { range: 'bytes=0-1' })
})

test('request.preconditions parses the headers once, on demand', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/cas', async (request) => {
    t.equal(request.preconditions, request.preconditions, 'the parsed value is cached')
    return request.preconditions
  })
  const res = await app.inject({
    method: 'PUT',
    url: '/cas',
    headers: {
      'if-match': '"a", W/"b", bad',
      'if-none-match': '*',
      'if-unmodified-since': 'Thu, 01 Jan 2026 00:00:00 GMT',
      'if-modified-since': 'nonsense',
      'if-range': 'W/"x"'
    }
  })
  t.same(res.json(), {
    ifMatch: ['"a"', 'W/"b"'],
    ifNoneMatch: '*',
    ifModifiedSince: null,
    ifUnmodifiedSince: '2026-01-01T00:00:00.000Z',
    ifRange: { etag: 'W/"x"' }
  })
  const none = await app.inject({ method: 'PUT', url: '/cas' })
  t.same(none.json(), { ifMatch: null, ifNoneMatch: null, ifModifiedSince: null, ifUnmodifiedSince: null, ifRange: null })
})

test('reply.failPrecondition answers 412 the way the plugin does', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/validators', async (_request, reply) => reply.failPrecondition({ etag: '"v7"' }))
  app.put('/string', async (_request, reply) => reply.failPrecondition('v8'))
  app.put('/unknown', async (_request, reply) => reply.failPrecondition())
  const withValidators = await app.inject({ method: 'PUT', url: '/validators' })
  t.equal(withValidators.statusCode, 412)
  t.equal(withValidators.headers['content-type'], PROBLEM)
  t.equal(withValidators.headers.etag, '"v7"')
  t.equal(withValidators.json().etag, '"v7"')
  t.equal(withValidators.json().code, ProblemCode.PRECONDITION_FAILED)
  t.equal((await app.inject({ method: 'PUT', url: '/string' })).json().etag, '"v8"')
  const unknown = await app.inject({ method: 'PUT', url: '/unknown' })
  t.equal(unknown.statusCode, 412)
  t.notOk(unknown.headers.etag)
})

test('routes without a concurrency option are left alone', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/plain', async () => 'ok')
  const res = await app.inject({ method: 'PUT', url: '/plain', headers: { 'if-match': '"nope"' } })
  t.equal(res.statusCode, 200)
  t.notOk(res.headers.etag)
})

test('lock-only routes serialise writes without validators', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let inside = 0
  let most = 0
  app.post('/serial', { concurrency: { lock: true } }, async () => {
    inside++
    most = Math.max(most, inside)
    await new Promise((resolve) => setTimeout(resolve, 5))
    inside--
    return 'ok'
  })
  const results = await Promise.all(Array.from({ length: 5 }, () => app.inject({ method: 'POST', url: '/serial' })))
  t.same(results.map((r) => r.statusCode), [200, 200, 200, 200, 200])
  t.equal(most, 1)
})

test('a headers schema with additionalProperties: false cannot strip If-Match into an unguarded write', async (t) => {
  const app = Fastify({ ajv: { customOptions: { removeAdditional: 'all' } } })
  await app.register(fastifyPrecondition)
  let writes = 0
  app.put('/strict', {
    schema: { headers: { type: 'object', properties: { 'x-tenant': { type: 'string' } }, additionalProperties: false } },
    concurrency: { validators: () => ({ etag: '"a"' }) }
  }, async (request) => {
    writes++
    return { ifMatch: request.preconditions.ifMatch }
  })
  const stale = await app.inject({ method: 'PUT', url: '/strict', headers: { 'if-match': '"old"', 'x-tenant': 't' } })
  t.equal(stale.statusCode, 412)
  t.equal(writes, 0)
  const current = await app.inject({ method: 'PUT', url: '/strict', headers: { 'if-match': '"a"', 'x-tenant': 't' } })
  t.equal(current.statusCode, 200)
  t.same(current.json(), { ifMatch: ['"a"'] }, 'request.preconditions sees the header as sent')
})
