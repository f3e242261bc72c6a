// `request.idempotency.complete(tx, body)` through every data layer, over HTTP, against a real
// PostgreSQL: one server process per layer (test/helpers/pg-orders-app.ts with LAYER set) whose
// POST /orders opens that layer's own transaction and hands its transaction object to `complete`.
// Each answers 201 with Location; a retry is replayed identical in status, body, Location and
// content-type; and killed with SIGKILL after COMMIT, before its answer went out, its client's
// retry on a fresh process replays that answer, with one order applied.
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t from 'tap'
import { idempotencyTableSql } from '../lib/postgres.js'
import { LAYERS, type LayerName } from './helpers/pg-layers.js'
import { Instance, type Order } from './helpers/forked-orders.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
// Eight instances compile lib/ as they start, four at a time: minutes on a loaded machine.
t.setTimeout(600_000)

const script = fileURLToPath(new URL('./helpers/pg-orders-app.ts', import.meta.url))

function ignore (): void {}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  if (child.connected) child.send('close', ignore)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

t.test('complete through each layer, over HTTP', { skip }, async (t) => {
  const { server, pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL, key text NOT NULL, pid int NOT NULL)')
  const children: ChildProcess[] = []
  t.teardown(() => Promise.all(children.map(stop)))

  const start = async (layer: LayerName): Promise<Instance> => {
    const child = fork(script, { env: { ...process.env, DATABASE_URL: server.connectionString, LAYER: layer }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    const instance = new Instance(child)
    instance.port = (await instance.message((message) => message.port !== undefined, `${layer}: port`, 240_000)).port as number
    return instance
  }
  // The retries go to an instance of their own, on node-postgres: what replays is the store's row.
  const names: LayerName[] = [...LAYERS]
  const instances = new Map<LayerName | 'retry', Instance>()
  const queue: Array<LayerName | 'retry'> = ['retry', ...names]
  const started = Date.now()
  await Promise.all(Array.from({ length: 4 }, async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      instances.set(name, await start(name === 'retry' ? 'pg' : name))
    }
  }))
  t.comment(`${instances.size} instances listening after ${Date.now() - started} ms`)
  const retry = instances.get('retry')!
  const applied = async (key: string): Promise<number> => (await pool.query('SELECT count(*)::int AS n FROM orders WHERE key = $1', [key])).rows[0].n

  for (const name of names) {
    t.test(name, async (t) => {
      const instance = instances.get(name)!
      const first = await instance.post(`${name}-run`, 'tea')
      t.equal(first.status, 201, '201')
      const order = first.json() as Order
      t.equal(first.headers.location, `/orders/${order.id}`, 'with Location')
      t.match(first.headers['content-type'], /^application\/json/)
      t.notOk(first.headers['idempotent-replayed'], 'a run')
      for (const [where, at] of [['the same instance', instance], ['another instance', retry]] as const) {
        const again = await at.post(`${name}-run`, 'tea')
        t.equal(again.headers['idempotent-replayed'], 'true', `replayed on ${where}`)
        t.equal(again.status, first.status, 'same status')
        t.equal(again.body, first.body, 'same body, byte for byte')
        t.equal(again.headers.location, first.headers.location, 'same Location')
        t.equal(again.headers['content-type'], first.headers['content-type'], 'same content-type')
      }
      t.equal(await applied(`${name}-run`), 1, 'one order')

      const key = `${name}-killed`
      const lost = instance.post(key, 'coffee', { 'x-test-stall': 'after-commit' }).then(() => null, (error: Error) => error)
      const stalled = (await instance.message((message) => message.stalled === 'after-commit', 'the handler stalled after COMMIT')).order as Order
      t.equal(await applied(key), 1, 'the order is committed')
      const exited = once(instance.child, 'exit')
      instance.child.kill('SIGKILL')
      await exited
      t.ok(await lost instanceof Error, 'killed with SIGKILL after COMMIT: its client never got the answer')
      const replay = await retry.post(key, 'coffee')
      t.equal(replay.status, 201, 'the retry, on a fresh process')
      t.equal(replay.headers['idempotent-replayed'], 'true', 'is the replay')
      t.same(replay.json(), stalled, 'of the body the dead process would have sent')
      t.equal(replay.headers.location, `/orders/${stalled.id}`, 'with its Location')
      t.match(replay.headers['content-type'], /^application\/json/)
      t.equal(await applied(key), 1, 'one order')
    })
  }
})
