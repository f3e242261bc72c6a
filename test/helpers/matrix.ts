// The request-path matrix: every handler style users write × where the client leaves × HTTP/1.1
// and HTTP/2 × a store × the neighbours, over real sockets on loopback. A feature on the request
// path runs through it by adding a route kind (`RouteKind`): today the Idempotency-Key policy
// alone, and with the precondition policy and the write lock.
//
// Each case sends one request with a fresh key and, where the case says so, leaves: before the
// claim (while a route hook waits), or during the handler (which waits until the server has seen
// the client go). Then it retries with the same key until the first answer is stored, and once
// more. It asserts: the handler ran once for the key; the retry gets the first answer, byte for
// byte once decoded, marked Idempotent-Replayed (or, for a hijacked reply, the not-kept problem);
// a caller who fails auth gets no stored answer. Unhandled rejections fail the run (.taprc).
import compress from '@fastify/compress'
import etag from '@fastify/etag'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import * as http2 from 'node:http2'
import { Readable } from 'node:stream'
import * as zlib from 'node:zlib'
import type { Test } from 'tap'
import fastifyPrecondition, { type FastifyPreconditionOptions } from '../../lib/index.js'
import { sleep } from './http.js'

export const STYLES = ['async-return', 'return-send', 'callback', 'return-reply-later', 'sync-return', 'stream', 'hijack', 'throw'] as const
export type Style = typeof STYLES[number]
export const LEAVES = ['none', 'before-claim', 'during-handler'] as const
export type Leave = typeof LEAVES[number]
export const TRANSPORTS = ['http1', 'http2'] as const
export type Transport = typeof TRANSPORTS[number]
export const NEIGHBOURS = ['none', 'compress', 'etag', 'auth'] as const
export type Neighbour = typeof NEIGHBOURS[number]
/** `keyed`: POST with idempotency alone. `locked`: PUT with If-Match required, validators, the lock and idempotency. */
export const ROUTE_KINDS = ['keyed', 'locked'] as const
export type RouteKind = typeof ROUTE_KINDS[number]

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  /** The body, decoded from its Content-Encoding. */
  body: string
}

interface Sent {
  answer: Promise<Answer | null>
  /** Cuts the connection (HTTP/1.1) or resets the stream (HTTP/2). */
  leave: () => void
}

function decode (headers: IncomingHttpHeaders, bytes: Buffer): string {
  const coding = headers['content-encoding']
  if (coding === 'gzip') return zlib.gunzipSync(bytes).toString()
  if (coding === 'br') return zlib.brotliDecompressSync(bytes).toString()
  if (coding === 'deflate') return zlib.inflateSync(bytes).toString()
  return bytes.toString()
}

/** A client for one transport; `close` ends its session. */
export interface Client {
  send: (method: string, path: string, headers: Record<string, string>, body: string) => Sent
  close: () => void
}

export function client (transport: Transport, port: number): Client {
  if (transport === 'http1') {
    return {
      send (method, path, headers, body) {
        let cut = (): void => {}
        const answer = new Promise<Answer | null>((resolve) => {
          const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
            const chunks: Buffer[] = []
            res.on('data', (chunk: Buffer) => chunks.push(chunk))
            res.on('end', () => { resolve({ status: res.statusCode as number, headers: res.headers, body: decode(res.headers, Buffer.concat(chunks)) }) })
            res.on('error', () => resolve(null))
          })
          req.on('error', () => resolve(null))
          cut = () => { req.destroy(); resolve(null) }
          req.end(body)
        })
        return { answer, leave: () => cut() }
      },
      close () {}
    }
  }
  const session = http2.connect(`http://127.0.0.1:${port}`)
  session.on('error', () => {})
  return {
    send (method, path, headers, body) {
      const stream = session.request({ ':method': method, ':path': path, ...headers })
      const answer = new Promise<Answer | null>((resolve) => {
        let head: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {}
        const chunks: Buffer[] = []
        stream.on('response', (received) => { head = received })
        stream.on('data', (chunk: Buffer) => chunks.push(chunk))
        stream.on('end', () => {
          const { ':status': status, ...rest } = head
          resolve({ status: Number(status), headers: rest as IncomingHttpHeaders, body: decode(rest as IncomingHttpHeaders, Buffer.concat(chunks)) })
        })
        stream.on('error', () => resolve(null))
        stream.on('close', () => { if (stream.rstCode !== undefined && stream.rstCode !== http2.constants.NGHTTP2_NO_ERROR) resolve(null) })
      })
      stream.end(body)
      return { answer, leave: () => { stream.close(http2.constants.NGHTTP2_CANCEL) } }
    },
    close () { session.close() }
  }
}

