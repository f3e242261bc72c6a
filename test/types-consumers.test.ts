// The built package's typings as applications compile them: one small project per module setting
// under types/consumers/ (NodeNext with ESM and CommonJS files, Node16, bundler, preserve, node10),
// each with skipLibCheck off, so an error in a shipped .d.ts fails here rather than silently
// turning an export into `any`. Each resolves `fastify-precondition` by its name, through a
// symlink to this package, so the exports map, `types` and `typesVersions` are what is tested.
// Runs against the build (npm test builds first).
import { execFile } from 'node:child_process'
import { mkdirSync, readlinkSync, rmSync, symlinkSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const consumers = join(root, 'types', 'consumers')
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
const SETTINGS = ['nodenext', 'node16', 'bundler', 'preserve', 'node10', 'layers']
/**
 * drizzle-orm's own declarations do not compile with skipLibCheck off (errors inside its mysql-core
 * and gel-core .d.ts, whoever imports them): in the `layers` project, which passes every data
 * layer's transaction to `complete`, those lines are its, and every other error fails the test.
 */
const FOREIGN = /^node_modules\/drizzle-orm\//

// With skipLibCheck off each compile checks every declaration it reaches (Fastify's, Node's,
// TypeBox's): 20 to 30 s of CPU each. Two run at a time; the five need more than the suite's
// per-file limit on a loaded machine, and all five may take minutes there.
t.setTimeout(600_000)

/** node_modules/fastify-precondition beside the consumers, pointing at this package. */
function linkPackage (): void {
  const link = join(consumers, 'node_modules', 'fastify-precondition')
  const target = join('..', '..', '..')
  try {
    if (readlinkSync(link) === target) return
    rmSync(link, { recursive: true, force: true })
  } catch {}
  mkdirSync(dirname(link), { recursive: true })
  symlinkSync(target, link, 'dir')
}

function compile (setting: string): Promise<{ code: number, output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [tsc, '-p', join(consumers, setting, 'tsconfig.json'), '--pretty', 'false'], { cwd: root },
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : Number(error.code), output: stdout + stderr }))
  })
}

t.test('the typings compile, and stay strict, under every module setting', async (t) => {
  linkPackage()
  const queue = [...SETTINGS]
  const results = new Map<string, { code: number, output: string }>()
  const worker = async () => {
    for (let setting = queue.shift(); setting !== undefined; setting = queue.shift()) {
      results.set(setting, await compile(setting))
    }
  }
  await Promise.all([worker(), worker()])
  for (const setting of SETTINGS) {
    const { code, output: all } = results.get(setting)!
    const errors = all.split('\n').filter((line) => /error TS\d+/.test(line))
    const ours = setting === 'layers' ? errors.filter((line) => !FOREIGN.test(line)) : errors
    const output = ours.join('\n')
    if (setting === 'layers') t.same(ours, [], 'layers: each data layer\'s transaction passed to complete compiles, no cast', { output })
    else t.equal(code, 0, `${setting}: tsc -p types/consumers/${setting}`, { output: all })
    t.notMatch(output, /TS2578/, `${setting}: every misuse is refused (no export became any)`)
  }
})
