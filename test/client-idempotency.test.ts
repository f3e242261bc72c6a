// The client helpers and Idempotency-Key over real HTTP (127.0.0.1): a change whose answer is
// lost is resent with the same key and applied once, against the plugin with both policies on a
// PUT and a required key on a POST; what cannot be settled is an OutcomeUnknownError.
import { test, type Test } from 'tap'
import Fastify from 'fastify'
import fastifyPrecondition, { memoryIdempotencyStore, ProblemCode, type FastifyPreconditionOptions } from '../lib/index.js'
import {
  AnswerNotKeptError, conditionalUpdate, idempotentWrite, newIdempotencyKey, OutcomeUnknownError, PreconditionFailedError, ReadFailedError,
  ServiceUnavailableError, UnexpectedResponseError
} from '../lib/client.js'

interface Item { id: string, count: number, name?: string }
interface Order { id: number, item: string }

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** The plugin with both policies on PUT /items/:id and a required key on POST /orders. */
async function start (t: Test, options: FastifyPreconditionOptions = {}) {
  const app = Fastify()
  await app.register(fastifyPrecondition, options)
  const state = {
    item: { id: '1', count: 0 } as Item,
    version: 1,
    /** Times the PUT handler ran. */
    runs: 0,
    orders: [] as Order[],
    /** When set, the handlers wait for it after they started. */
    gate: null as Promise<void> | null,
    started: () => {}
  }
  const validators = () => ({ etag: `"v${state.version}"` })
  app.get('/items/:id', { concurrency: { validators } }, async () => state.item)
  app.put('/items/:id', { concurrency: { require: 'if-match', validators, idempotency: true } }, async (request) => {
    state.runs++
    state.started()
    await state.gate
    state.item = request.body as Item
    state.version++
    return state.item
  })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    state.started()
    await state.gate
    const order = { id: state.orders.length + 1, item: (request.body as { item: string }).item }
    state.orders.push(order)
    return reply.code(201).header('location', `/orders/${order.id}`).send(order)
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  /** Holds the handlers until `open()`; resolves `running` once one has started. */
  const hold = () => {
    let open = () => {}
    state.gate = new Promise((resolve) => { open = resolve })
    const running = new Promise<void>((resolve) => { state.started = resolve })
    return { open, running }
  }
  return { state, origin, item: `${origin}/items/1`, orders: `${origin}/orders`, hold }
}

interface Sent { method: string, key: string | undefined, status: number | 'lost', replayed: boolean }

/**
 * The global fetch, recorded. `lose(n, init)` says whether the answer to the n-th write (1-based)
 * is lost: the request reaches the server and is answered, then the fetch rejects as undici does
 * when a connection breaks.
 */
function losingFetch (lose: (write: number, init: RequestInit) => boolean) {
  const sent: Sent[] = []
  let writes = 0
  const wrapped: typeof fetch = async (input, init = {}) => {
    const method = init.method ?? 'GET'
    const key = (init.headers as Record<string, string>)['idempotency-key']
    const write = method === 'GET' ? 0 : ++writes
    const response = await fetch(input, init)
    const record = { method, key, status: response.status as Sent['status'], replayed: response.headers.get('idempotent-replayed') === 'true' }
    sent.push(record)
    if (write > 0 && lose(write, init)) {
      await response.arrayBuffer()
      record.status = 'lost'
      throw new TypeError('fetch failed')
    }
    return response
  }
  return { sent, fetch: wrapped }
}

/** A fetch that, as some do, sends a write again by itself when the first send fails, with the same headers. */
function retryingFetch () {
  const sent: Sent[] = []
  let writes = 0
  const once = async (input: string | URL | Request, init: RequestInit) => {
    const response = await fetch(input, init)
    sent.push({ method: init.method ?? 'GET', key: (init.headers as Record<string, string>)['idempotency-key'], status: response.status, replayed: response.headers.get('idempotent-replayed') === 'true' })
    return response
  }
  const wrapped: typeof fetch = async (input, init = {}) => {
    if ((init.method ?? 'GET') !== 'GET' && ++writes === 1) {
      // The first answer is lost on the way back; the fetch retries on its own.
      await (await once(input, init)).arrayBuffer()
      sent[sent.length - 1].status = 'lost'
    }
    return await once(input, init)
  }
  return { sent, fetch: wrapped }
}

const increment = (item: Item) => ({ ...item, count: item.count + 1 })

