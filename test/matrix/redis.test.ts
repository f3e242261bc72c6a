// The request-path matrix (test/helpers/matrix.ts) on a real redis-server: the Redis lock and
// idempotency stores, as many instances share them.
import { Redis } from 'ioredis'
import { test } from 'tap'
import { redisIdempotencyStore, redisLockStore } from '../../lib/redis.js'
import { runMatrix } from '../helpers/matrix.js'
import { hasRedisServer, REDIS_MISSING, startRedis } from '../helpers/redis-server.js'

const skip = hasRedisServer() ? false : REDIS_MISSING
if (skip !== false) console.log(`# ${skip}`)

test('every handler style × where the client leaves × HTTP/1.1 and HTTP/2 × the neighbours, on the Redis stores', { skip }, async (t) => {
  const { redis } = await startRedis(t, Redis)
  await runMatrix(t, () => ({ lockStore: redisLockStore({ client: redis }), idempotencyStore: redisIdempotencyStore({ client: redis }) }))
})
