// node benchmarks/postgres.mjs [--pairs=N --duration=S --connections=N --generations=N --max-foreign=0.15 --only=pg-post-fresh]
//
// The PostgreSQL scenarios (postgresScenarios in scenarios.mjs): a keyed POST whose order and
// recorded answer commit in one transaction, against the same transaction without the plugin. A
// private cluster (pg-cluster.mjs) runs pinned to CPU 0 beside the load generator; the two
// servers of a pair are pinned to CPU 1, as in run.mjs, and loaded in alternating bursts
// (A B | B A | …) over several generations of fresh server processes. Each pair of bursts gives
// one ratio; the report is the median ratio with its range, the servers' CPU per request and the
// database's (all its processes, from /proc). A pair during which a CPU spent more than
// --max-foreign of a burst on other work is measured again.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { PostgresCluster, postgresMissing } from './pg-cluster.mjs'
import { Child, hasTaskset } from './processes.mjs'
import { postgresScenarios } from './scenarios.mjs'
import { formatRatio, median, summary } from './stats.mjs'

const { values: args } = parseArgs({
  options: {
    pairs: { type: 'string', default: '10' },
    duration: { type: 'string', default: '1' },
    connections: { type: 'string', default: '10' },
    generations: { type: 'string', default: '5' },
    'max-foreign': { type: 'string', default: '0.15' },
    'max-attempts': { type: 'string' },
    only: { type: 'string' }
  }
})
const settings = {
  pairs: Number(args.pairs),
  duration: Number(args.duration),
  connections: Number(args.connections),
  maxForeign: Number(args['max-foreign'])
}
settings.generations = Math.min(settings.pairs, Number(args.generations))
settings.maxAttempts = Number(args['max-attempts'] ?? settings.pairs * 3)
const log = (...parts) => console.error(...parts)

if (!existsSync(new URL('../dist/esm/postgres.js', import.meta.url))) {
  console.error('The plugin is not built: run `npm run build` first (the benchmarks load dist/, not lib/).')
  process.exit(2)
}
const missing = postgresMissing()
if (missing !== null) {
  console.error(`skipped: ${missing}`)
  process.exit(0)
}

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

async function startServer (name, databaseUrl) {
  const child = new Child({ script: 'server.mjs', args: [name], cpu: 1, nodeArgs: ['--no-deprecation'], env: { BENCH_DATABASE_URL: databaseUrl } })
  child.port = (await child.waitFor('ready')).port
  return child
}

async function measure (load, server, spec, cluster) {
  const before = await server.request('cpu')
  const busyBefore = cpuBusySeconds()
  const pgBefore = cluster.cpuSeconds()
  const { result, error } = await load.request('burst', { port: server.port, spec, duration: settings.duration, connections: settings.connections })
  const pgSeconds = cluster.cpuSeconds() - pgBefore
  const busyAfter = cpuBusySeconds()
  if (error) throw new Error(`burst against ${server.name}: ${error}`)
  const after = await server.request('cpu')
  const cpuMicros = after.micros - before.micros
  // CPU 0 runs the load generator and PostgreSQL, CPU 1 the server: what else ran there.
  const foreign = busyBefore === null
    ? [0, 0]
    : [
        Math.max(0, (busyAfter[0] - busyBefore[0]) - result.cpuMicros / 1e6 - pgSeconds) / result.seconds,
        Math.max(0, (busyAfter[1] - busyBefore[1]) - cpuMicros / 1e6) / result.seconds
      ]
  return {
    rps: result.rps,
    requests: result.requests,
    cpuPerRequest: cpuMicros / result.requests,
    pgCpuPerRequest: pgSeconds * 1e6 / result.requests,
    serverBusy: cpuMicros / (result.seconds * 1e6),
    pgBusy: pgSeconds / result.seconds,
    loadBusy: result.cpuMicros / (result.seconds * 1e6),
    p99: result.p99,
    statusCodes: result.statusCodes,
    errors: result.errors,
    foreign
  }
}