test('the first answer is lost after the handler ran: the change is applied exactly once', async (t) => {
  const { state, item, orders } = await start(t)
  const put = losingFetch((write) => write === 1)
  const result = await conditionalUpdate<Item>(item, increment, { fetch: put.fetch })
  t.equal(result.status, 200, 'the helper reports success')
  t.equal(result.replayed, true, 'from the stored answer to the first send')
  t.equal(result.attempts, 1, 'one write attempt, sent twice')
  t.same(result.body, { id: '1', count: 1 })
  t.equal(state.runs, 1, 'the handler ran once')
  t.equal(state.item.count, 1, 'the increment is applied once')
  t.same(put.sent.map((s) => `${s.method} ${s.status}`), ['GET 200', 'PUT lost', 'PUT 200'])
  t.match(result.idempotencyKey, UUID, 'a random UUID')
  t.equal(put.sent[1].key, `"${result.idempotencyKey}"`, 'sent as a structured-field string')
  t.equal(put.sent[2].key, put.sent[1].key, 'the resend carries the same key')
  t.equal(result.etag, '"v2"', 'the stored answer\'s ETag')

  const post = losingFetch((write) => write === 1)
  const created = await idempotentWrite<Order>(orders, { item: 'tea' }, { fetch: post.fetch })
  t.equal(created.status, 201)
  t.equal(created.replayed, true)
  t.equal(created.location, '/orders/1')
  t.same(created.body, { id: 1, item: 'tea' })
  t.equal(state.orders.length, 1, 'one order was created')
  t.same(post.sent.map((s) => `${s.method} ${s.status}`), ['POST lost', 'POST 201'])
  t.equal(post.sent[0].key, post.sent[1].key)
})

test('a fetch that resends by itself: applied once with the key, twice without it', async (t) => {
  const { state, item, orders } = await start(t)
  const put = retryingFetch()
  const result = await conditionalUpdate<Item>(item, increment, { fetch: put.fetch })
  t.equal(result.status, 200)
  t.equal(result.replayed, true)
  t.equal(state.item.count, 1, 'applied once')
  t.equal(state.runs, 1)
  t.same(put.sent.map((s) => `${s.method} ${s.status}${s.replayed ? ' replayed' : ''}`), ['GET 200', 'PUT lost', 'PUT 200 replayed'])

  const keyless = retryingFetch()
  const doubled = await conditionalUpdate<Item>(item, increment, { fetch: keyless.fetch, idempotencyKey: false, baseDelay: 1 })
  t.equal(doubled.idempotencyKey, null)
  t.same(keyless.sent.map((s) => `${s.method} ${s.status}`), ['GET 200', 'PUT lost', 'PUT 412', 'GET 200', 'PUT 200'],
    'without a key the resend is refused as stale, and the helper reapplies the change')
  t.equal(state.item.count, 3, 'so the increment is applied twice: what the key prevents')

  const post = retryingFetch()
  const created = await idempotentWrite<Order>(orders, { item: 'tea' }, { fetch: post.fetch })
  t.equal(created.replayed, true)
  t.equal(state.orders.length, 1, 'one order')
})

