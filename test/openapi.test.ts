// Routes with a policy document it for @fastify/swagger (openapi mode): the precondition headers,
// the 304/412/428/503 answers with the problem-details schema, and ETag/Last-Modified. The
// documentation must not change how Fastify validates requests or serializes replies.
import { test } from 'tap'
import Fastify, { type FastifyInstance, type FastifySchema, type FastifySchemaCompiler } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import SwaggerParser from '@apidevtools/swagger-parser'
import fastifyPrecondition, { ProblemCode, ProblemDetailsSchema, type FastifyPreconditionOptions } from '../lib/index.js'
import { finishDocument } from '../lib/openapi/document.js'

type Json = Record<string, any> // a generated document, walked by path

const PROBLEM = 'application/problem+json'
const validators = () => ({ etag: '"v1"', lastModified: new Date('2026-01-01T00:00:00Z') })
const params = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }

async function documentedApp (options: FastifyPreconditionOptions = {}, swaggerOptions: Json = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifySwagger, {
    openapi: { info: { title: 'test', version: '1.0.0' } },
    // Names shared schemas after their $id, as the README recommends.
    refResolver: { buildLocalReference: (json: Json, _base: unknown, _fragment: unknown, i: number) => json.$id ?? `def-${i}` },
    ...swaggerOptions
  })
  await app.register(fastifyPrecondition, options)
  return app
}

function operation (doc: Json, path: string, method: string): Json {
  const found = doc.paths[path]?.[method]
  if (found === undefined) throw new Error(`no ${method} ${path} in the document`)
  return found
}

function header (op: Json, name: string): Json | undefined {
  return (op.parameters ?? []).find((p: Json) => p.in === 'header' && p.name.toLowerCase() === name.toLowerCase())
}

function resolve (doc: Json, schema: Json): Json {
  if (typeof schema.$ref !== 'string') return schema
  return doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')]
}

test('a guarded write documents its precondition headers and its 412, 428 and 503 problems', async (t) => {
  const app = await documentedApp()
  app.put('/items/:id', { schema: { params }, concurrency: { require: ['if-match', 'if-none-match'], validators } }, async () => ({ ok: true }))
  app.patch('/items/:id', { schema: { params }, concurrency: { require: 'if-match', validators } }, async () => ({ ok: true }))
  await app.ready()
  const doc = app.swagger() as Json

  const put = operation(doc, '/items/{id}', 'put')
  const ifMatch = header(put, 'If-Match') as Json
  t.ok(ifMatch, 'If-Match is a header parameter')
  t.equal(ifMatch.required, false, 'either of two headers will do, so neither alone is required')
  t.match(ifMatch.description, /Required unless If-None-Match is sent/)
  t.match(ifMatch.description, /ETag response header of your last GET/, 'says where the value comes from')
  t.match(header(put, 'If-None-Match')?.description, /Send \* to create the resource only if it does not exist yet/)
  t.ok(put.parameters.some((p: Json) => p.in === 'path' && p.name === 'id'), 'the declared params stay')

  const patch = operation(doc, '/items/{id}', 'patch')
  t.equal(header(patch, 'If-Match')?.required, true, 'a single required header on a write-only route is required')
  t.match(header(patch, 'If-Match')?.description, /^Required: without it the request is answered 428/)

  for (const [status, code] of [['412', ProblemCode.PRECONDITION_FAILED], ['428', ProblemCode.PRECONDITION_REQUIRED], ['503', ProblemCode.LOCK_TIMEOUT]]) {
    const response = put.responses[status]
    t.ok(response, `${status} is documented`)
    const media = response.content[PROBLEM]
    t.ok(media, `${status} is application/problem+json`)
    t.equal(media.schema.$ref, '#/components/schemas/PreconditionProblemDetails', `${status} refers to the one shared schema`)
    t.equal(media.example.status, Number(status))
    t.equal(media.example.code, code)
    t.equal(media.example.instance, '/items/1', 'the example names a request path, not the route pattern')
  }
  t.same(put.responses['428'].content[PROBLEM].example.required, ['If-Match', 'If-None-Match'])
  t.match(put.responses['428'].description, /none of If-Match or If-None-Match/)
  t.ok(put.responses['412'].headers.ETag, 'a 412 carries the current ETag')
  t.ok(put.responses['503'].headers['Retry-After'])

  const component = resolve(doc, put.responses['412'].content[PROBLEM].schema)
  t.same(Object.keys(component.properties), Object.keys(ProblemDetailsSchema.properties), 'the component is the exported schema')
  t.same(component.required, ['type', 'title', 'status', 'detail', 'instance', 'code'])

  t.same(Object.keys(put.responses['200'].headers), ['ETag', 'Last-Modified'], 'a write answers with the new validators')
  t.notOk(put.responses['304'], 'a write never answers 304')
})

