// The fault matrix, PostgreSQL: routine database events on the connection of a handler's
// transaction, against what users copy — examples/orders-postgres.js, and the setup and each
// transaction recipe of docs/postgresql.md (the plugin's transaction, and one of your own) exactly
// as printed (written to a file of their own, in an
// app directory where `fastify-precondition` is this package's dist/). Each runs as a process of its
// own; its backend is terminated idle in its transaction, mid-statement and after the answer was
// recorded, PostgreSQL is restarted (`pg_ctl restart -m fast`), and
// idle_in_transaction_session_timeout ends its session; then the same through PgBouncer in
// transaction pooling. Each time: the process stays alive, the request in flight gets a 500 or a
// 503, its resend and a later request work, and each key's order is placed once
// (DESIGN.md, "Exactly once in operation").
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import t, { type Test } from 'tap'
import { idempotencyTableSql } from '../../lib/postgres.js'
import { sleep } from '../helpers/http.js'
import { pgbouncerMissing, startBouncer } from '../helpers/pg-bouncer.js'
import { describe, nodeApp, stage, type AppProcess, type Fault, type FaultContext } from '../helpers/pg-faults.js'
import { postgresMissing, startPostgres } from '../helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)
const noBouncer = pgbouncerMissing()
t.setTimeout(240_000)

/** The store's default lease, ms: the apps set none. */
const LEASE = 10_000
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const example = join(root, 'examples/orders-postgres.js')

/** The first ```js block after the heading `## name` of a guide. */
function blockAfter (markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`no heading ${heading}`)
  const match = /^```(?:js|javascript|mjs)[^\S\n]*\n([\s\S]*?)^```[^\S\n]*$/m.exec(markdown.slice(start))
  if (match === null) throw new Error(`no JavaScript block after ${heading}`)
  return match[1]
}

/**
 * docs/postgresql.md's setup and the recipe under `heading`, as printed, between the two lines a
 * user writes around them (an app, and listen), in an app directory whose node_modules has this
 * package.
 */
function recipeApp (t: Test, heading: string): string {
  const guide = readFileSync(join(root, 'docs/postgresql.md'), 'utf8')
  const dir = mkdtempSync(join(tmpdir(), 'pg-recipe-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(root, join(dir, 'node_modules', 'fastify-precondition'), 'dir')
  for (const name of ['fastify', 'pg']) symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), 'dir')
  const file = join(dir, 'server.mjs')
  writeFileSync(file, `import Fastify from 'fastify'
const app = Fastify()
${blockAfter(guide, '## Setup')}
${blockAfter(guide, heading)}
await app.listen({ host: '127.0.0.1', port: 0 })
console.log(\`recipe listening on http://127.0.0.1:\${app.server.address().port}\`)
`)
  return file
}

interface Target {
  name: string
  app: AppProcess
  /** Where its orders are: a superuser connection string to its database. */
  database: string
}

