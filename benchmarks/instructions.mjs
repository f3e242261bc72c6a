// Instructions per request, counted by valgrind's callgrind, for every request the harness sends
// (scenarios.mjs), each beside bare Fastify doing the same work without guarantees and beside a
// floor written by hand for the same guarantees (apps.mjs). The server runs as
// `node --single-threaded` (compiling and GC on its main thread, where callgrind sees them).
//
//   npm run build
//   node benchmarks/instructions.mjs [--scenarios=put-match,put-412,…] [--servers=plugin-put,…]
//                                    [--requests=10000] [--warm=2000] [--repeat=1]
//                                    [--out=counts.json] [--table] [--annotate=DIR]
//
// One count: a server under callgrind, loaded over 10 connections with a scenario's requests
// (each connection on its own resource for writes; a fresh Idempotency-Key per request, or one
// key per connection: replays). It is first warmed up with `warm` requests a connection while
// callgrind's instrumentation is off (valgrind runs the code, uncounted: a tenth of the time),
// then instrumentation goes on, the counters are zeroed, and 100 (the shorter run) or
// 100 + `requests` / 10 (the longer) requests a connection are counted and dumped; the
// difference of the two runs divided by `requests` is the count, so what happens once per run
// (connections opening and closing) cancels out.
//
// What is counted leaves out V8's optimizing compiler (TurboFan, Maglev: the functions of
// callgrind-js.mjs's `kindOf`), reported apart as "with V8's optimizing compiler". Even after
// 20,000 requests it still compiles (and recompiles after deoptimizations) 7,000 to 45,000
// instructions a request, which land in one count and not the next: with it, counts of the same
// server moved by 10% and more; without it, by about 1% on a quiet machine. A long-running
// server pays compiling once, so the steady cost a request is the count without it.
//
// Run counts on a quiet machine, one at a time (the harness does; its two runs use the two
// CPUs): under load the server answers more requests per turn of its event loop, and a count
// falls by up to 10%. The two runs of a count go side by side, each with its own redis-server
// where the server needs one (a name with `redis` in it). Needs valgrind and, for the Redis rows,
// redis-server (`apt-get install -y valgrind redis-server`); each count takes 1–2 minutes.
//
// --repeat=K: each server counted K times; the median is kept, every count in `runs`.
// --out: counts are merged into this JSON file as they finish, and read back from it, so a
//   count already there is not made again (delete the file after changing the code).
// --table: print the table (and the stage costs) from --out without counting.
// --check: run each server without valgrind for a moment, only to see that it answers every
//   request with its status (seconds, against the counts' minutes).
// --annotate=DIR: the runs also write V8's perf map (--perf-basic-prof
//   --interpreted-frames-native-stack), and both runs' callgrind outputs and maps are kept in DIR
//   for benchmarks/callgrind-js.mjs, which names where a request's instructions go. Those flags
//   change the counts a little: annotate in runs of their own.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { COMPILING, kindOf, selfCosts } from './callgrind-js.mjs'
import { BODIES } from './payloads.mjs'
import { scenarios } from './scenarios.mjs'

const SHORT = 100 // requests per connection counted in the shorter run
const CONNECTIONS = 10

/**
 * What is counted: each entry sends the requests of one harness scenario (`requests`, its id in
 * scenarios.mjs) to each of `servers` ([builder in apps.mjs, the status every answer must have]).
 * `bare` and `floor` name the rows the ratios are taken to. `stages`: [what it adds, from, to],
 * each the difference of two counts of the same requests.
 */
