// The memory runs, through real HTTP, each beside the same requests to a route without the
// plugin, which tells how much of any growth is Fastify's and Node's own:
// - locks: N guarded writes (If-Match, memory lock) over K distinct keys; then the lock map must
//   be empty and RSS, after GC, within 10 MB of where it started;
// - idempotency: N POSTs, each with a fresh Idempotency-Key, over a MemoryIdempotencyStore whose
//   answers live 1 s and which sweeps every second; RSS and the record count are sampled every
//   second during the run, and read again, after GC, once every record has expired.
import { Child } from './processes.mjs'

const MB = 1048576
// Node 20's default maximum on 64-bit.
const SEMI_SPACE_MB = 16

const LOCK_SPEC = (keys) => ({ method: 'PUT', path: '/items/{key}', keys, headers: { 'content-type': 'application/json', 'if-match': '"v1"' }, body: 'small' })
const IDEMPOTENCY_SPEC = { method: 'POST', path: '/orders', keys: 1, headers: { 'content-type': 'application/json' }, body: 'small', idempotencyKey: 'fresh' }

async function one (server, { spec, writes, warmup, log, settle = 200, timeout = 900_000, sample = false }) {
  // V8 doubles its young generation (new space 16 → 32 MB) once allocation runs fast, in any
  // Fastify server, and keeps it after GC: that step is not memory the writes retained, so the
  // young generation starts at its full size here.
  const child = new Child({ script: 'server.mjs', args: [server], cpu: 1, nodeArgs: ['--expose-gc', `--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`] })
  const load = new Child({ script: 'load.mjs', cpu: 0 })
  try {
    const { port } = await child.waitFor('ready')
    const initial = await child.request('memory')
    // Warm-up over the same keys, so compiled code and Fastify's lazily built parts are in
    // place before the start is taken; the start before warm-up is reported too.
    await load.request('burst', { port, spec, amount: warmup, connections: 10 })
    const start = await child.request('memory')
    // While it runs: RSS (no GC forced) and the server's own counts, every second.
    const peak = { rss: 0, idempotencyRecords: 0 }
    let sampling = null
    if (sample) {
      sampling = setInterval(() => {
        child.request('cpu').then((reading) => {
          peak.rss = Math.max(peak.rss, reading.rss)
          peak.idempotencyRecords = Math.max(peak.idempotencyRecords, reading.idempotencyRecords ?? 0)
        }, () => {})
      }, 1000)
    }
    let burst
    try {
      burst = await load.request('burst', { port, spec, amount: writes, connections: 10 }, timeout)
    } finally {
      clearInterval(sampling)
    }
    const { result, error } = burst
    if (error) throw new Error(error)
    // Responses are in; let the last sockets close so their locks are released (and, for the
    // idempotency run, the answers expire and are swept).
    await new Promise((resolve) => setTimeout(resolve, settle))
    const end = await child.request('memory')
    log(`  ${server}: RSS ${(initial.rss / MB).toFixed(1)} MB at start, ${(start.rss / MB).toFixed(1)} MB after ${warmup} warm-up requests, ` +
      `${(end.rss / MB).toFixed(1)} MB after ${result.requests} requests at ${Math.round(result.rps)} req/s` +
      (end.lockMapSize === undefined ? '' : `; lock map ${end.lockMapSize}`) +
      (end.idempotencyRecords === undefined ? '' : `; idempotency records ${end.idempotencyRecords} (at most ${peak.idempotencyRecords} during the run, peak RSS ${(peak.rss / MB).toFixed(1)} MB)`))
    return { writes: result.requests, rps: result.rps, statusCodes: result.statusCodes, errors: result.errors, initial, start, end, ...(sample ? { peak } : {}) }
  } finally {
    await Promise.all([child.stop(), load.stop()])
  }
}

export async function runMemory ({ quick, log }) {
  const keys = quick ? 5_000 : 100_000
  const options = { spec: LOCK_SPEC(keys), writes: quick ? 50_000 : 1_000_000, warmup: quick ? 10_000 : 20_000, log }
  try {
    const plugin = await one('memory-put', options)
    const bare = await one('memory-bare', options)
    return { keys, warmup: options.warmup, semiSpaceMB: SEMI_SPACE_MB, ...plugin, bare }
  } catch (error) {
    log(`  failed: ${error.stack}`)
    return { failed: error.message }
  }
}

export async function runIdempotencyMemory ({ quick, log }) {
  // A 1 s ttl and a 1 s sweep: 2.5 s after the last request every record has expired and been
  // swept. The run is bounded in time: 5 minutes at most, or it fails.
  const options = { spec: IDEMPOTENCY_SPEC, writes: quick ? 50_000 : 1_000_000, warmup: quick ? 10_000 : 20_000, log, settle: 2500, timeout: 300_000 }
  try {
    const plugin = await one('memory-post-idempotent', { ...options, sample: true })
    const bare = await one('bare-post', options)
    return { ttlSeconds: 1, sweepIntervalMs: 1000, warmup: options.warmup, semiSpaceMB: SEMI_SPACE_MB, ...plugin, bare }
  } catch (error) {
    log(`  failed: ${error.stack}`)
    return { failed: error.message }
  }
}
