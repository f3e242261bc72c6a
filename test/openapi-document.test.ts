// The document is finished after @fastify/swagger built it: each guarded route's operations are
// found where swagger put them (its path format, base paths stripped or not), and get the policy in
// the document's own specification, merged with what is there, which wins.
import { test } from 'tap'
import { createRequire } from 'node:module'
import Fastify from 'fastify'
import fastifySwagger from '@fastify/swagger'
import SwaggerParser from '@apidevtools/swagger-parser'
import fastifyPrecondition, { ProblemDetailsSchema } from '../lib/index.js'
import { finishDocument, type DocumentedRoute } from '../lib/openapi/document.js'
import { documentPaths, swaggerPath } from '../lib/openapi/paths.js'
import { routeDocumentation } from '../lib/openapi/route.js'
import { toPolicy } from '../lib/policy.js'
import { ProblemWriter } from '../lib/problem.js'

type Json = Record<string, any>

const { formatParamUrl } = createRequire(import.meta.url)('@fastify/swagger/lib/util/format-param-url.js') as { formatParamUrl: (url: string) => string }
const validators = () => ({ etag: '"v1"' })

test('a route\'s URL as swagger writes it in paths, step for step', async (t) => {
  const urls = [
    '/', '/items/:id', '/items/:id/', '/files/*', '/a/:x-:y', '/a/:x.:y', '/users/:id(\\d+)', '/users/:id(^\\d+$)/posts',
    '/(\\d+)', '/a/(x)(y)', '/a/:id((a|b)c)', '/time::watch', '/a/:', '/a/:/b', '/a/:(\\d+)', '/a/:id*', '/a/:id:b',
    '/a/:id(unclosed', '/a/(open', '/a/:id(x)rest', '/:id', ''
  ]
  for (const url of urls) t.equal(swaggerPath(url), formatParamUrl(url), JSON.stringify(url))
})

test('the paths a URL may have in a document: base paths stripped, then as it is', async (t) => {
  t.same(documentPaths('/items/:id', { openapi: '3.0.3' }), ['/items/{id}'], 'no servers')
  t.same(documentPaths('/v1/items/:id', { openapi: '3.0.3', servers: [{ url: '/v1' }] }), ['/items/{id}', '/v1/items/{id}'])
  t.same(documentPaths('/v1/items', { openapi: '3.0.3', servers: [{ url: 'https://api.example.com/v1' }] }), ['/items', '/v1/items'])
  t.same(documentPaths('/v2/items', { openapi: '3.0.3', servers: [{ url: 'https://{host}/{version}', variables: { host: { default: 'api.example.com' }, version: { default: 'v2' } } }] }), ['/items', '/v2/items'], 'variables take their defaults')
  t.same(documentPaths('/items', { openapi: '3.0.3', servers: [{ url: 'https://api.example.com' }, { url: 'not a url' }, {}, null] }), ['/items'], 'a root, a relative name and broken entries strip nothing')
  t.same(documentPaths('/v1/items', { openapi: '3.0.3', servers: [{ url: '/{version}' }] }), ['/v1/items'], 'a variable without a default is left as it is')
  t.same(documentPaths('/v1/items', { swagger: '2.0', basePath: '/v1' }), ['/items', '/v1/items'])
  t.same(documentPaths('/v1', { swagger: '2.0', basePath: '/v1' }), ['/', '/v1'], 'Swagger 2.0 paths start with a slash')
  t.same(documentPaths('/items', { swagger: '2.0' }), ['/items'])
})

async function valid (doc: Json): Promise<Error | null> {
  return await SwaggerParser.validate(structuredClone(doc) as never).then(() => null, (error: Error) => error)
}

test('routes under a base path are found where swagger put them, stripped or not', async (t) => {
  const cases: Array<[string, Json]> = [
    ['openapi servers', { openapi: { info: { title: 't', version: '1' }, servers: [{ url: 'https://{host}/api', variables: { host: { default: 'example.com' } } }] } }],
    ['openapi, stripBasePath: false', { openapi: { info: { title: 't', version: '1' }, servers: [{ url: '/api' }] }, stripBasePath: false }],
    ['swagger basePath', { swagger: { info: { title: 't', version: '1' }, basePath: '/api' } }]
  ]
  for (const [name, options] of cases) {
    const app = Fastify()
    await app.register(fastifyPrecondition)
    await app.register(fastifySwagger, options)
    await app.register(async (api) => {
      api.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => 'ok')
    }, { prefix: '/api' })
    await app.ready()
    const doc = app.swagger() as Json
    const path = options.stripBasePath === false ? '/api/items/{id}' : '/items/{id}'
    const put = doc.paths[path].put
    t.ok(put.parameters.some((p: Json) => p.name === 'If-Match'), `${name}: If-Match`)
    t.ok(put.responses['428'], `${name}: the 428`)
    t.equal(await valid(doc), null, `${name}: a valid document`)
    await app.close()
  }
})

function documented (method: string | string[], url: string, option: unknown): DocumentedRoute {
  return { method, url, documentation: routeDocumentation(method, url, toPolicy(option, url), new ProblemWriter({})) }
}

