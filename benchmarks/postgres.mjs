// node benchmarks/postgres.mjs [--fsync=on|off --pairs=N --duration=S --connections=N --generations=N --max-foreign=0.15 --only=pg-transaction-fresh,…]
//
// The PostgreSQL scenarios (postgresScenarios in scenarios.mjs): a keyed POST whose order and
// recorded answer commit in one transaction, against the same transaction without the plugin and
// against a hand-written floor of the same guarantee. Without --only, the claims' run (the
// scenarios marked `claims`); the cluster has fsync on unless --fsync=off (the 2026-12-01 runs:
// `--fsync=off --only=pg-post-fresh,pg-post-replay`). A
// private cluster (pg-cluster.mjs) runs pinned to CPU 0 beside the load generator; the two
// servers of a pair are pinned to CPU 1, as in run.mjs, and loaded in alternating bursts
// (A B | B A | …) over several generations of fresh server processes. Each pair of bursts gives
// one ratio; the report is the median ratio with its range, the servers' CPU per request and the
// database's (all its processes, from /proc). A pair during which a CPU spent more than
// --max-foreign of a burst on other work is measured again.
//
// Per request, each side also reports the statements its server sent (counted in node-postgres'
// Client.prototype.query by apps.mjs, by kind; node-postgres sends a connection's next statement
// once the previous one answered, so statements = round trips), the transaction IDs PostgreSQL
// assigned (write transactions: with fsync on, each commit of one waits for a WAL flush) and the
// WAL bytes written (pg_current_wal_lsn()), read between bursts, never during one.
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
    fsync: { type: 'string', default: 'on' },
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
if (args.fsync !== 'on' && args.fsync !== 'off') {
  console.error(`--fsync is on or off; got ${args.fsync}`)
  process.exit(2)
}
settings.fsync = args.fsync === 'on'

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

/** Where the cluster's WAL and transaction IDs are: read through `pool`, which writes nothing. */
async function walPosition (pool) {
  const { rows: [row] } = await pool.query('SELECT pg_current_wal_lsn()::text AS lsn, txid_snapshot_xmax(txid_current_snapshot())::text AS xid')
  const [high, low] = row.lsn.split('/')
  return { wal: Number((BigInt('0x' + high) << 32n) | BigInt('0x' + low)), xid: Number(row.xid) }
}

async function measure (load, server, spec, cluster, pool) {
  const walBefore = await walPosition(pool)
  const before = await server.request('cpu')
  const busyBefore = cpuBusySeconds()
  const pgBefore = cluster.cpuSeconds()
  const { result, error } = await load.request('burst', { port: server.port, spec, duration: settings.duration, connections: settings.connections })
  const pgSeconds = cluster.cpuSeconds() - pgBefore
  const busyAfter = cpuBusySeconds()
  if (error) throw new Error(`burst against ${server.name}: ${error}`)
  const after = await server.request('cpu')
  const walAfter = await walPosition(pool)
  const cpuMicros = after.micros - before.micros
  // Counted per request the server took (a few are still in flight when a burst ends), as are the
  // transaction IDs and WAL of the burst.
  const served = after.served - before.served
  const statementKinds = {}
  for (const [kind, count] of Object.entries(after.statementKinds ?? {})) {
    const sent = count - (before.statementKinds?.[kind] ?? 0)
    if (sent > 0) statementKinds[kind] = sent / served
  }
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
    statements: (after.statements - before.statements) / served,
    statementKinds,
    xids: (walAfter.xid - walBefore.xid) / served,
    walBytes: (walAfter.wal - walBefore.wal) / served,
    serverBusy: cpuMicros / (result.seconds * 1e6),
    pgBusy: pgSeconds / result.seconds,
    loadBusy: result.cpuMicros / (result.seconds * 1e6),
    p99: result.p99,
    statusCodes: result.statusCodes,
    errors: result.errors,
    foreign
  }
}