t.test('what users copy survives routine database events', { skip }, async (t) => {
  const { server, pool: admin } = await startPostgres(t, pg.Pool)
  // The apps log in as `app`; as `idler`, whose sessions end after 300 ms idle in a transaction.
  await admin.query(`CREATE ROLE app LOGIN SUPERUSER; CREATE ROLE idler LOGIN SUPERUSER;
ALTER ROLE idler SET idle_in_transaction_session_timeout = '300ms'`)
  await admin.query('CREATE DATABASE recipe')
  const url = (user: string, database: string): string => `postgresql://${user}@127.0.0.1:${server.port}/${database}`
  // The recipe's tables, from the migration the docs show; the example makes its own.
  const recipeDb = new pg.Pool({ connectionString: url('postgres', 'recipe'), max: 2 })
  recipeDb.on('error', () => {})
  t.teardown(() => recipeDb.end())
  await recipeDb.query(idempotencyTableSql())
  await recipeDb.query('CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)')
  const recipes = {
    plugin: recipeApp(t, '## The transaction recipe'),
    own: recipeApp(t, '### With a transaction of your own')
  }

  const targets: Target[] = []
  const make = (name: string, app: AppProcess, database: string): Target => {
    const target = { name, app, database }
    targets.push(target)
    return target
  }
  t.teardown(() => Promise.all(targets.map((target) => target.app.stop())))
  const env = (databaseUrl: string): Record<string, string> => ({ DATABASE_URL: databaseUrl, PORT: '0', HOST: '127.0.0.1' })
  const exampleAs = (user: string, name: string): Target => make(name, nodeApp(example, env(url(user, 'postgres'))), url('postgres', 'postgres'))
  const recipeAs = (recipe: string, user: string, name: string): Target =>
    make(name, nodeApp(recipe, env(url(user, 'recipe')), dirname(recipe)), url('postgres', 'recipe'))

  /** One fault on one target, then its resend and a later request. */
  async function survives (t: Test, target: Target, fault: Fault): Promise<void> {
    const { app } = target
    await app.ensure()
    const runs = app.exits.length
    const key = `${target.name}-${fault}`
    const context: FaultContext = { server, admin, database: target.database, pid: () => app.pid, storeKey: key }
    const started = Date.now()
    const answer = await stage(fault, context, () => app.post(key, key))
    await sleep(300) // an 'error' nobody listens for kills the process at once
    const died = app.exits.slice(runs)
    t.ok(app.alive, `the process stays alive (${died.length === 0 ? 'it is' : `it ended: ${died.join(', ')}`})`)
    if (!app.alive) t.comment(app.output.split('\n').filter((line) => /Error|terminat/i.test(line)).slice(0, 3).join('\n'))
    t.ok(!(answer instanceof Error) && (answer.status === 500 || answer.status === 503),
      `the request in flight is answered 500 or 503: ${describe(answer)} after ${Date.now() - started} ms`)

    await app.ensure() // where it died, started again so what follows is still checked
    const db = new pg.Client({ connectionString: target.database })
    await db.connect()
    try {
      // After a restart the key may wait for its lease: the release was sent while the server was
      // down. After a terminated backend the store is up: the key is released at once.
      const resent = Date.now()
      const deadline = fault === 'restart' ? resent + LEASE + 2000 : 0
      let resend = await app.post(key, key)
      while (resend.status === 409 && Date.now() < deadline) {
        await sleep(500)
        resend = await app.post(key, key)
      }
      t.equal(resend.status, 201, `its resend runs it: ${describe(resend)}${Date.now() - resent > 1000 ? `, ${Date.now() - resent} ms after the first resend` : ''}`)
      const later = await app.post(`${key}-later`, `${key}-later`)
      t.equal(later.status, 201, `a later request works: ${describe(later)}`)
      const { rows } = await db.query('SELECT item, count(*)::int AS n FROM orders WHERE item LIKE $1 GROUP BY item ORDER BY item', [`${key}%`])
      t.same(rows, [{ item: key, n: 1 }, { item: `${key}-later`, n: 1 }], 'one order per key')
    } finally {
      await db.end()
    }
  }

  const direct: Array<[string, () => Target, () => Target]> = [
    ['examples/orders-postgres.js', () => exampleAs('app', 'example'), () => exampleAs('idler', 'example-idle')],
    ['docs/postgresql.md, setup and the transaction recipe as printed', () => recipeAs(recipes.plugin, 'app', 'recipe'), () => recipeAs(recipes.plugin, 'idler', 'recipe-idle')],
    ['docs/postgresql.md, setup and the recipe with a transaction of your own as printed', () => recipeAs(recipes.own, 'app', 'own'), () => recipeAs(recipes.own, 'idler', 'own-idle')]
  ]
  for (const [what, normal, idle] of direct) {
    t.test(what, async (t) => {
      const target = normal()
      const idleTarget = idle()
      for (const fault of ['idle-in-transaction', 'mid-statement', 'after-complete'] as const) {
        t.test(`pg_terminate_backend of the handler's connection, ${fault}`, (t) => survives(t, target, fault))
      }
      t.test('idle_in_transaction_session_timeout ends the handler\'s session', (t) => survives(t, idleTarget, 'idle-timeout'))
      t.test('pg_ctl restart -m fast while a request is in flight, with idle pooled connections', (t) => survives(t, target, 'restart'))
    })
  }

  t.test('examples/orders-postgres.js through PgBouncer, transaction pooling', { skip: noBouncer }, async (t) => {
    const bouncer = await startBouncer(t, server.port, ['app'], 2)
    const target = make('bouncer', nodeApp(example, env(bouncer.url('app'))), url('postgres', 'postgres'))
    for (const fault of ['idle-in-transaction', 'mid-statement'] as const) {
      t.test(`pg_terminate_backend of the server connection, ${fault}`, (t) => survives(t, target, fault))
    }
    t.test('pg_ctl restart -m fast behind the bouncer', (t) => survives(t, target, 'restart'))
  })
})
