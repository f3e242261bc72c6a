// Beside @fastify/etag: the tags it gives a GET are the tags the plugin checks on a write whose
// validators hash the same bytes with strongEtag, and If-None-Match is answered once.
import { test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyEtag from '@fastify/etag'
import fastifyPrecondition, { strongEtag, ProblemCode } from '../lib/index.js'

interface Options { etagFirst?: boolean, weak?: boolean }

/** Items kept as the bytes GET sends; validators hash exactly those bytes. */
async function app ({ etagFirst = true, weak = false }: Options = {}) {
  const fastify: FastifyInstance = Fastify()
  if (etagFirst) await fastify.register(fastifyEtag, { weak })
  await fastify.register(fastifyPrecondition)
  if (!etagFirst) await fastify.register(fastifyEtag, { weak })
  const items = new Map<string, Buffer>([['1', Buffer.from('{"id":"1","name":"one"}')]])
  const calls = { handler: 0 }
  const id = (request: FastifyRequest) => (request.params as { id: string }).id
  const validators = (request: FastifyRequest) => {
    const body = items.get(id(request))
    return body === undefined ? null : { etag: strongEtag(body) }
  }
  const read = async (request: FastifyRequest) => {
    calls.handler++
    return items.get(id(request))
  }
  // Served by @fastify/etag alone: the route has no policy.
  fastify.get('/plain/:id', read)
  // Guarded by the plugin too.
  fastify.get('/items/:id', { concurrency: { validators } }, read)
  fastify.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async (request) => {
    calls.handler++
    const body = Buffer.from(JSON.stringify({ id: id(request), ...(request.body as object) }))
    items.set(id(request), body)
    return body
  })
  return { fastify, items, calls }
}

for (const etagFirst of [true, false]) {
  const order = etagFirst ? '@fastify/etag registered first' : '@fastify/etag registered second'

  test(`${order}: a tag from @fastify/etag is accepted as If-Match, and a stale one is refused`, async (t) => {
    const { fastify, items } = await app({ etagFirst })
    const got = await fastify.inject({ method: 'GET', url: '/plain/1' })
    t.equal(got.statusCode, 200)
    const tag = got.headers.etag as string
    t.equal(tag, strongEtag(items.get('1') as Buffer), '@fastify/etag and strongEtag agree on the same bytes')
    t.notOk(tag.startsWith('W/'), 'the default is a strong tag')

    const put = await fastify.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': tag }, payload: { name: 'changed' } })
    t.equal(put.statusCode, 200, 'the plugin accepts the tag')
    t.equal(put.headers.etag, strongEtag(items.get('1') as Buffer), 'the write answers with the new tag')

    const again = await fastify.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': tag }, payload: { name: 'lost' } })
    t.equal(again.statusCode, 412, 'the old tag is stale now')
    t.equal(again.json().code, ProblemCode.PRECONDITION_FAILED)
    const now = await fastify.inject({ method: 'GET', url: '/plain/1' })
    t.equal(again.json().etag, now.headers.etag, 'the 412 names the tag @fastify/etag now serves')
    t.equal(again.headers.etag, now.headers.etag)
    t.equal(JSON.parse(now.body).name, 'changed')
  })

  test(`${order}: If-None-Match on a guarded GET is answered once, by the plugin, before the handler`, async (t) => {
    const { fastify, items, calls } = await app({ etagFirst })
    const tag = strongEtag(items.get('1') as Buffer)
    for (const ifNoneMatch of [tag, `W/${tag}`, `"other", ${tag}`]) {
      const res = await fastify.inject({ method: 'GET', url: '/items/1', headers: { 'if-none-match': ifNoneMatch } })
      t.equal(res.statusCode, 304, ifNoneMatch)
      t.equal(res.body, '')
      t.equal(res.headers.etag, tag, 'one ETag, the current one')
      t.equal(res.rawPayload.length, 0)
    }
    t.equal(calls.handler, 0, 'the handler never ran')

    const fresh = await fastify.inject({ method: 'GET', url: '/items/1' })
    t.equal(fresh.statusCode, 200)
    t.equal(fresh.headers.etag, tag, 'a 200 carries one ETag, on which both agree')
    const stale = await fastify.inject({ method: 'GET', url: '/items/1', headers: { 'if-none-match': '"stale"' } })
    t.equal(stale.statusCode, 200, '@fastify/etag does not turn a miss into a 304')
    t.equal(stale.body, (items.get('1') as Buffer).toString())
    t.equal(calls.handler, 2)
  })
}

test('weak tags from @fastify/etag ({ weak: true }) can never satisfy If-Match: keep the default', async (t) => {
  const { fastify } = await app({ weak: true })
  const tag = (await fastify.inject({ method: 'GET', url: '/plain/1' })).headers.etag as string
  t.ok(tag.startsWith('W/'))
  const put = await fastify.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': tag }, payload: { name: 'x' } })
  t.equal(put.statusCode, 412)
  t.match(put.json().detail, /weak entity-tag/)
})

// Known gap: the plugin sets a guarded route's ETag in its route-level onSend hook, which runs
// after @fastify/etag's app-level one, so @fastify/etag's hash of the body wins over a version
// tag from validators, and a client holding it is refused every write. Until the plugin sets the
// tag before onSend, validators must hash the bytes the route sends (see the README).
test('version tags from validators stay the tags clients see on reads beside @fastify/etag', async (t) => {
  const fastify = Fastify()
  await fastify.register(fastifyEtag)
  await fastify.register(fastifyPrecondition)
  const validators = () => ({ etag: '"v7"' })
  fastify.get('/x', { concurrency: { validators } }, async () => ({ name: 'x' }))
  fastify.put('/x', { concurrency: { require: 'if-match', validators } }, async () => ({ ok: true }))
  const got = await fastify.inject({ method: 'GET', url: '/x' })
  t.equal(got.headers.etag, '"v7"')
  const put = await fastify.inject({ method: 'PUT', url: '/x', headers: { 'if-match': got.headers.etag as string } })
  t.equal(put.statusCode, 200)
  const notModified = await fastify.inject({ method: 'GET', url: '/x', headers: { 'if-none-match': '"v7"' } })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.headers.etag, '"v7"')
})

test('a read its handler answers with an error carries none of the validators\' headers', async (t) => {
  const fastify = Fastify()
  await fastify.register(fastifyPrecondition)
  const lastModified = new Date('2026-01-01T00:00:00Z')
  fastify.get('/gone', { concurrency: { validators: () => ({ etag: '"v7"', lastModified }) } }, async (_request, reply) => reply.code(410).send({ gone: true }))
  fastify.get('/own', { concurrency: { validators: () => ({ etag: '"v7"', lastModified }) } }, async (_request, reply) => reply.code(404).header('etag', '"own"').header('last-modified', 'Thu, 01 Jan 1970 00:00:00 GMT').send({}))
  const gone = await fastify.inject({ url: '/gone' })
  t.equal(gone.statusCode, 410)
  t.equal(gone.headers.etag, undefined)
  t.equal(gone.headers['last-modified'], undefined)
  const own = await fastify.inject({ url: '/own' })
  t.equal(own.headers.etag, '"own"', 'a tag the handler set stays')
  t.equal(own.headers['last-modified'], 'Thu, 01 Jan 1970 00:00:00 GMT')
})
