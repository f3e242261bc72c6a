// The built package, as users load it: `import` and `require` must give the same working plugin.
// Runs against dist/ (npm test builds first).
import { test } from 'tap'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import * as esm from 'fastify-precondition'

const require = createRequire(import.meta.url)
const cjs = require('fastify-precondition')
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))

const NAMES = [
  'default', 'fastifyPrecondition', 'strongEtag', 'evaluate', 'Outcome', 'parseEntityTags', 'parseHttpDate',
  'formatHttpDate', 'ProblemDetailsSchema', 'LockTimeoutError', 'LockUnavailableError', 'ProblemCode', 'MemoryLockStore'
]

async function exercise (plugin: unknown) {
  const app = Fastify()
  await app.register(plugin as typeof esm.default)
  app.put('/r', { concurrency: { require: 'if-match', validators: () => ({ etag: '"a"' }) } }, async () => 'ok')
  const statuses = []
  for (const headers of [{}, { 'if-match': '"b"' }, { 'if-match': '"a"' }]) {
    statuses.push((await app.inject({ method: 'PUT', url: '/r', headers })).statusCode)
  }
  await app.close()
  return statuses
}

test('ESM import gives the working plugin and every named export', async (t) => {
  for (const name of NAMES) t.ok(name in esm, `import has ${name}`)
  t.equal(esm.default, esm.fastifyPrecondition)
  t.same(await exercise(esm.default), [428, 412, 200])
})

test('CommonJS require gives the working plugin and every named export', async (t) => {
  for (const name of NAMES) t.ok(name in cjs, `require has ${name}`)
  t.equal(cjs.default, cjs.fastifyPrecondition)
  t.same(await exercise(cjs.default), [428, 412, 200])
  t.same(await exercise(cjs.fastifyPrecondition), [428, 412, 200])
})

test('both builds agree on their helpers', async (t) => {
  t.equal(cjs.strongEtag('hello'), esm.strongEtag('hello'))
  t.same(cjs.parseEntityTags('"a", W/"b"'), esm.parseEntityTags('"a", W/"b"'))
  t.same(Object.keys(cjs.ProblemDetailsSchema.properties), Object.keys(esm.ProblemDetailsSchema.properties))
})

test('fastify-plugin metadata names the plugin and the Fastify major', async (t) => {
  for (const plugin of [esm.default, cjs.default]) {
    const meta = (plugin as unknown as Record<symbol, { fastify: string, name: string }>)[Symbol.for('plugin-meta')]
    t.equal(meta.fastify, '5.x')
    t.equal(meta.name, 'fastify-precondition')
  }
})

test('the exports map points at files that exist, with types for each condition', async (t) => {
  for (const [subpath, conditions] of Object.entries(pkg.exports as Record<string, unknown>)) {
    if (typeof conditions === 'string') continue
    for (const [condition, target] of Object.entries(conditions as Record<string, { types: string, default: string }>)) {
      t.ok(target.types.endsWith('.d.ts'), `${subpath} ${condition} has types`)
      t.doesNotThrow(() => readFileSync(new URL('../' + target.default, import.meta.url)), `${subpath} ${condition} ${target.default} exists`)
      t.doesNotThrow(() => readFileSync(new URL('../' + target.types, import.meta.url)), `${subpath} ${condition} ${target.types} exists`)
    }
  }
})

test('typesVersions gives node10 resolution the same typings for each subpath', async (t) => {
  const subpaths = Object.keys(pkg.exports).filter((subpath) => subpath !== '.' && subpath !== './package.json')
  t.same(Object.keys(pkg.typesVersions['*']).sort(), subpaths.map((subpath) => subpath.slice(2)).sort(), 'every subpath is mapped')
  for (const subpath of subpaths) {
    const [target] = pkg.typesVersions['*'][subpath.slice(2)]
    t.equal(target, pkg.exports[subpath].import.types, `${subpath}: the typings of its import condition`)
  }
  t.equal(pkg.types, pkg.exports['.'].import.types, 'and the main entry its own')
})
