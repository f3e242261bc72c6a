// The lost update, over real HTTP on loopback: concurrent writes carrying the same valid tag, and
// read-modify-write clients. With the lock exactly one write per tag wins; without it (lock:
// false) the same traffic loses updates, which shows these tests can fail.
import Fastify from 'fastify'
import { test, type Test } from 'tap'
import fastifyPrecondition from '../lib/index.js'
import { incrementAll } from './helpers/counter.js'
import { send, sleep } from './helpers/http.js'

async function counterApp (t: Test, lock: boolean, work: number) {
  const app = Fastify()
  await app.register(fastifyPrecondition)
  const counter = { value: 0, version: 1, handled: 0 }
  const validators = () => ({ etag: `"${counter.version}"` })
  app.get('/counter', { concurrency: { validators } }, async () => ({ value: counter.value }))
  app.put('/counter', { concurrency: { require: 'if-match', validators, lock } }, async (request) => {
    counter.handled++
    // The write happens a moment after the check, as it would behind a database call.
    await sleep(work)
    counter.value = (request.body as { value: number }).value
    counter.version++
    return { value: counter.value }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: (app.server.address() as { port: number }).port, counter }
}

async function fiftyAtOnce (port: number) {
  const tag = (await send(port, { path: '/counter' })).headers.etag as string
  const results = await Promise.all(Array.from({ length: 50 }, () =>
    send(port, { method: 'PUT', path: '/counter', headers: { 'if-match': tag }, body: { value: 1 } })))
  const statuses: Record<number, number> = {}
  for (const { status } of results) statuses[status] = (statuses[status] ?? 0) + 1
  return { statuses, results }
}

test('50 concurrent PUTs with the same valid If-Match: exactly one 2xx and 49 412s', async (t) => {
  const { port, counter } = await counterApp(t, true, 20)
  const { statuses, results } = await fiftyAtOnce(port)
  t.same(statuses, { 200: 1, 412: 49 })
  t.equal(counter.handled, 1, 'one handler ran')
  t.equal(counter.version, 2)
  const failed = results.find((r) => r.status === 412)!
  t.equal(failed.json().etag, '"2"', 'the 412s name the tag the winner wrote')
})

test('the same 50 PUTs with lock: false let more than one through (the race is real)', async (t) => {
  const { port, counter } = await counterApp(t, false, 20)
  const { statuses } = await fiftyAtOnce(port)
  t.ok((statuses[200] ?? 0) > 1, `more than one 2xx without the lock: ${JSON.stringify(statuses)}`)
  t.equal(counter.handled, statuses[200])
})

test('20 clients x 25 read-modify-write increments: exactly 500 with the lock', async (t) => {
  const { port, counter } = await counterApp(t, true, 1)
  const started = Date.now()
  const result = await incrementAll([port], '/counter', 20, 25)
  t.same(result.other, {}, 'only 2xx and 412')
  t.equal(result.written, 500)
  t.equal(counter.value, 500, `final value (${result.refused} retries, ${Date.now() - started} ms)`)
})

test('the same increments with lock: false lose updates', async (t) => {
  const { port, counter } = await counterApp(t, false, 1)
  const result = await incrementAll([port], '/counter', 20, 25)
  t.equal(result.written, 500, 'every client saw its 25 writes accepted')
  t.ok(counter.value < 500, `yet the counter is ${counter.value}`)
})
