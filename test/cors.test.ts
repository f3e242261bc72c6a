// Beside @fastify/cors, set up as the README shows: a browser's preflight for a conditional PUT is
// allowed, and every answer the script reads, the plugin's own 412 and 428 problems included,
// exposes ETag and Last-Modified.
import Fastify from 'fastify'
import fastifyCors from '@fastify/cors'
import { test } from 'tap'
import fastifyPrecondition, { ProblemCode, strongEtag } from '../lib/index.js'

const ORIGIN = 'https://app.example'

async function corsApp (exposedHeaders?: string[]) {
  const app = Fastify()
  await app.register(fastifyCors, {
    origin: [ORIGIN],
    methods: ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE'],
    ...(exposedHeaders !== undefined && { exposedHeaders })
  })
  await app.register(fastifyPrecondition)
  let body = '{"id":"1","count":0}'
  const validators = () => ({ etag: strongEtag(body), lastModified: new Date('2026-01-01T00:00:00Z') })
  app.get('/items/:id', { concurrency: { validators } }, async (_request, reply) => reply.type('application/json').send(body))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async (request, reply) => {
    body = JSON.stringify(request.body)
    return reply.type('application/json').send(body)
  })
  return app
}

const exposed = (headers: Record<string, unknown>) =>
  String(headers['access-control-expose-headers'] ?? '').split(',').map((name) => name.trim().toLowerCase())

test('a browser-like preflight and conditional PUT see the ETag exposed', async (t) => {
  const app = await corsApp(['ETag', 'Last-Modified'])
  t.teardown(() => app.close())

  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/items/1',
    headers: { origin: ORIGIN, 'access-control-request-method': 'PUT', 'access-control-request-headers': 'if-match, content-type' }
  })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], ORIGIN)
  t.match(String(preflight.headers['access-control-allow-methods']), /\bPUT\b/)
  t.match(String(preflight.headers['access-control-allow-headers']), /if-match/i, 'the If-Match request header is allowed')

  const read = await app.inject({ method: 'GET', url: '/items/1', headers: { origin: ORIGIN } })
  t.ok(read.headers.etag)
  t.same(exposed(read.headers), ['etag', 'last-modified'], 'the GET exposes its validators')

  const write = await app.inject({ method: 'PUT', url: '/items/1', headers: { origin: ORIGIN, 'if-match': String(read.headers.etag) }, payload: { id: '1', count: 1 } })
  t.equal(write.statusCode, 200)
  t.equal(write.headers['access-control-allow-origin'], ORIGIN)
  t.same(exposed(write.headers), ['etag', 'last-modified'], 'so does the write, with the new tag')
  t.not(write.headers.etag, read.headers.etag)

  const stale = await app.inject({ method: 'PUT', url: '/items/1', headers: { origin: ORIGIN, 'if-match': String(read.headers.etag) }, payload: {} })
  t.equal(stale.statusCode, 412)
  t.equal(stale.json().code, ProblemCode.PRECONDITION_FAILED)
  t.equal(stale.headers['access-control-allow-origin'], ORIGIN, 'the plugin\'s 412 is readable by the script')
  t.same(exposed(stale.headers), ['etag', 'last-modified'], 'with the current ETag exposed')
  t.equal(stale.headers.etag, write.headers.etag)

  const missing = await app.inject({ method: 'PUT', url: '/items/1', headers: { origin: ORIGIN }, payload: {} })
  t.equal(missing.statusCode, 428)
  t.equal(missing.headers['access-control-allow-origin'], ORIGIN, 'so is its 428')
})

test('the default CORS set-up does not expose the ETag', async (t) => {
  const app = await corsApp()
  t.teardown(() => app.close())
  const read = await app.inject({ method: 'GET', url: '/items/1', headers: { origin: ORIGIN } })
  t.ok(read.headers.etag, 'the server sends it')
  t.equal(read.headers['access-control-expose-headers'], undefined, 'but a browser would hide it from the script')
})
