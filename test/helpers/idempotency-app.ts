// A test-only stand-in for the plugin's wiring of the Idempotency-Key policy: routes that declare
// `config: { idempotency }` get the plugin's Idempotency-Key stages, with the problems and store given.
import Fastify, { type FastifyHttpOptions, type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { Renewals } from '../../lib/idempotency/renewals.js'
import { claimHandler, markRun, readKeyHook, recordHook } from '../../lib/idempotency/stages.js'
import { appendHook, orReply } from '../../lib/shared.js'
import { declareSlots } from '../../lib/slots.js'
import { MemoryIdempotencyStore } from '../../lib/idempotency/memory.js'
import { toIdempotencyPolicy } from '../../lib/policy.js'
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
  if (options.decorate !== false) declareSlots(fastify)
  fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
    const config = routeOptions.config as { idempotency?: unknown, afterClaim?: unknown } | undefined
    if (config?.idempotency === undefined) return
    const policy = toIdempotencyPolicy(config.idempotency, `${String(routeOptions.method)} ${routeOptions.url}`)
    if (policy === null) return
    const after = config.afterClaim as ((request: FastifyRequest, reply: FastifyReply, done: () => void) => void) | undefined
    appendHook(routeOptions, 'preParsing', readKeyHook(policy, state, routeOptions.url, `${String(routeOptions.method)} ${routeOptions.url}`, after !== undefined))
    // Stands for what the plugin puts between the claim and the handler (the write gate, the
    // check): a step that may wait, and runs nothing for a client that left meanwhile.
    if (after !== undefined) {
      const handler = markRun(routeOptions.handler)
      routeOptions.handler = function (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
        return new Promise((resolve) => {
          after(request, reply, () => { resolve(reply.raw.destroyed ? reply : orReply(handler.call(this, request, reply), reply)) })
        })
      } as RouteOptions['handler']
    }
    routeOptions.handler = claimHandler(policy, state, routeOptions.handler, routeOptions.url)
    appendHook(routeOptions, 'onSend', recordHook(null))
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
    /** A step the stand-in puts between the claim and the handler, as a hook (request, reply, done). */
    afterClaim?: unknown
  }
}
