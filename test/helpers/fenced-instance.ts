// One instance of the fenced counter service (examples/fenced.js, from the built package) for the
// fencing tests, with a lease ttl of FENCE_TTL ms. Started with fork(); reports its port over IPC,
// logs warnings and errors as JSON lines on stdout, and stops on 'close'.
//
// A write that carries `x-stall: <ms>` tells the parent { stalled: token } once it holds the lock
// and then waits that long before it commits: the parent stops the process meanwhile.
//
// Beside it, /plain/counters/:id is the same write under the same lock without the fence (a plain
// HSET), to show what the lock alone gives when a lease is lost.
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import type { RequestLock } from '../../lib/index.js'

const example = fileURLToPath(new URL('../../examples/fenced.js', import.meta.url))
const { buildFencedApp } = await import(example)

const redis = new Redis({ port: Number(process.env.REDIS_PORT), host: '127.0.0.1' })
redis.on('error', () => {}) // the restart test stops Redis on purpose; ioredis reconnects

function beforeCommit (request: FastifyRequest): void {
  const stall = request.headers['x-stall']
  if (typeof stall !== 'string') return
  process.send!({ stalled: (request.lock as RequestLock).token })
  // Blocks the thread for that long, as a stop-the-world pause would: no timer or socket of this
  // process is served meanwhile, so it cannot learn that its lease was lost before it commits.
  // The parent stops the process during the block (the message above is written to the pipe
  // before send returns), and the block ends as soon as the process runs again.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(stall))
}

const app: FastifyInstance = await buildFencedApp({ redis, ttl: Number(process.env.FENCE_TTL), logger: { level: 'warn' }, beforeCommit })

const plainKey = (request: FastifyRequest) => `plain:counter:${(request.params as { id: string }).id}`
async function plainRead (request: FastifyRequest) {
  const [value, version] = await redis.hmget(plainKey(request), 'value', 'version')
  return version === null ? null : { value: Number(value), version: Number(version) }
}
const plainValidators = async (request: FastifyRequest) => {
  const counter = await plainRead(request)
  return counter === null ? null : { etag: `"v${counter.version}"` }
}
app.get('/plain/counters/:id', { concurrency: { validators: plainValidators } }, async (request, reply) => {
  const counter = await plainRead(request)
  return counter === null ? reply.code(404).send({}) : { value: counter.value }
})
app.put('/plain/counters/:id', { concurrency: { require: ['if-match', 'if-none-match'], validators: plainValidators } }, async (request: FastifyRequest, reply: FastifyReply) => {
  beforeCommit(request)
  // The same check of the signal as the fenced route: a lease the store knows is lost writes nothing.
  if ((request.lock as RequestLock).signal.aborted) return reply.code(503).send({ status: 503 })
  const { value } = request.body as { value: number }
  const [[, version]] = await redis.multi().hincrby(plainKey(request), 'version', 1).hset(plainKey(request), 'value', value).exec() as [[null, number]]
  reply.header('etag', `"v${version}"`)
  return { value }
})

await app.listen({ port: 0, host: '127.0.0.1' })
process.send!({ port: (app.server.address() as { port: number }).port })
process.on('message', async (message) => {
  if (message !== 'close') return
  await app.close()
  redis.disconnect()
  process.disconnect()
})
