// The CommonJS side: `require` resolves the package's `require` condition and its own typings.
import precondition = require('fastify-precondition')
import redis = require('fastify-precondition/redis')
import client = require('fastify-precondition/client')

const timeout = new precondition.LockTimeoutError(10, '/items/1')
export const code: 'FST_PRECONDITION_LOCK_TIMEOUT' = timeout.code
// @ts-expect-error an error class keeps its own code
export const wrongCode: 'FST_PRECONDITION_LOCK_UNAVAILABLE' = timeout.code
// @ts-expect-error the client must be an ioredis client
redis.redisLockStore({ client: 42 })
// @ts-expect-error maxAttempts is a number
client.conditionalUpdate('http://127.0.0.1/items/1', (item) => item, { maxAttempts: 'many' })
export const plugin: typeof precondition.fastifyPrecondition = precondition.default