test('a read with validators documents If-None-Match, the 304 and ETag/Last-Modified, and no 412/428', async (t) => {
  const app = await documentedApp()
  app.get('/items/:id', { schema: { params }, concurrency: { validators } }, async () => ({ ok: true }))
  await app.ready()
  const get = operation(app.swagger() as Json, '/items/{id}', 'get')
  t.equal(header(get, 'If-None-Match')?.required, false)
  t.notOk(header(get, 'If-Match'), 'reads are never refused for a missing precondition')
  t.ok(get.responses['304'], '304 documented')
  t.notOk(get.responses['304'].content, 'a 304 has no body')
  t.ok(get.responses['304'].headers.ETag)
  t.ok(get.responses['304'].headers['Last-Modified'])
  t.equal(get.responses['200'].description, 'Default Response', 'the success response swagger shows anyway stays')
  t.ok(get.responses['200'].headers.ETag)
  t.notOk(get.responses['412'])
  t.notOk(get.responses['428'])
  t.notOk(get.responses['503'])
})

test('the documentation is merged with what the route declared, which wins', async (t) => {
  const app = await documentedApp()
  const ownRequired = { description: 'Send If-Match, please', content: { 'application/json': { schema: { type: 'object' } } } }
  app.put('/items/:id', {
    schema: {
      summary: 'Replace an item',
      tags: ['items'],
      params,
      headers: {
        type: 'object',
        properties: { 'x-tenant': { type: 'string' }, 'if-match': { type: 'string', description: 'mine' } },
        required: ['x-tenant']
      },
      response: {
        200: { description: 'The item', type: 'object', properties: { id: { type: 'string' } }, headers: { ETag: { type: 'string', description: 'own tag' } } },
        201: { description: 'Created', type: 'object' },
        404: { description: 'No such item', type: 'object' },
        428: ownRequired
      }
    } as FastifySchema,
    concurrency: { require: ['if-match', 'if-unmodified-since'], validators }
  }, async () => ({ id: '1' }))
  await app.ready()
  const put = operation(app.swagger() as Json, '/items/{id}', 'put')
  t.equal(put.summary, 'Replace an item')
  t.same(put.tags, ['items'])
  t.equal(header(put, 'x-tenant')?.required, true, 'the route\'s own required header stays required')
  const ifMatch = put.parameters.filter((p: Json) => p.in === 'header' && p.name.toLowerCase() === 'if-match')
  t.equal(ifMatch.length, 1, 'a header the route documents itself is not added again')
  t.equal(ifMatch[0].description, 'mine')
  t.ok(header(put, 'If-Unmodified-Since'), 'the other required header is added')
  t.equal(put.responses['200'].description, 'The item')
  t.equal(put.responses['200'].headers.ETag.description, 'own tag', 'the route\'s own header description wins')
  t.ok(put.responses['200'].headers['Last-Modified'])
  t.ok(put.responses['201'].headers.ETag, 'every 2xx carries the validators')
  t.notOk(put.responses['404'].headers, 'only 2xx answers carry them')
  t.equal(put.responses['428'].description, 'Send If-Match, please', 'the route\'s own 428 entry is kept')
  t.ok(put.responses['412'])
})

test('the documentation changes neither validation nor serialization: Fastify never compiles it', async (t) => {
  const app = await documentedApp()
  const validated: Array<{ url: string, part: string, schema: Json }> = []
  const serialized: Array<{ url: string, status: string }> = []
  const validatorCompiler: FastifySchemaCompiler<Json> = ({ schema, url, httpPart }) => {
    validated.push({ url, part: String(httpPart), schema })
    return () => true
  }
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(({ url, httpStatus }) => {
    serialized.push({ url, status: String(httpStatus) })
    return (data) => JSON.stringify(data)
  })
  app.put('/bare/:id', { concurrency: { require: 'if-match', validators } }, async () => ({ ok: true }))
  app.put('/own/:id', {
    schema: {
      headers: { type: 'object', properties: { 'x-tenant': { type: 'string' } }, required: ['x-tenant'] },
      response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } }
    },
    concurrency: { require: 'if-match', validators }
  }, async () => ({ ok: true }))
  app.get('/read/:id', { concurrency: { validators } }, async () => ({ ok: true }))
  await app.ready()

  t.same(validated.map(({ url, part }) => `${url} ${part}`), ['/own/:id headers'], 'only the route\'s own headers schema is compiled')
  t.same(Object.keys(validated[0].schema.properties), ['x-tenant'], 'and it is compiled as declared')
  t.same(serialized.map(({ url, status }) => `${url} ${status}`), ['/own/:id 200'], 'no serializer for the documented answers')

  const doc = app.swagger() as Json
  t.ok(header(operation(doc, '/bare/{id}', 'put'), 'If-Match'), 'yet the document has them')
  t.ok(operation(doc, '/own/{id}', 'put').responses['428'])
})