export const COUNTS = [
  {
    id: 'put-match',
    title: 'PUT, If-Match current → 200',
    requests: 'put-match',
    bare: 'bare-put',
    floor: 'floor-put',
    servers: [['bare-put', 200], ['floor-put-nolock', 200], ['floor-put', 200], ['plugin-put-registered', 200],
      ['plugin-put-require', 200], ['plugin-put-nolock', 200], ['plugin-put', 200]],
    stages: [
      ['the plugin registered (its request and reply decorations), route without `concurrency`', 'bare-put', 'plugin-put-registered'],
      ['`require: \'if-match\'`: the 428 hook (preParsing) and the onSend hook', 'plugin-put-registered', 'plugin-put-require'],
      ['`validators`, `lock: false`: the check (preHandler) and the ETag after the write', 'plugin-put-require', 'plugin-put-nolock'],
      ['the lock: the write gate and the memory lock store', 'plugin-put-nolock', 'plugin-put'],
      ['all of the plugin', 'bare-put', 'plugin-put'],
      ['the floor\'s hooks, no lock', 'bare-put', 'floor-put-nolock'],
      ['the floor\'s hand-written lock', 'floor-put-nolock', 'floor-put']
    ]
  },
  {
    id: 'put-match-otel',
    title: 'PUT, If-Match current → 200, with `preconditionMetrics()` subscribed',
    requests: 'put-match',
    bare: 'bare-put',
    floor: 'floor-put',
    servers: [['plugin-put', 200], ['plugin-put-otel-noop', 200], ['plugin-put-otel', 200]],
    stages: [
      ['`preconditionMetrics()` on the global no-op MeterProvider', 'plugin-put', 'plugin-put-otel-noop'],
      ['`preconditionMetrics()` on an SDK MeterProvider whose reader never exports', 'plugin-put', 'plugin-put-otel']
    ]
  },
  {
    id: 'put-412',
    title: 'PUT, If-Match stale → 412',
    requests: 'put-412',
    bare: 'bare-put',
    floor: 'floor-put',
    servers: [['bare-put', 200], ['floor-put-nolock', 412], ['floor-put', 412], ['plugin-put-nolock', 412], ['plugin-put', 412]],
    stages: [
      ['the lock, plugin (the 412 is decided under it)', 'plugin-put-nolock', 'plugin-put'],
      ['the lock, floor', 'floor-put-nolock', 'floor-put']
    ]
  },
  {
    id: 'put-428',
    title: 'PUT, no If-Match → 428',
    requests: 'put-428',
    bare: 'bare-put',
    floor: 'floor-put',
    servers: [['bare-put', 200], ['floor-put', 428], ['plugin-put-require', 428], ['plugin-put', 428]],
    stages: [
      ['validators and lock declared on the route (not reached by a 428)', 'plugin-put-require', 'plugin-put']
    ]
  },
  {
    id: 'get-200',
    title: 'GET 200 with ETag and Last-Modified',
    requests: 'get-200',
    bare: 'bare-get',
    floor: 'floor-get',
    servers: [['bare-get', 200], ['bare-get-validators', 200], ['floor-get', 200], ['plugin-get-registered', 200], ['plugin-get', 200]],
    stages: [
      ['the plugin registered, route without `concurrency`', 'bare-get', 'plugin-get-registered'],
      ['`validators`: the check (preHandler), the headers, the onSend hook', 'plugin-get-registered', 'plugin-get'],
      ['setting ETag and Last-Modified by hand in the handler', 'bare-get', 'bare-get-validators']
    ]
  },
  {
    id: 'get-304',
    title: 'GET, If-None-Match current → 304',
    requests: 'get-304',
    bare: 'bare-get',
    floor: 'floor-get',
    servers: [['bare-get', 200], ['floor-get', 304], ['plugin-get', 304]],
    stages: []
  },
  {
    id: 'put-match-redis',
    title: 'PUT, If-Match current → 200, Redis lock',
    requests: 'put-match-redis',
    bare: 'bare-put',
    floor: 'floor-put-redis',
    servers: [['bare-put', 200], ['floor-put-redis', 200], ['plugin-put-redis-floor', 200], ['plugin-put-redis', 200]],
    stages: [
      ['`redisLockStore` against the memory lock', 'plugin-put', 'plugin-put-redis'],
      ['`redisLockStore` against a two-command store (SET NX PX, DEL) behind the same gate', 'plugin-put-redis-floor', 'plugin-put-redis'],
      ['the hand-written Redis lock against the hand-written memory lock', 'floor-put', 'floor-put-redis']
    ]
  },
  {
    id: 'post-idempotency-fresh',
    title: 'POST, a fresh Idempotency-Key → 201',
    requests: 'post-idempotency-fresh',
    bare: 'bare-post',
    floor: 'floor-post-idempotent',
    servers: [['bare-post', 201], ['plugin-post-registered', 201], ['floor-post-idempotent', 201], ['plugin-post-idempotent', 201]],
    stages: [
      ['the plugin registered, route without `concurrency`', 'bare-post', 'plugin-post-registered'],
      ['`idempotency: true`', 'plugin-post-registered', 'plugin-post-idempotent']
    ]
  },
  {
    id: 'post-idempotency-replay',
    title: 'POST, Idempotency-Key replayed → the stored 201',
    requests: 'post-idempotency-replay',
    bare: 'bare-post',
    floor: 'floor-post-idempotent',
    servers: [['bare-post', 201], ['floor-post-idempotent', 201], ['plugin-post-idempotent', 201]],
    stages: []
  }
]

