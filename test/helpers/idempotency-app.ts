// A test-only stand-in for the plugin's wiring of the Idempotency-Key policy: routes that declare
// `config: { idempotency }` get `wireIdempotency`'s hooks, with the problems and store given.
import Fastify, { type FastifyHttpOptions, type FastifyInstance, type RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { decorateIdempotency, Renewals, wireIdempotency, wireIdempotentResponse } from '../../lib/idempotency/hooks.js'
import { MemoryIdempotencyStore } from '../../lib/idempotency/memory.js'
import { toIdempotencyPolicy } from '../../lib/idempotency/policy.js'
import type { IdempotencyStore } from '../../lib/idempotency/store.js'
import { ProblemWriter, type ProblemOptions } from '../../lib/problem.js'

export interface IdempotencyAppOptions extends ProblemOptions {
  store?: IdempotencyStore
  decorate?: boolean
  /** How long a claim waits for the store (the plugin passes its lockTimeout); default 10000. */
  claimTimeout?: number
}

export const idempotencyPlugin = fp(async function idempotency (fastify: FastifyInstance, options: IdempotencyAppOptions) {
  const store = options.store ?? new MemoryIdempotencyStore()
  const state = { store, problems: new ProblemWriter(options), renewals: new Renewals(store.lease), claimTimeout: options.claimTimeout ?? 10_000 }
  if (options.decorate !== false) decorateIdempotency(fastify)
  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const config = routeOptions.config as { idempotency?: unknown, afterClaim?: unknown } | undefined
    if (config?.idempotency === undefined) return
    const policy = toIdempotencyPolicy(config.idempotency, `${String(routeOptions.method)} ${routeOptions.url}`)
    if (policy === null) return
    // Like the plugin: claimed in a preHandler hook when hooks follow the claim, else in the
    // handler; IDEMPOTENCY_CLAIM_IN=preHandler runs a test file with the claim always in the hook.
    const claimIn = config.afterClaim === undefined && process.env.IDEMPOTENCY_CLAIM_IN !== 'preHandler' ? 'handler' : 'preHandler'
    wireIdempotency(routeOptions, policy, state, claimIn)
    wireIdempotentResponse(routeOptions)
    // Stands for the hooks the plugin adds after the claim (the write lock, the preconditions).
    if (config.afterClaim !== undefined) routeOptions.preHandler = [...routeOptions.preHandler as unknown[], config.afterClaim] as RouteOptions['preHandler']
  })
  fastify.addHook('onClose', async () => {
    state.renewals.close()
    await store.close?.()
  })
})

/** A Fastify app with the stand-in plugin registered. */
export async function idempotencyApp (options: IdempotencyAppOptions = {}, fastifyOptions: FastifyHttpOptions<any> = {}): Promise<FastifyInstance> {
  const app = Fastify(fastifyOptions) as unknown as FastifyInstance
  await app.register(idempotencyPlugin, options)
  return app
}

export async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as { port: number }).port
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The test stand-in's route option (the plugin will read `concurrency.idempotency`). */
    idempotency?: unknown
    /** A preHandler the stand-in adds after the claim. */
    afterClaim?: unknown
  }
}
