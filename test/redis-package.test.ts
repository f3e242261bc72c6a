// The Redis store ships as the subpath `fastify-precondition/redis`, and only there: users without
// Redis install no ioredis. The store runs its own scripts through the caller's client, so it needs
// no Redis lock library. Checked against the build (npm test builds first).
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
const REDIS_PACKAGES = /^(ioredis|redis-semaphore)(\/|$)/

/** Every bare specifier reachable from a built file through relative imports and requires. */
function externalImports (entry: string): Set<string> {
  const seen = new Set<string>()
  const external = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const source = readFileSync(file, 'utf8')
    for (const match of source.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)) {
      const specifier = match[1]
      if (specifier.startsWith('.')) visit(join(dirname(file), specifier))
      else external.add(specifier)
    }
  }
  visit(join(root, entry))
  return external
}

test('the main entry never loads ioredis or redis-semaphore', async (t) => {
  for (const entry of ['dist/esm/index.js', 'dist/cjs/index.js']) {
    const external = [...externalImports(entry)]
    t.ok(external.includes('fastify-plugin'), `${entry}: the walk sees the entry's imports`)
    t.same(external.filter((name) => REDIS_PACKAGES.test(name)), [], entry)
  }
  const loaded = execFileSync(process.execPath, ['-e', `
    require('fastify-precondition')
    console.log(JSON.stringify(Object.keys(require.cache).filter((file) => /node_modules[\\\\/](ioredis|redis-semaphore)[\\\\/]/.test(file))))
  `], { cwd: root, encoding: 'utf8' })
  t.same(JSON.parse(loaded), [], 'require() of the main entry loads neither')
})

test('the subpath loads no Redis package itself, and both module systems give the same store', async (t) => {
  for (const entry of ['dist/esm/redis.js', 'dist/cjs/redis.js']) {
    const external = [...externalImports(entry)]
    t.ok(external.includes('@fastify/error'), `${entry}: the walk sees the subpath's imports`)
    t.same(external.filter((name) => REDIS_PACKAGES.test(name)), [], `${entry}: the client is the caller's`)
  }
  const esm = await import('fastify-precondition/redis')
  const cjs = require('fastify-precondition/redis')
  for (const [name, module] of [['import', esm], ['require', cjs]] as const) {
    t.equal(typeof module.redisLockStore, 'function', `${name}: redisLockStore`)
    t.equal(module.default, module.redisLockStore, `${name}: default export`)
    t.throws(() => module.redisLockStore({ client: {} }), { code: 'FST_PRECONDITION_INVALID_LOCK_STORE' }, `${name}: checks its options`)
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.ok(pkg.peerDependencies?.ioredis, 'ioredis is a peer dependency')
  t.equal(pkg.peerDependenciesMeta?.ioredis?.optional, true, 'ioredis is optional')
  t.notOk(pkg.dependencies?.ioredis, 'ioredis is not a dependency')
  t.ok(pkg.devDependencies?.ioredis, 'ioredis is installed for the tests')
  for (const field of ['dependencies', 'devDependencies', 'peerDependencies']) {
    t.notOk(pkg[field]?.['redis-semaphore'], `redis-semaphore is not in ${field}`)
  }
})
