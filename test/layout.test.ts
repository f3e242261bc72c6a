// The house rules of lib/ (DESIGN.md, "Layout"), checked on the source: file sizes, and which
// folder may import which.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'

const LIB = join(dirname(fileURLToPath(import.meta.url)), '..', 'lib')
const FEATURES = ['preconditions', 'locks', 'idempotency', 'openapi']
const ENGINES = ['redis', 'postgres', 'mysql']
/** The ground floor: what every feature may use. */
const GROUND = ['slots.ts', 'shared.ts', 'errors.ts', 'problem.ts', 'policy.ts', 'observe.ts']

function files (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : name.endsWith('.ts') ? [path] : []
  })
}

const sources = files(LIB).map((path) => ({ path: relative(LIB, path).split('\\').join('/'), text: readFileSync(path, 'utf8') }))

/** Every relative import of a module, as a path inside lib/ (`http/evaluate.ts`). */
function importsOf (path: string, text: string): string[] {
  const found: string[] = []
  for (const match of text.matchAll(/^(?:import|export)\b[^'"]*?from '(\.{1,2}\/[^']+)'/gm)) {
    found.push(posix.normalize(posix.join(posix.dirname(path), match[1])).replace(/\.js$/, '.ts'))
  }
  return found
}

const top = (path: string): string => path.includes('/') ? path.slice(0, path.indexOf('/')) : ''

test('lib/index.ts is the public surface: at most 100 lines', async (t) => {
  const index = sources.find((source) => source.path === 'index.ts')
  t.ok(index !== undefined && index.text.split('\n').length <= 100, `lib/index.ts has ${index?.text.split('\n').length} lines`)
})

test('no file in lib/ has over 400 lines', async (t) => {
  for (const { path, text } of sources) {
    const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0)
    t.ok(lines <= 400, `lib/${path}: ${lines} lines`)
  }
})

test('no feature folder imports another feature folder, nor the route or the plugin above it', async (t) => {
  for (const { path, text } of sources) {
    const folder = top(path)
    if (!FEATURES.includes(folder)) continue
    for (const target of importsOf(path, text)) {
      const to = top(target)
      // lib/sql/transaction.ts: the shapes of the data layers' transactions, types only.
      t.ok(to === folder || to === 'http' || (to === '' && GROUND.includes(target)) || target === 'sql/transaction.ts',
        `lib/${path} imports lib/${target}`)
    }
  }
})

test('http/ is pure RFC code: it imports nothing in lib/ outside itself, nor Fastify', async (t) => {
  for (const { path, text } of sources.filter((source) => top(source.path) === 'http')) {
    for (const target of importsOf(path, text)) t.equal(top(target), 'http', `lib/${path} imports lib/${target}`)
    t.notMatch(text, /from 'fastify'/, `lib/${path} does not import fastify`)
  }
})

test('the ground floor (slots, shared, errors, problem, policy, observe) imports no feature and nothing above', async (t) => {
  for (const { path, text } of sources.filter((source) => GROUND.includes(source.path))) {
    for (const target of importsOf(path, text)) {
      t.ok(top(target) === 'http' || GROUND.includes(target), `lib/${path} imports lib/${target}`)
    }
  }
})

test('the engines (redis/, postgres/, mysql/) use their features and the ground floor, and no feature uses them', async (t) => {
  for (const { path, text } of sources.filter((source) => ENGINES.includes(top(source.path)))) {
    for (const target of importsOf(path, text)) {
      const to = top(target)
      t.ok(to === top(path) || to === 'http' || to === 'sql' || FEATURES.includes(to) || GROUND.includes(target), `lib/${path} imports lib/${target}`)
    }
  }
  let features = 0
  for (const { path, text } of sources.filter((source) => FEATURES.includes(top(source.path)))) {
    features++
    for (const target of importsOf(path, text)) t.notOk(ENGINES.includes(top(target)), `lib/${path} imports lib/${target}`)
  }
  t.ok(features > 10, 'the feature folders were read')
})

test('the client imports nothing of the server', async (t) => {
  for (const { path, text } of sources.filter((source) => source.path === 'client.ts' || top(source.path) === 'client')) {
    for (const target of importsOf(path, text)) t.equal(top(target), 'client', `lib/${path} imports lib/${target}`)
  }
})

test('the request slots are declared in one module', async (t) => {
  for (const { path, text } of sources) {
    if (path === 'slots.ts' || top(path) === 'client') continue
    t.notMatch(text, /Symbol\('fastify-precondition\./, `lib/${path} declares no request slot of its own`)
    t.notMatch(text, /decorateRequest\(/, `lib/${path} decorates no request`)
  }
})
