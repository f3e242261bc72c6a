// One app instance for the failover tests: POST /orders/:key with the Redis idempotency store
// (and the lock store) on a Sentinel or Cluster client. Each handler run appends its key to
// RUNS_FILE (the side channel the test counts runs per key in, across processes) and takes 300 ms.
// Started with fork(); reports its port over IPC, stops on 'close'.
// Env: SENTINELS (JSON addresses) and SENTINEL_NAME, or CLUSTER (JSON startup nodes); REPLICAS;
// LEASE; RUNS_FILE; FINGERPRINTS=1 passes each claim's fingerprint to complete and renew, as the
// plugin does once its claim follows the store contract's new argument.
import { appendFileSync } from 'node:fs'
import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import fastifyPrecondition from '../../lib/index.js'
import { redisIdempotencyStore, redisLockStore } from '../../lib/redis.js'
import type { IdempotencyStore, StoredResponse } from '../../lib/idempotency/store.js'

const replicas = Number(process.env.REPLICAS ?? 0)
const client = process.env.CLUSTER !== undefined
  ? new Cluster(JSON.parse(process.env.CLUSTER) as Array<{ host: string, port: number }>)
  : new Redis({ sentinels: JSON.parse(process.env.SENTINELS as string) as Array<{ host: string, port: number }>, name: process.env.SENTINEL_NAME })
client.on('error', () => {}) // reconnections during the failover are expected

const store = redisIdempotencyStore({ client, replicas, lease: Number(process.env.LEASE ?? 2000) })
const fingerprints = new Map<string, string>()
const idempotencyStore: IdempotencyStore = process.env.FINGERPRINTS !== '1'
  ? store
  : {
      lease: store.lease,
      maxAnswerBytes: store.maxAnswerBytes,
      claim (key, fingerprint, leaseMs) {
        fingerprints.set(key, fingerprint)
        return store.claim(key, fingerprint, leaseMs)
      },
      complete: (key: string, token: string, response: StoredResponse, ttlMs: number) => store.complete(key, token, response, ttlMs, fingerprints.get(key)),
      release: (key, token) => store.release(key, token),
      renew: (key: string, token: string, leaseMs: number) => store.renew(key, token, leaseMs, fingerprints.get(key))
    }
const app = Fastify()
await app.register(fastifyPrecondition, {
  lockStore: redisLockStore({ client, replicas }),
  idempotencyStore,
  lockTimeout: 5000
})
app.post('/orders/:key', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
  const { key } = request.params as { key: string }
  appendFileSync(process.env.RUNS_FILE as string, `${key}\n`)
  await new Promise((resolve) => setTimeout(resolve, 300))
  return reply.code(201).send({ key, pid: process.pid, at: Date.now() })
})
await app.listen({ host: '127.0.0.1', port: 0 })
process.send!({ port: (app.server.address() as { port: number }).port })
process.on('message', async (message) => {
  if (message !== 'close') return
  await app.close()
  client.disconnect()
  process.disconnect()
})