test('a write that cannot be settled is an OutcomeUnknownError with its key; the same key settles it later', async (t) => {
  const { state, item, orders } = await start(t)
  const broken = losingFetch(() => true)
  const error = await conditionalUpdate<Item>(item, increment, { fetch: broken.fetch, maxResends: 2, baseDelay: 1 })
    .catch((e: unknown) => e) as OutcomeUnknownError
  t.type(error, OutcomeUnknownError)
  t.equal(error.name, 'OutcomeUnknownError')
  t.type(error.cause, TypeError)
  t.equal((error.cause as Error).message, 'fetch failed')
  t.match(error.message, /^PUT http:\/\/127\.0\.0\.1:\d+\/items\/1: no answer came after 3 sends \(TypeError: fetch failed\); the change may or may not have been applied\. Send it again with Idempotency-Key [0-9a-f-]{36} to learn its outcome/)
  t.match(error.idempotencyKey, UUID)
  t.equal(error.method, 'PUT')
  t.equal(error.url, item)
  t.equal(error.attempts, 1)
  t.same(broken.sent.map((s) => `${s.method} ${s.status}`), ['GET 200', 'PUT lost', 'PUT lost', 'PUT lost'], 'maxResends: 2 resends')
  t.ok(broken.sent.slice(1).every((s) => s.key === `"${error.idempotencyKey}"`), 'every send with the one key')
  t.equal(error.headers['if-match'], '"v1"', 'the error has the write as it was sent')
  t.equal(error.body, '{"id":"1","count":1}')
  t.equal(state.item.count, 1, 'applied once')

  const settled = await idempotentWrite<Item>(error.url, error.body, { method: error.method, headers: error.headers, idempotencyKey: error.idempotencyKey as string })
  t.equal(settled.status, 200)
  t.equal(settled.replayed, true, 'the stored answer: it was applied')
  t.equal(state.item.count, 1, 'and is not applied again')

  // A write that never reached the server: settling it applies it now.
  const unreachable: typeof fetch = async (input, init) => {
    if (init?.method === 'POST') throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED') })
    return await fetch(input, init)
  }
  const lost = await idempotentWrite(orders, { item: 'tea' }, { fetch: unreachable, maxResends: 0 }).catch((e: unknown) => e) as OutcomeUnknownError
  t.type(lost, OutcomeUnknownError)
  t.match(lost.message, /no answer came \(TypeError: fetch failed\)/, 'maxResends: 0 sends once')
  t.equal(lost.attempts, 1)
  t.equal(state.orders.length, 0)
  const later = await idempotentWrite<Order>(lost.url, lost.body, { headers: lost.headers, idempotencyKey: lost.idempotencyKey as string })
  t.equal(later.status, 201)
  t.equal(later.replayed, false, 'applied by this send')
  t.equal(state.orders.length, 1)

  const keyless = await idempotentWrite(orders, { item: 'tea' }, { fetch: unreachable, idempotencyKey: false }).catch((e: unknown) => e) as OutcomeUnknownError
  t.type(keyless, OutcomeUnknownError, 'without a key, never resent')
  t.equal(keyless.idempotencyKey, null)
  t.match(keyless.message, /sent without an Idempotency-Key, so it cannot be resent safely/)
})

test('a read that gets no answer is resent, then a ReadFailedError: nothing was written', async (t) => {
  const { state, item } = await start(t)
  let reads = 0
  const down: typeof fetch = async () => {
    reads++
    throw new TypeError('fetch failed')
  }
  const error = await conditionalUpdate<Item>(item, increment, { fetch: down, maxResends: 1, baseDelay: 1 }).catch((e: unknown) => e) as ReadFailedError
  t.type(error, ReadFailedError)
  t.equal(error.name, 'ReadFailedError')
  t.equal(reads, 2)
  t.equal(error.attempts, 0)
  t.equal(error.url, item)
  t.type(error.cause, TypeError)
  t.match(error.message, /^GET .* got no answer after 2 tries \(TypeError: fetch failed\); nothing was written$/)
  t.equal(state.runs, 0)

  let flaky = 0
  const once: typeof fetch = async (input, init) => {
    if (init?.method === 'GET' && flaky++ === 0) throw new TypeError('fetch failed')
    return await fetch(input, init)
  }
  const result = await conditionalUpdate<Item>(item, increment, { fetch: once, baseDelay: 1 })
  t.equal(result.status, 200, 'a read that failed once is resent')
  t.equal(state.item.count, 1)
})

test('the key is in use: 409, then the stored answer after Retry-After', async (t) => {
  const { state, orders, hold } = await start(t, { retryAfter: 1 })
  const { open, running } = hold()
  const sent: Array<{ status: number | 'lost', at: number }> = []
  const began = Date.now()
  let first: Promise<Response> | null = null
  // The first send reaches the server and the connection breaks while its handler still runs.
  const dropping: typeof fetch = async (input, init) => {
    if (first === null) {
      first = fetch(input, init)
      first.catch(() => {})
      await running
      sent.push({ status: 'lost', at: Date.now() - began })
      setTimeout(open, 200)
      throw new TypeError('fetch failed')
    }
    const response = await fetch(input, init)
    sent.push({ status: response.status, at: Date.now() - began })
    return response
  }
  const created = await idempotentWrite<Order>(orders, { item: 'tea' }, { fetch: dropping, baseDelay: 1 })
  t.same(sent.map((s) => s.status), ['lost', 409, 201], 'the resend found the first still running, and waited')
  t.ok(sent[2].at - sent[1].at >= 990, 'for the Retry-After second')
  t.equal(created.status, 201)
  t.equal(created.replayed, true)
  t.equal(state.orders.length, 1, 'one order')
  await (await first as unknown as Response).arrayBuffer()
})

