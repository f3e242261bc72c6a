// Every schema stack gets the policy's documentation in its OpenAPI document, and no swagger
// `transform` is handed a schema the route did not declare: Zod through fastify-type-provider-zod
// (its compilers and `jsonSchemaTransform`), fastify-zod-openapi (its plugin and transformers), and
// a transform of the app's own that refuses anything it does not know. Each document shows
// If-Match, Idempotency-Key and the 412, 428, 409 and 422 answers on the guarded routes and is
// valid, and the routes still validate and serialize with the stack's own compilers.
import { test, type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifySchema } from 'fastify'
import fastifySwagger from '@fastify/swagger'
import SwaggerParser from '@apidevtools/swagger-parser'
import { z } from 'zod'
import fastifyPrecondition, { ProblemCode } from '../lib/index.js'

type Json = Record<string, any> // a generated document, walked by path

const PROBLEM = 'application/problem+json'
const info = { title: 'test', version: '1.0.0' }

/** A tiny store of items, and the validators of each, as a Zod app would have them. */
function itemStore () {
  const items = new Map<string, { name: string, version: number }>([['1', { name: 'first', version: 1 }]])
  const validators = (request: { params: unknown }) => {
    const item = items.get((request.params as { id: string }).id)
    return item === undefined ? null : { etag: `"v${item.version}"` }
  }
  return { items, validators }
}

function operation (doc: Json, path: string, method: string): Json {
  const found = doc.paths[path]?.[method]
  if (found === undefined) throw new Error(`no ${method} ${path} in the document`)
  return found
}

function header (op: Json, name: string): Json | undefined {
  return (op.parameters ?? []).find((p: Json) => p.in === 'header' && p.name.toLowerCase() === name.toLowerCase())
}

async function valid (doc: Json): Promise<Error | null> {
  return await SwaggerParser.validate(structuredClone(doc) as never).then(() => null, (error: Error) => error)
}

/** What every stack's document must show on the guarded routes, and a valid document. */
async function documentsThePolicy (t: Test, doc: Json, problemRef: string): Promise<void> {
  const put = operation(doc, '/items/{id}', 'put')
  t.equal(header(put, 'If-Match')?.required, true, 'PUT: If-Match, a required header')
  t.match(header(put, 'If-Match')?.description, /ETag response header of your last GET/)
  t.ok(put.parameters.some((p: Json) => p.in === 'path' && p.name === 'id'), 'PUT: the declared path parameter stays')
  for (const [status, code] of [['412', ProblemCode.PRECONDITION_FAILED], ['428', ProblemCode.PRECONDITION_REQUIRED]] as const) {
    const media = put.responses[status]?.content?.[PROBLEM]
    t.ok(media, `PUT: ${status} is an application/problem+json answer`)
    t.equal(media?.schema.$ref, problemRef, `PUT: ${status} refers to the shared problem schema`)
    t.equal(media?.example.code, code, `PUT: ${status}: its example`)
  }
  t.ok(put.responses['200'].content, 'PUT: the declared 200 keeps its body')
  t.ok(put.responses['200'].headers?.ETag, 'PUT: the 200 carries the new ETag')
  const post = operation(doc, '/orders', 'post')
  t.equal(header(post, 'Idempotency-Key')?.required, true, 'POST: Idempotency-Key, a required header')
  for (const [status, code] of [['409', ProblemCode.IDEMPOTENCY_KEY_IN_USE], ['422', ProblemCode.IDEMPOTENCY_KEY_MISMATCH]] as const) {
    const media = post.responses[status]?.content?.[PROBLEM]
    t.ok(media, `POST: ${status} is an application/problem+json answer`)
    t.equal(media?.schema.$ref, problemRef, `POST: ${status} refers to the shared problem schema`)
    t.equal(media?.example.code, code, `POST: ${status}: its example`)
  }
  t.ok(post.responses['201'].headers?.['Idempotent-Replayed'], 'POST: the 201 says when it is a replay')
  const get = operation(doc, '/items/{id}', 'get')
  t.equal(header(get, 'If-None-Match')?.required, false, 'GET: If-None-Match, optional')
  t.ok(get.responses['304'], 'GET: its 304')
  t.notOk(operation(doc, '/health', 'get').responses['412'], 'a route without a policy is left alone')
  t.equal(await valid(doc), null, 'the document is valid')
}

