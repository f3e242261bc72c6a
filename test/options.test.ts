// Bad options fail early: plugin options at registration, route options when the route is
// declared, each with an FST_… code that names the option.
import { test } from 'tap'
import Fastify from 'fastify'
import fastifyPrecondition from '../lib/index.js'

const validators = () => ({ etag: '"a"' })

test('route option errors are thrown by the route declaration', async (t) => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['not an object', 'if-match', 'FST_PRECONDITION_INVALID_CONCURRENCY', /concurrency must be an object/],
    ['an array', ['if-match'], 'FST_PRECONDITION_INVALID_CONCURRENCY', /concurrency must be an object/],
    ['null', null, 'FST_PRECONDITION_INVALID_CONCURRENCY', /concurrency must be an object/],
    ['an unknown key', { validators, retries: 2 }, 'FST_PRECONDITION_INVALID_CONCURRENCY', /concurrency\.retries is not an option/],
    ['nothing to do', {}, 'FST_PRECONDITION_INVALID_CONCURRENCY', /at least one of/],
    ['lock: false alone', { lock: false }, 'FST_PRECONDITION_INVALID_CONCURRENCY', /at least one of/],
    ['an unknown header', { require: 'if-range' }, 'FST_PRECONDITION_INVALID_REQUIRE', /concurrency\.require/],
    ['a capitalised header', { require: 'If-Match' }, 'FST_PRECONDITION_INVALID_REQUIRE', /"If-Match"/],
    ['an empty list', { require: [] }, 'FST_PRECONDITION_INVALID_REQUIRE', /non-empty array/],
    ['a list with a stranger', { require: ['if-match', 42] }, 'FST_PRECONDITION_INVALID_REQUIRE', /concurrency\.require/],
    ['validators not a function', { validators: { etag: '"a"' } }, 'FST_PRECONDITION_INVALID_VALIDATORS', /concurrency\.validators must be a function/],
    ['an unknown stage', { validators, stage: 'preValidation' }, 'FST_PRECONDITION_INVALID_STAGE', /"preValidation"/],
    ['key not a function', { validators, key: '/items' }, 'FST_PRECONDITION_INVALID_KEY', /concurrency\.key must be a function/],
    ['lock not a boolean', { validators, lock: 'yes' }, 'FST_PRECONDITION_INVALID_LOCK', /concurrency\.lock must be a boolean/],
    ['headers a string', { validators, headers: 'no-cache' }, 'FST_PRECONDITION_INVALID_HEADERS', /concurrency\.headers must be an object/],
    ['headers an array', { validators, headers: [] }, 'FST_PRECONDITION_INVALID_HEADERS', /concurrency\.headers must be an object/],
    ['a header name with a space', { validators, headers: { 'cache control': 'no-cache' } }, 'FST_PRECONDITION_INVALID_HEADERS', /concurrency\.headers\.cache control/],
    ['a header value not a string', { validators, headers: { vary: ['a'] } }, 'FST_PRECONDITION_INVALID_HEADERS', /concurrency\.headers\.vary/],
    ['a header value with a newline', { validators, headers: { vary: 'a\nb' } }, 'FST_PRECONDITION_INVALID_HEADERS', /concurrency\.headers\.vary/]
  ]
  for (const [name, concurrency, code, message] of cases) {
    const app = Fastify()
    await app.register(fastifyPrecondition)
    t.throws(() => app.put('/items/:id', { concurrency: concurrency as never }, async () => 'ok'), { code, message }, name)
    t.throws(() => app.put('/items/:id', { concurrency: concurrency as never }, async () => 'ok'), /PUT \/items\/:id/, `${name}: the message names the route`)
  }
})

test('plugin option errors are thrown at registration', async (t) => {
  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['lockStore a string', { lockStore: 'redis' }, 'FST_PRECONDITION_INVALID_LOCK_STORE'],
    ['lockStore without acquire', { lockStore: { release () {} } }, 'FST_PRECONDITION_INVALID_LOCK_STORE'],
    ['lockStore null', { lockStore: null }, 'FST_PRECONDITION_INVALID_LOCK_STORE'],
    ['lockTimeout zero', { lockTimeout: 0 }, 'FST_PRECONDITION_INVALID_LOCK_TIMEOUT'],
    ['lockTimeout a string', { lockTimeout: '5s' }, 'FST_PRECONDITION_INVALID_LOCK_TIMEOUT'],
    ['lockTimeout fractional', { lockTimeout: 1.5 }, 'FST_PRECONDITION_INVALID_LOCK_TIMEOUT'],
    ['retryAfter negative', { retryAfter: -1 }, 'FST_PRECONDITION_INVALID_RETRY_AFTER'],
    ['exposeEtag a string', { exposeEtag: 'no' }, 'FST_PRECONDITION_INVALID_EXPOSE_ETAG'],
    ['documentRoutes a number', { documentRoutes: 1 }, 'FST_PRECONDITION_INVALID_DOCUMENT_ROUTES'],
    ['problemTypeBase relative', { problemTypeBase: '/problems/' }, 'FST_PRECONDITION_INVALID_PROBLEM_TYPE_BASE'],
    ['problemTypeBase a number', { problemTypeBase: 7 }, 'FST_PRECONDITION_INVALID_PROBLEM_TYPE_BASE'],
    ['messages a string', { messages: 'hello' }, 'FST_PRECONDITION_INVALID_MESSAGES'],
    ['messages.titles a string', { messages: { titles: 'x' } }, 'FST_PRECONDITION_INVALID_MESSAGES'],
    ['an unknown title', { messages: { titles: { 418: 'teapot' } } }, 'FST_PRECONDITION_INVALID_MESSAGES'],
    ['an empty detail', { messages: { details: { ifMatchMismatch: '' } } }, 'FST_PRECONDITION_INVALID_MESSAGES']
  ]
  for (const [name, options, code] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyPrecondition, options as never) }, { code }, name)
  }
})

test('option errors are TypeErrors with a message naming the option', async (t) => {
  const app = Fastify()
  const error = await app.register(fastifyPrecondition, { lockTimeout: -5 }).then(() => null, (err: Error) => err)
  t.type(error, TypeError)
  t.match(error?.message, /^lockTimeout must be a positive whole number of milliseconds; got -5$/)
})

test('the defaults need no options at all', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.put('/x', { concurrency: { require: 'if-match' } }, async () => 'ok')
  await app.ready()
  t.equal((await app.inject({ method: 'PUT', url: '/x', headers: { 'if-match': '"a"' } })).statusCode, 200)
  await app.close()
})

test('headers returned by a route\'s headers function are checked too', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.get('/h', { concurrency: { validators, headers: () => ({ vary: 'a\r\nx-injected: 1' }) } }, async () => 'ok')
  const res = await app.inject({ url: '/h' })
  t.equal(res.statusCode, 500)
  t.equal(res.headers['x-injected'], undefined)
  t.match(res.json().message, /GET \/h: concurrency\.headers\.vary/)
})