test('a timeout counts as a lost answer; a key still in use after every resend is an OutcomeUnknownError', async (t) => {
  // A 1 s lease: the 409's Retry-After says when it ends.
  const { state, orders, hold } = await start(t, { idempotencyStore: memoryIdempotencyStore({ lease: 1000 }) })
  const { open } = hold()
  const statuses: number[] = []
  const recorded: typeof fetch = async (input, init) => {
    const response = await fetch(input, init)
    statuses.push(response.status)
    return response
  }
  // A timeout long enough for a 409 on a loaded machine; the first send is held past it.
  const error = await idempotentWrite(orders, { item: 'tea' }, { fetch: recorded, timeout: 500, maxResends: 2, baseDelay: 1 })
    .catch((e: unknown) => e) as OutcomeUnknownError
  t.type(error, OutcomeUnknownError)
  t.same(statuses, [409, 409], 'the first send timed out; each resend found the key in use (Retry-After: 1, the lease left)')
  t.match(error.message, /its Idempotency-Key was still in use after 3 sends/)
  t.equal(error.sends, 3, 'sends says what the message says')
  t.equal(error.attempts, 1, 'one write attempted')
  const cause = error.cause as UnexpectedResponseError
  t.type(cause, UnexpectedResponseError)
  t.equal(cause.status, 409)
  t.equal(cause.problem?.code, ProblemCode.IDEMPOTENCY_KEY_IN_USE)
  open()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(state.orders.length, 1, 'the first send was applied after all')
  const settled = await idempotentWrite<Order>(orders, { item: 'tea' }, { idempotencyKey: error.idempotencyKey as string })
  t.equal(settled.replayed, true)
  t.same(settled.body, { id: 1, item: 'tea' })
  t.equal(state.orders.length, 1)
})

test('a timeout also ends a fetch that ignores its signal, and a read that times out is resent', async (t) => {
  let calls = 0
  const deaf: typeof fetch = async () => {
    calls++
    return await new Promise<Response>(() => {})
  }
  const error = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, { fetch: deaf, timeout: 20, maxResends: 1, baseDelay: 1 })
    .catch((e: unknown) => e) as ReadFailedError
  t.type(error, ReadFailedError)
  t.equal(calls, 2)
  t.equal((error.cause as DOMException).name, 'TimeoutError')
  t.match(error.message, /TimeoutError: No answer within 20 ms/)
})

test('a 412 means not applied: the next attempt gets a new key, also when the 412 is a replay', async (t) => {
  const { state, item } = await start(t)
  // Someone else writes between this client's read and its first write.
  let interfered = false
  const interfering = async (current: Item) => {
    if (!interfered) {
      interfered = true
      const other = await fetch(item, { method: 'PUT', headers: { 'content-type': 'application/json', 'if-match': `"v${state.version}"` }, body: JSON.stringify({ ...current, name: 'other' }) })
      t.equal(other.status, 200)
    }
    return increment(current)
  }
  const put = losingFetch((write) => write === 1)
  const result = await conditionalUpdate<Item>(item, interfering, { fetch: put.fetch, baseDelay: 1, idempotencyKey: 'change-1' })
  t.same(put.sent.map((s) => `${s.method} ${s.status}${s.replayed ? ' replayed' : ''}`),
    ['GET 200', 'PUT lost', 'PUT 412 replayed', 'GET 200', 'PUT 200'],
    'the lost answer was a 412, and its replay says so')
  t.equal(put.sent[1].key, '"change-1"', 'the first write carries the given key')
  t.equal(put.sent[2].key, '"change-1"')
  t.match(put.sent[4].key, /^"[0-9a-f-]{36}"$/, 'the second attempt a new one')
  t.equal(result.idempotencyKey, put.sent[4].key?.slice(1, -1))
  t.equal(result.attempts, 2)
  t.equal(result.replayed, false)
  t.same(state.item, { id: '1', count: 1, name: 'other' }, 'the change applied once, on the other writer\'s version')

  const always = async (current: Item) => {
    await fetch(item, { method: 'PUT', headers: { 'content-type': 'application/json', 'if-match': `"v${state.version}"` }, body: JSON.stringify(current) })
    return current
  }
  const failed = await conditionalUpdate<Item>(item, always, { maxAttempts: 1 }).catch((e: unknown) => e) as PreconditionFailedError
  t.type(failed, PreconditionFailedError)
  t.match(failed.message, /^PUT \S+ failed its precondition: If-Match does not match/, 'one attempt: no count in the message')
})