const option = (name, fallback) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const flag = (name) => process.argv.includes(`--${name}`)
// Requests a connection before counting, run without callgrind's instrumentation (valgrind still
// runs the code): enough for V8 to have compiled what it is going to compile.
const WARM = Number(option('warm', '2000'))

if (process.argv[2] === 'serve') {
  const { builders } = await import('./apps.mjs')
  const server = await builders[process.argv[3]]()
  const port = await server.listen()
  console.log(`PORT ${port}`)
  process.on('SIGINT', () => process.exit(0))
} else {
  await main()
}

async function main () {
  const known = COUNTS.map((entry) => entry.id)
  const selected = option('scenarios', known.join(',')).split(',')
  const unknown = selected.filter((id) => !known.includes(id))
  if (unknown.length > 0) {
    console.error(`unknown scenario ${unknown.join(', ')}; known: ${known.join(', ')}`)
    process.exit(2)
  }
  const onlyServers = option('servers', null)?.split(',') ?? null
  const requests = Number(option('requests', '10000'))
  const perConnection = Math.round(requests / CONNECTIONS)
  const out = option('out', null)
  const annotate = option('annotate', null)
  const counts = out !== null && existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : {}
  const entries = COUNTS.filter((entry) => selected.includes(entry.id))

  if (flag('check')) {
    for (const entry of entries) {
      for (const [name, status] of entry.servers) {
        if (onlyServers !== null && !onlyServers.includes(name)) continue
        await count(name, specOf(entry.requests), status, 0, null, false)
        console.log(`${entry.id} ${name}: every answer ${status}`)
      }
    }
    return
  }
  if (!flag('table')) {
    const tasks = []
    for (const entry of entries) {
      const spec = specOf(entry.requests)
      for (const [name, status] of entry.servers) {
        if (onlyServers !== null && !onlyServers.includes(name)) continue
        const key = countKey(spec, name)
        if ((counts[key] !== undefined && annotate === null) || tasks.some((task) => task.key === key)) continue
        tasks.push({ entry, spec, name, status, key })
      }
    }
    // `repeat` counts of each server, its median kept; the two runs of a count side by side.
    const repeat = Number(option('repeat', '1'))
    for (const task of tasks.flatMap((one) => Array.from({ length: repeat }, () => one))) {
      const { entry, spec, name, status, key } = task
      const started = Date.now()
      const keep = annotate === null ? null : resolve(annotate, `${entry.id}-${name}`)
      const [short, long] = await Promise.all([
        count(name, spec, status, SHORT, keep && join(keep, 'short')),
        count(name, spec, status, SHORT + perConnection, keep && join(keep, 'long'))
      ])
      const requestsCounted = perConnection * CONNECTIONS
      const withCompiling = Math.round((long.total - short.total) / requestsCounted)
      const perRequest = Math.round((long.total - long.compiling - short.total + short.compiling) / requestsCounted)
      console.log(`${entry.id} ${name}: ${perRequest.toLocaleString('en-US')} instructions per request, ${withCompiling.toLocaleString('en-US')} with V8's optimizing compiler (${Math.round((Date.now() - started) / 1000)} s)`)
      if (keep !== null) {
        writeFileSync(join(keep, 'count.json'), JSON.stringify({ scenario: entry.id, server: name, requests: requestsCounted, short, long, perRequest, withCompiling }, null, 2) + '\n')
        continue
      }
      const runs = [...(counts[key]?.date === undefined || counts[key].runs === undefined ? [] : counts[key].runs), perRequest].sort((x, y) => x - y)
      counts[key] = { scenario: entry.requests, server: name, perRequest: runs[Math.floor((runs.length - 1) / 2)], runs, withCompiling, requests: requestsCounted, date: new Date().toISOString() }
      if (out !== null) writeFileSync(out, JSON.stringify(counts, null, 2) + '\n')
    }
  }
  if (annotate === null) console.log('\n' + table(entries, counts))
}

