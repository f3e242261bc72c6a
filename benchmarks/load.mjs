// The load generator: autocannon, driven over IPC by run.mjs, pinned by it to a CPU of its own.
// It receives one burst at a time and answers with the numbers the report needs.
import autocannon from 'autocannon'
import { BODIES } from './payloads.mjs'

const latencies = new Float64Array(4_000_000)
const bodies = new Map()
function body (name) {
  if (name === undefined) return undefined
  if (!bodies.has(name)) bodies.set(name, BODIES[name]())
  return bodies.get(name)
}

function run (options, onResponse) {
  return new Promise((resolve, reject) => {
    const instance = autocannon(options, (error, result) => error ? reject(error) : resolve(result))
    instance.on('response', onResponse)
  })
}

// A fresh Idempotency-Key per request needs a prefix no earlier burst used: servers live
// across bursts, and a repeated key would be a replay.
let bursts = 0
const loadId = process.pid.toString(36)

/**
 * Requests whose Idempotency-Key changes with every send (`spec.idempotencyKey: 'fresh'`), going
 * to `paths` in turn. autocannon rebuilds such a request per send; both sides of a pair get the
 * same requests, so the load generator does the same work whichever server it loads.
 */
function freshKeys (spec, paths, prefix) {
  let sent = 0
  let next = 0
  const headers = { ...spec.headers }
  return [{
    setupRequest (request) {
      headers['idempotency-key'] = prefix + (sent++).toString(36)
      request.headers = headers
      if (paths.length > 1) {
        request.path = paths[next]
        next = (next + 1) % paths.length
      }
      return request
    }
  }]
}

/**
 * One burst. How requests spread over resources (`spec.keys`):
 * - `'per-connection'`: each connection writes its own resource, so no two requests in flight
 *   share a lock. Run as one single-connection autocannon per resource, each with a prebuilt
 *   request, because rebuilding a request per send would make the load generator the
 *   bottleneck.
 * - a number N: requests go to N resources in turn (the memory run's distinct keys).
 * - 1: every request goes to the same resource.
 */
async function burst ({ port, spec, duration, amount, connections }) {
  const base = {
    pipelining: 1,
    // A fixed number of requests (the memory run) or a fixed time (every burst).
    ...(amount === undefined ? { duration } : { amount }),
    sampleInt: 100,
    method: spec.method,
    headers: spec.headers,
    body: body(spec.body)
  }
  const url = (key) => `http://127.0.0.1:${port}${spec.path.replace('{key}', String(key))}`
  // Idempotency-Key (`spec.idempotencyKey`): 'fresh' a new one per request; 'per-connection' one
  // per connection, the same in every burst, so after the first request each is a replay.
  const burstId = `${loadId}.${(bursts++).toString(36)}.`
  const keyed = (key, options) => {
    if (spec.idempotencyKey === 'per-connection') return { ...options, headers: { ...spec.headers, 'idempotency-key': `replay-${key}` } }
    if (spec.idempotencyKey === 'fresh') {
      const paths = !(spec.keys > 1) || !spec.path.includes('{key}') ? [] : Array.from({ length: spec.keys }, (_, i) => spec.path.replace('{key}', String(i)))
      return { ...options, requests: freshKeys(spec, paths, `${burstId}${key}.`) }
    }
    return options
  }
  let runs
  if (spec.keys === 'per-connection') {
    runs = Array.from({ length: connections }, (_, key) => keyed(key, { ...base, url: url(key), connections: 1 }))
  } else if (spec.keys > 1 && spec.idempotencyKey === 'fresh') {
    runs = [keyed(0, { ...base, url: url(0), connections })]
  } else if (spec.keys > 1) {
    let next = 0
    runs = [{
      ...base,
      url: url(0),
      connections,
      requests: [{
        setupRequest (request) {
          request.path = spec.path.replace('{key}', String(next))
          next = (next + 1) % spec.keys
          return request
        }
      }]
    }]
  } else {
    runs = [keyed(0, { ...base, url: url(0), connections })]
  }

  // autocannon's histogram keeps whole milliseconds; loopback latencies need microseconds.
  let count = 0
  const onResponse = (_client, _status, _bytes, milliseconds) => {
    if (count < latencies.length) latencies[count++] = milliseconds
  }
  const cpuBefore = process.cpuUsage()
  const results = await Promise.all(runs.map((options) => run(options, onResponse)))
  const cpu = process.cpuUsage(cpuBefore)

  const sorted = latencies.subarray(0, count).sort()
  const percentile = (p) => count === 0 ? NaN : sorted[Math.min(count - 1, Math.floor(p * count))]
  const statusCodes = {}
  let requests = 0
  let errors = 0
  let timeouts = 0
  for (const result of results) {
    requests += result.requests.total
    errors += result.errors
    timeouts += result.timeouts
    for (const [code, { count }] of Object.entries(result.statusCodeStats)) statusCodes[code] = (statusCodes[code] ?? 0) + count
  }
  const seconds = Math.max(...results.map((result) => result.duration))
  return {
    requests,
    seconds,
    rps: requests / seconds,
    p99: percentile(0.99),
    p50: percentile(0.5),
    statusCodes,
    errors,
    timeouts,
    // Its own CPU time, so the parent can tell what else ran on this CPU meanwhile.
    cpuMicros: cpu.user + cpu.system
  }
}

process.on('message', async (message) => {
  if (message.type === 'burst') {
    try {
      process.send({ type: 'burst', id: message.id, result: await burst(message) })
    } catch (error) {
      process.send({ type: 'burst', id: message.id, error: error.message })
    }
  } else if (message.type === 'stop') {
    // Not from inside the message handler: Node then throws on messages still queued on the
    // channel (TypeError: Cannot set properties of null, setting kPendingMessages).
    setImmediate(() => process.disconnect())
  }
})
process.on('disconnect', () => process.exit(0))
