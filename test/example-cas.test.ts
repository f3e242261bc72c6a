// examples/cas.js: the compare-and-swap write path with no lock at all. The version check in the
// UPDATE statement alone gives one winner per tag.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import { send } from './helpers/http.js'

const example = fileURLToPath(new URL('../examples/cas.js', import.meta.url))

async function start (t: Test) {
  const { buildCasApp } = await import(example)
  const app = await buildCasApp()
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, port: app.server.address().port as number }
}

const put = (port: number, headers: Record<string, string>, name = 'renamed') =>
  send(port, { method: 'PUT', path: '/items/1', headers, body: { name } })

test('reads carry the version as ETag and answer 304', async (t) => {
  const { port } = await start(t)
  const read = await send(port, { path: '/items/1' })
  t.equal(read.status, 200)
  t.equal(read.headers.etag, '"v1"')
  t.same(read.json(), { id: '1', name: 'first item' })
  t.equal((await send(port, { path: '/items/1', headers: { 'if-none-match': '"v1"' } })).status, 304)
  t.equal((await send(port, { path: '/items/2' })).status, 404)
})

test('writes: 428 without If-Match, 200 with the current tag, 412 with a stale one', async (t) => {
  const { port } = await start(t)
  const missing = await put(port, {})
  t.equal(missing.status, 428)
  t.same(missing.json().required, ['If-Match'])

  const ok = await put(port, { 'if-match': '"v1"' })
  t.equal(ok.status, 200)
  t.equal(ok.headers.etag, '"v2"', 'the tag of the version this write made')
  t.same(ok.json(), { id: '1', name: 'renamed' })

  const stale = await put(port, { 'if-match': '"v1"' }, 'lost update')
  t.equal(stale.status, 412)
  t.match(stale.headers['content-type'], /^application\/problem\+json/)
  t.equal(stale.headers.etag, '"v2"')
  t.match(stale.json(), { status: 412, code: 'FST_PRECONDITION_FAILED', etag: '"v2"', instance: '/items/1' })
  t.equal((await send(port, { path: '/items/1' })).json().name, 'renamed', 'the stale write changed nothing')
})

test('If-Match lists, *, weak and malformed tags, and missing rows', async (t) => {
  const { port } = await start(t)
  t.equal((await put(port, { 'if-match': '"v7", "v1"' })).status, 200, 'any listed version matches')
  t.equal((await put(port, { 'if-match': '*' })).status, 200, '* matches any existing version')
  t.equal((await put(port, { 'if-match': 'W/"v3"' })).status, 412, 'a weak tag never matches If-Match')
  t.equal((await put(port, { 'if-match': 'v3' })).status, 412, 'a malformed tag fails closed')
  const gone = await send(port, { method: 'PUT', path: '/items/9', headers: { 'if-match': '*' }, body: { name: 'x' } })
  t.equal(gone.status, 412, 'no row: * cannot match')
  t.notOk(gone.headers.etag)
})

test('50 concurrent PUTs with the same tag and no lock: the UPDATE lets exactly one through', async (t) => {
  const { port } = await start(t)
  const results = await Promise.all(Array.from({ length: 50 }, (_, n) => put(port, { 'if-match': '"v1"' }, `writer ${n}`)))
  const statuses: Record<number, number> = {}
  for (const { status } of results) statuses[status] = (statuses[status] ?? 0) + 1
  t.same(statuses, { 200: 1, 412: 49 })
  const winner = results.find((r) => r.status === 200)!
  t.equal((await send(port, { path: '/items/1' })).json().name, winner.json().name, 'the stored name is the winner\'s')
})

test('node examples/cas.js: the printed commands do what they say', async (t) => {
  const child = spawn(process.execPath, [example], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGTERM') })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the example did not start within 30 s')), 30_000)
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('# 412')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => reject(new Error(`the example exited with ${String(code)}`)))
  })
  const port = Number(/127\.0\.0\.1:(\d+)\/items\/1/.exec(output)?.[1])
  t.ok(port > 0, 'prints where it listens')
  t.equal((await send(port, { path: '/items/1' })).headers.etag, '"v1"')
  t.equal((await put(port, { 'if-match': '"v1"' }, 'renamed')).status, 200, 'the first PUT')
  t.equal((await put(port, { 'if-match': '"v1"' }, 'again')).status, 412, 'the second, marked 412')
})
