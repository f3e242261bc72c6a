// Problem details wherever the plugin answers (412, 428, 503): the same members every time, a
// `type` URI base, and titles/details an app can replace (e.g. in German) without losing members.
import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyPrecondition, {
  defaultMessages, LockTimeoutError, ProblemCode, type FastifyPreconditionOptions
} from '../lib/index.js'

const MEMBERS = ['type', 'title', 'status', 'detail', 'instance', 'code']
const PROBLEM = 'application/problem+json; charset=utf-8'

/** One route per answer: 428, 412 from evaluation, 412 from a handler, and both kinds of 503. */
async function answers (options: FastifyPreconditionOptions = {}) {
  const validators = () => ({ etag: '"current"' })
  const app = Fastify()
  await app.register(fastifyPrecondition, options)
  app.put('/guarded/:id', { concurrency: { require: ['if-match', 'if-unmodified-since'], validators } }, async () => 'ok')
  app.put('/own-compare/:id', async (_request, reply) => reply.failPrecondition({ etag: '"current"' }))
  const locked = async (failure: Error) => {
    const broken = Fastify()
    await broken.register(fastifyPrecondition, { ...options, lockStore: { acquire () { throw failure } } })
    broken.put('/locked/:id', { concurrency: { validators } }, async () => 'ok')
    return broken
  }
  const send = async (target: FastifyInstance, url: string, headers: Record<string, string> = {}) => {
    const res = await target.inject({ method: 'PUT', url, headers })
    return { status: res.statusCode, type: res.headers['content-type'], body: res.json() as Record<string, unknown>, headers: res.headers }
  }
  return {
    required: await send(app, '/guarded/1?q=1'),
    failed: await send(app, '/guarded/1', { 'if-match': '"stale"' }),
    weak: await send(app, '/guarded/1', { 'if-match': 'W/"current"' }),
    handler: await send(app, '/own-compare/1'),
    timeout: await send(await locked(new LockTimeoutError(10, 'key')), '/locked/1'),
    unavailable: await send(await locked(new Error('store down')), '/locked/1')
  }
}

test('412, 428 and 503 bodies carry the same members, status equal to the HTTP status', async (t) => {
  const all = await answers()
  const expected: Record<string, [number, string, string[]]> = {
    required: [428, ProblemCode.PRECONDITION_REQUIRED, ['required']],
    failed: [412, ProblemCode.PRECONDITION_FAILED, ['etag']],
    weak: [412, ProblemCode.PRECONDITION_FAILED, ['etag']],
    handler: [412, ProblemCode.PRECONDITION_FAILED, ['etag']],
    timeout: [503, ProblemCode.LOCK_TIMEOUT, []],
    unavailable: [503, ProblemCode.LOCK_UNAVAILABLE, []]
  }
  for (const [name, [status, code, extensions]] of Object.entries(expected)) {
    const answer = all[name as keyof typeof all]
    t.equal(answer.status, status, name)
    t.equal(answer.type, PROBLEM, `${name}: content type`)
    t.same(Object.keys(answer.body), [...MEMBERS, ...extensions], `${name}: members, in order`)
    for (const member of ['type', 'title', 'detail', 'instance', 'code']) t.type(answer.body[member], 'string', `${name}: ${member}`)
    t.equal(answer.body.status, status, `${name}: status member`)
    t.equal(answer.body.code, code)
    t.equal(answer.body.type, 'about:blank', `${name}: no base, about:blank`)
    t.match(answer.body.instance, /^\/[a-z-]+\/1$/, `${name}: instance is the path, without the query`)
  }
  t.equal(all.required.body.title, 'Precondition Required')
  t.equal(all.failed.body.title, 'Precondition Failed')
  t.equal(all.timeout.body.title, 'Service Unavailable')
  t.equal(all.timeout.headers['retry-after'], '1')
  t.not(all.failed.body.detail, all.weak.body.detail, 'the detail says why')
})

test('a type base forms type URIs, one per problem', async (t) => {
  for (const base of ['https://example.com/problems/', 'urn:example:problem:']) {
    const all = await answers({ problemTypeBase: base })
    t.equal(all.required.body.type, `${base}precondition-required`)
    t.equal(all.failed.body.type, `${base}precondition-failed`)
    t.equal(all.handler.body.type, `${base}precondition-failed`)
    t.equal(all.timeout.body.type, `${base}lock-timeout`)
    t.equal(all.unavailable.body.type, `${base}lock-unavailable`)
    t.equal(all.failed.body.title, 'Precondition Failed', 'titles stay')
  }
})