/** Per key: handler runs and the signal that its client is gone from the server's view. */
export class Ledger {
  readonly runs = new Map<string, number>()
  /** Resolved when the test has been told the request reached the point where it leaves. */
  readonly reached = new Map<string, () => void>()

  run (key: string): number {
    const n = (this.runs.get(key) ?? 0) + 1
    this.runs.set(key, n)
    return n
  }

  /** Tells the test the request for `key` is at its leaving point, and waits until its client is gone. */
  async leaving (key: string, reply: FastifyReply): Promise<void> {
    this.reached.get(key)?.()
    await gone(reply)
  }
}

/** Resolves once the server has seen this response's client go (at most 3 s). */
function gone (reply: FastifyReply): Promise<void> {
  const raw = reply.raw as FastifyReply['raw'] & { stream?: { destroyed: boolean } }
  if (raw.stream?.destroyed === true || raw.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 3000)
    raw.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
  })
}

const keyOf = (request: FastifyRequest): string => request.headers['idempotency-key'] as string
const leaveOf = (request: FastifyRequest): string | undefined => request.headers['x-leave'] as string | undefined

/** The body a style answers with on run `n`: the same bytes every time for the same run. */
export function expectedBody (style: Style, key: string, n: number): string {
  if (style === 'stream') return `chunk 1 of ${key} run ${n}\nchunk 2\nchunk 3\n`
  if (style === 'hijack') return `hijacked ${key} run ${n}`
  if (style === 'throw') return JSON.stringify({ statusCode: 400, error: 'Bad Request', message: `refused ${key} run ${n}` })
  return JSON.stringify({ key, run: n, style })
}

function handlerFor (style: Style, ledger: Ledger): RouteOptions['handler'] {
  const during = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (leaveOf(request) === 'during-handler') await ledger.leaving(keyOf(request), reply)
  }
  const answer = (request: FastifyRequest, n: number) => ({ key: keyOf(request), run: n, style })
  switch (style) {
    case 'async-return':
      return async (request, reply) => {
        const n = ledger.run(keyOf(request))
        await during(request, reply)
        reply.code(201)
        return answer(request, n)
      }
    case 'return-send':
      return async (request, reply) => {
        const n = ledger.run(keyOf(request))
        await during(request, reply)
        return reply.code(201).send(answer(request, n))
      }
    case 'callback':
      return function (request, reply) {
        const n = ledger.run(keyOf(request))
        during(request, reply).then(() => { setTimeout(() => { reply.code(201).send(answer(request, n)) }, 10) }, () => {})
      }
    case 'return-reply-later':
      // `return reply` from an async handler that answers later, from a callback: its promise
      // settles only once the response has ended (or its client left).
      return async (request, reply) => {
        const n = ledger.run(keyOf(request))
        during(request, reply).then(() => { setTimeout(() => { reply.code(201).send(answer(request, n)) }, 10) }, () => {})
        return reply
      }
    case 'sync-return':
      return function (request, reply) {
        const n = ledger.run(keyOf(request))
        reply.code(201)
        return answer(request, n)
      }
    case 'stream':
      return async (request, reply) => {
        const key = keyOf(request)
        const n = ledger.run(key)
        await during(request, reply)
        reply.type('text/plain')
        // Produced over time: the first chunk goes out before the last exists.
        return Readable.from((async function * () {
          yield `chunk 1 of ${key} run ${n}\n`
          await sleep(5)
          yield 'chunk 2\n'
          await sleep(5)
          yield 'chunk 3\n'
        })(), { objectMode: false })
      }
    case 'hijack':
      return async (request, reply) => {
        const key = keyOf(request)
        const n = ledger.run(key)
        await during(request, reply)
        reply.hijack()
        if (!reply.raw.destroyed) {
          reply.raw.writeHead(200, { 'content-type': 'text/plain' })
          reply.raw.end(`hijacked ${key} run ${n}`)
        }
      }
    case 'throw':
      return async (request, reply) => {
        const key = keyOf(request)
        const n = ledger.run(key)
        await during(request, reply)
        throw Object.assign(new Error(`refused ${key} run ${n}`), { statusCode: 400 })
      }
  }
}