test('422 and 400 are the typed problem errors', async (t) => {
  const { state, orders } = await start(t)
  const first = await idempotentWrite<Order>(orders, { item: 'tea' }, { idempotencyKey: 'order-1' })
  t.equal(first.status, 201)
  t.equal(first.replayed, false)
  t.equal(first.idempotencyKey, 'order-1')
  const mismatch = await idempotentWrite(orders, { item: 'coffee' }, { idempotencyKey: 'order-1' }).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(mismatch, UnexpectedResponseError, 'the key reused with another body')
  t.equal(mismatch.status, 422)
  t.equal(mismatch.problem?.code, ProblemCode.IDEMPOTENCY_KEY_MISMATCH)
  t.equal(mismatch.method, 'POST')
  t.equal(mismatch.attempts, 1)
  t.match(mismatch.message, /^POST \S+ answered 422: This Idempotency-Key was already used for a different request/)

  const missing = await idempotentWrite(orders, { item: 'tea' }, { idempotencyKey: false }).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(missing, UnexpectedResponseError)
  t.equal(missing.status, 400)
  t.equal(missing.problem?.code, ProblemCode.IDEMPOTENCY_KEY_MISSING)
  t.equal(state.orders.length, 1)
})

test('keys: structured-field strings, escaped; the headers option cannot send a second one', async (t) => {
  const { state, orders } = await start(t)
  const key = 'a"b\\c'
  const keys: string[] = []
  const recorded: typeof fetch = async (input, init) => {
    keys.push((init?.headers as Record<string, string>)['idempotency-key'])
    return await fetch(input, init)
  }
  const first = await idempotentWrite(orders, { item: 'tea' }, { idempotencyKey: key, fetch: recorded, headers: { 'Idempotency-Key': 'other' } })
  const again = await idempotentWrite(orders, { item: 'tea' }, { idempotencyKey: key, fetch: recorded })
  t.same(keys, ['"a\\"b\\\\c"', '"a\\"b\\\\c"'])
  t.equal(first.replayed, false)
  t.equal(again.replayed, true, 'the server read the same key twice')
  t.equal(state.orders.length, 1)

  for (const bad of ['', 'a b', 'é', 'x'.repeat(256), 5]) {
    await t.rejects(idempotentWrite(orders, {}, { idempotencyKey: bad as string }), { name: 'TypeError', message: /idempotencyKey must be 1 to 255 visible ASCII characters/ }, JSON.stringify(bad))
    await t.rejects(conditionalUpdate(orders, (v) => v, { idempotencyKey: bad as string }), TypeError)
  }
  const longest = await idempotentWrite(orders, { item: 'x' }, { idempotencyKey: 'k'.repeat(255) })
  t.equal(longest.status, 201, 'a 255-character key is accepted')
})

test('new keys are version 4 UUIDs, also where crypto.randomUUID is missing', async (t) => {
  const keys = new Set(Array.from({ length: 50 }, () => newIdempotencyKey()))
  t.equal(keys.size, 50)
  for (const key of keys) t.match(key, UUID)
  // Browsers offer crypto.randomUUID only in secure contexts.
  Object.defineProperty(globalThis.crypto, 'randomUUID', { value: undefined, configurable: true })
  t.teardown(() => { delete (globalThis.crypto as { randomUUID?: unknown }).randomUUID })
  const fallback = new Set(Array.from({ length: 50 }, () => newIdempotencyKey()))
  t.equal(fallback.size, 50)
  for (const key of fallback) t.match(key, UUID)
})

test('options are checked', async (t) => {
  for (const options of [{ maxResends: -1 }, { maxResends: 1.5 }, { timeout: 0 }, { timeout: Infinity }, { baseDelay: -1 }]) {
    await t.rejects(idempotentWrite('http://127.0.0.1:1/', {}, options), TypeError, JSON.stringify(options))
    await t.rejects(conditionalUpdate('http://127.0.0.1:1/', (v) => v, options), TypeError, JSON.stringify(options))
  }
  await t.rejects(idempotentWrite('http://127.0.0.1:1/', {}, { maxResends: -1 }), { message: 'idempotentWrite: maxResends must be a whole number, 0 or more; got -1' })
  await t.rejects(idempotentWrite('http://127.0.0.1:1/', undefined, { method: 'get' }), { name: 'TypeError', message: /method must be one that writes/ })
})

