// A keyed write without a lock whose client leaves while its precondition check reads the
// validators: the claim lets the key go, and the handler must not run for it (markRun), so a
// retry runs it once.
import Fastify from 'fastify'
import { request as httpRequest } from 'node:http'
import { test } from 'tap'
import fastifyPrecondition from '../../lib/index.js'
import { send, sleep } from '../helpers/http.js'

test('a keyed write whose client leaves during its check: the handler does not run, a retry runs it once', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(fastifyPrecondition)
  let runs = 0
  let slow = true
  app.post('/x', {
    concurrency: {
      validators: async () => {
        if (slow) await sleep(150)
        return { etag: '"1"' }
      },
      lock: false,
      idempotency: true
    }
  }, async () => {
    runs++
    return { ok: true }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = (app.server.address() as { port: number }).port

  await new Promise<void>((resolve) => {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/x', headers: { 'idempotency-key': 'gone', 'if-match': '"1"', 'content-type': 'application/json' } })
    req.on('error', () => resolve())
    req.end('{}')
    setTimeout(() => { req.destroy(); resolve() }, 40)
  })
  await sleep(300)
  t.equal(runs, 0, 'the handler did not run for a client that left before its turn')

  slow = false
  const retry = await send(port, { method: 'POST', path: '/x', headers: { 'idempotency-key': 'gone', 'if-match': '"1"', 'content-type': 'application/json' }, body: '{}' })
  t.equal(retry.status, 200, 'the key was let go: the retry runs')
  t.equal(runs, 1)
})