function specOf (id) {
  const scenario = scenarios.find((s) => s.id === id)
  if (scenario === undefined) throw new Error(`no harness scenario ${id} in scenarios.mjs`)
  return scenario.spec
}

function countKey (spec, server) {
  return `${server} ${JSON.stringify(spec)}`
}

function table (entries, counts) {
  const lines = [
    '| scenario | server | instructions per request | ratio to bare | ratio to floor |',
    '|---|---|---|---|---|'
  ]
  const stageLines = [
    '| scenario | stage | from → to | instructions per request |',
    '|---|---|---|---|'
  ]
  const fmt = (n) => n.toLocaleString('en-US')
  for (const entry of entries) {
    const spec = specOf(entry.requests)
    const of = (name) => counts[countKey(spec, name)]?.perRequest
    const bare = of(entry.bare)
    const floor = of(entry.floor)
    for (const [name] of entry.servers) {
      const n = of(name)
      if (n === undefined) continue
      const ratio = (base) => base === undefined ? '–' : (n / base).toFixed(3) + 'x'
      const label = name === entry.bare ? `${name} (bare)` : name === entry.floor ? `${name} (floor)` : name
      lines.push(`| ${entry.title} | \`${label}\` | ${fmt(n)} | ${name === entry.bare ? '1.000x' : ratio(bare)} | ${name === entry.floor ? '1.000x' : ratio(floor)} |`)
    }
    for (const [what, from, to] of entry.stages) {
      const a = of(from)
      const b = of(to)
      if (a === undefined || b === undefined) continue
      const difference = b - a
      stageLines.push(`| ${entry.title} | ${what} | \`${from}\` → \`${to}\` | ${difference >= 0 ? '+' : '−'}${fmt(Math.abs(difference))} |`)
    }
  }
  return lines.join('\n') + '\n\n' + stageLines.join('\n')
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** A redis-server of its own on a free loopback port, nothing persisted (test/helpers/redis-server.ts' flags). */
async function startRedis () {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', tmpdir(), '--loglevel', 'notice', '--logfile', ''], { stdio: ['ignore', 'pipe', 'pipe'] })
  await new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => reject(new Error(`redis-server did not start within 5 s:\n${output}`)), 5000)
    const onData = (chunk) => {
      output += chunk
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited (${code}); is it installed?\n${output}`))
    })
  })
  child.stdout.resume()
  child.stderr.resume()
  return {
    port,
    async stop () {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    }
  }
}

/**
 * Instructions of one server under callgrind that answers each request with `status`: WARM
 * requests a connection to warm it up (compiling, caches), then a full garbage collection, then
 * callgrind's counters zeroed, `amount` requests a connection, and a dump: what those `amount`
 * cost. Without `callgrind` (--check), the warm-up only. `keep`: a directory for the dump and
 * V8's perf map.
 */
async function count (name, spec, status, amount, keep, callgrind = true) {
  const dir = mkdtempSync(join(tmpdir(), 'instructions-'))
  const redis = name.includes('redis') ? await startRedis() : null
  try {
    const nodeFlags = ['--single-threaded']
    if (keep !== null) nodeFlags.push('--perf-basic-prof', '--interpreted-frames-native-stack')
    const command = [process.execPath, ...nodeFlags, fileURLToPath(import.meta.url), 'serve', name]
    if (callgrind) command.unshift('valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(dir, 'cg.%p')}`)
    const child = spawn(command[0], command.slice(1), {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: redis === null ? process.env : { ...process.env, BENCH_REDIS_PORT: String(redis.port) }
    })
    let out = ''
    child.stdout.on('data', (chunk) => { out += chunk })
    const printed = (pattern) => new Promise((resolve, reject) => {
      const exited = (code) => reject(new Error(`${name} exited (${code}); is valgrind installed?`))
      const look = () => {
        const match = pattern.exec(out)
        if (match === null) return
        child.stdout.off('data', look)
        child.off('exit', exited)
        resolve(match)
      }
      child.stdout.on('data', look)
      child.once('exit', exited)
      look()
    })
    const port = Number((await printed(/PORT (\d+)/))[1])
    let total = 0
    let compiling = 0
    try {
      await load(port, spec, status, WARM)
      if (callgrind) {
        await control(['-i', 'on', String(child.pid)])
        await control(['-z', String(child.pid)])
        await load(port, spec, status, amount)
        await control(['-d', String(child.pid)])
        const dump = readdirSync(dir).find((file) => file.endsWith('.1'))
        if (dump === undefined) throw new Error(`callgrind wrote no dump for ${name}`)
        const text = readFileSync(join(dir, dump), 'utf8')
        const summary = /^summary: (\d+)/m.exec(text)
        if (summary === null) throw new Error(`no summary in ${dump}`)
        total = Number(summary[1])
        for (const [fn, cost] of selfCosts(text, null)) if (kindOf(fn) === COMPILING) compiling += cost
        if (keep !== null) {
          mkdirSync(keep, { recursive: true })
          copyFileSync(join(dir, dump), join(keep, 'callgrind.out'))
          const map = `/tmp/perf-${child.pid}.map`
          if (existsSync(map)) copyFileSync(map, join(keep, 'perf.map'))
        }
      }
    } finally {
      child.kill('SIGINT')
      await once(child, 'exit')
      rmSync(`/tmp/perf-${child.pid}.map`, { force: true })
    }
    return { total, compiling }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    await redis?.stop()
  }
}

