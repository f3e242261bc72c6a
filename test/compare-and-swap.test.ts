// What a handler doing its own compare-and-swap gets: update-only PUTs (create: false),
// ifMatchVersions, reply.failPrecondition with the reason, reply.setValidators; and the write's
// validators on its 2xx whatever app-wide hooks would set (@fastify/etag).
import etag from '@fastify/etag'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { ifMatchVersions } from '../lib/index.js'
import { parsePreconditions } from '../lib/http/preconditions.js'

test('create: false: a PUT to a missing resource answers its 404, never a problem that suggests creating it', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const rows = new Map<string, number>([['1', 1]])
  const validators = (request: { params: unknown }) => {
    const version = rows.get((request.params as { id: string }).id)
    return version === undefined ? null : { etag: `"v${version}"` }
  }
  app.put('/items/:id', { concurrency: { require: 'if-match', validators, create: false } }, async (request, reply) => {
    const id = (request.params as { id: string }).id
    const version = rows.get(id)
    if (version === undefined) return reply.code(404).send({ error: 'no such item' })
    rows.set(id, version + 1)
    return { version: version + 1 }
  })
  app.put('/creatable/:id', { concurrency: { require: 'if-match', validators } }, async () => 'created')
  t.teardown(() => app.close())
  const missing = await app.inject({ method: 'PUT', url: '/items/2', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(missing.statusCode, 404, 'the handler\'s 404, not 412')
  t.notMatch(missing.body, /Create it/)
  const star = await app.inject({ method: 'PUT', url: '/items/2', payload: {}, headers: { 'if-match': '*' } })
  t.equal(star.statusCode, 404)
  const present = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(present.statusCode, 200)
  t.equal(present.headers.etag, '"v2"')
  const stale = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(stale.statusCode, 412, 'an existing resource is still guarded')
  const creatable = await app.inject({ method: 'PUT', url: '/creatable/9', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(creatable.statusCode, 412, 'where a PUT may create, If-Match on a missing resource still fails')
  t.match(creatable.json().detail, /Create it without If-Match/)
  await t.rejects(async () => {
    const other = Fastify()
    await other.register(fastifyPrecondition)
    other.put('/x', { concurrency: { validators, create: 'no' as never } }, async () => 'x')
    await other.ready()
  }, { code: 'FST_PRECONDITION_INVALID_CREATE' })
})

test('ifMatchVersions: the versions an If-Match names', async (t) => {
  const parse = (opaque: string) => /^v\d+$/.test(opaque) ? Number(opaque.slice(1)) : undefined
  const versions = (value: string | undefined) => ifMatchVersions(parsePreconditions({ 'if-match': value }), parse)
  t.equal(versions(undefined), null, 'no If-Match')
  t.equal(versions('*'), 'any')
  t.same(versions('"v7"'), [7])
  t.same(versions('"v7", "v8"'), [7, 8])
  t.same(versions('W/"v7", "v8"'), [8], 'weak tags never match strongly')
  t.same(versions('"other"'), [], 'what parse refuses is left out: nothing matches')
  t.same(versions('garbage'), [])
})

test('reply.failPrecondition says why the compare-and-swap failed', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/cas/:case', async (request, reply) => {
    const which = (request.params as { case: string }).case
    if (which === 'gone') return reply.failPrecondition(null)
    if (which === 'custom') return reply.failPrecondition('"v3"', 'The order was shipped meanwhile.')
    if (which === 'plain') return reply.failPrecondition()
    return reply.failPrecondition({ etag: '"v3"' })
  })
  t.teardown(() => app.close())
  const detail = async (which: string, ifMatch?: string) => {
    const res = await app.inject({ method: 'PUT', url: `/cas/${which}`, payload: {}, headers: ifMatch === undefined ? {} : { 'if-match': ifMatch } })
    t.equal(res.statusCode, 412)
    return res.json() as { detail: string, etag?: string }
  }
  t.match((await detail('changed', '"v2"')).detail, /changed since you read it/)
  t.equal((await detail('changed', '"v2"')).etag, '"v3"')
  t.match((await detail('changed', 'v2')).detail, /holds no valid entity-tag/, 'a malformed tag is not "changed"')
  t.match((await detail('changed', 'W/"v3"')).detail, /weak entity-tag/, 'a weak tag')
  t.match((await detail('changed', '"v3"')).detail, /changed since you read it/, 'the tag matched, the handler\'s own check did not: changed')
  const gone = await detail('gone', '"v2"')
  t.match(gone.detail, /has none: it does not exist, or no longer does/, 'a missing row')
  t.notMatch(gone.detail, /Create/)
  t.equal(gone.etag, undefined)
  t.equal((await detail('custom', '"v2"')).detail, 'The order was shipped meanwhile.')
  t.match((await detail('plain', '"v2"')).detail, /changed since you read it/)
})