test('428 stays 428, never a 400, with Fastify\'s own validation and the route\'s headers schema', async (t) => {
  const app = await documentedApp()
  let writes = 0
  app.put('/items/:id', {
    schema: {
      params,
      headers: { type: 'object', properties: { 'x-tenant': { type: 'string', minLength: 2 } }, required: ['x-tenant'] },
      body: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }
    },
    concurrency: { require: 'if-match', validators }
  }, async () => {
    writes++
    return { ok: true }
  })
  app.put('/plain/:id', { concurrency: { require: 'if-unmodified-since', validators } }, async () => {
    writes++
    return { ok: true }
  })
  await app.ready()

  const neither = await app.inject({ method: 'PUT', url: '/items/1', payload: {} })
  t.equal(neither.statusCode, 428, 'missing precondition and a missing required header: 428 comes first')
  t.equal(neither.json().code, ProblemCode.PRECONDITION_REQUIRED)
  const tenantOnly = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'x-tenant': 'acme' }, payload: { name: 'x' } })
  t.equal(tenantOnly.statusCode, 428)
  const badDate = await app.inject({ method: 'PUT', url: '/plain/1', headers: { 'if-unmodified-since': 'not a date' }, payload: { name: 'x' } })
  t.equal(badDate.statusCode, 428, 'an unparsable date is a missing precondition, not a schema error')
  const stale = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'x-tenant': 'acme', 'if-match': '"v0"' }, payload: { name: 'x' } })
  t.equal(stale.statusCode, 412)
  const garbage = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'x-tenant': 'acme', 'if-match': 'garbage' }, payload: { name: 'x' } })
  t.equal(garbage.statusCode, 412, 'a malformed If-Match is the plugin\'s 412, not a schema 400')
  const noTenant = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' }, payload: { name: 'x' } })
  t.equal(noTenant.statusCode, 400, 'the route\'s own header rules still apply')
  t.match(noTenant.json().message, /x-tenant/)
  const ok = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'x-tenant': 'acme', 'if-match': '"v1"' }, payload: { name: 'x' } })
  t.equal(ok.statusCode, 200)
  t.equal(writes, 1)
})

