// Leases that are lost, against a real redis-server on loopback: the fenced counter service of
// examples/fenced.js (the built package), three instances in separate processes.
// - The instance holding a lock is stopped (SIGSTOP) for 2.5 times the lease's ttl while the others
//   write, then resumed: its late write is refused by the fence and no acknowledged update is
//   lost; the same write under the lock alone, without the fence, overwrites the others'.
// - A lease key deleted under a running write: the handler sees `request.lock.signal` aborted
//   within one renewal interval, and the loss is logged through the request's logger, also when
//   only the release finds it.
// - Redis stopped and started again on the same port while clients write: only 503 problems
//   meanwhile, service resumes by itself, nothing lost.
// - `node examples/fenced.js`: the printed commands do what they say; without a Redis it says how
//   to start one.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { encodeResourceKey } from 'fastify-precondition/redis'
import { test, type Test } from 'tap'
import { send, sleep, type HttpResponse } from './helpers/http.js'
import { hasRedisServer, REDIS_MISSING, RedisServer, startRedis } from './helpers/redis-server.js'
import { stopChild } from './helpers/child.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

const example = fileURLToPath(new URL('../examples/fenced.js', import.meta.url))
const instanceScript = fileURLToPath(new URL('./helpers/fenced-instance.ts', import.meta.url))
const TTL = 1000
const PAUSE = 2500
const LOCK_LOST = 'FST_PRECONDITION_LOCK_LOST'

interface Instance {
  child: ChildProcess
  port: number
  /** The JSON log lines the instance printed so far. */
  logs: any[]
}

async function until (what: string, condition: () => boolean, limit = 5000): Promise<void> {
  const end = Date.now() + limit
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

async function startInstances (t: Test, redisPort: number, count: number): Promise<Instance[]> {
  const instances: Instance[] = []
  t.teardown(async () => {
    await Promise.all(instances.map(({ child }) => stopChild(child)))
  })
  return Promise.all(Array.from({ length: count }, async () => {
    const child = fork(instanceScript, {
      env: { ...process.env, REDIS_PORT: String(redisPort), FENCE_TTL: String(TTL) },
      stdio: ['ignore', 'pipe', 'inherit', 'ipc']
    })
    const instance: Instance = { child, port: 0, logs: [] }
    instances.push(instance)
    let rest = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (rest + chunk.toString()).split('\n')
      rest = lines.pop()!
      for (const line of lines) if (line.startsWith('{')) instance.logs.push(JSON.parse(line))
    })
    const [message] = await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => { throw new Error(`instance exited with ${String(code)} before listening`) })
    ])
    instance.port = (message as { port: number }).port
    return instance
  }))
}

interface Tally {
  /** Increments answered 2xx. */
  acknowledged: number
  /** Every answer: when, to which method, its status, and whether a non-2xx one was a problem. */
  answers: Array<{ at: number, method: string, status: number, problem: boolean, retryAfter: boolean }>
}

const isProblem = (response: HttpResponse) => /^application\/problem\+json/.test(String(response.headers['content-type']))

function note (tally: Tally, method: string, response: HttpResponse): void {
  tally.answers.push({ at: Date.now(), method, status: response.status, problem: isProblem(response), retryAfter: response.headers['retry-after'] === '1' })
}

/**
 * One client on one instance, incrementing `path` (read, then PUT the value + 1 with If-Match)
 * until `stop.done`, at most `max` times; after anything but a 2xx it reads again and retries.
 */
async function incrementer (port: number, path: string, stop: { done: boolean }, max = 1000): Promise<Tally> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const tally: Tally = { acknowledged: 0, answers: [] }
  try {
    while (!stop.done && tally.acknowledged < max && tally.answers.length < 4 * max) {
      const read = await send(port, { path, agent })
      if (read.status !== 200) {
        note(tally, 'GET', read)
        await sleep(20)
        continue
      }
      const write = await send(port, { method: 'PUT', path, agent, headers: { 'if-match': read.headers.etag as string }, body: { value: read.json().value + 1 } })
      note(tally, 'PUT', write)
      if (write.status >= 200 && write.status < 300) tally.acknowledged++
      else await sleep(write.status === 412 ? Math.random() * 3 : 20)
    }
  } finally {
    agent.destroy()
  }
  return tally
}

