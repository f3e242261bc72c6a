// conditionalUpdate against the example API on a real socket (127.0.0.1), and against small apps
// for the answers the example never gives.
import { test, type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyPrecondition, { ProblemCode } from '../lib/index.js'
import {
  conditionalUpdate, retryDelay, ConditionalUpdateError, PreconditionFailedError, PreconditionRequiredError,
  ServiceUnavailableError, UnexpectedResponseError
} from '../lib/client.js'
// @ts-expect-error the example is plain JavaScript
import { buildApp } from '../examples/app.js'

interface Item { id: string, name: string, count: number }

async function listen (t: Test, app: FastifyInstance): Promise<string> {
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

async function exampleApi (t: Test): Promise<string> {
  return await listen(t, await buildApp() as FastifyInstance)
}

/** A fetch that records the requests it makes. */
function recordingFetch () {
  const requests: Array<{ method: string, headers: Record<string, string>, status: number }> = []
  const recorded: typeof fetch = async (input, init) => {
    const response = await fetch(input, init)
    requests.push({ method: init?.method ?? 'GET', headers: { ...(init?.headers as Record<string, string>) }, status: response.status })
    return response
  }
  return { requests, fetch: recorded }
}

test('reads, changes and writes back with If-Match', async (t) => {
  const origin = await exampleApi(t)
  const { requests, fetch: recorded } = recordingFetch()
  const result = await conditionalUpdate<Item>(`${origin}/items/1`, (item) => ({ ...item, count: item.count + 1 }), { fetch: recorded })
  t.equal(result.status, 200)
  t.equal(result.attempts, 1)
  t.same(result.body, { id: '1', name: 'first item', count: 1 })
  const now = await fetch(`${origin}/items/1`)
  t.equal(result.etag, now.headers.get('etag'), 'the result carries the new tag')
  t.equal(result.lastModified, now.headers.get('last-modified'))
  t.same(requests.map((r) => `${r.method} ${r.status}`), ['GET 200', 'PUT 200'])
  const before = requests[0]
  t.match(requests[1].headers['if-match'], /^"[^"]+"$/, 'the write carries the tag it read')
  t.equal(requests[1].headers['content-type'], 'application/json')
  t.equal(before.headers.accept, 'application/json')
})

test('a change that edits in place, with PATCH', async (t) => {
  const origin = await exampleApi(t)
  const result = await conditionalUpdate<Item>(`${origin}/items/1`, (item) => {
    item.name = 'patched'
  }, { method: 'patch' })
  t.equal(result.status, 200)
  t.equal((result.body as Item).name, 'patched')
})

test('concurrent updates all apply: no update is lost', async (t) => {
  const origin = await exampleApi(t)
  const clients = 8
  const { requests, fetch: recorded } = recordingFetch()
  const results = await Promise.all(Array.from({ length: clients }, () =>
    conditionalUpdate<Item>(`${origin}/items/1`, (item) => ({ ...item, count: item.count + 1 }),
      { fetch: recorded, maxAttempts: 50, baseDelay: 2, maxDelay: 40 })))
  const final = await (await fetch(`${origin}/items/1`)).json() as Item
  t.equal(final.count, clients, 'every increment is in the final state')
  t.same(results.map((r) => (r.body as Item).count).sort((a, b) => a - b), Array.from({ length: clients }, (_, i) => i + 1),
    'each write saw the one before it')
  const conflicts = requests.filter((r) => r.status === 412).length
  t.equal(results.reduce((sum, r) => sum + r.attempts, 0), clients + conflicts, 'every 412 was retried once')
})

test('a 412 refetches and reapplies the change; retries are bounded', async (t) => {
  const origin = await exampleApi(t)
  const url = `${origin}/items/1`
  // Someone else writes between this client's read and its write, `times` times.
  const interfering = (times: number) => {
    let left = times
    return async (item: Item) => {
      if (left-- > 0) {
        const tag = (await fetch(url)).headers.get('etag') as string
        const other = await fetch(url, { method: 'PATCH', headers: { 'content-type': 'application/json', 'if-match': tag }, body: JSON.stringify({ name: `other ${left}` }) })
        t.equal(other.status, 200)
      }
      return { ...item, count: item.count + 10 }
    }
  }
  const recovered = await conditionalUpdate<Item>(url, interfering(2), { baseDelay: 1 })
  t.equal(recovered.attempts, 3, 'two conflicts, then success')
  t.equal((recovered.body as Item).count, 10)
  t.equal((recovered.body as Item).name, 'other 0', 'the change was reapplied to the other writer\'s version')

  const error = await conditionalUpdate<Item>(url, interfering(10), { maxAttempts: 3, baseDelay: 1 }).catch((e: unknown) => e)
  t.type(error, PreconditionFailedError)
  t.type(error, ConditionalUpdateError)
  const failed = error as PreconditionFailedError
  t.equal(failed.name, 'PreconditionFailedError')
  t.equal(failed.status, 412)
  t.equal(failed.attempts, 3)
  t.equal(failed.method, 'PUT')
  t.equal(failed.url, url)
  t.equal(failed.problem?.code, ProblemCode.PRECONDITION_FAILED)
  t.equal(failed.problem?.etag, (await fetch(url)).headers.get('etag'), 'the problem names the current tag')
  t.match(failed.message, /failed its precondition on all 3 attempts: If-Match does not match/)
})

test('each read asks for the current representation, past an HTTP cache (cache: no-cache)', async (t) => {
  // A browser would answer the GET from its cache, where the item stays fresh by its Last-Modified,
  // and after a 412 hand back the refused version again: test/browser-edit.test.ts shows it in Chromium.
  const origin = await exampleApi(t)
  const modes: Array<[string, unknown]> = []
  const watching: typeof fetch = async (input, init) => {
    modes.push([init?.method ?? 'GET', (init as { cache?: unknown } | undefined)?.cache])
    return await fetch(input, init)
  }
  let interfered = false
  await conditionalUpdate<Item>(`${origin}/items/1`, async (item) => {
    if (!interfered) {
      interfered = true
      const tag = (await fetch(`${origin}/items/1`)).headers.get('etag') as string
      await fetch(`${origin}/items/1`, { method: 'PATCH', headers: { 'content-type': 'application/json', 'if-match': tag }, body: '{"name":"other"}' })
    }
    return { ...item, count: 1 }
  }, { fetch: watching, baseDelay: 1 })
  t.same(modes, [['GET', 'no-cache'], ['PUT', undefined], ['GET', 'no-cache'], ['PUT', undefined]], 'the read after the 412 too')
})

test('the backoff is full jitter, doubling, capped', async (t) => {
  t.equal(retryDelay(1, 50, 2000, () => 0), 0)
  t.equal(retryDelay(1, 50, 2000, () => 0.999999), 49)
  t.equal(retryDelay(3, 50, 2000, () => 0.999999), 199)
  t.equal(retryDelay(20, 50, 2000, () => 0.999999), 1999, 'capped at maxDelay')
  t.equal(retryDelay(0, 50, 2000, () => 0.5), 25)
  for (let i = 0; i < 100; i++) {
    const delay = retryDelay(4, 10, 1000)
    t.ok(delay >= 0 && delay < 80, 'within [0, base · 2^(n−1))')
  }
})

test('428, 503 and other answers surface as typed errors with the problem details', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  app.get('/dated', async (_request, reply) => reply.header('last-modified', 'Thu, 01 Jan 2026 00:00:00 GMT').send({ v: 1 }))
  app.put('/dated', { concurrency: { require: 'if-none-match' } }, async () => ({ ok: true }))
  app.get('/weak', async (_request, reply) => reply.header('etag', 'W/"1"').header('last-modified', 'Thu, 01 Jan 2026 00:00:00 GMT').send({ v: 1 }))
  app.put('/weak', { concurrency: { require: 'if-unmodified-since' } }, async (_request, reply) => reply.code(204).send())
  app.get('/bare', async () => ({ v: 1 }))
  app.get('/locked', async (_request, reply) => reply.header('etag', '"1"').send({ v: 1 }))
  app.put('/locked', { concurrency: { validators: () => ({ etag: '"1"' }), lock: true } }, async () => ({ ok: true }))
  app.get('/broken', async (_request, reply) => reply.header('etag', '"1"').send({ v: 1 }))
  app.put('/broken', async (_request, reply) => reply.code(500).type('text/plain').send('oops'))
  const origin = await listen(t, app)

  const required = await conditionalUpdate(`${origin}/dated`, (v) => v, { dateFallback: true }).catch((e: unknown) => e) as PreconditionRequiredError
  t.type(required, PreconditionRequiredError)
  t.equal(required.status, 428)
  t.same(required.problem?.required, ['If-None-Match'])
  t.equal(required.attempts, 1)

  const dated = await conditionalUpdate(`${origin}/weak`, (v) => v, { dateFallback: true })
  t.equal(dated.status, 204, 'with dateFallback, a weak tag is passed over for If-Unmodified-Since')
  t.equal(dated.body, null)
  t.equal(dated.precondition, 'if-unmodified-since', 'and the result says so')

  const weak = await conditionalUpdate(`${origin}/weak`, (v) => v).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(weak, UnexpectedResponseError, 'without dateFallback, a weak tag is refused rather than replaced by a date')
  t.match(weak.message, /sent only a weak ETag \(W\/"1"\), which can never satisfy If-Match.*dateFallback: true/)
  t.equal(weak.attempts, 0, 'nothing was written')

  const bare = await conditionalUpdate(`${origin}/bare`, (v) => v).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(bare, UnexpectedResponseError)
  t.match(bare.message, /sent no ETag this client can read/)
  t.match(bare.message, /Access-Control-Expose-Headers: ETag, Last-Modified/, 'names CORS as the likely cause')
  const bareDated = await conditionalUpdate(`${origin}/bare`, (v) => v, { dateFallback: true }).catch((e: unknown) => e) as UnexpectedResponseError
  t.match(bareDated.message, /sent no ETag nor a Last-Modified this client can read/)
  t.notMatch(bareDated.message, /pass dateFallback/)

  const missing = await conditionalUpdate(`${origin}/nothing`, (v) => v).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(missing, UnexpectedResponseError)
  t.equal(missing.status, 404)
  t.equal(missing.method, 'GET')
  t.equal(missing.attempts, 0)

  const broken = await conditionalUpdate(`${origin}/broken`, (v) => v).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(broken, UnexpectedResponseError)
  t.equal(broken.status, 500)
  t.equal(broken.problem, null, 'a body that is not JSON is no problem document')

  const locked = Fastify()
  await locked.register(fastifyPrecondition, {
    retryAfter: 3,
    lockStore: { acquire () { throw new Error('store down') } }
  })
  locked.get('/r', async (_request, reply) => reply.header('etag', '"1"').send({ v: 1 }))
  locked.put('/r', { concurrency: { validators: () => ({ etag: '"1"' }) } }, async () => ({ ok: true }))
  const lockedOrigin = await listen(t, locked)
  const unavailable = await conditionalUpdate(`${lockedOrigin}/r`, (v) => v).catch((e: unknown) => e) as ServiceUnavailableError
  t.type(unavailable, ServiceUnavailableError)
  t.equal(unavailable.status, 503)
  t.equal(unavailable.retryAfter, 3)
  t.equal(unavailable.problem?.code, ProblemCode.LOCK_UNAVAILABLE)
  t.equal(unavailable.attempts, 1)
})

test('options are checked, and an abort stops the retries', async (t) => {
  for (const options of [{ maxAttempts: 0 }, { maxAttempts: 1.5 }, { baseDelay: -1 }, { maxDelay: Infinity }, { baseDelay: Number.NaN }, { dateFallback: 'yes' as unknown as boolean }]) {
    await t.rejects(conditionalUpdate('http://127.0.0.1:1/', (v) => v, options), TypeError, JSON.stringify(options))
  }
  const origin = await exampleApi(t)
  const url = `${origin}/items/1`
  const controller = new AbortController()
  let changes = 0
  const aborted = conditionalUpdate<Item>(url, async (item) => {
    changes++
    const tag = (await fetch(url)).headers.get('etag') as string
    await fetch(url, { method: 'PATCH', headers: { 'content-type': 'application/json', 'if-match': tag }, body: '{"count":99}' })
    setTimeout(() => controller.abort(new Error('gave up')), 5)
    return item
  }, { signal: controller.signal, baseDelay: 60_000, maxDelay: 60_000, maxAttempts: 5 })
  await t.rejects(aborted, { message: 'gave up' }, 'the abort ends the backoff wait')
  t.equal(changes, 1)
  const before = new AbortController()
  before.abort(new Error('never started'))
  await t.rejects(conditionalUpdate(url, (v) => v, { signal: before.signal }), { message: 'never started' })
})

test('bodiless answers, JSON that is not, and an abort right after a 412', async (t) => {
  // A scripted server: each call takes the next response.
  const scripted = (responses: Array<() => Response>): typeof fetch => async () => (responses.shift() as () => Response)()
  const json = { 'content-type': 'application/json' }
  const item = () => new Response('{"v":1}', { headers: { ...json, etag: '"1"' } })

  const quiet = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    baseDelay: 0,
    signal: new AbortController().signal,
    fetch: scripted([item, () => new Response(null, { status: 412 }), item, () => new Response(null, { status: 204 })])
  })
  t.same({ status: quiet.status, attempts: quiet.attempts, body: quiet.body, etag: quiet.etag }, { status: 204, attempts: 2, body: null, etag: null })

  const weakOnly = () => new Response('{"v":1}', { headers: { ...json, etag: 'W/"1"' } })
  const neither = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, { dateFallback: true, fetch: scripted([weakOnly]) })
    .catch((e: unknown) => e) as UnexpectedResponseError
  t.match(neither.message, /only a weak ETag .*Nor did it send Last-Modified/, 'a weak tag and no date, with dateFallback')

  const empty = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, { fetch: scripted([() => new Response(null, { status: 200 })]) })
    .catch((e: unknown) => e) as UnexpectedResponseError
  t.type(empty, UnexpectedResponseError, 'a GET without validators or body')

  const garbled = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    fetch: scripted([item, () => new Response('{"type":', { status: 500, headers: json })])
  }).catch((e: unknown) => e) as UnexpectedResponseError
  t.equal(garbled.status, 500)
  t.equal(garbled.problem, null, 'JSON that does not parse is no problem document')

  const busy = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    fetch: scripted([item, () => new Response(null, { status: 503, headers: { 'retry-after': 'Fri, 02 Jan 2026 00:00:00 GMT' } }), item, () => new Response(null, { status: 503 })])
  }).catch((e: unknown) => e) as ServiceUnavailableError
  t.equal(busy.retryAfter, null, 'a Retry-After date is not a number of seconds')
  const silent = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    fetch: scripted([item, () => new Response(null, { status: 503 })])
  }).catch((e: unknown) => e) as ServiceUnavailableError
  t.equal(silent.retryAfter, null, 'no Retry-After')
  t.equal(silent.problem, null)

  const controller = new AbortController()
  const aborting: typeof fetch = async (input, init) => {
    const response = await scripted([() => new Response('{}', { status: 412, headers: json })])(input, init)
    setTimeout(() => controller.abort(new Error('stopped after the 412')), 0)
    return response
  }
  let reads = 0
  const stopped = conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    signal: controller.signal,
    baseDelay: 60_000,
    fetch: async (input, init) => init?.method === 'GET' ? (reads++, item()) : aborting(input, init)
  }).catch((e: unknown) => e)
  const reason = await stopped as Error
  t.equal(reason.constructor, Error, 'the abort\'s own reason: the 412 said nothing was written')
  t.equal(reason.message, 'stopped after the 412')
  t.equal(reads, 1, 'no second read after the abort')
})

