// Behind a proxy that weakens tags (nginx gzip turns "x" into W/"x"), a client echoing the weak tag
// in If-Match gets 412 for ever under RFC 9110's strong comparison. The opt-in plugin option
// weakIfMatch compares If-Match weakly; it is off by default.
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { evaluate, Outcome } from '../../lib/index.js'

test('weakIfMatch: W/"x" in If-Match matches "x" only when asked for', async (t) => {
  for (const weakIfMatch of [false, true, undefined]) {
    const app = Fastify()
    await app.register(fastifyPrecondition, weakIfMatch === undefined ? {} : { weakIfMatch })
    let version = 1
    const validators = () => ({ etag: `"v${version}"` })
    app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => { version++; return 'ok' })
    app.patch('/unlocked/:id', { concurrency: { validators, lock: false } }, async () => { version++; return 'ok' })
    const weak = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': 'W/"v1"' } })
    t.equal(weak.statusCode, weakIfMatch === true ? 200 : 412, `weakIfMatch ${weakIfMatch}: a weakened current tag`)
    const stale = await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': 'W/"v0"' } })
    t.equal(stale.statusCode, 412, `weakIfMatch ${weakIfMatch}: a weakened stale tag is still refused`)
    const unlocked = await app.inject({ method: 'PATCH', url: '/unlocked/1', headers: { 'if-match': `W/"v${version}"` } })
    t.equal(unlocked.statusCode, weakIfMatch === true ? 200 : 412, `weakIfMatch ${weakIfMatch}: also where the hook checks`)
  }
  t.equal(evaluate('PUT', { 'if-match': 'W/"a"' }, { etag: '"a"' }), Outcome.IF_MATCH_WEAK, 'evaluate is strict by default')
  t.equal(evaluate('PUT', { 'if-match': 'W/"a"' }, { etag: '"a"' }, true), Outcome.PROCEED)
  t.equal(evaluate('PUT', { 'if-match': 'W/"b"' }, { etag: '"a"' }, true), Outcome.IF_MATCH_MISMATCH)
  await t.rejects(async () => { await Fastify().register(fastifyPrecondition, { weakIfMatch: 'yes' as never }) }, { code: 'FST_PRECONDITION_INVALID_WEAK_IF_MATCH' })
})
