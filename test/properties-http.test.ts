// Properties of the write path over real sockets: random header bytes, random validators results
// (valid and not), random delays in the route's hooks, validators and handler, and clients that
// leave at random points. Whatever happens: no 5xx but from a bad validators result, the server
// lives, never two handlers at once, no handler without its lock, no lock left at the end.
import Fastify, { type FastifyRequest } from 'fastify'
import fc from 'fast-check'
import { connect } from 'node:net'
import { test } from 'tap'
import fastifyPrecondition, { MemoryLockStore } from '../lib/index.js'
import { sleep, watchRejections } from './helpers/http.js'

// Header field bytes a client can put on the wire: visible ASCII, space, tab and obs-text.
const fieldByte = fc.oneof(
  fc.integer({ min: 0x20, max: 0x7e }),
  fc.constantFrom(0x09, 0x22, 0x2c, 0x2a, 0x57, 0x2f, 0x80, 0xff)
).map((c) => String.fromCharCode(c))
const fieldText = fc.oneof(
  { arbitrary: fc.string({ unit: fieldByte, maxLength: 40 }), weight: 1 },
  { arbitrary: fc.constantFrom('*', '"v1"', 'W/"v1"', '"v1", *', '*, "x"', '"v2"', 'Fri, 02 Jan 2026 03:04:05 GMT', '""'), weight: 3 }
)
const conditional = fc.record({
  'if-match': fieldText,
  'if-none-match': fieldText,
  'if-unmodified-since': fieldText,
  'if-modified-since': fieldText
}, { requiredKeys: [] })

// What validators return: valid shapes, and values no header may carry.
const VALIDATORS: unknown[] = [
  null,
  { etag: '"v1"' },
  { etag: 'v1', lastModified: '2026-01-02T03:04:05Z' },
  { etag: 'W/"v1"', lastModified: 0 },
  { lastModified: new Date('2026-01-02T03:04:05Z') },
  { etag: 'v 1' },
  { etag: 42 },
  { lastModified: 'soon' },
  'v1'
]
const VALID = new Set([0, 1, 2, 3, 4])

const requestArb = fc.record({
  method: fc.constantFrom('GET', 'PUT', 'PATCH', 'DELETE'),
  headers: conditional,
  validators: fc.integer({ min: 0, max: VALIDATORS.length - 1 }),
  asyncValidators: fc.boolean(),
  delays: fc.record({ hook: fc.integer({ min: 0, max: 8 }), validators: fc.integer({ min: 0, max: 8 }), handler: fc.integer({ min: 0, max: 8 }) }),
  // When the client leaves: never, or after so many ms.
  leaveAfter: fc.option(fc.integer({ min: 0, max: 25 }), { nil: null })
})

interface Answer { status: number | null, validators: number, method: string }

function rawRequest (port: number, spec: {
  method: string
  headers: Record<string, string>
  validators: number
  asyncValidators: boolean
  delays: { hook: number, validators: number, handler: number }
  leaveAfter: number | null
}): Promise<Answer> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const body = spec.method === 'GET' ? '' : '{}'
    const lines = [
      `${spec.method} /items/1 HTTP/1.1`, 'host: 127.0.0.1', 'connection: close',
      `x-validators: ${spec.validators}`, `x-async: ${spec.asyncValidators ? 1 : 0}`,
      `x-delays: ${spec.delays.hook},${spec.delays.validators},${spec.delays.handler}`,
      ...(body === '' ? [] : ['content-type: application/json', `content-length: ${body.length}`]),
      ...Object.entries(spec.headers).map(([name, value]) => `${name}: ${value}`)
    ]
    let text = ''
    let settled = false
    const finish = () => {
      if (settled) return
      settled = true
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text)
      resolve({ status: match === null ? null : Number(match[1]), validators: spec.validators, method: spec.method })
    }
    socket.on('data', (chunk: Buffer) => { text += chunk.toString('latin1') })
    socket.on('close', finish)
    socket.on('error', () => {})
    socket.write(Buffer.from(lines.join('\r\n') + '\r\n\r\n' + body, 'latin1'))
    if (spec.leaveAfter !== null) setTimeout(() => socket.destroy(), spec.leaveAfter)
    setTimeout(() => socket.destroy(), 3000)
  })
}

test('random headers, validators, delays and departures over HTTP: no stray 5xx, no crash, one writer at a time, no lock left', async (t) => {
  const rejections = watchRejections(t)

  const app = Fastify()
  const store = new MemoryLockStore()
  await app.register(fastifyPrecondition, { lockStore: store, lockTimeout: 5000 })
  const stats = { active: 0, maxActive: 0, unguarded: 0, runs: 0 }
  const spec = (request: FastifyRequest) => {
    const [hook, validators, handler] = String(request.headers['x-delays']).split(',').map(Number)
    return { hook, validators, handler, index: Number(request.headers['x-validators']), async: request.headers['x-async'] === '1' }
  }
  const validators = (request: FastifyRequest) => {
    const s = spec(request)
    const value = VALIDATORS[s.index]
    if (!s.async) return value as never
    return sleep(s.validators).then(() => value) as never
  }
  app.route({
    method: ['GET', 'PUT', 'PATCH', 'DELETE'],
    url: '/items/:id',
    preHandler: async (request) => { await sleep(spec(request).hook) },
    concurrency: { validators },
    handler: async (request) => {
      stats.runs++
      if (request.method !== 'GET') {
        if (request.lock === null || store.size === 0) stats.unguarded++
        stats.active++
        stats.maxActive = Math.max(stats.maxActive, stats.active)
        await sleep(spec(request).handler)
        stats.active--
      }
      return { ok: true }
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port

  let stray: Answer[] = []
  await fc.assert(fc.asyncProperty(fc.array(requestArb, { minLength: 4, maxLength: 10 }), async (batch) => {
    const outcomes = await Promise.all(batch.map((request) => rawRequest(port, request)))
    // A 5xx is allowed only from a validators result that no header can carry (500).
    stray = outcomes.filter((outcome) => outcome.status !== null && outcome.status >= 500 &&
      !(outcome.status === 500 && !VALID.has(outcome.validators)))
    return stray.length === 0 && stats.maxActive <= 1 && stats.unguarded === 0
  }), { numRuns: 60, interruptAfterTimeLimit: 60_000 })
  t.same(stray, [], 'no 5xx but from a bad validators result')
  t.equal(stats.maxActive, 1, 'never two writes in their handlers at once')
  t.equal(stats.unguarded, 0, 'no handler ran without its lock')
  t.ok(stats.runs > 0, `handlers ran (${stats.runs})`)
  await sleep(100)
  t.equal(store.size, 0, 'no lock left at the end')
  const alive = await rawRequest(port, { method: 'GET', headers: {}, validators: 1, asyncValidators: false, delays: { hook: 0, validators: 0, handler: 0 }, leaveAfter: null })
  t.equal(alive.status, 200, 'the server still answers')
  t.same(rejections, [], 'no unhandled rejection')
})