const german = {
  titles: { 412: 'Vorbedingung fehlgeschlagen', 428: 'Vorbedingung erforderlich', 503: 'Dienst nicht verfügbar' },
  details: {
    preconditionRequired: 'Diese Anfrage muss bedingt sein ({headers}). Senden Sie {hints}.',
    requireHintIfMatch: 'If-Match mit dem ETag aus einem GET',
    requireHintIfUnmodifiedSince: 'If-Unmodified-Since mit dem Last-Modified-Datum aus einem GET',
    ifMatchMismatch: 'Die Ressource wurde seit Ihrem Lesen geändert. Lesen Sie sie erneut und wiederholen Sie die Änderung.',
    lockTimeout: 'Eine andere Änderung läuft noch. Versuchen Sie es nach Retry-After erneut.',
    lockUnavailable: 'Die Sperre ist nicht erreichbar; es wurde nichts geschrieben.'
  }
}

test('custom titles and details replace the texts and keep every member', async (t) => {
  const english = await answers()
  const all = await answers({ messages: german, problemTypeBase: 'https://example.com/probleme/' })
  for (const name of Object.keys(all) as Array<keyof typeof all>) {
    t.same(Object.keys(all[name].body), Object.keys(english[name].body), `${name}: the same members`)
    for (const member of ['status', 'instance', 'code', 'required', 'etag']) {
      t.same(all[name].body[member], english[name].body[member], `${name}: ${member} unchanged`)
    }
  }
  t.equal(all.required.body.title, 'Vorbedingung erforderlich')
  // The words joining the headers and hints are not (yet) a message of their own.
  t.match(all.required.body.detail,
    /^Diese Anfrage muss bedingt sein \(If-Match .+ If-Unmodified-Since\)\. Senden Sie If-Match mit dem ETag aus einem GET.+If-Unmodified-Since mit dem Last-Modified-Datum aus einem GET\.$/)
  t.equal(all.failed.body.title, 'Vorbedingung fehlgeschlagen')
  t.equal(all.failed.body.detail, german.details.ifMatchMismatch)
  t.equal(all.handler.body.detail, german.details.ifMatchMismatch, 'reply.failPrecondition speaks the same language')
  t.equal(all.weak.body.detail, defaultMessages.details.ifMatchWeak, 'a detail not replaced keeps its default')
  t.equal(all.timeout.body.title, 'Dienst nicht verfügbar')
  t.equal(all.timeout.body.detail, german.details.lockTimeout)
  t.equal(all.unavailable.body.detail, german.details.lockUnavailable)
  t.equal(all.failed.body.type, 'https://example.com/probleme/precondition-failed', 'with a type base too')
})

test('texts are JSON-escaped, and non-ASCII bodies have the right length', async (t) => {
  const tricky = 'Quote " backslash \\ newline \n tab \t and </script> ü €'
  const app = Fastify()
  await app.register(fastifyPrecondition, { messages: { titles: { 412: tricky }, details: { ifMatchMismatch: tricky } } })
  app.put('/r', { concurrency: { validators: () => ({ etag: '"a"' }) } }, async () => 'ok')
  const res = await app.inject({ method: 'PUT', url: '/r', headers: { 'if-match': '"b"' } })
  t.equal(res.statusCode, 412)
  t.equal(Number(res.headers['content-length']), Buffer.byteLength(res.body), 'content-length counts bytes')
  t.equal(res.json().title, tricky)
  t.equal(res.json().detail, tricky)
})

test('bad messages or type bases throw at registration, with the option\'s code', async (t) => {
  const messages: Array<[string, unknown]> = [
    ['null', null],
    ['an array', []],
    ['a number', 42],
    ['an unknown group, e.g. a typo', { title: { 412: 'Vorbedingung fehlgeschlagen' } }],
    ['titles null', { titles: null }],
    ['titles an array', { titles: ['Precondition Failed'] }],
    ['details a string', { details: 'x' }],
    ['an unknown detail', { details: { ifMatchMissing: 'x' } }],
    ['an inherited name as a title', { titles: { toString: 'x' } }],
    ['an inherited name as a detail', { details: { hasOwnProperty: 'x' } }],
    ['a detail that is not a string', { details: { ifMatchMismatch: 42 } }],
    ['an empty title', { titles: { 428: '' } }]
  ]
  for (const [name, value] of messages) {
    const app = Fastify()
    const error = await app.register(fastifyPrecondition, { messages: value } as never).then(() => null, (e: Error & { code: string }) => e)
    t.equal(error?.code, 'FST_PRECONDITION_INVALID_MESSAGES', `messages ${name}`)
    t.type(error, TypeError)
  }
  const bases: Array<[string, unknown]> = [
    ['relative', '/problems/'],
    ['empty', ''],
    ['not a URI', 'problems here'],
    ['a number', 1],
    ['an object', { href: 'https://example.com/' }]
  ]
  for (const [name, value] of bases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyPrecondition, { problemTypeBase: value } as never) }, { code: 'FST_PRECONDITION_INVALID_PROBLEM_TYPE_BASE' }, `problemTypeBase ${name}`)
  }
  const unknownDetail = await Fastify().register(fastifyPrecondition, { messages: { details: { ifMatchMissing: 'x' } } } as never).then(() => null, (e: Error) => e)
  t.match(unknownDetail?.message, /messages\.details\.ifMatchMissing is not a known message; known: preconditionRequired, /, 'the message lists the known keys')
})
