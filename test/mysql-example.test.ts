// examples/orders-mysql.js against a private MariaDB server, run as a user runs it
// (`MYSQL_URL=… node examples/orders-mysql.js`): it creates its tables, the compare-and-swap
// PUT gives one winner per tag, a missing item is a 404, and an order sent twice with one key is
// placed once. The example loads the built package (dist/).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createPool } from 'mysql2/promise'
import t, { type Test } from 'tap'
import { send, type HttpResponse } from './helpers/http.js'
import { mariadbMissing, startMariaDb } from './helpers/mariadb-server.js'

const skip = mariadbMissing()
if (skip !== false) console.log(`# ${skip}`)

const example = fileURLToPath(new URL('../examples/orders-mysql.js', import.meta.url))

/** Starts the example on a free port; resolves with its port once it prints its address. */
async function run (t: Test, mysqlUrl: string): Promise<{ port: number, output: () => string }> {
  const child: ChildProcess = spawn(process.execPath, [example], {
    env: { ...process.env, MYSQL_URL: mysqlUrl, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  })
  let output = ''
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the example did not start within 30 s; it printed: ${output}`)), 30_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      const address = /example on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)
      if (address !== null) {
        clearTimeout(timer)
        resolve(Number(address[1]))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`the example exited with ${String(code)}: ${output}`))
    })
  })
  return { port, output: () => output }
}

t.test('examples/orders-mysql.js on MariaDB', { skip }, async (t) => {
  const { server, pool } = await startMariaDb(t, createPool)
  const url = `mysql://root@127.0.0.1:${server.port}/test`
  const { port, output } = await run(t, url)
  const put = (id: string, headers: Record<string, string>, name: string): Promise<HttpResponse> =>
    send(port, { method: 'PUT', path: `/items/${id}`, headers, body: { name } })

  t.test('it made its tables, and the Idempotency-Key table from idempotencyTableSql()', async (t) => {
    const [rows] = await pool.query("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'test' ORDER BY table_name") as any
    t.same(rows.map((row: { name: string }) => row.name), ['fastify_precondition_idempotency', 'items', 'orders'])
    t.match(output(), /If-Match: "v1"/, 'and printed commands with the current tag')
  })

  t.test('reads carry the version as ETag; 304 with it; 404 for a missing item', async (t) => {
    const read = await send(port, { path: '/items/1' })
    t.equal(read.status, 200)
    t.equal(read.headers.etag, '"v1"')
    t.same(read.json(), { id: '1', name: 'first item' })
    t.equal((await send(port, { path: '/items/1', headers: { 'if-none-match': '"v1"' } })).status, 304)
    t.equal((await send(port, { path: '/items/9' })).status, 404)
  })

  t.test('two concurrent editors holding one tag: one 200, one 412 with the current tag', async (t) => {
    const tag = (await send(port, { path: '/items/1' })).headers.etag as string
    const answers = await Promise.all([put('1', { 'if-match': tag }, 'alice'), put('1', { 'if-match': tag }, 'bob')])
    const statuses = answers.map((answer) => answer.status).sort()
    t.same(statuses, [200, 412], `statuses ${statuses.join(', ')}`)
    const won = answers.find((answer) => answer.status === 200) as HttpResponse
    const lost = answers.find((answer) => answer.status === 412) as HttpResponse
    t.equal(won.headers.etag, '"v2"', 'the winner gets the tag of the version it made')
    t.equal(lost.headers.etag, '"v2"', 'the loser is told the current tag')
    t.match(lost.headers['content-type'], /^application\/problem\+json/)
    t.match(lost.json(), { status: 412, code: 'FST_PRECONDITION_FAILED', etag: '"v2"', instance: '/items/1' })
    const [[row]] = await pool.query("SELECT name, version FROM items WHERE id = '1'") as any
    t.same(row, { name: won.json().name, version: 2 }, "the row holds the winner's write, once")

    const many = await Promise.all(Array.from({ length: 10 }, (_, i) => put('1', { 'if-match': '"v2"' }, `editor ${i}`)))
    t.same(many.map((answer) => answer.status).sort(), [200, ...Array<number>(9).fill(412)], 'ten editors with one tag: one winner')
  })

  t.test('PUT: 428 without If-Match, 404 for a missing item, 412 for a weak or malformed tag', async (t) => {
    const missing = await put('1', {}, 'x')
    t.equal(missing.status, 428)
    t.same(missing.json().required, ['If-Match'])
    const gone = await put('9', { 'if-match': '"v1"' }, 'x')
    t.equal(gone.status, 404, 'no such row: not described as a changed one')
    t.equal((await put('9', { 'if-match': '*' }, 'x')).status, 404, 'If-Match: * on a missing row')
    t.equal((await put('1', { 'if-match': 'W/"v3"' }, 'x')).status, 412, 'a weak tag never matches If-Match')
    t.equal((await put('1', { 'if-match': 'v3' }, 'x')).status, 412, 'a malformed tag fails closed')
    const any = await put('1', { 'if-match': '*' }, 'star')
    t.equal(any.status, 200, '* matches whatever version exists')
    t.equal(any.headers.etag, '"v4"')
  })

  t.test('POST /orders with one key twice: one order, the second answer replayed', async (t) => {
    const order = (key: string, item: string): Promise<HttpResponse> =>
      send(port, { method: 'POST', path: '/orders', headers: { 'idempotency-key': `"${key}"` }, body: { item } })
    const first = await order('order-1', 'tea')
    t.equal(first.status, 201)
    t.match(first.json(), { item: 'tea', quantity: 1 })
    t.equal(first.headers.location, `/orders/${String(first.json().id)}`)
    const second = await order('order-1', 'tea')
    t.equal(second.status, 201)
    t.equal(second.headers['idempotent-replayed'], 'true')
    t.same(second.json(), first.json(), 'the same order')
    t.equal(second.headers.location, first.headers.location, 'with its Location')
    t.equal(Number((await pool.query('SELECT count(*) AS n FROM orders') as any)[0][0].n), 1, 'one order row')
    t.equal((await order('order-1', 'coffee')).status, 422, 'the same key with another body')
    t.equal((await send(port, { method: 'POST', path: '/orders', body: { item: 'tea' } })).status, 400, 'no key: refused')
    t.same((await send(port, { path: first.headers.location as string })).json(), first.json(), 'GET /orders/:id')
  })

  t.test('started again on the same database, it finds its tables', async (t) => {
    const again = await run(t, url)
    t.equal((await send(again.port, { path: '/items/1' })).status, 200)
  })
})
