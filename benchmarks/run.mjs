// npm run bench [-- --quick] [-- --only=put-match,get-200] [-- --pairs=N --duration=S]
//   [-- --generations=N --max-foreign=0.15 --max-attempts=N --connections=N --cpu-prof]
//
// Every scenario is a pair of servers, both up side by side and pinned to CPU 1, loaded in turn
// by autocannon pinned to CPU 0, in alternating bursts (A B | B A | …). Each pair of bursts gives
// one ratio, so drift on this shared machine hits both sides of it alike; the report is the
// median ratio with its range. Server CPU time per request comes from process.cpuUsage(), read
// over IPC between bursts. /proc/stat tells how much else ran on either CPU during a burst: a
// pair where that passed --max-foreign is measured again. The pairs are spread over several
// generations of freshly started servers. `--cpu-prof` writes each server's profile to
// benchmarks/profiles/ (read them with benchmarks/profile-summary.mjs).
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runHashBenchmark } from './hash.mjs'
import { runIdempotencyMemory, runMemory } from './memory.mjs'
import { Child, hasTaskset, pinned } from './processes.mjs'
import { scenarios } from './scenarios.mjs'
import { formatRatio, median, summary } from './stats.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    pairs: { type: 'string' },
    duration: { type: 'string' },
    connections: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'skip-memory': { type: 'boolean', default: false },
    'skip-hash': { type: 'boolean', default: false },
    'max-foreign': { type: 'string' },
    'max-attempts': { type: 'string' },
    generations: { type: 'string' },
    out: { type: 'string', default: fileURLToPath(new URL('results.json', import.meta.url)) }
  }
})

const settings = {
  pairs: Number(args.pairs ?? (args.quick ? 5 : 10)),
  duration: Number(args.duration ?? (args.quick ? 0.25 : 1)),
  connections: Number(args.connections ?? 10),
  // A pair is disturbed when, during one of its bursts, a CPU spent more than this share of the
  // time on work other than the server or the load generator.
  maxForeign: Number(args['max-foreign'] ?? 0.15),
  quick: args.quick
}
settings.maxAttempts = Number(args['max-attempts'] ?? settings.pairs * (args.quick ? 1 : 3))
settings.generations = Math.min(settings.pairs, Number(args.generations ?? (args.quick ? 1 : 5)))
if (!(settings.pairs >= 1) || !(settings.duration > 0) || !(settings.connections >= 1) || !(settings.maxForeign > 0) || !(settings.maxAttempts >= settings.pairs) || !(settings.generations >= 1)) {
  console.error('--pairs, --duration, --connections, --generations and --max-foreign must be positive numbers, --max-attempts at least --pairs')
  process.exit(2)
}

const log = (...parts) => console.error(...parts)

function checkBuild () {
  const built = new URL('../dist/esm/index.js', import.meta.url)
  if (!existsSync(built)) {
    console.error('The plugin is not built: run `npm run build` first (the benchmarks load dist/, not lib/).')
    process.exit(2)
  }
  const builtAt = statSync(built).mtimeMs
  const libDir = new URL('../lib/', import.meta.url)
  const newer = readdirSync(libDir, { recursive: true })
    .filter((file) => String(file).endsWith('.ts') && statSync(new URL(String(file), libDir)).mtimeMs > builtAt)
  if (newer.length > 0) log(`warning: lib/ changed after the last build (${newer.join(', ')}); run \`npm run build\` to measure it`)
}