test('a route\'s own 412/428 schemas do not strip the problem bodies of a documented route', async (t) => {
  const app = await documentedApp()
  const narrow = { type: 'object', properties: { message: { type: 'string' } } }
  app.put('/r', {
    schema: { response: { 412: narrow, 428: narrow, '4xx': narrow } },
    concurrency: { require: 'if-match', validators }
  }, async () => ({ message: 'ok' }))
  await app.ready()
  const members = ['type', 'title', 'status', 'detail', 'instance', 'code']
  const required = await app.inject({ method: 'PUT', url: '/r' })
  t.equal(required.statusCode, 428)
  t.equal(required.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(Object.keys(required.json()), [...members, 'required'])
  const failed = await app.inject({ method: 'PUT', url: '/r', headers: { 'if-match': '"stale"' } })
  t.equal(failed.statusCode, 412)
  t.same(Object.keys(failed.json()), [...members, 'etag'])
})

test('automatic HEAD routes and routes with several methods', async (t) => {
  const app = await documentedApp({}, { exposeHeadRoutes: true })
  app.get('/items/:id', { schema: { params }, concurrency: { validators } }, async () => ({ ok: true }))
  app.route({
    method: ['GET', 'PUT', 'DELETE'],
    url: '/things/:id',
    schema: { params },
    concurrency: { require: 'if-match', validators },
    handler: async () => ({ ok: true })
  })
  await app.ready()
  const doc = app.swagger() as Json

  const head = operation(doc, '/items/{id}', 'head')
  t.ok(head.responses['304'], 'the automatic HEAD route documents its 304')
  t.ok(header(head, 'If-None-Match'))
  t.notOk(head.responses['412'])
  const answer = await app.inject({ method: 'HEAD', url: '/items/1', headers: { 'if-none-match': '"v1"' } })
  t.equal(answer.statusCode, 304, 'and answers it like its GET')

  for (const method of ['get', 'put', 'delete']) {
    const op = operation(doc, '/things/{id}', method)
    const ifMatch = header(op, 'If-Match') as Json
    t.equal(ifMatch.required, false, `${method}: not required, as GET never requires it`)
    t.match(ifMatch.description, /\(on PUT, DELETE\)/, `${method}: says which methods require it`)
    t.ok(op.responses['304'] && op.responses['412'] && op.responses['428'], `${method}: one schema documents every method`)
    t.match(op.responses['428'].description, /^Precondition Required \(on PUT, DELETE\)/)
  }
  const read = await app.inject({ method: 'GET', url: '/things/1' })
  t.equal(read.statusCode, 200, 'GET of the several-method route is not refused')
  const write = await app.inject({ method: 'DELETE', url: '/things/1' })
  t.equal(write.statusCode, 428)
})

test('routes without validators or without require document only what applies', async (t) => {
  const app = await documentedApp({ exposeEtag: false })
  app.put('/required-only', { concurrency: { require: 'if-match' } }, async () => 'ok')
  app.put('/validators-only', { concurrency: { validators } }, async () => 'ok')
  app.post('/lock-only', { concurrency: { lock: true } }, async () => 'ok')
  app.get('/plain', async () => 'ok')
  await app.ready()
  const doc = app.swagger() as Json

  const requiredOnly = operation(doc, '/required-only', 'put')
  t.ok(requiredOnly.responses['428'])
  t.notOk(requiredOnly.responses['412'], 'no validators, no 412')
  t.notOk(requiredOnly.responses['503'], 'no lock, no 503')
  t.notOk(requiredOnly.responses['200'].headers, 'no validators, no ETag')

  const validatorsOnly = operation(doc, '/validators-only', 'put')
  t.notOk(validatorsOnly.responses['428'], 'nothing required, no 428')
  t.match(header(validatorsOnly, 'If-Match')?.description, /^Optional/)
  t.notOk(validatorsOnly.responses['412'].headers, 'exposeEtag: false keeps the ETag out of the documented 412')
  t.notOk(validatorsOnly.responses['412'].content[PROBLEM].example.etag)
  t.ok(validatorsOnly.responses['503'])

  const lockOnly = operation(doc, '/lock-only', 'post')
  t.ok(lockOnly.responses['503'])
  t.same(Object.keys(lockOnly.responses).sort(), ['200', '503'])
  t.notOk(lockOnly.parameters)

  t.same(operation(doc, '/plain', 'get').responses, { 200: { description: 'Default Response' } }, 'routes without a policy are untouched')
})

test('Idempotency-Key: the header, the 400, 409 and 422 problems, and Idempotent-Replayed on 2xx', async (t) => {
  const app = await documentedApp({ retryAfter: 2 })
  app.post('/orders', { concurrency: { idempotency: { required: true, ttl: 600 } } }, async () => ({ ok: true }))
  app.put('/items/:id', {
    schema: { params, response: { 200: { type: 'object' }, 201: { type: 'object' }, 404: { type: 'object' } } },
    concurrency: { require: 'if-match', validators, idempotency: true }
  }, async () => ({ ok: true }))
  app.route({ method: ['GET', 'PATCH'], url: '/things/:id', concurrency: { idempotency: { required: true, ttl: 1.5 } }, handler: async () => ({ ok: true }) })
  app.get('/read', { concurrency: { idempotency: { required: true } } }, async () => ({ ok: true }))
  app.delete('/orders/:id', { concurrency: { idempotency: { ttl: 3600 } } }, async () => ({ ok: true }))
  await app.ready()
  const doc = app.swagger() as Json
  t.match(header(operation(doc, '/orders/{id}', 'delete'), 'Idempotency-Key')?.description, /kept for 1 hour;/)

  const post = operation(doc, '/orders', 'post')
  const key = header(post, 'Idempotency-Key') as Json
  t.equal(key.required, true, 'required: true makes the header required')
  t.match(key.description, /^Required: without it the request is answered 400\. A key of your own for this change/)
  t.match(key.description, /1 to 255 visible ASCII characters, as a quoted string \("…"\) or a bare token/, 'the format')
  t.match(key.description, /Send the same key when you retry the same change/, 'the semantics')
  t.match(key.description, /kept for 10 minutes/, 'the route\'s ttl')
  t.match(key.description, /Idempotent-Replayed: true/)
  const codes: Record<string, string> = {
    400: ProblemCode.IDEMPOTENCY_KEY_MISSING,
    409: ProblemCode.IDEMPOTENCY_KEY_IN_USE,
    422: ProblemCode.IDEMPOTENCY_KEY_MISMATCH,
    503: ProblemCode.IDEMPOTENCY_UNAVAILABLE
  }
  for (const [status, code] of Object.entries(codes)) {
    const media = post.responses[status]?.content[PROBLEM]
    t.ok(media, `${status} is application/problem+json`)
    t.equal(media.schema.$ref, '#/components/schemas/PreconditionProblemDetails', `${status} refers to the shared schema`)
    t.equal(media.example.status, Number(status))
    t.equal(media.example.code, code)
    t.equal(media.example.instance, '/orders')
  }
  t.ok(post.responses['409'].headers['Retry-After'], '409 says when to retry')
  t.ok(post.responses['503'].headers['Retry-After'])
  t.match(post.responses['400'].description, /^Bad Request: the Idempotency-Key is missing or malformed/)
  t.match(post.responses['409'].description, /still being processed/)
  t.match(post.responses['422'].description, /already used for another request/)
  t.same(Object.keys(post.responses['200'].headers), ['Idempotent-Replayed'], 'no validators: only the replay header')
  t.match(post.responses['200'].headers['Idempotent-Replayed'].description, /stored answer to an earlier request with the same Idempotency-Key/)
  t.notOk(post.responses['412'])
  t.notOk(post.responses['428'])
  const missing = await app.inject({ method: 'POST', url: '/orders' })
  t.same(post.responses['400'].content[PROBLEM].example, missing.json(), 'the documented 400 is the body a request gets')

  const put = operation(doc, '/items/{id}', 'put')
  t.equal(header(put, 'Idempotency-Key')?.required, false, 'idempotency: true accepts a key without requiring one')
  t.match(header(put, 'Idempotency-Key')?.description, /^Optional\. .*kept for 24 hours/)
  t.equal(header(put, 'If-Match')?.required, true, 'beside the precondition header')
  t.equal(put.responses['400'].content[PROBLEM].example.code, ProblemCode.IDEMPOTENCY_KEY_INVALID, 'an optional key can only be malformed')
  t.match(put.responses['400'].description, /^Bad Request: the Idempotency-Key is malformed/)
  for (const status of ['200', '201']) {
    t.same(Object.keys(put.responses[status].headers), ['ETag', 'Last-Modified', 'Idempotent-Replayed'], `${status}: the validators and the replay header`)
  }
  t.notOk(put.responses['404'].headers)
  t.equal(put.responses['503'].content[PROBLEM].example.code, ProblemCode.LOCK_TIMEOUT, 'the lock\'s 503 is the example')
  t.match(put.responses['503'].description, /or the lock store could not be reached, or the idempotency store\./, 'and the description names both stores')
  t.ok(put.responses['412'] && put.responses['428'])

  for (const method of ['get', 'patch']) {
    const op = operation(doc, '/things/{id}', method)
    const shared = header(op, 'Idempotency-Key') as Json
    t.equal(shared.required, false, `${method}: not required, as GET never requires it`)
    t.match(shared.description, /^Required \(on PATCH\): without it the request is answered 400\..*kept for 1\.5 seconds/)
    t.match(op.responses['409'].description, /^Conflict \(on PATCH\)/)
  }

  const read = operation(doc, '/read', 'get')
  t.notOk(read.parameters, 'a read never carries a key')
  t.same(Object.keys(read.responses), ['200'])
  t.notOk(read.responses['200'].headers)
})

test('Idempotency-Key: what the route documents itself wins', async (t) => {
  const app = await documentedApp()
  app.post('/orders', {
    schema: {
      headers: { type: 'object', properties: { 'idempotency-key': { type: 'string', format: 'uuid', description: 'mine' } } },
      response: { 201: { type: 'object', headers: { 'Idempotent-Replayed': { type: 'string', description: 'own' } } }, 422: { description: 'Own 422', type: 'object' } }
    },
    concurrency: { idempotency: { required: true, ttl: 90 } }
  }, async () => ({ ok: true }))
  await app.ready()
  const post = operation(app.swagger() as Json, '/orders', 'post')
  const keys = post.parameters.filter((p: Json) => p.in === 'header' && p.name.toLowerCase() === 'idempotency-key')
  t.equal(keys.length, 1)
  t.equal(keys[0].description, 'mine')
  t.equal(post.responses['201'].headers['Idempotent-Replayed'].description, 'own')
  t.equal(post.responses['422'].description, 'Own 422')
  t.ok(post.responses['409'])
})

test('the examples are the bodies the plugin sends, with the app\'s type base and texts', async (t) => {
  const app = await documentedApp({
    problemTypeBase: 'https://example.com/problems/',
    messages: { titles: { 428: 'Vorbedingung erforderlich' } }
  })
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => 'ok')
  await app.ready()
  const put = operation(app.swagger() as Json, '/items/{id}', 'put')
  const example = put.responses['428'].content[PROBLEM].example
  t.equal(example.type, 'https://example.com/problems/precondition-required')
  t.equal(example.title, 'Vorbedingung erforderlich')
  const sent = await app.inject({ method: 'PUT', url: '/items/1' })
  t.same(example, sent.json(), 'the documented example is the body a request gets')
  t.equal(put.responses['412'].content[PROBLEM].example.type, 'https://example.com/problems/precondition-failed')
})