// A scripted server: each call takes the next response, or throws it when it is an error.
function scripted (steps: Array<() => Response | Error>) {
  const sent: RequestInit[] = []
  const wrapped: typeof fetch = async (_input, init = {}) => {
    sent.push(init)
    const next = (steps.shift() as () => Response | Error)()
    if (next instanceof Error) throw next
    return next
  }
  return { sent, fetch: wrapped }
}
const problem = (status: number, body: Record<string, unknown>, headers: Record<string, string> = {}) => () =>
  new Response(JSON.stringify({ status, ...body }), { status, headers: { 'content-type': 'application/problem+json', ...headers } })
const lostAnswer = () => new TypeError('fetch failed')

test('which 409s are resent, and how long they wait', async (t) => {
  const own = scripted([problem(409, { detail: 'name taken' })])
  const conflict = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: own.fetch }).catch((e: unknown) => e) as UnexpectedResponseError
  t.type(conflict, UnexpectedResponseError, 'the application\'s own 409 is an answer')
  t.equal(own.sent.length, 1)
  t.match(conflict.message, /answered 409: name taken/)

  const coded = scripted([problem(409, { code: ProblemCode.IDEMPOTENCY_KEY_IN_USE }), () => new Response(null, { status: 204 })])
  const done = await idempotentWrite('http://127.0.0.1:1/r', undefined, { method: 'delete', fetch: coded.fetch, baseDelay: 1 })
  t.equal(done.status, 204, 'a 409 with the plugin\'s code but no Retry-After is resent after the backoff')
  t.equal(done.body, null)
  t.equal(coded.sent[0].body, undefined, 'no body')
  t.notOk((coded.sent[0].headers as Record<string, string>)['content-type'], 'so no content type')

  const began = Date.now()
  const long = scripted([problem(409, {}, { 'retry-after': '3600' }), problem(409, {}, { 'retry-after': 'soon' }), () => new Response(null, { status: 204 })])
  await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: long.fetch, baseDelay: 1 })
  t.ok(Date.now() - began < 1000, 'a Retry-After over a minute, or not a number, gets the backoff instead')

  const keyless = scripted([problem(409, {}, { 'retry-after': '0' })])
  const notResent = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: keyless.fetch, idempotencyKey: false }).catch((e: unknown) => e)
  t.type(notResent, UnexpectedResponseError, 'without a key a 409 is not about one')
})

test('a server failure after a lost answer leaves the outcome unknown; before one, it is the typed error', async (t) => {
  const after = scripted([lostAnswer, problem(503, { detail: 'store down' }, { 'retry-after': '2' })])
  const unknown = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: after.fetch, baseDelay: 1 }).catch((e: unknown) => e) as OutcomeUnknownError
  t.type(unknown, OutcomeUnknownError)
  t.match(unknown.message, /the server answered 503 to a resend/)
  t.type(unknown.cause, ServiceUnavailableError)
  t.equal((unknown.cause as ServiceUnavailableError).retryAfter, 2)

  const first = scripted([problem(503, {}, { 'retry-after': '2' })])
  const unavailable = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: first.fetch }).catch((e: unknown) => e)
  t.type(unavailable, ServiceUnavailableError, 'a 503 to the first send: nothing was attempted')

  const broken = scripted([lostAnswer, () => new Response('oops', { status: 500 })])
  const crashed = await conditionalUpdate('http://127.0.0.1:1/r', (v) => v, {
    fetch: async (input, init) => init?.method === 'GET' ? new Response('{}', { headers: { 'content-type': 'application/json', etag: '"1"' } }) : broken.fetch(input, init),
    baseDelay: 1
  }).catch((e: unknown) => e) as OutcomeUnknownError
  t.type(crashed, OutcomeUnknownError)
  t.equal((crashed.cause as UnexpectedResponseError).status, 500)
})