/** The requests behave as the document says, and the stack's own validation and serialization run. */
async function answersAsDocumented (t: Test, app: FastifyInstance): Promise<void> {
  const required = await app.inject({ method: 'PUT', url: '/items/1', payload: { name: 'x' } })
  t.equal(required.statusCode, 428, 'a PUT without If-Match: 428')
  t.equal(required.headers['content-type'], 'application/problem+json; charset=utf-8')
  t.same(Object.keys(required.json()), ['type', 'title', 'status', 'detail', 'instance', 'code', 'required'], 'the problem body as the plugin writes it')
  const failed = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v0"' }, payload: { name: 'x' } })
  t.equal(failed.statusCode, 412, 'a stale If-Match: 412')
  t.equal(failed.json().etag, '"v1"')
  const invalid = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' }, payload: {} })
  t.equal(invalid.statusCode, 400, 'the route\'s body schema still validates')
  const ok = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"v1"' }, payload: { name: 'second' } })
  t.equal(ok.statusCode, 200)
  t.same(ok.json(), { id: '1', name: 'second' }, 'the route\'s response schema serializes: the extra member is dropped')
  t.equal(ok.headers.etag, '"v2"')

  const order = { method: 'POST' as const, url: '/orders', headers: { 'idempotency-key': 'k1' }, payload: { item: 'a' } }
  const first = await app.inject(order)
  t.equal(first.statusCode, 201)
  const replay = await app.inject(order)
  t.equal(replay.statusCode, 201)
  t.equal(replay.headers['idempotent-replayed'], 'true')
  t.same(replay.json(), first.json())
  const mismatch = await app.inject({ ...order, payload: { item: 'b' } })
  t.equal(mismatch.statusCode, 422, 'the same key with another body: 422')
  t.equal(mismatch.json().code, ProblemCode.IDEMPOTENCY_KEY_MISMATCH)
  const missing = await app.inject({ method: 'POST', url: '/orders', payload: { item: 'a' } })
  t.equal(missing.statusCode, 400)
  t.equal(missing.json().code, ProblemCode.IDEMPOTENCY_KEY_MISSING)
}

test('fastify-type-provider-zod with jsonSchemaTransform: the document generates and shows the policy', async (t) => {
  const { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler } = await import('fastify-type-provider-zod')
  for (const transformObject of [undefined, jsonSchemaTransformObject]) {
    const app = Fastify()
    app.setValidatorCompiler(validatorCompiler)
    app.setSerializerCompiler(serializerCompiler)
    await app.register(fastifyPrecondition)
    await app.register(fastifySwagger, { openapi: { info }, transform: jsonSchemaTransform, ...(transformObject === undefined ? {} : { transformObject }) })
    zodRoutes(app)
    await app.ready()
    const doc = app.swagger() as Json
    await documentsThePolicy(t, doc, '#/components/schemas/PreconditionProblemDetails')
    t.same(operation(doc, '/items/{id}', 'put').requestBody.content['application/json'].schema.required, ['name'], 'the Zod body is documented by the transform')
    await answersAsDocumented(t, app)
    await app.close()
  }
})

test('fastify-zod-openapi with its transformers: If-Match and Idempotency-Key are in the document', async (t) => {
  const { fastifyZodOpenApiPlugin, fastifyZodOpenApiTransformers, serializerCompiler, validatorCompiler } = await import('fastify-zod-openapi')
  const app = Fastify()
  app.setValidatorCompiler(validatorCompiler)
  app.setSerializerCompiler(serializerCompiler)
  await app.register(fastifyZodOpenApiPlugin)
  await app.register(fastifyPrecondition)
  await app.register(fastifySwagger, { openapi: { openapi: '3.1.0', info }, ...fastifyZodOpenApiTransformers })
  zodRoutes(app)
  await app.ready()
  const doc = app.swagger() as Json
  await documentsThePolicy(t, doc, '#/components/schemas/PreconditionProblemDetails')
  await answersAsDocumented(t, app)
  await app.close()
})