/**
 * A fetch that behaves as a browser's does for a cross-origin script: it sends an Origin, and the
 * response shows only the CORS-safelisted headers and those the server listed in
 * Access-Control-Expose-Headers (a response without Access-Control-Allow-Origin is a network error).
 */
function browserFetch (origin: string): typeof fetch {
  const SAFELISTED = ['cache-control', 'content-language', 'content-length', 'content-type', 'expires', 'last-modified', 'pragma']
  return async (input, init) => {
    const response = await fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), origin } })
    const allowed = response.headers.get('access-control-allow-origin')
    if (allowed !== '*' && allowed !== origin) throw new TypeError('Failed to fetch (CORS)')
    const exposed = (response.headers.get('access-control-expose-headers') ?? '').split(',').map((name) => name.trim().toLowerCase())
    const visible = new Headers()
    for (const [name, value] of response.headers) {
      if (SAFELISTED.includes(name) || exposed.includes(name)) visible.set(name, value)
    }
    const bodiless = response.status === 204 || response.status === 304
    return new Response(bodiless ? null : await response.arrayBuffer(), { status: response.status, statusText: response.statusText, headers: visible })
  }
}

test('in a browser behind CORS: a hidden ETag is named as the cause, never replaced by a date', async (t) => {
  const { default: fastifyCors } = await import('@fastify/cors')
  const build = async (exposedHeaders?: string[]) => {
    const app = Fastify()
    await app.register(fastifyCors, { origin: 'https://app.example', methods: ['GET', 'PUT', 'PATCH', 'DELETE'], ...(exposedHeaders && { exposedHeaders }) })
    await app.register(fastifyPrecondition)
    let item = { count: 0 }
    let changed = new Date('2026-01-01T00:00:00Z')
    const validators = () => ({ etag: `"${item.count}"`, lastModified: changed })
    app.get('/items/1', { concurrency: { validators } }, async () => item)
    app.put('/items/1', { concurrency: { require: ['if-match', 'if-unmodified-since'], validators } }, async (request) => {
      item = request.body as typeof item
      changed = new Date(changed.getTime() + 1000)
      return item
    })
    return `${await listen(t, app)}/items/1`
  }
  const browser = browserFetch('https://app.example')

  const hidden = await build()
  const seen = await browser(hidden)
  t.equal(seen.headers.get('etag'), null, 'the default CORS set-up hides the ETag from the script')
  t.ok(seen.headers.get('last-modified'), 'while Last-Modified, a safelisted header, shows')
  const error = await conditionalUpdate<{ count: number }>(hidden, (i) => ({ count: i.count + 1 }), { fetch: browser })
    .catch((e: unknown) => e) as UnexpectedResponseError
  t.type(error, UnexpectedResponseError, 'no silent fall back to a one-second If-Unmodified-Since')
  t.match(error.message, /likely cause is CORS/)
  t.match(error.message, /exposedHeaders: \['ETag', 'Last-Modified'\]/)
  t.same(await (await fetch(hidden)).json(), { count: 0 }, 'nothing was written')
  const dated = await conditionalUpdate<{ count: number }>(hidden, (i) => ({ count: i.count + 1 }), { fetch: browser, dateFallback: true })
  t.equal(dated.precondition, 'if-unmodified-since', 'dateFallback opts into the date')

  const exposed = await build(['ETag', 'Last-Modified'])
  const result = await conditionalUpdate<{ count: number }>(exposed, (i) => ({ count: i.count + 1 }), { fetch: browser })
  t.equal(result.precondition, 'if-match', 'with the ETag exposed, the write carries If-Match')
  t.equal(result.etag, '"1"', 'and the new tag is readable')
})