function machine () {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : ''
  return {
    nproc: os.availableParallelism(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    pinned: hasTaskset
  }
}

// ---------------------------------------------------------------------------------------------
// Redis, for the scenario that needs it: a private redis-server on a free loopback port.

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

async function redisPrerequisites () {
  try {
    const resolved = fileURLToPath(import.meta.resolve('fastify-precondition/redis'))
    if (!existsSync(resolved)) return `fastify-precondition/redis is not built (${resolved} is missing)`
  } catch (error) {
    return `fastify-precondition/redis does not resolve: ${error.message}`
  }
  if (spawnSync('redis-server', ['--version']).status !== 0) return 'redis-server is not installed'
  return null
}

async function startRedis () {
  const port = await freePort()
  // Beside the load generator on CPU 0, so the server's CPU time is its own.
  const [command, argv] = pinned(0, ['redis-server', '--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'])
  const child = spawn(command, argv, { stdio: ['ignore', 'ignore', 'inherit'] })
  // Its CPU time, from /proc, so the time it spends beside the load generator is not counted as
  // other people's work.
  const cpuSeconds = () => {
    try {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ')
      return (Number(fields[11]) + Number(fields[12])) / clockTicks
    } catch {
      return 0
    }
  }
  const { default: Redis } = await import('ioredis')
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: (times) => times > 50 ? null : 100 })
  await client.connect()
  await client.ping()
  return {
    port,
    cpuSeconds,
    /** Commands processed so far, by name, not counting the INFO calls that ask. */
    async commands () {
      const info = await client.info('commandstats')
      const counts = {}
      for (const [, name, calls] of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
        if (name !== 'info') counts[name] = Number(calls)
      }
      return counts
    },
    async stop () {
      client.disconnect()
      child.kill('SIGTERM')
      await new Promise((resolve) => child.exitCode !== null ? resolve() : child.once('exit', resolve))
    }
  }
}

// ---------------------------------------------------------------------------------------------