test('reply.setValidators: the write hands its new validators over, validators is not called again', async (t) => {
  const app = Fastify()
  await app.register(etag)
  await app.register(fastifyPrecondition)
  let version = 1
  let calls = 0
  const validators = () => { calls++; return { etag: `"v${version}"`, lastModified: new Date(Date.UTC(2026, 0, version)) } }
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async (_request, reply) => {
    version++
    reply.setValidators({ etag: `"v${version}"`, lastModified: new Date(Date.UTC(2026, 0, version)) })
    return 'a string, no preSerialization stage'
  })
  app.put('/bad/:id', async (_request, reply) => { reply.setValidators(null as never); return 'x' })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.etag, '"v2"', 'the resource\'s tag, not @fastify/etag\'s hash of the body')
  t.equal(res.headers['last-modified'], 'Fri, 02 Jan 2026 00:00:00 GMT')
  t.equal(calls, 1, 'validators ran once, under the lock, before the write')
  const bad = await app.inject({ method: 'PUT', url: '/bad/1', payload: {} })
  t.equal(bad.statusCode, 500)
})

test('with @fastify/etag app-wide, a client chains three writes with the tags they return', async (t) => {
  const app = Fastify()
  await app.register(etag)
  await app.register(fastifyPrecondition)
  let version = 1
  const validators = () => ({ etag: `"v${version}"` })
  app.get('/items/:id', { concurrency: { validators } }, async () => ({ version }))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => {
    version++
    return { version }
  })
  t.teardown(() => app.close())
  let tag = (await app.inject({ url: '/items/1' })).headers.etag as string
  t.equal(tag, '"v1"')
  for (let i = 2; i <= 4; i++) {
    const res = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': tag } })
    t.equal(res.statusCode, 200, `write ${i - 1} with the tag the last one returned`)
    tag = res.headers.etag as string
    t.equal(tag, `"v${i}"`, 'the resource\'s version, not a hash of the body')
  }
  t.equal(version, 4)
})

test('a write whose handler sets only ETag keeps the Last-Modified its validators give', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  let version = 1
  const validators = () => ({ etag: `"v${version}"`, lastModified: new Date(Date.UTC(2026, 5, version)) })
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async (_request, reply) => {
    version++
    reply.header('etag', `"own-${version}"`)
    return { version }
  })
  app.put('/text/:id', { concurrency: { require: 'if-match', validators } }, async (_request, reply) => {
    version++
    reply.header('etag', `"own-${version}"`).type('text/plain')
    return 'text'
  })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'PUT', url: '/items/1', payload: {}, headers: { 'if-match': '"v1"' } })
  t.equal(res.headers.etag, '"own-2"', 'the handler\'s own tag wins')
  t.equal(res.headers['last-modified'], 'Tue, 02 Jun 2026 00:00:00 GMT', 'and the validators\' Last-Modified is kept')
  const text = await app.inject({ method: 'PUT', url: '/text/1', payload: {}, headers: { 'if-match': '"v2"' } })
  t.equal(text.headers.etag, '"own-3"')
  t.equal(text.headers['last-modified'], 'Wed, 03 Jun 2026 00:00:00 GMT', 'also for an answer with no preSerialization stage')
})