async function runScenario (scenario, load, cluster, pool) {
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
          pair[side] = await measure(load, sides[side], scenario.spec, cluster, pool)
          const other = Object.keys(pair[side].statusCodes).filter((code) => Number(code) !== scenario.expect[side])
          if (other.length > 0 || pair[side].errors > 0) problems.push({ side, statusCodes: pair[side].statusCodes, errors: pair[side].errors })
        }
        pair.foreign = Math.max(...pair.a.foreign, ...pair.b.foreign)
        pair.clean = pair.foreign <= settings.maxForeign
        if (pair.clean) clean++
        pairs.push(pair)
        log(`  ${scenario.id} generation ${generation + 1} pair ${pairs.length} (${clean}/${settings.pairs} clean): ${(pair.a.rps / pair.b.rps).toFixed(3)}x req/s ` +
          `(${Math.round(pair.a.rps)} / ${Math.round(pair.b.rps)}), ${(pair.a.cpuPerRequest / pair.b.cpuPerRequest).toFixed(3)}x server CPU/req, ` +
          `PostgreSQL ${pair.a.pgCpuPerRequest.toFixed(0)} / ${pair.b.pgCpuPerRequest.toFixed(0)} µs/req, statements ${pair.a.statements.toFixed(2)} / ${pair.b.statements.toFixed(2)} per req; busy: server ${pair.a.serverBusy.toFixed(2)}/${pair.b.serverBusy.toFixed(2)}, ` +
          `PostgreSQL ${pair.a.pgBusy.toFixed(2)}/${pair.b.pgBusy.toFixed(2)}, load ${pair.a.loadBusy.toFixed(2)}/${pair.b.loadBusy.toFixed(2)}; other work up to ${(100 * pair.foreign).toFixed(0)}%${pair.clean ? '' : ' (disturbed)'}`)
      }
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  }
  const cleanPairs = pairs.filter((pair) => pair.clean)
  const disturbed = cleanPairs.length < Math.min(settings.pairs, 3)
  const used = disturbed ? pairs : cleanPairs
  const side = (name) => {
    const kinds = [...new Set(used.flatMap((pair) => Object.keys(pair[name].statementKinds)))]
    return {
      rps: median(used.map((pair) => pair[name].rps)),
      cpuPerRequest: median(used.map((pair) => pair[name].cpuPerRequest)),
      pgCpuPerRequest: median(used.map((pair) => pair[name].pgCpuPerRequest)),
      statements: median(used.map((pair) => pair[name].statements)),
      statementKinds: Object.fromEntries(kinds.map((kind) => [kind, median(used.map((pair) => pair[name].statementKinds[kind] ?? 0))])),
      xids: median(used.map((pair) => pair[name].xids)),
      walBytes: median(used.map((pair) => pair[name].walBytes)),
      p99: median(used.map((pair) => pair[name].p99))
    }
  }
  const ratios = {
    rps: summary(used.map((pair) => pair.a.rps / pair.b.rps)),
    cpu: summary(used.map((pair) => pair.a.cpuPerRequest / pair.b.cpuPerRequest)),
    pgCpu: summary(used.map((pair) => pair.a.pgCpuPerRequest / pair.b.pgCpuPerRequest))
  }
  const targets = scenario.targets.map((target) => {
    const value = ratios[target.metric].median
    return { ...target, value, met: target.min !== undefined ? value >= target.min : value <= target.max }
  })
  return {
    ...ratios,
    targets,
    a: side('a'),
    b: side('b'),
    used: used.length,
    attempted: pairs.length,
    disturbed,
    problems
  }
}

const only = args.only?.split(',')
const unknown = only?.filter((id) => !postgresScenarios.some((scenario) => scenario.id === id)) ?? []
if (unknown.length > 0) {
  console.error(`unknown scenario ${unknown.join(', ')}; known: ${postgresScenarios.map((scenario) => scenario.id).join(', ')}`)
  process.exit(2)
}
const selected = postgresScenarios.filter((scenario) => only === undefined ? scenario.claims === true : only.includes(scenario.id))
const nproc = os.availableParallelism() // before this process is pinned to one of them
if (hasTaskset) spawnSync('taskset', ['-a', '-cp', '0', String(process.pid)])
const started = Date.now()
const loadStart = os.loadavg()
const cluster = new PostgresCluster({ cpu: 0, fsync: settings.fsync })
const load = new Child({ script: 'load.mjs', cpu: 0 })
const results = []
let storage = ''
try {
  await cluster.start()
  const { default: pg } = await import('pg')
  const { idempotencyTableSql } = await import('fastify-precondition/postgres')
  const { FLOOR_TABLE } = await import('./apps.mjs')
  const pool = new pg.Pool({ connectionString: cluster.connectionString, max: 1 })
  await pool.query(idempotencyTableSql())
  await pool.query(idempotencyTableSql(FLOOR_TABLE))
  await pool.query('CREATE TABLE bench_orders (id bigserial PRIMARY KEY, name text NOT NULL)')
  log(`PostgreSQL ${(await pool.query('SHOW server_version')).rows[0].server_version} on port ${cluster.port}, fsync ${(await pool.query('SHOW fsync')).rows[0].fsync}; ${settings.pairs} pairs of ${settings.duration} s bursts, ${settings.connections} connections`)
  for (const scenario of selected) {
    log(`${scenario.id}: ${scenario.title}`)
    results.push({ scenario, result: await runScenario(scenario, load, cluster, pool) })
  }
  await pool.query('VACUUM ANALYZE fastify_precondition_idempotency')
  const { rows: [counts] } = await pool.query(`SELECT (SELECT count(*) FROM bench_orders)::int AS orders,
  (SELECT count(*) FROM ${FLOOR_TABLE})::int AS "floorRecords",
  (SELECT count(*) FROM fastify_precondition_idempotency)::int AS records,
  pg_table_size('fastify_precondition_idempotency')::float8 AS "table", pg_indexes_size('fastify_precondition_idempotency')::float8 AS indexes`)
  storage = counts.records < 1000
    ? `${counts.records} Idempotency-Key records: too few to tell their size; ${counts.orders} orders`
    : `${counts.records} Idempotency-Key records (answers of about ${Buffer.byteLength(JSON.stringify({ id: '1', name: 'benchmark item' }))} bytes) ` +
      `take ${(counts.table / 1048576).toFixed(1)} MB of table and ${(counts.indexes / 1048576).toFixed(1)} MB of indexes: ` +
      `${Math.round((counts.table + counts.indexes) / counts.records)} bytes per record; ${counts.orders} orders`
  storage += `; ${counts.floorRecords} records in the floor's table`
  log(storage)
  await pool.end()
} finally {
  await load.stop()
  cluster.stop()
}