function zodRoutes (app: FastifyInstance): void {
  const { items, validators } = itemStore()
  const Item = z.object({ id: z.string(), name: z.string() })
  app.get('/items/:id', {
    schema: { params: z.object({ id: z.string() }), response: { 200: Item } } as FastifySchema,
    concurrency: { validators }
  }, async (request) => {
    const { id } = request.params as { id: string }
    return { id, name: items.get(id)?.name }
  })
  app.put('/items/:id', {
    schema: { params: z.object({ id: z.string() }), body: z.object({ name: z.string() }), response: { 200: Item } } as FastifySchema,
    concurrency: { require: 'if-match', validators }
  }, async (request) => {
    const { id } = request.params as { id: string }
    const { name } = request.body as { name: string }
    const item = items.get(id) as { name: string, version: number }
    items.set(id, { name, version: item.version + 1 })
    return { id, name, extra: 'not in the schema' }
  })
  let orders = 0
  app.post('/orders', {
    schema: { body: z.object({ item: z.string() }), response: { 201: z.object({ id: z.number() }) } } as FastifySchema,
    concurrency: { idempotency: { required: true } }
  }, async (_request, reply) => reply.code(201).send({ id: ++orders }))
  app.get('/health', { schema: { response: { 200: z.object({ ok: z.boolean() }) } } as FastifySchema }, async () => ({ ok: true }))
}

test('a transform that refuses every schema it did not declare receives only the declared ones', async (t) => {
  for (const mode of ['openapi', 'swagger'] as const) {
    const declared = new Set<unknown>()
    const own = <T> (schema: T): T => {
      declared.add(schema)
      for (const part of Object.values(schema as Json)) {
        declared.add(part)
        if (part !== null && typeof part === 'object' && !('type' in part)) for (const entry of Object.values(part)) declared.add(entry)
      }
      return schema
    }
    const seen: string[] = []
    // Refuses a schema, or a part of one, that is not an object the app declared itself.
    const transform = ({ schema, url }: { schema?: Json, url: string }): { schema: FastifySchema, url: string } => {
      seen.push(url)
      if (schema === undefined) return { schema: schema as unknown as FastifySchema, url }
      if (!declared.has(schema)) throw new Error(`${url}: a schema this app never declared`)
      for (const [part, value] of Object.entries(schema)) {
        if (!declared.has(value)) throw new Error(`${url}: ${part} was never declared`)
        if (part === 'response') {
          for (const [status, response] of Object.entries(value as Json)) {
            if (!declared.has(response)) throw new Error(`${url}: response ${status} was never declared`)
          }
        }
      }
      return { schema: schema as FastifySchema, url }
    }
    const app = Fastify()
    await app.register(fastifyPrecondition)
    await app.register(fastifySwagger, { [mode]: { info }, transform })
    const { items, validators } = itemStore()
    const item = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } } }
    app.get('/items/:id', { schema: own({ params: { type: 'object', properties: { id: { type: 'string' } } } }), concurrency: { validators } }, async (request) => {
      const { id } = request.params as { id: string }
      return { id, name: items.get(id)?.name }
    })
    app.put('/items/:id', {
      schema: own({ params: { type: 'object', properties: { id: { type: 'string' } } }, body: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] }, response: { 200: item } }),
      concurrency: { require: 'if-match', validators }
    }, async (request) => {
      const { id } = request.params as { id: string }
      const { name } = request.body as { name: string }
      const current = items.get(id) as { name: string, version: number }
      items.set(id, { name, version: current.version + 1 })
      return { id, name, extra: 'not in the schema' }
    })
    let orders = 0
    app.post('/orders', {
      schema: own({ body: { type: 'object', properties: { item: { type: 'string' } } }, response: { 201: { type: 'object', properties: { id: { type: 'number' } } } } }),
      concurrency: { idempotency: { required: true } }
    }, async (_request, reply) => reply.code(201).send({ id: ++orders }))
    app.get('/health', async () => ({ ok: true }))
    await app.ready()
    const doc = app.swagger() as Json
    t.same(seen.sort(), ['/health', '/items/:id', '/items/:id', '/orders'], `${mode}: the transform saw every route`)
    if (mode === 'openapi') {
      await documentsThePolicy(t, doc, '#/components/schemas/PreconditionProblemDetails')
    } else {
      const put = operation(doc, '/items/{id}', 'put')
      t.equal(header(put, 'If-Match')?.required, true, 'swagger 2: If-Match')
      const post = operation(doc, '/orders', 'post')
      t.equal(header(post, 'Idempotency-Key')?.required, true, 'swagger 2: Idempotency-Key')
      for (const [op, status] of [[put, '412'], [put, '428'], [post, '409'], [post, '422']] as const) {
        t.equal(op.responses[status]?.schema?.$ref, '#/definitions/PreconditionProblemDetails', `swagger 2: ${status}`)
      }
      t.equal(await valid(doc), null, 'swagger 2: the document is valid')
    }
    await answersAsDocumented(t, app)
    await app.close()
  }
})