test('finishing a document with routes: what it finds, what it adds, what it leaves', async (t) => {
  const put = documented('PUT', '/items/:id', { require: 'if-match', validators })
  t.equal(finishDocument({ openapi: '3.0.3' }, [put]), false, 'a document without paths is left alone')
  t.equal(finishDocument({ openapi: '3.0.3', paths: { '/other': { put: { responses: {} } } } }, [put]), false, 'a route not in the document (hidden) adds nothing')
  t.equal(finishDocument({ openapi: '3.0.3', paths: { '/items/{id}': { parameters: [] } } }, [put]), false, 'nor one whose method is not there')
  const search = documented('SEARCH', '/items/:id', { require: 'if-match', validators })
  t.equal(finishDocument({ openapi: '3.0.3', paths: { '/items/{id}': { search: { responses: {} } } } }, [search]), false, 'a method that is not an operation field')

  const bare: Json = { openapi: '3.0.3', paths: { '/items/{id}': { put: { parameters: [{ $ref: '#/components/parameters/Tenant' }] } } } }
  t.equal(finishDocument(bare, [put]), true)
  const op = bare.paths['/items/{id}'].put
  t.same(op.parameters.map((p: Json) => p.name ?? p.$ref), ['#/components/parameters/Tenant', 'If-Match'], 'a referenced parameter is kept')
  t.same(Object.keys(op.responses).sort(), ['412', '428', '503'], 'responses made where there were none')
  t.equal(op.responses['412'].content['application/problem+json'].schema.$ref, '#/components/schemas/PreconditionProblemDetails')
  const component = bare.components.schemas.PreconditionProblemDetails
  t.same(Object.keys(component.properties), Object.keys(ProblemDetailsSchema.properties), 'a document without the shared schema gets its own copy')
  t.notOk(component.$id)
  t.equal(component.title, 'PreconditionProblemDetails')

  const swagger2: Json = { swagger: '2.0', definitions: { Other: {} }, paths: { '/items/{id}': { put: { responses: { 200: { description: 'ok' } } } } } }
  finishDocument(swagger2, [put])
  t.ok(swagger2.definitions.PreconditionProblemDetails, 'in Swagger 2.0 too, beside the others')
  t.equal(swagger2.paths['/items/{id}'].put.responses['412'].schema.$ref, '#/definitions/PreconditionProblemDetails')
  t.same(swagger2.paths['/items/{id}'].put.produces, ['application/json', 'application/problem+json'])

  const taken: Json = {
    openapi: '3.0.3',
    components: { schemas: { PreconditionProblemDetails: { type: 'string' }, 'def-0': { title: 'PreconditionProblemDetails' } } },
    paths: { '/items/{id}': { put: { responses: { 200: { $ref: '#/components/responses/Item' }, 201: { description: 'Created' } } } } }
  }
  finishDocument(taken, [put])
  const takenOp = taken.paths['/items/{id}'].put
  t.equal(takenOp.responses['428'].content['application/problem+json'].schema.$ref, '#/components/schemas/def-0', 'the app\'s own schema of that name is not used for the problems')
  t.same(takenOp.responses['200'], { $ref: '#/components/responses/Item' }, 'a referenced answer is left alone')
  t.ok(takenOp.responses['201'].headers.ETag, 'the others carry the validators')

  const read = documented(['GET', 'PUT'], '/items/:id', { require: 'if-match', validators })
  const shared = { responses: { 200: { description: 'Default Response' } } }
  const both: Json = { openapi: '3.0.3', paths: { '/items/{id}': { get: shared, put: shared } } }
  finishDocument(both, [read])
  t.same(Object.keys(shared.responses).sort(), ['200', '304', '412', '428', '503'], 'an operation shared by the methods of a route is finished once')
  t.same(Object.keys((shared.responses['200'] as Json).headers), ['ETag', 'Last-Modified'])
})

test('Swagger 2.0: an answer the route declares in OpenAPI 3 form is given the Swagger 2.0 form', async (t) => {
  const doc: Json = {
    swagger: '2.0',
    paths: {
      '/any': { get: { responses: { 200: { description: 'Anything', schema: { content: { '*/*': { schema: {} } } } } } } },
      '/csv': { get: { responses: { 200: { description: 'A table', schema: { content: { 'text/csv': { schema: { type: 'string' }, example: 'a,b' } } } } } } }
    }
  }
  t.equal(finishDocument(doc), true)
  t.same(doc.paths['/any'].get, { responses: { 200: { description: 'Anything' } } }, 'an empty body schema is dropped, */* is not a media type to produce')
  t.same(doc.paths['/csv'].get, { responses: { 200: { description: 'A table', schema: { type: 'string' }, examples: { 'text/csv': 'a,b' } } }, produces: ['application/json', 'text/csv'] }, 'its example under examples')
})

test('with problems: \'error-handler\' the documented examples are still the bodies the plugin makes', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition, { problems: 'error-handler' })
  await app.register(fastifySwagger, { openapi: { info: { title: 't', version: '1' } } })
  app.setErrorHandler((error: { statusCode?: number, problem?: unknown }, _request, reply) => reply.code(error.statusCode ?? 500).send(error.problem))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => 'ok')
  await app.ready()
  const put = (app.swagger() as Json).paths['/items/{id}'].put
  const sent = await app.inject({ method: 'PUT', url: '/items/1' })
  t.equal(sent.statusCode, 428)
  t.same(put.responses['428'].content['application/problem+json'].example, sent.json())
  await app.close()
})