export interface MatrixApp {
  app: FastifyInstance
  ledger: Ledger
  port: number
  /** The current version of each item of the locked routes. */
  versions: Map<string, number>
}

/** An auth check added by a plugin registered after fastify-precondition, in its own onRoute hook. */
const lateAuth = fp(async function lateAuth (fastify: FastifyInstance) {
  fastify.addHook('onRoute', (routeOptions) => {
    const existing = routeOptions.preHandler
    const list = existing === undefined ? [] : Array.isArray(existing) ? [...existing] : [existing]
    list.push(async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send({ error: 'unauthenticated' })
    })
    routeOptions.preHandler = list
  })
}, { name: 'late-auth' })

export async function matrixApp (t: Test, transport: Transport, neighbour: Neighbour, options: FastifyPreconditionOptions): Promise<MatrixApp> {
  const app = (transport === 'http2' ? Fastify({ http2: true }) : Fastify()) as unknown as FastifyInstance
  // Registered first, so their onSend hooks run before the plugin's: the stored answer is the
  // encoded one (compress), and app-wide tags come with it (etag).
  if (neighbour === 'compress') await app.register(compress, { threshold: 0 })
  if (neighbour === 'etag') await app.register(etag)
  await app.register(fastifyPrecondition, options)
  if (neighbour === 'auth') await app.register(lateAuth)
  const ledger = new Ledger()
  const versions = new Map<string, number>()
  // A route hook where the client may leave before the claim.
  const beforeClaim = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (leaveOf(request) === 'before-claim') await ledger.leaving(keyOf(request), reply)
  }
  const validators = (request: FastifyRequest) => ({ etag: `"v${versions.get((request.params as { id: string }).id) ?? 1}"` })
  for (const style of STYLES) {
    app.post(`/keyed/${style}`, { preHandler: beforeClaim, concurrency: { idempotency: true } }, handlerFor(style, ledger))
    const inner = handlerFor(style, ledger)
    app.put(`/locked/${style}/:id`, {
      preHandler: beforeClaim,
      concurrency: { require: 'if-match', validators, idempotency: true }
    }, function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      const id = (request.params as { id: string }).id
      versions.set(id, (versions.get(id) ?? 1) + 1)
      return inner.call(this, request, reply)
    } as RouteOptions['handler'])
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return { app, ledger, port: (app.server.address() as { port: number }).port, versions }
}

export interface Case {
  style: Style
  leave: Leave
  kind: RouteKind
  neighbour: Neighbour
}

/** Cases that do not exist: a synchronous handler cannot wait for its client to leave. */
export function applies (c: Case): boolean {
  return !(c.style === 'sync-return' && c.leave === 'during-handler')
}

let serial = 0

