// The packed package installed into fresh applications that already depend on ioredis 6 (the
// current major) or ioredis 5, with a plain `npm install`, as a user would: no ERESOLVE, no peer
// warning, and the main entry and `fastify-precondition/redis` load through both `require` and
// `import`. This talks to the npm registry, so it is skipped when the registry cannot be reached,
// and every npm command is bounded. Runs against the build (npm test builds first).
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const INSTALL_LIMIT = 150_000

// Two cold installs from the registry can take longer than the suite's per-file limit.
t.setTimeout(2 * INSTALL_LIMIT + 60_000)

interface Run { status: number | null, stdout: string, stderr: string, timedOut: boolean }

// npm run passes its own npm_* settings down (this project's prefix among them); the applications
// here keep only those that say how to reach the registry.
const KEPT = /^npm_config_(registry|cache|userconfig|proxy|https_proxy|noproxy|strict_ssl|cafile)$/i
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) || KEPT.test(name)))

function run (command: string, args: string[], cwd: string, limit: number): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, limit)
    child.on('close', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr, timedOut })
    })
  })
}

const npm = (args: string[], cwd: string, limit = INSTALL_LIMIT) =>
  run('npm', [...args, '--no-audit', '--no-fund', '--no-update-notifier'], cwd, limit)

const probe = await npm(['view', 'ioredis@^6', 'version', '--json', '--fetch-retries=0', '--fetch-timeout=10000'], root, 30_000)
const skip = probe.status === 0
  ? false
  : `the npm registry is unreachable (npm view ioredis@^6 ${probe.timedOut ? 'timed out' : 'failed'}): cannot install into a fresh project`
if (skip !== false) console.log(`# ${skip}`)

/** npm's warnings about peer dependencies, ERESOLVE and conflicting peers. */
function peerTrouble (output: string): string[] {
  return output.split('\n').filter((line) => /ERESOLVE|peer dep|conflicting peer|invalid:/i.test(line))
}

const LOAD = `
  const { redisLockStore } = require('fastify-precondition/redis')
  const plugin = require('fastify-precondition')
  const { Redis } = require('ioredis')
  const client = new Redis({ lazyConnect: true })
  const store = redisLockStore({ client })
  import('fastify-precondition/redis').then(async (esm) => {
    const main = await import('fastify-precondition')
    console.log(JSON.stringify({
      require: typeof redisLockStore, plugin: typeof plugin.default, store: typeof store.acquire,
      import: typeof esm.redisLockStore, importPlugin: typeof main.default,
      ioredis: require('ioredis/package.json').version
    }))
    client.disconnect()
  })
`

t.test('peer ranges: ioredis 5 or 6 (optional), fastify 5', async (t) => {
  t.equal(pkg.peerDependencies.ioredis, '^5.0.0 || ^6.0.0')
  t.equal(pkg.peerDependencies.fastify, '^5.0.0')
  t.notOk(pkg.peerDependenciesMeta.fastify?.optional, 'fastify is not optional: the plugin is nothing without it')
  t.equal(pkg.peerDependenciesMeta.ioredis.optional, true)
  t.equal(pkg.devDependencies.ioredis6, 'npm:ioredis@^6.0.0', 'the Redis store tests run against ioredis 6 too')
})

t.test('npm install of the packed package beside ioredis 6 and beside ioredis 5', { skip }, async (t) => {
  const work = mkdtempSync(join(tmpdir(), 'fastify-precondition-install-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))
  const packed = await npm(['pack', '--json', '--pack-destination', work], root, 60_000)
  t.equal(packed.status, 0, 'npm pack', { stderr: packed.stderr })
  const tarball = join(work, JSON.parse(packed.stdout)[0].filename)

  for (const [major, range] of [['6', '^6.0.0'], ['5', '^5.0.0']]) {
    await t.test(`an application with ioredis ${major}`, async (t) => {
      const project = join(work, `app-ioredis-${major}`)
      mkdirSync(project)
      writeFileSync(join(project, 'package.json'), JSON.stringify({
        name: `app-ioredis-${major}`,
        version: '1.0.0',
        private: true,
        dependencies: { fastify: '^5.0.0', ioredis: range, 'redis-semaphore': '^5.8.0' }
      }, null, 2))
      const before = await npm(['install'], project)
      t.equal(before.status, 0, 'the application installs on its own', { timedOut: before.timedOut, stderr: before.stderr })

      const added = await npm(['install', tarball], project)
      t.equal(added.status, 0, 'npm install <tarball> succeeds', { timedOut: added.timedOut, stderr: added.stderr })
      t.same(peerTrouble(added.stdout + added.stderr), [], 'no ERESOLVE and no peer warning')

      const listed = await npm(['ls', '--all'], project, 60_000)
      t.equal(listed.status, 0, 'npm ls finds no invalid or missing dependency', { stdout: listed.stdout, stderr: listed.stderr })
      t.same(peerTrouble(listed.stdout + listed.stderr), [])

      const loaded = await run(process.execPath, ['-e', LOAD], project, 30_000)
      t.equal(loaded.status, 0, 'loads', { stderr: loaded.stderr })
      const result = JSON.parse(loaded.stdout)
      t.match(result.ioredis, new RegExp(`^${major}\\.`), `ioredis ${major} is the one installed`)
      t.same(result, {
        require: 'function',
        plugin: 'function',
        store: 'function',
        import: 'function',
        importPlugin: 'function',
        ioredis: result.ioredis
      }, 'require and import of the main entry and fastify-precondition/redis work, and the store takes the client')
    })
  }
})
