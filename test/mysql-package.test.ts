// The MySQL store ships as the subpath `fastify-precondition/mysql`, for `import` and `require`
// alike, with its table's DDL as a file of the package; mysql2 stays the caller's: the built
// subpath loads no `mysql2`. Checked against the build (npm test builds first).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import * as esm from 'fastify-precondition/mysql'

const require = createRequire(import.meta.url)
const cjs = require('fastify-precondition/mysql') as typeof esm
const NAMES = ['IdempotencyClaimLostError', 'MysqlIdempotencyStore', 'idempotencyTableSql', 'mysqlIdempotencyStore']
const pool = { query: async () => [{ affectedRows: 1 }, undefined] }
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

test('import and require give the same subpath', async (t) => {
  for (const [name, module] of [['import', esm], ['require', cjs]] as const) {
    t.same(Object.keys(module).filter((key) => key !== 'default' && key !== '__esModule').sort(), NAMES, `${name}: every export`)
    t.ok(module.mysqlIdempotencyStore({ pool }) instanceof module.MysqlIdempotencyStore, `${name}: a store`)
    t.equal((await module.mysqlIdempotencyStore({ pool }).claim('k', 'fp', 1000)).state, 'claimed', `${name}: it claims`)
    t.match(new module.IdempotencyClaimLostError('k', 'lost'), { code: 'FST_PRECONDITION_IDEMPOTENCY_CLAIM_LOST', statusCode: 409 })
    t.throws(() => module.mysqlIdempotencyStore({ pool, table: 'no way' }), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY_STORE' })
  }
  t.equal(cjs.idempotencyTableSql('app.idem'), esm.idempotencyTableSql('app.idem'))
})

test('the DDL file ships, and is the DDL of the default table', async (t) => {
  const file = require.resolve('fastify-precondition/package.json').replace(/package\.json$/, 'lib/mysql/idempotency.sql')
  t.equal(readFileSync(file, 'utf8'), esm.idempotencyTableSql())
  t.ok(pkg.files.includes('lib'), 'lib/ (and the .sql in it) is in the package')
  const guide = readFileSync(new URL('../docs/mysql.md', import.meta.url), 'utf8')
  t.ok(guide.includes('```sql\n' + esm.idempotencyTableSql() + '```'), 'docs/mysql.md prints the same DDL')
})

test('mysql2 is an optional peer', async (t) => {
  t.equal(pkg.peerDependencies.mysql2, '^3.0.0')
  t.equal(pkg.peerDependenciesMeta.mysql2.optional, true)
})

/** Every bare specifier reachable from a built file through relative imports and requires. */
function externalImports (entry: string): Set<string> {
  const seen = new Set<string>()
  const external = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    for (const match of readFileSync(file, 'utf8').matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)) {
      if (match[1].startsWith('.')) visit(join(dirname(file), match[1]))
      else external.add(match[1])
    }
  }
  visit(fileURLToPath(new URL('../' + entry, import.meta.url)))
  return external
}

test('the subpath loads no mysql2: the pool is the caller\'s', async (t) => {
  for (const entry of ['dist/esm/mysql.js', 'dist/cjs/mysql.js']) {
    t.same([...externalImports(entry)].sort(), ['@fastify/error', 'node:crypto'], entry)
  }
  for (const entry of ['dist/esm/index.js', 'dist/cjs/index.js']) {
    t.same([...externalImports(entry)].filter((name) => /^mysql2?(\/|$)/.test(name)), [], `${entry}: the main entry neither`)
  }
  const loaded = execFileSync(process.execPath, ['-e', `
    require('fastify-precondition/mysql')
    process.stdout.write(JSON.stringify(Object.keys(require.cache).filter((file) => /node_modules[\\\\/]mysql2[\\\\/]/.test(file))))
  `], { encoding: 'utf8' })
  t.same(JSON.parse(loaded), [], 'require loads none of its modules')
})
