// The memory run: N guarded writes (If-Match, memory lock) over K distinct keys, through real
// HTTP; then the lock map must be empty and RSS, after GC, within 10 MB of where it started.
// The same writes against the same route without the plugin tell how much of any growth is
// Fastify's and Node's own.
import { Child } from './processes.mjs'

const MB = 1048576
// Node 20's default maximum on 64-bit.
const SEMI_SPACE_MB = 16

async function one (server, { writes, keys, warmup, log }) {
  const spec = { method: 'PUT', path: '/items/{key}', keys, headers: { 'content-type': 'application/json', 'if-match': '"v1"' }, body: 'small' }
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
    const { result, error } = await load.request('burst', { port, spec, amount: writes, connections: 10 }, 900_000)
    if (error) throw new Error(error)
    // Responses are in; let the last sockets close so their locks are released.
    await new Promise((resolve) => setTimeout(resolve, 200))
    const end = await child.request('memory')
    log(`  ${server}: RSS ${(initial.rss / MB).toFixed(1)} MB at start, ${(start.rss / MB).toFixed(1)} MB after ${warmup} warm-up writes, ` +
      `${(end.rss / MB).toFixed(1)} MB after ${result.requests} writes at ${Math.round(result.rps)} req/s` +
      (end.lockMapSize === undefined ? '' : `; lock map ${end.lockMapSize}`))
    return { writes: result.requests, rps: result.rps, statusCodes: result.statusCodes, errors: result.errors, initial, start, end }
  } finally {
    await Promise.all([child.stop(), load.stop()])
  }
}

export async function runMemory ({ quick, log }) {
  const options = { writes: quick ? 50_000 : 1_000_000, keys: quick ? 5_000 : 100_000, warmup: quick ? 10_000 : 20_000, log }
  try {
    const plugin = await one('memory-put', options)
    const bare = await one('memory-bare', options)
    return { keys: options.keys, warmup: options.warmup, semiSpaceMB: SEMI_SPACE_MB, ...plugin, bare }
  } catch (error) {
    log(`  failed: ${error.stack}`)
    return { failed: error.message }
  }
}