test('documentRoutes: false leaves schemas and the document alone', async (t) => {
  const app = await documentedApp({ documentRoutes: false })
  app.put('/items/:id', { schema: { params }, concurrency: { require: 'if-match', validators } }, async () => 'ok')
  await app.ready()
  const put = operation(app.swagger() as Json, '/items/{id}', 'put')
  t.notOk(header(put, 'If-Match'))
  t.same(Object.keys(put.responses), ['200'])
  t.notOk(app.getSchema('PreconditionProblemDetails'), 'no shared schema either')
})

test('whatever a route\'s schema is made of, the policy is documented and the schema is left as declared', async (t) => {
  const app = await documentedApp()
  // These schemas are for some other validator, not Ajv.
  app.setValidatorCompiler(() => () => true)
  app.addSchema({ $id: 'TenantHeaders', type: 'object', properties: { 'x-tenant': { type: 'string' } } })
  class Builder { type = 'object' }
  class Responses {}
  const declared = new Map<string, unknown>()
  const schemas: Array<[string, unknown]> = [
    ['/ref', { headers: { $ref: 'TenantHeaders#' } }],
    ['/own-properties', { headers: { type: 'object', properties: new Builder() } }],
    ['/custom-response', { response: new Responses() }],
    ['/custom', new Builder()]
  ]
  for (const [url, schema] of schemas) {
    declared.set(url, schema)
    app.put(url, { schema: schema as FastifySchema, concurrency: { require: 'if-match' } }, async () => 'ok')
  }
  const seen = new Map<string, unknown>()
  app.addHook('onRoute', (routeOptions) => {
    if (routeOptions.url === '/replaced') routeOptions.schema = new Builder() as unknown as FastifySchema
  })
  app.put('/replaced', { concurrency: { require: 'if-match' } }, async () => 'ok')
  app.addHook('onRoute', (routeOptions) => { seen.set(routeOptions.url, routeOptions) })
  app.put('/late', { schema: { headers: { $ref: 'TenantHeaders#' } }, concurrency: { require: 'if-match' } }, async () => 'ok')
  await app.ready()
  const doc = app.swagger() as Json
  for (const url of [...declared.keys(), '/replaced', '/late']) {
    const put = operation(doc, url, 'put')
    t.equal(header(put, 'If-Match')?.required, true, `${url}: If-Match documented`)
    t.ok(put.responses['428'], `${url}: its 428 too`)
  }
  t.ok(header(operation(doc, '/ref', 'put'), 'x-tenant'), 'beside the headers of a $ref headers schema')
  const late = seen.get('/late') as { schema: Json }
  t.same(JSON.parse(JSON.stringify(late.schema)), { headers: { $ref: 'TenantHeaders#' } }, 'the route keeps the schema it declared, nothing added')
})

