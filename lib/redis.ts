// `fastify-precondition/redis`: the Redis engines, a lock store and an Idempotency-Key store for
// many processes sharing one Redis. Nothing here imports ioredis at run time: the client is the
// caller's.
export { redisLockStore, RedisLockStore, type RedisLockClient, type RedisLockStoreOptions } from './redis/lock-store.js'
export { encodeResourceKey, SCRIPT_SHAS } from './redis/lock-scripts.js'
export { redisIdempotencyStore, RedisIdempotencyStore, type RedisIdempotencyStoreOptions, type RedisIdempotencyClient } from './redis/idempotency-store.js'
export { redisLockStore as default } from './redis/lock-store.js'