async function startServer (name, env, cpuProf) {
  // restify 11 reads process.binding('http_parser') through spdy; the warning is not ours to fix.
  const nodeArgs = ['--no-deprecation']
  if (cpuProf) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${fileURLToPath(new URL('profiles/', import.meta.url))}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`)
  const child = new Child({ script: 'server.mjs', args: [name], cpu: 1, nodeArgs, env })
  const { port } = await child.waitFor('ready')
  child.port = port
  return child
}

// Busy time of each CPU from /proc/stat, in seconds: what ran there, ours or anyone's.
const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100
function cpuBusySeconds () {
  if (!existsSync('/proc/stat')) return null
  const busy = []
  for (const [, cpu, fields] of readFileSync('/proc/stat', 'utf8').matchAll(/^cpu(\d+) (.+)$/gm)) {
    const [user, nice, system, , , irq, softirq, steal] = fields.split(' ').map(Number)
    busy[Number(cpu)] = (user + nice + system + irq + softirq + steal) / clockTicks
  }
  return busy
}

async function measure (load, server, spec, duration, connections, redis) {
  const before = await server.request('cpu')
  const commandsBefore = redis ? await redis.commands() : null
  const busyBefore = cpuBusySeconds()
  const redisBefore = redis?.cpuSeconds() ?? 0
  const { result, error } = await load.request('burst', { port: server.port, spec, duration, connections })
  const busyAfter = cpuBusySeconds()
  const redisSeconds = (redis?.cpuSeconds() ?? 0) - redisBefore
  if (error) throw new Error(`burst against ${server.name}: ${error}`)
  const after = await server.request('cpu')
  const cpuMicros = after.micros - before.micros
  // The share of the burst that CPU 1 spent on anything but the server, and CPU 0 on anything
  // but the load generator: other people's work, or the kernel's for loopback traffic.
  const foreign = busyBefore === null
    ? null
    : [
        Math.max(0, (busyAfter[0] - busyBefore[0]) - result.cpuMicros / 1e6 - redisSeconds) / result.seconds,
        Math.max(0, (busyAfter[1] - busyBefore[1]) - cpuMicros / 1e6) / result.seconds
      ]
  const sample = {
    foreign,
    loadBusy: result.cpuMicros / (result.seconds * 1e6),
    rps: result.rps,
    requests: result.requests,
    cpuPerRequest: cpuMicros / result.requests,
    serverBusy: cpuMicros / (result.seconds * 1e6),
    p99: result.p99,
    p50: result.p50,
    statusCodes: result.statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    rss: after.rss
  }
  if (redis) {
    const commandsAfter = await redis.commands()
    const perCommand = {}
    let total = 0
    for (const [name, calls] of Object.entries(commandsAfter)) {
      const delta = calls - (commandsBefore[name] ?? 0)
      if (delta > 0) { perCommand[name] = delta; total += delta }
    }
    sample.redisCommandsPerRequest = total / result.requests
    sample.redisCommands = perCommand
    sample.redisRoundTripsPerRequest = (after.redisRoundTrips - before.redisRoundTrips) / result.requests
    sample.redisCpuPerRequest = redisSeconds * 1e6 / result.requests
  }
  return sample
}

function unexpected (sample, status) {
  const other = Object.entries(sample.statusCodes).filter(([code]) => Number(code) !== status)
  return other.length > 0 || sample.errors > 0 ? { statusCodes: sample.statusCodes, errors: sample.errors, timeouts: sample.timeouts } : null
}

async function runScenario (scenario, load, context) {
  if (scenario.needsRedis) {
    const missing = await redisPrerequisites()
    if (missing !== null) return { skipped: missing }
    context.redis ??= await startRedis()
  }
  const env = context.redis ? { BENCH_REDIS_PORT: String(context.redis.port) } : {}
  const connections = scenario.connections ?? settings.connections
  const pairs = []
  const problems = []
  // Fresh processes settle into different steady states (what the JIT optimised, where things
  // landed in memory): one pair of processes can sit several per cent off another for its whole
  // life. So the pairs are spread over several generations of server processes.
  const perGeneration = Math.ceil(settings.pairs / settings.generations)
  let clean = 0
  for (let generation = 0; clean < settings.pairs && pairs.length < settings.maxAttempts; generation++) {
    const [a, b] = await Promise.all([
      startServer(scenario.a, env, args['cpu-prof']),
      startServer(scenario.b, env, args['cpu-prof'])
    ])
    try {
      const sides = { a, b }
      // Warm-up: the JIT and the sockets, on both sides, not measured.
      for (const side of ['a', 'b']) {
        await load.request('burst', { port: sides[side].port, spec: scenario.spec, duration: settings.duration, connections })
      }
      // A pair counts when neither CPU did much else during either burst; disturbed pairs are
      // measured again, up to maxAttempts pairs in all.
      const wanted = Math.min(settings.pairs, clean + perGeneration)
      for (let i = 0; clean < wanted && pairs.length < settings.maxAttempts; i++) {
        const order = i % 2 === 0 ? ['a', 'b'] : ['b', 'a']
        const pair = { generation, order: order.join('') }
        for (const side of order) {
          pair[side] = await measure(load, sides[side], scenario.spec, settings.duration, connections, side === 'a' && scenario.needsRedis ? context.redis : null)
          const wrong = unexpected(pair[side], scenario.expect[side])
          if (wrong !== null) problems.push({ pair: pairs.length, side, expected: scenario.expect[side], ...wrong })
        }
        pair.foreign = Math.max(...pair.a.foreign ?? [0], ...pair.b.foreign ?? [0])
        pair.clean = pair.foreign <= settings.maxForeign
        if (pair.clean) clean++
        pairs.push(pair)
        log(`  ${scenario.id} generation ${generation + 1} pair ${pairs.length} (${clean}/${settings.pairs} clean): ${(pair.a.rps / pair.b.rps).toFixed(3)}x req/s, ` +
          `${(pair.a.cpuPerRequest / pair.b.cpuPerRequest).toFixed(3)}x CPU/req; other work on the CPUs up to ${(100 * pair.foreign).toFixed(0)}%` +
          `${pair.clean ? '' : ' (disturbed)'}; server busy ${pair.a.serverBusy.toFixed(2)}/${pair.b.serverBusy.toFixed(2)}, load generator ${pair.a.loadBusy.toFixed(2)}/${pair.b.loadBusy.toFixed(2)}`)
      }
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  }
  return summarize(scenario, pairs, problems)
}

function summarize (scenario, allPairs, problems) {
  // Too few undisturbed pairs: report them all, and say so.
  const cleanPairs = allPairs.filter((pair) => pair.clean)
  const disturbed = cleanPairs.length < Math.min(settings.pairs, 3)
  const pairs = disturbed ? allPairs : cleanPairs
  const rps = summary(pairs.map((pair) => pair.a.rps / pair.b.rps))
  const cpu = summary(pairs.map((pair) => pair.a.cpuPerRequest / pair.b.cpuPerRequest))
  const side = (name) => ({
    rps: median(pairs.map((pair) => pair[name].rps)),
    cpuPerRequestMicros: median(pairs.map((pair) => pair[name].cpuPerRequest)),
    serverBusy: median(pairs.map((pair) => pair[name].serverBusy)),
    p99: median(pairs.map((pair) => pair[name].p99)),
    p50: median(pairs.map((pair) => pair[name].p50))
  })
  const targets = scenario.targets.map((target) => {
    const value = target.metric === 'rps' ? rps.median : cpu.median
    const met = target.min !== undefined ? value >= target.min : value <= target.max
    return { ...target, value, met }
  })
  const result = { rps, cpu, a: side('a'), b: side('b'), targets, problems, used: pairs.length, attempted: allPairs.length, disturbed, pairs: allPairs }
  if (scenario.needsRedis) {
    result.redisCommandsPerRequest = summary(pairs.map((pair) => pair.a.redisCommandsPerRequest))
    result.redisRoundTripsPerRequest = summary(pairs.map((pair) => pair.a.redisRoundTripsPerRequest))
    result.redisCpuPerRequestMicros = median(pairs.map((pair) => pair.a.redisCpuPerRequest))
    result.redisCommands = pairs.at(-1).a.redisCommands
  }
  return result
}

// ---------------------------------------------------------------------------------------------

function targetText (targets) {
  if (targets.length === 0) return 'report'
  return targets.map((t) => `${t.metric === 'rps' ? 'req/s' : 'CPU/req'} ${t.min !== undefined ? '≥ ' + t.min.toFixed(2) : '≤ ' + t.max.toFixed(2)}` +
    (t.value === undefined ? '' : `: ${t.value.toFixed(3)} ${t.met ? '✅' : '❌'}`)).join('<br>')
}

function table (results) {
  const lines = [
    '| scenario | baseline | req/s ratio, median (min–max) | CPU/request ratio, median (min–max) | p99 ms (scenario / baseline) | req/s (scenario / baseline) | pairs used / measured | target |',
    '|---|---|---|---|---|---|---|---|'
  ]
  for (const { scenario, result } of results) {
    const baseline = scenario.baseline ?? 'bare Fastify PUT'
    if (result.skipped) {
      lines.push(`| ${scenario.title} | ${baseline} | skipped: ${result.skipped} | | | | | ${targetText(scenario.targets)} |`)
      continue
    }
    if (result.failed) {
      lines.push(`| ${scenario.title} | ${baseline} | failed: ${result.failed} | | | | | |`)
      continue
    }
    let title = scenario.title
    if (result.redisCommandsPerRequest) {
      title += ` (per request: ${result.redisRoundTripsPerRequest.median.toFixed(2)} Redis round trips; ` +
        `${result.redisCommandsPerRequest.median.toFixed(2)} commands in Redis: ${Object.keys(result.redisCommands).join(', ')}; ` +
        `redis-server CPU ${result.redisCpuPerRequestMicros.toFixed(1)} µs)`
    }
    if (result.problems.length > 0) title += ` ⚠️ ${result.problems.length} bursts with unexpected statuses or errors`
    lines.push(`| ${title} | ${baseline} | ${formatRatio(result.rps)} | ${formatRatio(result.cpu)} | ${result.a.p99.toFixed(2)} / ${result.b.p99.toFixed(2)} | ${Math.round(result.a.rps)} / ${Math.round(result.b.rps)} | ${result.used} / ${result.attempted}${result.disturbed ? ' ⚠️ disturbed' : ''} | ${targetText(result.targets)} |`)
  }
  return lines.join('\n')
}

async function main () {
  checkBuild()
  const only = args.only?.split(',').map((id) => id.trim())
  const unknown = only?.filter((id) => !['memory', 'memory-idempotency', 'hash'].includes(id) && !scenarios.some((s) => s.id === id)) ?? []
  if (unknown.length > 0) {
    console.error(`unknown scenario ${unknown.join(', ')}; known: ${scenarios.map((s) => s.id).join(', ')}, memory, memory-idempotency, hash`)
    process.exit(2)
  }
  const selected = scenarios.filter((s) => only === undefined || only.includes(s.id))
  const started = Date.now()
  const output = {
    command: 'npm run bench' + (process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''),
    date: new Date().toISOString(),
    machine: machine(),
    settings,
    loadAverage: { start: os.loadavg() },
    scenarios: []
  }
  if (!hasTaskset) log('warning: taskset not found; processes are not pinned and ratios will be noisier')
  // This process only waits during bursts; beside the load generator it stays off the servers' CPU.
  else spawnSync('taskset', ['-a', '-cp', '0', String(process.pid)])
  log(`${output.machine.nproc} CPUs (${output.machine.cpu}), node ${output.machine.node}; ${settings.pairs} pairs of ${settings.duration} s bursts, ${settings.connections} connections`)

  const load = new Child({ script: 'load.mjs', cpu: 0 })
  const context = { redis: null }
  const results = []
  try {
    for (const scenario of selected) {
      log(`${scenario.id}: ${scenario.title}`)
      let result
      try {
        result = await runScenario(scenario, load, context)
      } catch (error) {
        log(`  failed: ${error.stack}`)
        result = { failed: error.message }
      }
      if (result.skipped) log(`  skipped: ${result.skipped}`)
      results.push({ scenario, result })
      output.scenarios.push({ ...scenario, result })
    }
  } finally {
    await load.stop()
    await context.redis?.stop()
  }

  if (!args['skip-memory'] && (only === undefined || only.includes('memory'))) {
    log('memory: guarded writes over distinct keys')
    output.memory = await runMemory({ quick: settings.quick, log })
  }
  if (!args['skip-memory'] && (only === undefined || only.includes('memory-idempotency'))) {
    log('memory-idempotency: POSTs with a fresh Idempotency-Key each, answers kept 1 s')
    output.idempotencyMemory = await runIdempotencyMemory({ quick: settings.quick, log })
  }
  if (!args['skip-hash'] && (only === undefined || only.includes('hash'))) {
    log('hash: strongEtag against @fastify/etag\'s default hashing')
    output.hash = await runHashBenchmark({ quick: settings.quick, log })
  }
  output.loadAverage.end = os.loadavg()
  output.seconds = Math.round((Date.now() - started) / 1000)

  let text = `${table(results)}\n`
  if (output.memory) text += `\n${memoryText(output.memory)}\n`
  if (output.idempotencyMemory) text += `\n${idempotencyMemoryText(output.idempotencyMemory)}\n`
  if (output.hash) text += `\n${hashTable(output.hash)}\n`
  text += `\n${output.machine.nproc} CPUs (${output.machine.cpu}), node ${output.machine.node}; \`${output.command}\`: ${settings.pairs} pairs of ${settings.duration} s bursts wanted over ${settings.generations} generation${settings.generations === 1 ? '' : 's'} of server processes (up to ${settings.maxAttempts} measured; a pair is disturbed when a CPU spent over ${Math.round(settings.maxForeign * 100)}% of a burst on other work), ${settings.connections} connections; ${output.seconds} s; load average ${output.loadAverage.start.map((n) => n.toFixed(2)).join(' ')} → ${output.loadAverage.end.map((n) => n.toFixed(2)).join(' ')}\n`
  process.stdout.write(text)
  writeFileSync(args.out, JSON.stringify(output, null, 2) + '\n')
  log(`wrote ${args.out.startsWith(root) ? args.out.slice(root.length) : args.out}`)
}

