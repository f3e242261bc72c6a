// One contract, every idempotency store: the in-memory default, Redis (a real redis-server) and
// PostgreSQL (a real cluster; its pool a node-postgres Pool or a postgres.js sql). A store whose server is not installed here is skipped, saying what
// to install.
import { Redis } from 'ioredis'
import pg from 'pg'
import postgres from 'postgres'
import { test } from 'tap'
import { memoryIdempotencyStore } from '../lib/idempotency/memory.js'
import { redisIdempotencyStore } from '../lib/redis/idempotency-store.js'
import { pgIdempotencyStore } from '../lib/postgres/idempotency-store.js'
import { storeContract, storeContractMissingRecord } from './helpers/idempotency-store-contract.js'
import { hasRedisServer, REDIS_MISSING, startRedis } from './helpers/redis-server.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const redisSkip = hasRedisServer() ? false : REDIS_MISSING
const pgSkip = postgresMissing()
for (const skip of [redisSkip, pgSkip]) if (skip !== false) console.log(`# ${skip}`)

test('memory store', async (t) => {
  const store = memoryIdempotencyStore()
  t.teardown(() => store.close())
  storeContract(t, () => store)
})

test('redis store', { skip: redisSkip }, async (t) => {
  const { redis } = await startRedis(t, Redis)
  storeContract(t, () => redisIdempotencyStore({ client: redis }))
  // The missing-record cases run on each store as it implements them.
  t.test('a missing record', async (t) => {
    storeContractMissingRecord(t, () => redisIdempotencyStore({ client: redis }))
  })
})

test('postgresql store', { skip: pgSkip }, async (t) => {
  const { pool } = await startPostgres(t, pg.Pool)
  const store = pgIdempotencyStore({ pool, createTable: true, maxAnswerBytes: 4096 })
  storeContract(t, () => store)
  t.test('and with the default maxAnswerBytes', async (t) => {
    storeContract(t, () => pgIdempotencyStore({ pool }))
  })
})

test('postgresql store, its pool a postgres.js sql', { skip: pgSkip }, async (t) => {
  const { server } = await startPostgres(t, pg.Pool)
  const sql = postgres(server.connectionString, { max: 5, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 1 }))
  const store = pgIdempotencyStore({ pool: sql, createTable: true, maxAnswerBytes: 4096 })
  storeContract(t, () => store)
})