/** Runs one case against `m` and asserts what the matrix promises. */
export async function runCase (t: Test, m: MatrixApp, http: Client, c: Case): Promise<void> {
  const key = `k-${process.pid}-${++serial}`
  const id = `item-${serial}`
  const path = c.kind === 'keyed' ? `/keyed/${c.style}` : `/locked/${c.style}/${id}`
  const method = c.kind === 'keyed' ? 'POST' : 'PUT'
  const headers: Record<string, string> = { 'idempotency-key': key, 'content-type': 'application/json', 'accept-encoding': 'gzip' }
  if (c.kind === 'locked') headers['if-match'] = '"v1"'
  if (c.neighbour === 'auth') headers.authorization = 'Bearer ok'
  const body = JSON.stringify({ item: c.style })
  const label = `${c.kind} ${c.style}, leaves ${c.leave}, with ${c.neighbour}`

  const reached = new Promise<void>((resolve) => { m.ledger.reached.set(key, resolve) })
  const first = http.send(method, path, c.leave === 'none' ? headers : { ...headers, 'x-leave': c.leave }, body)
  let firstAnswer: Answer | null = null
  if (c.leave === 'none') {
    firstAnswer = await first.answer
    t.ok(firstAnswer !== null, `${label}: the first request is answered`)
  } else {
    await reached
    first.leave()
    await first.answer
  }

  // The client retries until the first answer is stored (a 409 says it is still being made).
  let retry: Answer | null = null
  const until = Date.now() + 5000
  for (;;) {
    retry = await http.send(method, path, headers, body).answer
    if (retry === null || retry.status !== 409 || retry.headers['idempotent-replayed'] === 'true' || (retry.body.includes('ANSWER_NOT_KEPT'))) break
    if (Date.now() > until) break
    await sleep(20)
  }
  // And once more, without accepting any coding: a replay must still be readable.
  const again = await http.send(method, path, { ...headers, 'accept-encoding': 'identity' }, body).answer
  const runs = m.ledger.runs.get(key) ?? 0
  t.equal(runs, 1, `${label}: the handler ran once for the key`)
  t.ok(retry !== null && again !== null, `${label}: the retries are answered`)
  if (retry === null || again === null) return
  const expected = expectedBody(c.style, key, 1)
  // Gone before the claim: nothing ran, and the first retry is the first run.
  const firstRun = c.leave === 'before-claim' ? retry : firstAnswer
  if (firstRun !== null && c.style !== 'hijack') t.equal(firstRun.body, expected, `${label}: the first run's answer`)
  for (const [name, replay] of [['retry', c.leave === 'before-claim' ? again : retry], ['retry without codings', again]] as const) {
    if (c.style === 'hijack') {
      t.equal(replay.status, 409, `${label}, ${name}: a hijacked answer is not kept: 409`)
      t.match(replay.body, /FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT/, `${label}, ${name}: the not-kept problem`)
      continue
    }
    t.equal(replay.headers['idempotent-replayed'], 'true', `${label}, ${name}: replayed`)
    t.equal(replay.status, c.style === 'stream' ? 200 : c.style === 'throw' ? 400 : 201, `${label}, ${name}: the first status`)
    t.equal(replay.body, expected, `${label}, ${name}: the first answer, byte for byte once decoded`)
    if (firstRun !== null && firstRun.headers.etag !== undefined) t.equal(replay.headers.etag, firstRun.headers.etag, `${label}, ${name}: the same ETag`)
  }
  if (c.neighbour === 'auth') {
    const { authorization: _, ...anonymous } = headers
    const refused = await http.send(method, path, anonymous, body).answer
    t.equal(refused?.status, 401, `${label}: a caller who fails auth is refused`)
    t.notOk(refused?.body.includes(key), `${label}: and sees nothing of the stored answer`)
  }
}

/** Every case for one store, on both transports and with each neighbour. */
export async function runMatrix (t: Test, options: () => FastifyPreconditionOptions): Promise<void> {
  for (const transport of TRANSPORTS) {
    for (const neighbour of NEIGHBOURS) {
      await t.test(`${transport}, with ${neighbour}`, async (t) => {
        const m = await matrixApp(t, transport, neighbour, options())
        const http = client(transport, m.port)
        t.teardown(() => http.close())
        for (const kind of ROUTE_KINDS) {
          for (const style of STYLES) {
            for (const leave of LEAVES) {
              const c = { style, leave, kind, neighbour }
              if (applies(c)) await runCase(t, m, http, c)
            }
          }
        }
      })
    }
  }
}