function memoryText (memory) {
  if (memory.failed) return `Memory run failed: ${memory.failed}`
  const mb = (bytes) => (bytes / 1048576).toFixed(1)
  const delta = memory.end.rss - memory.start.rss
  const bareDelta = memory.bare.end.rss - memory.bare.start.rss
  return [
    `Memory: ${memory.writes.toLocaleString('en')} guarded writes over ${memory.keys.toLocaleString('en')} keys (${Math.round(memory.rps)} req/s; statuses ${JSON.stringify(memory.statusCodes)}; ` +
    `start taken after ${memory.warmup.toLocaleString('en')} warm-up writes; young generation fixed at ${memory.semiSpaceMB} MB semi-spaces):`,
    `lock map size at the end ${memory.end.lockMapSize} ${memory.end.lockMapSize === 0 ? '✅' : '❌'}; ` +
    `RSS after GC ${mb(memory.start.rss)} MB → ${mb(memory.end.rss)} MB (${delta >= 0 ? '+' : ''}${mb(delta)} MB) ${Math.abs(delta) <= 10 * 1048576 ? '✅' : '❌'}; ` +
    `heap used ${mb(memory.start.heapUsed)} MB → ${mb(memory.end.heapUsed)} MB. ` +
    `Without the plugin, the same writes: RSS ${mb(memory.bare.start.rss)} MB → ${mb(memory.bare.end.rss)} MB (${bareDelta >= 0 ? '+' : ''}${mb(bareDelta)} MB), ` +
    `heap used ${mb(memory.bare.start.heapUsed)} MB → ${mb(memory.bare.end.heapUsed)} MB.`
  ].join('\n')
}