test('an app that shares the problem schema itself can still document its routes', async (t) => {
  const app = Fastify()
  app.addSchema(ProblemDetailsSchema)
  await app.register(fastifySwagger, { openapi: {} })
  await app.register(fastifyPrecondition)
  app.put('/r', { concurrency: { require: 'if-match' } }, async () => 'ok')
  await app.ready()
  const put = operation(app.swagger() as Json, '/r', 'put')
  t.ok(resolve(app.swagger() as Json, put.responses['428'].content[PROBLEM].schema).properties.code, 'the reference resolves')
  const res = await app.inject({ method: 'PUT', url: '/r' })
  t.equal(res.statusCode, 428)
})

test('TypeBox schemas and routes in prefixed plugins are documented too', async (t) => {
  const { Type } = await import('typebox')
  const app = await documentedApp()
  await app.register(async (child) => {
    child.put('/items/:id', {
      schema: {
        params: Type.Object({ id: Type.String() }),
        headers: Type.Object({ 'x-tenant': Type.String() }),
        response: { 200: Type.Object({ id: Type.String() }) }
      },
      concurrency: { require: 'if-match', validators }
    }, async (request) => ({ id: (request.params as { id: string }).id }))
  }, { prefix: '/v1' })
  await app.ready()
  const put = operation(app.swagger() as Json, '/v1/items/{id}', 'put')
  t.equal(header(put, 'x-tenant')?.required, true)
  t.equal(header(put, 'If-Match')?.required, true)
  t.ok(put.responses['200'].headers.ETag)
  t.ok(put.responses['428'])
  const res = await app.inject({ method: 'PUT', url: '/v1/items/1', headers: { 'x-tenant': 'a', 'if-match': '"v1"' } })
  t.same(res.json(), { id: '1' }, 'the TypeBox response schema still serializes')
})

