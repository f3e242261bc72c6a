// `fastify-precondition/redis`: the Redis engines, a lock store and an Idempotency-Key store for
// many processes sharing one Redis. Nothing here imports ioredis at run time: the client is the
// caller's.
export { redisLockStore, RedisLockStore, type RedisLockClient, type RedisLockStoreOptions } from './locks/redis.js'
export { encodeResourceKey, SCRIPT_SHAS } from './locks/redis-scripts.js'
export { redisIdempotencyStore, RedisIdempotencyStore, type RedisIdempotencyStoreOptions, type RedisIdempotencyClient } from './idempotency/redis.js'
export { redisLockStore as default } from './locks/redis.js'