function idempotencyMemoryText (memory) {
  if (memory.failed) return `Idempotency memory run failed: ${memory.failed}`
  const mb = (bytes) => (bytes / 1048576).toFixed(1)
  const delta = memory.end.rss - memory.start.rss
  const bareDelta = memory.bare.end.rss - memory.bare.start.rss
  return [
    `Idempotency memory: ${memory.writes.toLocaleString('en')} POSTs, each with a fresh Idempotency-Key, over a MemoryIdempotencyStore (answers kept ${memory.ttlSeconds} s, swept every ${memory.sweepIntervalMs} ms) ` +
    `(${Math.round(memory.rps)} req/s; statuses ${JSON.stringify(memory.statusCodes)}; start taken after ${memory.warmup.toLocaleString('en')} warm-up POSTs; young generation fixed at ${memory.semiSpaceMB} MB semi-spaces):`,
    `records at most ${memory.peak.idempotencyRecords.toLocaleString('en')} during the run (sampled every second), ${memory.end.idempotencyRecords} at the end ${memory.end.idempotencyRecords === 0 ? '✅' : '❌'}; ` +
    `RSS at most ${mb(memory.peak.rss)} MB during the run (no GC forced); ` +
    `RSS after GC ${mb(memory.start.rss)} MB → ${mb(memory.end.rss)} MB (${delta >= 0 ? '+' : ''}${mb(delta)} MB) ${Math.abs(delta) <= 10 * 1048576 ? '✅' : '❌'}; ` +
    `heap used ${mb(memory.start.heapUsed)} MB → ${mb(memory.end.heapUsed)} MB. ` +
    `Without the plugin, the same POSTs: RSS ${mb(memory.bare.start.rss)} MB → ${mb(memory.bare.end.rss)} MB (${bareDelta >= 0 ? '+' : ''}${mb(bareDelta)} MB), ` +
    `heap used ${mb(memory.bare.start.heapUsed)} MB → ${mb(memory.bare.end.heapUsed)} MB.`
  ].join('\n')
}

function hashTable (hash) {
  const lines = [
    '| payload | strongEtag ops/s | @fastify/etag default ops/s | ratio, median (min–max) | target ≥ 1.00, within 2% |',
    '|---|---|---|---|---|'
  ]
  for (const row of hash.rows) {
    lines.push(`| ${row.label} | ${Math.round(row.a).toLocaleString('en')} | ${Math.round(row.b).toLocaleString('en')} | ${formatRatio(row.ratio)} | ${row.ratio.median >= 0.98 ? '✅' : '❌'} |`)
  }
  return lines.join('\n')
}

await main()