const pair = (a, b, digits = 0) => `${a.toFixed(digits)} / ${b.toFixed(digits)}`
const lines = [
  '| scenario | baseline | req/s ratio, median (min–max) | PostgreSQL CPU/request ratio | server CPU/request ratio | req/s (scenario / baseline) | PostgreSQL CPU µs/request | server CPU µs/request | statements (= round trips) per request | write transactions per request | WAL bytes per request | p99 ms | target | pairs used / measured |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'
]
const targetText = (targets) => targets.length === 0
  ? 'report'
  : targets.map((t) => `${t.metric === 'rps' ? 'req/s' : 'PostgreSQL CPU/req'} ${t.min !== undefined ? '≥ ' + t.min.toFixed(2) : '≤ ' + t.max.toFixed(2)}: ${t.value.toFixed(3)} ${t.met ? '✅' : '❌'}`).join('<br>')
const kindsOf = new Map() // server and keys → its statements, by kind
for (const { scenario, result } of results) {
  const warn = result.problems.length > 0 ? ` ⚠️ ${result.problems.length} bursts with unexpected statuses: ${JSON.stringify(result.problems[0])}` : ''
  lines.push(`| ${scenario.title}${warn} | ${scenario.baseline} | ${formatRatio(result.rps)} | ${formatRatio(result.pgCpu)} | ${formatRatio(result.cpu)} | ` +
    `${pair(result.a.rps, result.b.rps)} | ${pair(result.a.pgCpuPerRequest, result.b.pgCpuPerRequest)} | ${pair(result.a.cpuPerRequest, result.b.cpuPerRequest)} | ` +
    `${pair(result.a.statements, result.b.statements, 2)} | ${pair(result.a.xids, result.b.xids, 2)} | ${pair(result.a.walBytes, result.b.walBytes)} | ` +
    `${pair(result.a.p99, result.b.p99, 2)} | ${targetText(result.targets)} | ${result.used} / ${result.attempted}${result.disturbed ? ' ⚠️ disturbed' : ''} |`)
  for (const side of ['a', 'b']) {
    const name = `\`${scenario[side]}\`, ${scenario.spec.idempotencyKey === 'fresh' ? 'fresh keys' : 'replayed keys'}`
    if (!kindsOf.has(name)) kindsOf.set(name, result[side].statementKinds)
  }
}
const kindLines = [...kindsOf].map(([name, kinds]) => `- ${name}: ` +
  Object.entries(kinds).filter(([, count]) => count >= 0.005).map(([kind, count]) => `${kind} ${count.toFixed(2)}`).join(', '))
const command = 'node benchmarks/postgres.mjs' + (process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : '')
process.stdout.write(`${lines.join('\n')}\n\nStatements per request, by kind (medians over the pairs used):\n\n${kindLines.join('\n')}\n\n${storage}\n\n` +
  `fsync ${settings.fsync ? 'on' : 'off'}; ${nproc} CPUs, node ${process.version}; \`${command}\`: ${Math.round((Date.now() - started) / 1000)} s; ` +
  `load average ${loadStart.map((n) => n.toFixed(2)).join(' ')} → ${os.loadavg().map((n) => n.toFixed(2)).join(' ')}\n`)