function statuses (tallies: Tally[], method: string): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const { answers } of tallies) {
    for (const answer of answers) if (answer.method === method) counts[answer.status] = (counts[answer.status] ?? 0) + 1
  }
  return counts
}

async function create (port: number, path: string): Promise<void> {
  const created = await send(port, { method: 'PUT', path, headers: { 'if-none-match': '*' }, body: { value: 0 } })
  if (created.status !== 201 && created.status !== 200) throw new Error(`creating ${path}: ${created.status} ${created.body}`)
}

/**
 * One write to the first instance stalls once it holds the lock, and that instance is stopped for
 * PAUSE ms, then resumed; six clients (two per instance) increment `path` meanwhile.
 *
 * The stalled write is sent before the clients start: with six clients incrementing, a read and a
 * conditional write from outside them can lose to them every time on a slow machine, and the test
 * would wait for a stall that never comes.
 */
async function pauseTheHolder (instances: Instance[], path: string) {
  const [holder] = instances
  await create(holder.port, path)
  const stop = { done: false }
  let clients: Array<Promise<Tally>> = []

  let stoppedAt = 0
  let token = 0
  const onMessage = (message: { stalled?: number }) => {
    if (message.stalled === undefined || stoppedAt !== 0) return
    process.kill(holder.child.pid!, 'SIGSTOP')
    stoppedAt = Date.now()
    token = message.stalled
  }
  holder.child.on('message', onMessage)
  try {
    // The stalled write: its handler blocks its process for 700 ms before committing (well inside
    // the lease), so the stop lands while it holds the lock and before it has committed.
    const read = await send(holder.port, { path })
    const marked = send(holder.port, { method: 'PUT', path, headers: { 'if-match': read.headers.etag as string, 'x-stall': '700' }, body: { value: read.json().value + 1 } })
    marked.catch(() => {}) // awaited below; a failure before then must not be unhandled
    await Promise.race([
      until('the stalled write to hold the lock', () => stoppedAt !== 0, 15_000),
      marked.then((write) => { throw new Error(`the stalled write was answered ${write.status} before it stalled: ${write.body}`) })
    ])
    clients = instances.flatMap(({ port }) => [incrementer(port, path, stop), incrementer(port, path, stop)])
    await sleep(PAUSE)
    const continuedAt = Date.now()
    process.kill(holder.child.pid!, 'SIGCONT')
    const late = await marked
    const answeredAfter = Date.now() - continuedAt
    await sleep(500)
    stop.done = true
    const tallies = await Promise.all(clients)
    const acknowledged = tallies.reduce((sum, tally) => sum + tally.acknowledged, 0) + (late.status < 300 ? 1 : 0)
    const duringPause = tallies.flatMap((tally) => tally.answers)
      .filter((answer) => answer.method === 'PUT' && answer.status < 300 && answer.at > stoppedAt && answer.at < continuedAt).length
    return { late, token, acknowledged, duringPause, tallies, answeredAfter, pausedFor: continuedAt - stoppedAt }
  } finally {
    holder.child.off('message', onMessage)
    // On a failure above: let the process run again and the clients end, so that nothing is left
    // pending when the instances are stopped.
    if (stoppedAt !== 0) process.kill(holder.child.pid!, 'SIGCONT')
    stop.done = true
    await Promise.allSettled(clients)
  }
}

