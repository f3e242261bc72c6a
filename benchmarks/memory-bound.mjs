// node benchmarks/memory-bound.mjs [--requests=50000] [--unbounded]
//
// The memory bound of the default idempotency store, through real HTTP: a server with the
// plugin's default idempotency options (a MemoryIdempotencyStore with no options: 64 MiB of
// records, 100,000 records, answers kept 24 h) runs under `node --max-old-space-size=256`, and
// gets N POSTs, each with its own Idempotency-Key and a 10 KB answer of its own (N × 10 KB is
// far more than the old space). Then:
// - the server is alive and answers;
// - what the run kept is within the store's bound: the heap used after GC grew by at most
//   maxBytes and 10% from where it was after a warm-up of requests without a key, and the RSS
//   after GC by at most twice maxBytes (V8 keeps the old-space pages that evicted answers freed:
//   its heap total stays above the heap used after GC);
// - the 100 most recent keys replay (`Idempotent-Replayed: true`, the first answer's id), and
//   the first key, long evicted, runs again.
// `--unbounded` runs the same with bounds no run reaches, to show what the bound prevents.
// Bounded in time: 5 minutes for the load, or it fails. `npm run build` first (it loads dist/).
import { fork } from 'node:child_process'
import { once } from 'node:events'
import http from 'node:http'
import v8 from 'node:v8'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const MB = 1048576
const { values: args } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    unbounded: { type: 'boolean', default: false },
    requests: { type: 'string', default: '50000' },
    connections: { type: 'string', default: '10' }
  }
})

async function serve () {
  const { default: Fastify } = await import('fastify')
  const { default: fastifyPrecondition, MemoryIdempotencyStore } = await import('fastify-precondition')
  // The options the plugin's own default store has (none); passed in only so that its size can
  // be read. `--unbounded`: bounds no run reaches.
  const store = args.unbounded
    ? new MemoryIdempotencyStore({ maxBytes: Number.MAX_SAFE_INTEGER, maxRecords: Number.MAX_SAFE_INTEGER })
    : new MemoryIdempotencyStore()
  let warnings = 0
  process.on('warning', (warning) => { if (warning.code === 'FST_PRECONDITION_IDEMPOTENCY_EVICTED') warnings++ })
  const app = Fastify({ logger: false })
  await app.register(fastifyPrecondition, { idempotencyStore: store })
  // A 10 KB answer of its own per order: serialized per request, so no two records share it.
  const filler = 'x'.repeat(10 * 1024)
  let orders = 0
  app.post('/orders', { concurrency: { idempotency: true } }, async (request, reply) => {
    reply.code(201)
    return { id: String(++orders), name: request.body.name, filler }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const stats = () => ({ records: store.size, bytes: store.bytes, maxBytes: store.maxBytes, warnings, orders })
  process.on('message', async (message) => {
    if (message.type === 'memory') {
      globalThis.gc()
      await new Promise((resolve) => setTimeout(resolve, 50))
      globalThis.gc()
      const { rss, heapUsed, heapTotal, external } = process.memoryUsage()
      process.send({ type: 'memory', rss, heapUsed, heapTotal, external, heapLimit: v8.getHeapStatistics().heap_size_limit, ...stats() })
    } else if (message.type === 'sample') {
      process.send({ type: 'sample', rss: process.memoryUsage.rss(), ...stats() })
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ type: 'ready', port: app.server.address().port })
}

function ask (child, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(message)
    }
    const onExit = (code, signal) => reject(new Error(`the server exited (${signal ?? code})`))
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send({ type })
  })
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Number(args.connections) })
const BODY = JSON.stringify({ name: 'book' })

function post (port, key) {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) }
    if (key !== undefined) headers['idempotency-key'] = key
    const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/orders', agent, headers }, (response) => {
      const chunks = []
      response.on('data', (chunk) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks) }))
      response.on('error', reject)
    })
    request.on('error', reject)
    request.end(BODY)
  })
}

const idOf = (answer) => JSON.parse(answer.body.toString()).id
let answered = 0

async function load (port, total, keyOf, deadline, onAnswer) {
  let next = 0
  const statuses = {}
  const worker = async () => {
    while (next < total) {
      if (Date.now() > deadline) throw new Error(`the load did not finish within its time (${next} of ${total} sent)`)
      const i = next++
      const answer = await post(port, keyOf(i))
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1
      answered++
      onAnswer?.(i, answer)
    }
  }
  await Promise.all(Array.from({ length: Number(args.connections) }, worker))
  return statuses
}