/** Validates a document against its specification (Swagger 2.0 or OpenAPI 3) and resolves every $ref. */
async function valid (doc: Json): Promise<Error | null> {
  return await SwaggerParser.validate(structuredClone(doc) as never).then(() => null, (error: Error) => error)
}

async function setUpLikeTheReadme (swaggerOptions: Json, order: 'swagger first' | 'plugin first' = 'plugin first'): Promise<FastifyInstance> {
  const app = Fastify()
  if (order === 'swagger first') await app.register(fastifySwagger, swaggerOptions)
  await app.register(fastifyPrecondition)
  if (order === 'plugin first') await app.register(fastifySwagger, swaggerOptions)
  app.get('/items/:id', { schema: { params }, concurrency: { validators } }, async () => ({ ok: true }))
  app.put('/items/:id', { schema: { params, response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } }, concurrency: { require: 'if-match', validators } }, async () => ({ ok: true }))
  app.delete('/files/*', { concurrency: { require: 'if-match', validators } }, async () => ({ ok: true }))
  app.post('/orders', { schema: { response: { 201: { type: 'object', properties: { id: { type: 'integer' } } } } }, concurrency: { idempotency: { required: true } } }, async () => ({ id: 1 }))
  app.patch('/items/:id', { schema: { params }, concurrency: { require: 'if-match', validators, idempotency: true } }, async () => ({ ok: true }))
  app.get('/plain', async () => 'ok')
  await app.ready()
  return app
}

test('without a refResolver the shared schema is named PreconditionProblemDetails, and the document is valid', async (t) => {
  for (const order of ['plugin first', 'swagger first'] as const) {
    const app = await setUpLikeTheReadme({ openapi: { info: { title: 'test', version: '1.0.0' } } }, order)
    const doc = app.swagger() as Json
    t.same(Object.keys(doc.components.schemas), ['PreconditionProblemDetails'], `${order}: no def-0`)
    const put = operation(doc, '/items/{id}', 'put')
    t.equal(put.responses['412'].content[PROBLEM].schema.$ref, '#/components/schemas/PreconditionProblemDetails')
    t.equal(put.responses['428'].content[PROBLEM].example.instance, '/items/1')
    t.equal(operation(doc, '/files/{*}', 'delete').responses['428'].content[PROBLEM].example.instance, '/files/example')
    t.notMatch(JSON.stringify(doc), /def-\d/, 'no reference to the generated name is left')
    t.equal(await valid(doc), null, `${order}: a valid OpenAPI 3 document`)
    t.equal(app.swagger(), doc, 'the same document on every call')
    const yaml = app.swagger({ yaml: true }) as string
    t.same(JSON.parse(yaml), doc, 'the YAML form is the same document (in JSON, which YAML includes)')
    await app.close()
  }
})

test('an app\'s own refResolver is kept, and swagger\'s own YAML when nothing needed finishing', async (t) => {
  const app = await documentedApp()
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => 'ok')
  await app.ready()
  const doc = app.swagger() as Json
  t.ok(doc.components.schemas.PreconditionProblemDetails)
  t.equal(await valid(doc), null)
  t.same(JSON.parse(app.swagger({ yaml: true }) as string), doc, 'the YAML form of a finished document is its JSON text')
  const plain = await documentedApp()
  plain.get('/plain', async () => 'ok')
  await plain.ready()
  t.match(plain.swagger({ yaml: true }), /^openapi: 3/, 'swagger\'s own YAML, as nothing needed finishing')
})