test('fenced writes across three processes sharing Redis', { skip }, async (t) => {
  // Persistent (AOF, fsync on every write), so that a restart keeps the counters and fence
  // counters, as a production Redis holding them must.
  const dir = mkdtempSync(join(tmpdir(), 'fence-redis-'))
  const server = new RedisServer(['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir])
  await server.start()
  const redis = new Redis({ port: server.port, host: '127.0.0.1' })
  redis.on('error', () => {})
  t.teardown(async () => {
    redis.disconnect()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const instances = await startInstances(t, server.port, 3)
  const value = async (key: string) => Number(await redis.hget(key, 'value'))

  t.test(`the lock holder stopped for ${PAUSE} ms (ttl ${TTL} ms): the fence refuses its late write, nothing is lost`, async (t) => {
    const run = await pauseTheHolder(instances, '/counters/paused')
    const final = await value('fenced:counter:paused')
    t.ok(run.duringPause > 0, `the other instances wrote ${run.duringPause} times while the holder was stopped (${run.pausedFor} ms)`)
    t.equal(run.late.status, 409, `the late write was refused, answered ${run.answeredAfter} ms after it resumed`)
    t.match(run.late.headers['content-type'], /^application\/problem\+json/)
    t.match(run.late.json(), { status: 409, code: 'STALE_FENCING_TOKEN', token: run.token })
    t.ok(run.late.json().fence > run.token, `by a fence (${run.late.json().fence}) newer than its token (${run.token})`)
    t.equal(final, run.acknowledged, `final value ${final} == ${run.acknowledged} acknowledged increments`)
    const writes = statuses(run.tallies, 'PUT')
    t.same(Object.keys(writes).filter((status) => !['200', '409', '412'].includes(status)), [], `the clients' writes: ${JSON.stringify(writes)}`)
    await until('the stopped instance to log the lost lease', () => instances[0].logs.some((line) => line.code === LOCK_LOST), 5000)
    const lost = instances[0].logs.find((line) => line.code === LOCK_LOST)
    t.match(lost, { level: 50, key: '/counters/:id\nid=6:paused', route: 'PUT /counters/:id' }, `logged by the stopped instance: ${String(lost.err.message)}`)
    t.equal(typeof lost.reqId, 'string', 'through the request\'s logger')
    let locks: string[] = ['?']
    for (let waited = 0; locks.length > 0 && waited < 2 * TTL; waited += 50) {
      // A resource's key outlives its lease (it keeps the fence): a lock is a key with an owner.
      const keys = await redis.keys('fastify-precondition:lock:*')
      locks = []
      for (const key of keys) if (await redis.hexists(key, 'owner') === 1) locks.push(key)
      if (locks.length > 0) await sleep(50)
    }
    t.same(locks, [], 'no lock left behind')
  })

  t.test('the same stop without the fence: the lock alone lets the late write overwrite others', async (t) => {
    const run = await pauseTheHolder(instances, '/plain/counters/paused')
    const final = await value('plain:counter:paused')
    t.ok(run.duringPause > 0, `the other instances wrote ${run.duringPause} times while the holder was stopped (${run.pausedFor} ms)`)
    t.equal(run.late.status, 200, 'the late write went through: its signal was not aborted yet when it checked')
    t.ok(final < run.acknowledged, `final value ${final} < ${run.acknowledged} acknowledged increments: ${run.acknowledged - final} lost`)
  })

  t.test('Redis stopped and started again while clients write: 503 problems meanwhile, then service resumes, nothing lost', async (t) => {
    const path = '/counters/restart'
    await create(instances[0].port, path)
    const stop = { done: false }
    const clients = instances.flatMap(({ port }) => [incrementer(port, path, stop), incrementer(port, path, stop)])
    // The clients above always have a request in flight, and one whose Redis command was on its
    // way when Redis went down waits for the reconnection (ioredis resends it). Requests that
    // arrive during the outage are the ones answered 503: send one every 40 ms besides.
    const probes: Array<Promise<Tally>> = []
    const probing = (async () => {
      for (let n = 0; !stop.done && n < 150; n++) {
        probes.push(incrementer(instances[n % 3].port, path, { done: false }, 1).then(undefined, () => ({ acknowledged: 0, answers: [] })))
        await sleep(40)
      }
    })()
    await sleep(500)
    const stoppedAt = Date.now()
    await server.stop()
    await sleep(1000)
    await server.start()
    const startedAt = Date.now()
    // ioredis reconnects with a growing delay (50 ms more per attempt): give it time, then some.
    await sleep(3000)
    stop.done = true
    await probing
    const live = [...await Promise.all(clients), ...await Promise.all(probes)]
    const answers = live.flatMap((tally) => tally.answers)
    const acknowledged = live.reduce((sum, tally) => sum + tally.acknowledged, 0)
    const unavailable = answers.filter((answer) => answer.status === 503)
    const resumed = answers.find((answer) => answer.method === 'PUT' && answer.status < 300 && answer.at > startedAt)
    t.ok(unavailable.length > 0, `${unavailable.length} answers were 503`)
    t.ok(unavailable.every((answer) => answer.problem && answer.retryAfter), 'every 503 a problem with Retry-After')
    t.same(Object.keys(statuses(live, 'GET')).filter((status) => status !== '503'), [], `reads that failed: ${JSON.stringify(statuses(live, 'GET'))}`)
    const writes = statuses(live, 'PUT')
    t.same(Object.keys(writes).filter((status) => !['200', '409', '412', '503'].includes(status)), [], `writes: ${JSON.stringify(writes)}`)
    t.ok(resumed !== undefined, `service resumed by itself: first write ${resumed === undefined ? '-' : resumed.at - startedAt} ms after Redis was back`)
    const first = Math.min(...unavailable.map((answer) => answer.at))
    const last = Math.max(...unavailable.map((answer) => answer.at))
    t.ok(last - startedAt < 3000, `Redis down ${startedAt - stoppedAt} ms; 503s from ${first - stoppedAt} ms after the stop until ${last - startedAt} ms after the start`)
    t.equal(await value('fenced:counter:restart'), acknowledged, `final value == ${acknowledged} acknowledged increments`)
  })
})

interface Stalled {
  lock: { key: string, token: number, signal: AbortSignal }
  /** Lets the write go on to its commit. */
  proceed: () => void
}

/**
 * The fenced example in this process, over HTTP, logging into `logs`. A write carrying `x-hold`
 * resolves `held` with its lock once it is under it, and waits for `proceed()` before committing.
 */
async function fencedApp (t: Test, redis: Redis, ttl: number) {
  const { buildFencedApp } = await import(example)
  const logs: any[] = []
  let onHold: (stalled: Stalled) => void = () => {}
  const held = new Promise<Stalled>((resolve) => { onHold = resolve })
  const app = await buildFencedApp({
    redis,
    ttl,
    prefix: `fenced-${ttl}:`,
    logger: { level: 'info', stream: { write: (line: string) => { logs.push(JSON.parse(line)) } } },
    beforeCommit: (request: any) => {
      if (request.headers['x-hold'] === undefined) return
      return new Promise<void>((resolve) => onHold({ lock: request.lock, proceed: resolve }))
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const port = app.server.address().port as number
  await create(port, '/counters/held')
  const write = send(port, { method: 'PUT', path: '/counters/held', headers: { 'if-match': '"v1"', 'x-hold': '1' }, body: { value: 1 } })
  return { port, logs, held, write }
}

/** The request id of the held write: the last PUT to `/counters/held` (the first one created it). */
const writeId = (logs: any[]) => logs.filter((line) => line.msg === 'incoming request' && line.req.method === 'PUT' && line.req.url === '/counters/held').at(-1)?.reqId

test('a lease deleted under a running write, through the plugin and a real Redis', { skip }, async (t) => {
  const { server, redis } = await startRedis(t, Redis)

  t.test('found by the next renewal: the handler sees the signal aborted within one renewal interval, and writes nothing', async (t) => {
    const ttl = 1500 // renewed every 500 ms
    const { logs, held, write } = await fencedApp(t, redis, ttl)
    const { lock, proceed } = await held
    let abortedAt = 0
    lock.signal.addEventListener('abort', () => { abortedAt = Date.now() })
    t.equal(await redis.del(`fastify-precondition:lock:{${encodeResourceKey(lock.key)}}`), 1, 'the lease key deleted, as an eviction or a failover would')
    const deletedAt = Date.now()
    await until('the signal to abort', () => abortedAt !== 0, ttl + 2000)
    const within = Math.floor(ttl / 3)
    t.ok(abortedAt - deletedAt <= within + 500, `aborted ${abortedAt - deletedAt} ms after the deletion (renewal interval ${within} ms)`)
    proceed()
    const response = await write
    t.equal(response.status, 503, 'the handler saw request.lock.signal.aborted and wrote nothing')
    t.match(response.json(), { status: 503, code: LOCK_LOST })
    t.equal(response.headers['retry-after'], '1')
    t.same(await redis.hmget('fenced-1500:counter:held', 'value', 'version'), ['0', '1'], 'the counter is unchanged')
    const lost = logs.find((line) => line.code === LOCK_LOST)
    t.match(lost, { level: 50, key: lock.key, route: 'PUT /counters/:id', err: { message: /a renewal found the key expired or held by another/ } }, 'logged with its code, key and route')
    t.equal(lost.reqId, writeId(logs), 'through the request\'s logger')
  })

  t.test('found only at release: the write committed, and the loss is logged once the lease is given back', async (t) => {
    const ttl = 60_000 // no renewal during the test: only the release can find the loss
    const { logs, held, write } = await fencedApp(t, redis, ttl)
    const { lock, proceed } = await held
    await redis.del(`fastify-precondition:lock:{${encodeResourceKey(lock.key)}}`)
    proceed()
    const response = await write
    t.equal(response.status, 200, 'nothing told the handler: it committed (nobody else wrote, so the fence let it)')
    await until('the release to find the loss', () => logs.some((line) => line.code === LOCK_LOST), 3000)
    t.equal(lock.signal.aborted, true, 'the signal aborted at release')
    const lost = logs.find((line) => line.code === LOCK_LOST)
    t.match(lost, { level: 50, key: lock.key, route: 'PUT /counters/:id', err: { message: /at release, the key was found expired or held by another/ } }, 'logged with its code, key and route')
    t.equal(lost.reqId, writeId(logs), 'through the request\'s logger')
  })

  t.test('node examples/fenced.js: the printed commands do what they say', async (t) => {
    const child = spawn(process.execPath, [example], {
      env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${server.port}`, PORT: '0', HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'inherit']
    })
    t.teardown(() => { child.kill('SIGTERM') })
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the example did not start within 30 s:\n${output}`)), 30_000)
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('# 200: the next value')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', (code) => reject(new Error(`the example exited with ${String(code)}`)))
    })
    await sleep(100) // the rest of the printout
    // Each "# NNN" comment, then its curl command: run them in order, and the last one again.
    const steps = [...output.matchAll(/# (\d{3})\b.*\n\s*curl -i (?:-X (\w+) )?(\S+)((?: -H '[^']*')*)(?: -d '([^']*)')?/g)]
    t.same(steps.map(([, status]) => status), ['200', '428', '200'], 'three commands printed')
    const expected = [200, 428, 200, 412]
    for (const [index, [, , method = 'GET', url, headers, body]] of [...steps, steps[2]].entries()) {
      const { port, pathname } = new URL(url)
      const sent = Object.fromEntries([...headers.matchAll(/-H '([^:]+): ([^']*)'/g)].map(([, name, value]) => [name.toLowerCase(), value]))
      delete sent['content-type'] // send() sets it with the body
      const response = await send(Number(port), { method, path: pathname, headers: sent, body: body === undefined ? undefined : JSON.parse(body) })
      t.equal(response.status, expected[index], `${method} ${pathname} ${JSON.stringify(sent)}`)
    }
  })

  t.test('node examples/fenced.js without a Redis: it says how to start one', async (t) => {
    const child = spawn(process.execPath, [example], { env: { ...process.env, REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
    let errors = ''
    child.stderr.on('data', (chunk: Buffer) => { errors += chunk.toString() })
    const [code] = await once(child, 'exit')
    t.equal(code, 1)
    t.match(errors, /No Redis at redis:\/\/127\.0\.0\.1:1/)
    t.match(errors, /redis-server --port 6379/)
  })
})