async function runScenario (scenario, load, cluster) {
  const pairs = []
  const problems = []
  const perGeneration = Math.ceil(settings.pairs / settings.generations)
  // Disturbed pairs are measured again, but within their generation's share of the attempts: on a
  // busy machine every generation still gets its turn.
  const attemptsPerGeneration = Math.ceil(settings.maxAttempts / settings.generations)
  let clean = 0
  for (let generation = 0; clean < settings.pairs && pairs.length < settings.maxAttempts; generation++) {
    const [a, b] = await Promise.all([startServer(scenario.a, cluster.connectionString), startServer(scenario.b, cluster.connectionString)])
    try {
      const sides = { a, b }
      for (const side of ['a', 'b']) {
        await load.request('burst', { port: sides[side].port, spec: scenario.spec, duration: settings.duration, connections: settings.connections })
      }
      const wanted = Math.min(settings.pairs, clean + perGeneration)
      for (let i = 0; clean < wanted && pairs.length < settings.maxAttempts && i < attemptsPerGeneration; i++) {
        const order = i % 2 === 0 ? ['a', 'b'] : ['b', 'a']
        const pair = { generation, order: order.join('') }
        for (const side of order) {
          pair[side] = await measure(load, sides[side], scenario.spec, cluster)
          const other = Object.keys(pair[side].statusCodes).filter((code) => Number(code) !== scenario.expect[side])
          if (other.length > 0 || pair[side].errors > 0) problems.push({ side, statusCodes: pair[side].statusCodes, errors: pair[side].errors })
        }
        pair.foreign = Math.max(...pair.a.foreign, ...pair.b.foreign)
        pair.clean = pair.foreign <= settings.maxForeign
        if (pair.clean) clean++
        pairs.push(pair)
        log(`  ${scenario.id} generation ${generation + 1} pair ${pairs.length} (${clean}/${settings.pairs} clean): ${(pair.a.rps / pair.b.rps).toFixed(3)}x req/s ` +
          `(${Math.round(pair.a.rps)} / ${Math.round(pair.b.rps)}), ${(pair.a.cpuPerRequest / pair.b.cpuPerRequest).toFixed(3)}x server CPU/req, ` +
          `PostgreSQL ${pair.a.pgCpuPerRequest.toFixed(0)} / ${pair.b.pgCpuPerRequest.toFixed(0)} µs/req; busy: server ${pair.a.serverBusy.toFixed(2)}/${pair.b.serverBusy.toFixed(2)}, ` +
          `PostgreSQL ${pair.a.pgBusy.toFixed(2)}/${pair.b.pgBusy.toFixed(2)}, load ${pair.a.loadBusy.toFixed(2)}/${pair.b.loadBusy.toFixed(2)}; other work up to ${(100 * pair.foreign).toFixed(0)}%${pair.clean ? '' : ' (disturbed)'}`)
      }
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  }
  const cleanPairs = pairs.filter((pair) => pair.clean)
  const disturbed = cleanPairs.length < Math.min(settings.pairs, 3)
  const used = disturbed ? pairs : cleanPairs
  const side = (name) => ({
    rps: median(used.map((pair) => pair[name].rps)),
    cpuPerRequest: median(used.map((pair) => pair[name].cpuPerRequest)),
    pgCpuPerRequest: median(used.map((pair) => pair[name].pgCpuPerRequest)),
    p99: median(used.map((pair) => pair[name].p99))
  })
  return {
    rps: summary(used.map((pair) => pair.a.rps / pair.b.rps)),
    cpu: summary(used.map((pair) => pair.a.cpuPerRequest / pair.b.cpuPerRequest)),
    a: side('a'),
    b: side('b'),
    used: used.length,
    attempted: pairs.length,
    disturbed,
    problems
  }
}

const only = args.only?.split(',')
const selected = postgresScenarios.filter((scenario) => only === undefined || only.includes(scenario.id))
const nproc = os.availableParallelism() // before this process is pinned to one of them
if (hasTaskset) spawnSync('taskset', ['-a', '-cp', '0', String(process.pid)])
const started = Date.now()
const loadStart = os.loadavg()
const cluster = new PostgresCluster({ cpu: 0 })
const load = new Child({ script: 'load.mjs', cpu: 0 })
const results = []
let storage = ''
try {
  await cluster.start()
  const { default: pg } = await import('pg')
  const { idempotencyTableSql } = await import('fastify-precondition/postgres')
  const pool = new pg.Pool({ connectionString: cluster.connectionString, max: 1 })
  await pool.query(idempotencyTableSql())
  await pool.query('CREATE TABLE bench_orders (id bigserial PRIMARY KEY, name text NOT NULL)')
  log(`PostgreSQL ${(await pool.query('SHOW server_version')).rows[0].server_version} on port ${cluster.port}; ${settings.pairs} pairs of ${settings.duration} s bursts, ${settings.connections} connections`)
  for (const scenario of selected) {
    log(`${scenario.id}: ${scenario.title}`)
    results.push({ scenario, result: await runScenario(scenario, load, cluster) })
  }
  await pool.query('VACUUM ANALYZE fastify_precondition_idempotency')
  const { rows: [counts] } = await pool.query(`SELECT (SELECT count(*) FROM bench_orders)::int AS orders,
  (SELECT count(*) FROM fastify_precondition_idempotency)::int AS records,
  pg_table_size('fastify_precondition_idempotency')::float8 AS "table", pg_indexes_size('fastify_precondition_idempotency')::float8 AS indexes`)
  storage = counts.records < 1000
    ? `${counts.records} Idempotency-Key records: too few to tell their size; ${counts.orders} orders`
    : `${counts.records} Idempotency-Key records (answers of about ${Buffer.byteLength(JSON.stringify({ id: '1', name: 'benchmark item' }))} bytes) ` +
      `take ${(counts.table / 1048576).toFixed(1)} MB of table and ${(counts.indexes / 1048576).toFixed(1)} MB of indexes: ` +
      `${Math.round((counts.table + counts.indexes) / counts.records)} bytes per record; ${counts.orders} orders`
  log(storage)
  await pool.end()
} finally {
  await load.stop()
  cluster.stop()
}

const lines = [
  '| scenario | baseline | req/s ratio, median (min–max) | server CPU/request ratio, median (min–max) | req/s (scenario / baseline) | server CPU µs/request | PostgreSQL CPU µs/request | p99 ms | pairs used / measured |',
  '|---|---|---|---|---|---|---|---|---|'
]
for (const { scenario, result } of results) {
  const warn = result.problems.length > 0 ? ` ⚠️ ${result.problems.length} bursts with unexpected statuses: ${JSON.stringify(result.problems[0])}` : ''
  lines.push(`| ${scenario.title}${warn} | ${scenario.baseline} | ${formatRatio(result.rps)} | ${formatRatio(result.cpu)} | ${Math.round(result.a.rps)} / ${Math.round(result.b.rps)} | ` +
    `${result.a.cpuPerRequest.toFixed(0)} / ${result.b.cpuPerRequest.toFixed(0)} | ${result.a.pgCpuPerRequest.toFixed(0)} / ${result.b.pgCpuPerRequest.toFixed(0)} | ` +
    `${result.a.p99.toFixed(2)} / ${result.b.p99.toFixed(2)} | ${result.used} / ${result.attempted}${result.disturbed ? ' ⚠️ disturbed' : ''} |`)
}
const command = 'node benchmarks/postgres.mjs' + (process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : '')
process.stdout.write(`${lines.join('\n')}\n\n${storage}\n\n${nproc} CPUs, node ${process.version}; \`${command}\`: ${Math.round((Date.now() - started) / 1000)} s; ` +
  `load average ${loadStart.map((n) => n.toFixed(2)).join(' ')} → ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}\n`)