test('Swagger 2.0 mode: a valid document, problems under examples and produces', async (t) => {
  const app = await setUpLikeTheReadme({ swagger: { info: { title: 'test', version: '1.0.0' } } })
  const doc = app.swagger() as Json
  t.equal(doc.swagger, '2.0')
  t.equal(await valid(doc), null, 'a valid Swagger 2.0 document')
  t.same(Object.keys(doc.definitions), ['PreconditionProblemDetails'])
  const put = operation(doc, '/items/{id}', 'put')
  for (const status of ['412', '428', '503']) {
    const response = put.responses[status]
    t.equal(response.schema.$ref, '#/definitions/PreconditionProblemDetails', `${status}: the shared schema`)
    t.equal(response.examples[PROBLEM].instance, '/items/1', `${status}: its example`)
    t.notOk(response.schema.content)
  }
  t.same(put.produces, ['application/json', PROBLEM], 'the operation says it produces problem documents')
  const post = operation(doc, '/orders', 'post')
  t.equal(header(post, 'Idempotency-Key')?.required, true, 'Idempotency-Key: a required header parameter')
  t.equal(header(post, 'Idempotency-Key')?.type, 'string')
  for (const status of ['400', '409', '422', '503']) {
    t.equal(post.responses[status].schema.$ref, '#/definitions/PreconditionProblemDetails', `${status}: the shared schema`)
    t.equal(post.responses[status].examples[PROBLEM].instance, '/orders', `${status}: its example`)
  }
  t.same(post.responses['409'].headers['Retry-After'], { type: 'integer', description: 'Seconds to wait before retrying' })
  t.equal(post.responses['201'].headers['Idempotent-Replayed'].type, 'string')
  t.same(post.produces, ['application/json', PROBLEM])
  const patch = operation(doc, '/items/{id}', 'patch')
  t.same(Object.keys(patch.responses).sort(), ['200', '400', '409', '412', '422', '428', '503'], 'both policies on one route')
  t.ok(put.responses['412'].headers.ETag)
  const get = operation(doc, '/items/{id}', 'get')
  t.same(get.responses['200'], { description: 'Default Response', headers: get.responses['200'].headers }, 'a route without a response schema keeps a bodiless default')
  t.notOk(get.produces, 'a read produces no problem')
  t.same(operation(doc, '/plain', 'get').responses, { 200: { description: 'Default Response' } })
  const yaml = JSON.parse(app.swagger({ yaml: true }) as string)
  t.equal(await valid(yaml), null, 'the YAML form is valid too')
  await app.close()
})

test('finishing a document: only what it recognises is changed', async (t) => {
  t.equal(finishDocument({ openapi: '3.0.3', paths: {} }), false, 'no components')
  const own = { openapi: '3.0.3', components: { schemas: { PreconditionProblemDetails: {}, 'def-0': { title: 'PreconditionProblemDetails' } } } }
  t.equal(finishDocument(own), false, 'a name the app already uses is not taken over')
  const other = { openapi: '3.0.3', components: { schemas: { 'def-0': { title: 'Other' } } } }
  t.equal(finishDocument(other), false, 'another shared schema keeps its name')
  const both: Json = {
    openapi: '3.0.3',
    components: { schemas: { 'def-0': { title: 'Other' }, 'def-1': { title: 'PreconditionProblemDetails' } } },
    paths: { '/r': { get: { responses: { 200: { $ref: '#/components/schemas/def-0' }, 412: { $ref: '#/components/schemas/def-1' } }, tags: ['a'] } } }
  }
  t.equal(finishDocument(both), true)
  t.same(Object.keys(both.components.schemas), ['def-0', 'PreconditionProblemDetails'], 'renamed in place, the others kept')
  t.same(both.paths['/r'].get.responses, { 200: { $ref: '#/components/schemas/def-0' }, 412: { $ref: '#/components/schemas/PreconditionProblemDetails' } })
  const produces = { swagger: '2.0', produces: ['application/xml'], paths: { '/r': { parameters: [], get: { responses: { 200: { schema: { content: { [PROBLEM]: { schema: { type: 'object' } } } } } } } } } }
  t.equal(finishDocument(produces), true)
  t.same(produces.paths['/r'].get, { responses: { 200: { schema: { type: 'object' } } }, produces: ['application/xml', PROBLEM] }, 'the document\'s own produces are kept')
  t.equal(finishDocument({ swagger: '2.0' }), false, 'no paths')
})

test('an app without @fastify/swagger is left alone', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  await app.ready()
  t.notOk((app as unknown as Json).swagger)
})