/** callgrind_control on the running server (zero, dump). */
async function control (args) {
  const child = spawn('callgrind_control', args, { stdio: ['ignore', 'ignore', 'inherit'] })
  const [code] = await once(child, 'exit')
  if (code !== 0) throw new Error(`callgrind_control ${args.join(' ')} exited ${code}`)
}

/**
 * `amount` requests on each of 10 connections, one after another on each, as the harness sends
 * them (load.mjs): `spec.keys` 'per-connection' puts connection i on resource i, a number on
 * resource 0; `spec.idempotencyKey` 'fresh' is a new key per request, 'per-connection' one key per
 * connection (after its first request, replays).
 */
async function load (port, spec, status, amount) {
  const body = spec.body === undefined ? undefined : BODIES[spec.body]()
  const prefix = `${process.pid}-${amount}-`
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, connection) => {
    const path = spec.path.replace('{key}', String(spec.keys === 'per-connection' ? connection : 0))
    const request = (headers) => ({ method: spec.method, path, headers, body })
    let requests
    if (spec.idempotencyKey === 'fresh') {
      requests = Array.from({ length: amount }, (_, i) => request({ ...spec.headers, 'idempotency-key': `${prefix}${connection}-${i}` }))
    } else if (spec.idempotencyKey === 'per-connection') {
      requests = [request({ ...spec.headers, 'idempotency-key': `replay-${connection}` })]
    } else {
      requests = [request(spec.headers)]
    }
    return new Promise((resolve, reject) => {
      autocannon({ url: `http://127.0.0.1:${port}${path}`, connections: 1, amount, requests, timeout: 300 }, (error, result) => {
        if (error) return reject(error)
        const wrong = Object.entries(result.statusCodeStats).filter(([code]) => Number(code) !== status)
        if (wrong.length > 0 || result.errors > 0) reject(new Error(`expected ${status}: got ${JSON.stringify(result.statusCodeStats)}, ${result.errors} errors`))
        else resolve(result)
      })
    })
  }))
}
