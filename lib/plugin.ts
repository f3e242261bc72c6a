// The plugin: options → runtime, the request slots and reply methods, every route's plan attached
// from `onRoute`, and the stores closed with the app.
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify'
import { MemoryIdempotencyStore } from './idempotency/memory.js'
import { Renewals } from './idempotency/renewals.js'
import type { IdempotencyState } from './idempotency/stages.js'
import type { IdempotencyStore } from './idempotency/store.js'
import { MemoryLockStore } from './locks/memory.js'
import type { LockStore } from './locks/types.js'
import { documentation } from './openapi/document.js'
import { validatePluginOptions, type FastifyPreconditionOptions } from './options.js'
import { failPreconditionMethod, setValidators } from './preconditions/reply.js'
import { ProblemWriter } from './problem.js'
import { attach, type Runtime } from './route/pipeline.js'
import { plan } from './route/plan.js'
import { isThenable } from './shared.js'
import { declareSlots } from './slots.js'

function logCloseError (this: FastifyInstance, error: unknown): void {
  this.log.warn({ err: error }, 'fastify-precondition: closing the lock store failed')
}

export const plugin: FastifyPluginAsync<FastifyPreconditionOptions> = async function fastifyPrecondition (fastify, options) {
  validatePluginOptions(options)
  const ownStore = options.lockStore === undefined || options.lockStore === 'memory'
  const lockStore = ownStore ? new MemoryLockStore() : options.lockStore as LockStore
  const idempotencyStore = options.idempotencyStore === undefined || options.idempotencyStore === 'memory' ? null : options.idempotencyStore as IdempotencyStore
  const problems = new ProblemWriter(options)
  const documentRoutes = options.documentRoutes ?? true
  let idempotency: IdempotencyState | null = null
  const runtime: Runtime = {
    problems,
    weakIfMatch: options.weakIfMatch ?? false,
    lockStore,
    lockTimeout: options.lockTimeout ?? 10_000,
    idempotency () {
      if (idempotency === null) {
        // The default store's eviction warnings go to the app's log.
        const store = idempotencyStore ?? new MemoryIdempotencyStore({ log: fastify.log })
        idempotency = { store, problems, renewals: new Renewals(store.lease), claimTimeout: runtime.lockTimeout }
      }
      return idempotency
    }
  }
  const documentRoute = documentRoutes ? documentation(fastify, problems) : null
  declareSlots(fastify)
  const failPrecondition = failPreconditionMethod(problems, runtime.weakIfMatch)
  fastify.decorateReply('failPrecondition', failPrecondition)
  fastify.decorateReply('setValidators', setValidators)
  // `reply.preconditionFailed` is also @fastify/sensible's name (a plain 412). The alias is added
  // only where nobody took it, and only once routes are being declared, when plugins such as
  // sensible registered after this one have had their turn.
  let aliasChecked = false

  fastify.addHook('onRoute', function (routeOptions) {
    if (!aliasChecked) {
      aliasChecked = true
      if (!fastify.hasReplyDecorator('preconditionFailed')) fastify.decorateReply('preconditionFailed', failPrecondition)
    }
    const option = (routeOptions as RouteOptions & { concurrency?: unknown }).concurrency
    if (option === undefined) return
    const routePlan = plan(option, {
      method: routeOptions.method,
      url: routeOptions.url,
      hasHeadersSchema: (routeOptions.schema as { headers?: unknown } | undefined)?.headers !== undefined
    })
    attach(routeOptions, routePlan, runtime)
    documentRoute?.(routeOptions, routePlan.policy)
  })

  // preClose, not onClose: Fastify's onClose waits for in-flight requests, which would serve the
  // waiting writes first instead of turning them away.
  if (typeof lockStore.close === 'function') {
    fastify.addHook('preClose', function closeLockStore (done) {
      let closing
      try {
        closing = lockStore.close!()
      } catch (error) {
        logCloseError.call(this, error)
        done()
        return
      }
      if (isThenable(closing)) closing.then(() => done(), (error) => { logCloseError.call(this, error); done() })
      else done()
    })
  }
  // onClose: in-flight requests still store their answers until then.
  fastify.addHook('onClose', async function closeIdempotencyStore () {
    const state = idempotency as IdempotencyState | null
    state?.renewals.close()
    try {
      await state?.store.close?.()
    } catch (error) {
      this.log.warn({ err: error }, 'fastify-precondition: closing the idempotency store failed')
    }
  })
  /* c8 ignore next -- fastify-plugin metadata below is what tests observe */
}