async function main () {
  const requests = Number(args.requests)
  const nodeArgs = ['--max-old-space-size=256', '--expose-gc']
  const child = fork(fileURLToPath(import.meta.url), ['--serve', ...(args.unbounded ? ['--unbounded'] : [])], { execArgv: nodeArgs, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let peak = 0
  let sampler = null
  try {
    const [ready] = await Promise.race([once(child, 'message'), once(child, 'exit').then(([code]) => { throw new Error(`the server exited with ${code}`) })])
    const { port } = ready
    const initial = await ask(child, 'memory')
    await load(port, 5000, () => undefined, Date.now() + 60_000)
    const baseline = await ask(child, 'memory')
    sampler = setInterval(() => { ask(child, 'sample').then((s) => { peak = Math.max(peak, s.rss) }, () => {}) }, 500)
    const recent = new Map()
    answered = 0
    const started = Date.now()
    const statuses = await load(port, requests, (i) => `bound-${i}`, started + 300_000, (i, answer) => {
      if (i >= requests - 100) recent.set(i, idOf(answer))
    })
    const seconds = (Date.now() - started) / 1000
    clearInterval(sampler)
    const end = await ask(child, 'memory')
    const alive = child.exitCode === null && child.signalCode === null
    let replayed = 0
    for (const [i, id] of recent) {
      const answer = await post(port, `bound-${i}`)
      if (answer.status === 201 && answer.headers['idempotent-replayed'] === 'true' && idOf(answer) === id) replayed++
    }
    const first = await post(port, 'bound-0')
    const firstRanAgain = first.status === 201 && first.headers['idempotent-replayed'] === undefined
    const growth = end.rss - baseline.rss
    const allowed = end.maxBytes * 2
    const heapGrowth = end.heapUsed - baseline.heapUsed
    const heapAllowed = end.maxBytes * 1.1
    const checks = {
      alive,
      heap: heapGrowth <= heapAllowed,
      rss: growth <= allowed,
      replayed: replayed === recent.size && recent.size === 100,
      evicted: args.unbounded || firstRanAgain
    }
    const mb = (bytes) => (bytes / MB).toFixed(1)
    console.log(`node ${nodeArgs.join(' ')}${args.unbounded ? ', unbounded store' : ', default idempotency options'} (heap limit ${mb(end.heapLimit)} MB): ` +
      `${requests.toLocaleString('en')} POSTs with distinct keys and 10 KB answers over ${args.connections} connections in ${seconds.toFixed(1)} s ` +
      `(${Math.round(requests / seconds)} req/s; statuses ${JSON.stringify(statuses)})`)
    console.log(`  alive: ${alive ? 'yes ✅' : 'no ❌'}; records kept ${end.records.toLocaleString('en')}, counted ${mb(end.bytes)} MB of maxBytes ${mb(end.maxBytes)} MB; ` +
      `eviction warnings ${end.warnings}`)
    console.log(`  after GC, from the end of 5,000 warm-up POSTs without a key to the end of the run: heap used ${mb(baseline.heapUsed)} → ${mb(end.heapUsed)} MB ` +
      `(+${mb(heapGrowth)} MB, allowed +${mb(heapAllowed)} MB ${checks.heap ? '✅' : '❌'}), RSS ${mb(baseline.rss)} → ${mb(end.rss)} MB ` +
      `(+${mb(growth)} MB, allowed +${mb(allowed)} MB ${checks.rss ? '✅' : '❌'}), heap total ${mb(baseline.heapTotal)} → ${mb(end.heapTotal)} MB, ` +
      `external ${mb(baseline.external)} → ${mb(end.external)} MB; RSS ${mb(initial.rss)} MB at start, at most ${mb(peak)} MB during the run`)
    console.log(`  the 100 most recent keys replayed: ${replayed} of ${recent.size} ${checks.replayed ? '✅' : '❌'}; ` +
      `the first key ${firstRanAgain ? 'ran again (evicted)' : 'replayed'}${args.unbounded ? '' : checks.evicted ? ' ✅' : ' ❌'}`)
    return Object.values(checks).every(Boolean) ? 0 : 1
  } catch (error) {
    await Promise.race([once(child, 'exit'), new Promise((resolve) => setTimeout(resolve, 2000))])
    console.log(`failed after ${answered.toLocaleString('en')} keyed answers: ${error.message}; the server ${child.signalCode ?? (child.exitCode === null ? 'is still running' : `exited with ${child.exitCode}`)}`)
    return 1
  } finally {
    clearInterval(sampler)
    agent.destroy()
    if (child.exitCode === null && child.signalCode === null) {
      child.disconnect()
      await once(child, 'exit')
    }
  }
}

if (args.serve) await serve()
else process.exitCode = await main()