test('an abort during a write, or while it waits to be resent, leaves the outcome unknown', async (t) => {
  const controller = new AbortController()
  const hanging: typeof fetch = async (_input, init) => await new Promise<Response>((_resolve, reject) => {
    init?.signal?.addEventListener('abort', () => reject(init.signal?.reason))
    setTimeout(() => controller.abort(new Error('user left')), 10)
  })
  const during = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: hanging, signal: controller.signal }).catch((e: unknown) => e) as OutcomeUnknownError
  t.type(during, OutcomeUnknownError)
  t.equal((during.cause as Error).message, 'user left')
  t.match(during.message, /no answer came \(Error: user left\)/)

  const waiting = new AbortController()
  const lost = scripted([() => {
    setTimeout(() => waiting.abort('gave up'), 10)
    return lostAnswer()
  }])
  const meanwhile = await idempotentWrite('http://127.0.0.1:1/r', {}, { fetch: lost.fetch, signal: waiting.signal, baseDelay: 60_000, maxDelay: 60_000 })
    .catch((e: unknown) => e) as OutcomeUnknownError
  t.type(meanwhile, OutcomeUnknownError)
  t.equal(meanwhile.cause, 'gave up')
  t.match(meanwhile.message, /aborted while waiting to be resent \(gave up\)/)
  t.equal(lost.sent.length, 1)

  const before = new AbortController()
  before.abort(new Error('never started'))
  let sends = 0
  const counting: typeof fetch = async () => { sends++; return new Response(null, { status: 204 }) }
  await t.rejects(idempotentWrite('http://127.0.0.1:1/r', {}, { signal: before.signal, fetch: counting }), { message: 'never started' },
    'aborted before it was sent: nothing to settle')
  t.equal(sends, 0)

  const reading = new AbortController()
  const read: typeof fetch = async () => {
    reading.abort(new Error('stop reading'))
    throw new TypeError('fetch failed')
  }
  await t.rejects(conditionalUpdate('http://127.0.0.1:1/r', (v) => v, { fetch: read, signal: reading.signal }), { message: 'stop reading' },
    'an abort during the read ends the update with its reason, as before')
})

test('a client that times out while an async handler that returns its value runs: applied exactly once', async (t) => {
  // The handlers return their value (no reply.send): the style most Fastify code is written in,
  // and the one whose answer was once released, not stored, when its client had left.
  const app = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: memoryIdempotencyStore({ lease: 1000 }) })
  const state = { count: 0, version: 1, orders: [] as Order[], runs: 0 }
  const validators = () => ({ etag: `"v${state.version}"` })
  app.get('/items/:id', { concurrency: { validators } }, async () => ({ id: '1', count: state.count }))
  app.put('/items/:id', { concurrency: { require: 'if-match', validators, idempotency: true } }, async (request) => {
    state.runs++
    await new Promise((resolve) => setTimeout(resolve, 400))
    state.count = (request.body as Item).count
    state.version++
    return { id: '1', count: state.count }
  })
  app.post('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    await new Promise((resolve) => setTimeout(resolve, 400))
    const order = { id: state.orders.length + 1, item: (request.body as { item: string }).item }
    state.orders.push(order)
    reply.code(201)
    return order
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const created = await idempotentWrite<Order>(`${origin}/orders`, { item: 'tea' }, { timeout: 150, baseDelay: 50 })
  t.equal(state.orders.length, 1, 'one order, though the first answer never reached the client')
  t.equal(created.status, 201)
  t.equal(created.replayed, true, 'the resend got the stored answer')
  t.same(created.body, { id: 1, item: 'tea' })

  const updated = await conditionalUpdate<Item>(`${origin}/items/1`, increment, { timeout: 150, baseDelay: 50 })
  t.equal(state.runs, 1, 'the handler ran once')
  t.equal(state.count, 1, 'the counter was raised once')
  t.equal(updated.replayed, true)
  t.same(updated.body, { id: '1', count: 1 })
})

test('an answer the server did not keep: AnswerNotKeptError, applied, not sent again', async (t) => {
  const app = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: memoryIdempotencyStore({ maxAnswerBytes: 100 } as never) })
  let runs = 0
  app.post('/reports', { concurrency: { idempotency: true } }, async () => {
    runs++
    return { rows: 'x'.repeat(500) }
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/reports`
  const post = losingFetch((write) => write === 1)
  const error = await idempotentWrite(url, {}, { fetch: post.fetch }).then(() => null, (thrown: unknown) => thrown)
  t.ok(error instanceof AnswerNotKeptError, 'the typed error')
  t.equal((error as AnswerNotKeptError).applied, true)
  t.equal((error as AnswerNotKeptError).status, 409)
  t.equal(runs, 1, 'applied once, not sent again')
  t.same(post.sent.map((s) => `${s.method} ${s.status}`), ['POST lost', 'POST 409'])
})
