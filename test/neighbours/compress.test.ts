// @fastify/compress sends one body gzip-encoded and another identity-encoded under whatever ETag
// the route set, and a strong tag must differ between them (RFC 9110 §8.8.3). The README's recipe:
// weak version tags from validators, and weakIfMatch so a write can be conditioned on them.
import compress from '@fastify/compress'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'

test('with @fastify/compress: weak version tags on every coding, 304s, and writes conditioned on them', async (t) => {
  const app = Fastify()
  await app.register(compress, { threshold: 0 })
  await app.register(fastifyPrecondition, { weakIfMatch: true })
  let version = 1
  const validators = () => ({ etag: `W/"v${version}"` })
  app.get('/items/:id', { concurrency: { validators } }, async () => ({ version, padding: 'x'.repeat(2000) }))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => { version++; return { version } })
  const gzip = await app.inject({ url: '/items/1', headers: { 'accept-encoding': 'gzip' } })
  const identity = await app.inject({ url: '/items/1' })
  t.equal(gzip.headers['content-encoding'], 'gzip')
  t.equal(identity.headers['content-encoding'], undefined)
  t.equal(gzip.headers.etag, 'W/"v1"', 'a weak tag may stand for both codings')
  t.equal(identity.headers.etag, 'W/"v1"')
  const notModified = await app.inject({ url: '/items/1', headers: { 'accept-encoding': 'gzip', 'if-none-match': 'W/"v1"' } })
  t.equal(notModified.statusCode, 304)
  const write = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': gzip.headers.etag as string } })
  t.equal(write.statusCode, 200, 'the tag a browser got with the gzip body conditions the write')
  t.equal(write.headers.etag, 'W/"v2"')
  const stale = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': 'W/"v1"' } })
  t.equal(stale.statusCode, 412, 'and a stale one is still refused')
})
