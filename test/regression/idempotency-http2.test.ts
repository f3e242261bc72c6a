// Idempotency-Key over HTTP/2: a stream reset while the first request's handler runs, or before
// its claim, never runs the change twice and never leaves the key blocked.
import Fastify from 'fastify'
import { connect as http2Connect, constants as h2 } from 'node:http2'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'
import { sleep } from '../helpers/http.js'

test('HTTP/2 resets around an Idempotency-Key write', async (t) => {
  const app = Fastify({ http2: true })
  await app.register(fastifyPrecondition)
  let runs = 0
  const delays = { auth: 0, handler: 0 }
  // Resolved when a request reaches the auth hook or the handler: the resets come after that, not
  // after a fixed time a loaded machine may not keep.
  const reached = { auth: () => {}, handler: () => {} }
  const when = (point: 'auth' | 'handler') => new Promise<void>((resolve) => { reached[point] = resolve })
  app.post('/orders', {
    preHandler: async () => {
      reached.auth()
      await sleep(delays.auth)
    },
    concurrency: { idempotency: { required: true } }
  }, async (_request, reply) => {
    runs++
    reached.handler()
    await sleep(delays.handler)
    return reply.code(201).send({ order: runs })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const session = http2Connect(`http://127.0.0.1:${(app.server.address() as { port: number }).port}`)
  session.on('error', () => {})
  t.teardown(() => session.close())
  const post = (key: string, body = '{"item":"tea"}') => {
    const stream = session.request({ ':method': 'POST', ':path': '/orders', 'idempotency-key': key, 'content-type': 'application/json' })
    stream.end(body)
    const response = new Promise<{ status: number, body: string, replayed: unknown }>((resolve) => {
      let status = 0
      let replayed: unknown
      let body = ''
      stream.on('response', (headers) => {
        status = headers[':status'] as number
        replayed = headers['idempotent-replayed']
      })
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => { body += chunk })
      stream.on('close', () => resolve({ status, body, replayed }))
      stream.on('error', () => {})
    })
    return { stream, response }
  }

  // Reset while the handler runs: the change is applied, its answer stored, the retry replays it.
  delays.handler = 60
  const inHandler = when('handler')
  const first = post('during-handler')
  await inHandler
  first.stream.close(h2.NGHTTP2_CANCEL)
  await first.response
  await sleep(80)
  delays.handler = 0
  const retry = await post('during-handler').response
  t.equal(retry.status, 201)
  t.equal(retry.replayed, 'true', 'the retry is the stored answer')
  t.equal(runs, 1, 'applied once')
  // The body of an HTTP/2 stream is in the fingerprint as an HTTP/1.1 body is.
  t.equal((await post('during-handler', '{"item":"coffee"}').response).status, 422, 'the same key with another body')

  // Reset before the claim (in the auth hook): nothing claimed, the retry runs once.
  delays.auth = 60
  const inAuth = when('auth')
  const early = post('before-claim')
  await inAuth
  early.stream.close(h2.NGHTTP2_CANCEL)
  await early.response
  await sleep(80)
  delays.auth = 0
  const again = await post('before-claim').response
  t.equal(again.status, 201)
  t.equal(again.replayed, undefined, 'a fresh run, not a replay')
  t.equal(runs, 2)
})
