// `fastify-precondition/otel`: the plugin's diagnostics channels (lib/observe.ts) as OpenTelemetry
// metrics, through `@opentelemetry/api` (an optional peer: only this subpath loads it).
//
//   import { preconditionMetrics } from 'fastify-precondition/otel'
//   const stop = preconditionMetrics()          // or preconditionMetrics({ meterProvider })
//
// It listens on the channels by name, so it counts every copy of the plugin in the process (ESM
// and CommonJS alike), registered before or after it is called.
import { metrics, type Attributes, type Counter, type Histogram, type MeterProvider } from '@opentelemetry/api'
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import type { FastifyRequest } from 'fastify'
import { CHANNELS, type IdempotencyMessage, type LockAcquireContext, type LockReleaseMessage, type PreconditionMessage } from './observe.js'

/** The instruments' names. */
export const METRICS = {
  /** Counter of requests by what their preconditions came to: `outcome` `proceed`, `not-modified`, `failed`, `required`. */
  preconditionOutcomes: 'fastify_precondition.precondition.outcomes',
  /** Counter of Idempotency-Key outcomes: `claimed`, `replayed`, `in-progress`, `mismatch`, `missing`, `invalid`, `stored`, `released`, `unavailable`. */
  idempotencyOutcomes: 'fastify_precondition.idempotency.outcomes',
  /** Histogram (s) of the wait for a resource's lock; `outcome` `acquired`, `timeout` or `unavailable`. */
  lockWait: 'fastify_precondition.lock.wait.duration',
  /** Histogram (s) of how long a lease was held, from its arrival to its release. */
  lockHold: 'fastify_precondition.lock.hold.duration',
  /** Counter of leases the store reported lost while their request held them. */
  lockLost: 'fastify_precondition.lock.lost'
} as const

export interface PreconditionMetricsOptions {
  /** Where the meter comes from. Default: the global one, `metrics.getMeterProvider()`. */
  meterProvider?: MeterProvider
}

// From a tenth of a millisecond (a lock in memory) to half a minute (a long wait, a slow write).
const SECONDS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const TIMEOUT = 'FST_PRECONDITION_LOCK_TIMEOUT'

/**
 * `http.route` is the route's URL pattern (`/items/:id`, OpenTelemetry's sense), with the method
 * beside it; the plugin's own name of the route (`'PUT /items/:id'`) when the request has none.
 */
function requestAttributes (request: FastifyRequest, route: string | undefined): Attributes {
  const attributes: Attributes = {}
  const url = (request as Partial<FastifyRequest>).routeOptions?.url
  const name = typeof url === 'string' ? url : route
  if (name !== undefined) attributes['http.route'] = name
  if (typeof request.method === 'string') attributes['http.request.method'] = request.method
  return attributes
}

function outcomeCounter (counter: Counter) {
  return (message: unknown): void => {
    const { request, route, outcome } = message as PreconditionMessage | IdempotencyMessage
    const attributes = requestAttributes(request, route)
    attributes.outcome = outcome
    counter.add(1, attributes)
  }
}

/**
 * Subscribes to the plugin's channels and records them on a meter named `fastify-precondition`
 * (see `METRICS`). Returns `stop`, which unsubscribes; calling it again does nothing.
 */
export function preconditionMetrics (options: PreconditionMetricsOptions = {}): () => void {
  const provider = options.meterProvider ?? metrics.getMeterProvider()
  const meter = provider.getMeter('fastify-precondition')
  const preconditions = meter.createCounter(METRICS.preconditionOutcomes, {
    description: 'Requests by what their preconditions came to',
    unit: '{request}'
  })
  const idempotency = meter.createCounter(METRICS.idempotencyOutcomes, {
    description: 'Requests by what became of their Idempotency-Key',
    unit: '{request}'
  })
  const wait: Histogram = meter.createHistogram(METRICS.lockWait, {
    description: 'How long writes waited for the lock on their resource',
    unit: 's',
    advice: { explicitBucketBoundaries: SECONDS }
  })
  const hold: Histogram = meter.createHistogram(METRICS.lockHold, {
    description: 'How long writes held the lock on their resource',
    unit: 's',
    advice: { explicitBucketBoundaries: SECONDS }
  })
  const lost = meter.createCounter(METRICS.lockLost, {
    description: 'Leases the lock store reported lost while their write held them',
    unit: '{lease}'
  })
  // A series at 0 from the start: an alert on lost leases can tell that none was lost from a
  // counter that was never set up.
  lost.add(0)

  const onPrecondition = outcomeCounter(preconditions)
  const onIdempotency = outcomeCounter(idempotency)
  const started = new WeakMap<object, number>()
  const waited = (context: LockAcquireContext): void => {
    const since = started.get(context)
    if (since === undefined) return // subscribed while this acquisition was under way
    started.delete(context)
    const attributes = requestAttributes(context.request, undefined)
    if (context.error !== undefined) attributes.outcome = (context.error as { code?: unknown } | null)?.code === TIMEOUT ? 'timeout' : 'unavailable'
    else attributes.outcome = 'acquired'
    wait.record((performance.now() - since) / 1000, attributes)
  }
  const lock = {
    start (context: LockAcquireContext): void { started.set(context, performance.now()) },
    // A lease at once, or a throw, ends at `end`; an answer that came later, at `asyncEnd`.
    end (context: LockAcquireContext): void {
      if (context.result !== undefined || context.error !== undefined) waited(context)
    },
    asyncStart (): void {},
    asyncEnd: waited,
    error (): void {}
  }
  const onRelease = (message: unknown): void => {
    const release = message as LockReleaseMessage
    const attributes = requestAttributes(release.request, undefined)
    hold.record(release.heldMs / 1000, attributes)
    if (release.lost) lost.add(1, attributes)
  }

  const tracing = tracingChannel<unknown, LockAcquireContext>(CHANNELS.lock)
  subscribe(CHANNELS.precondition, onPrecondition)
  subscribe(CHANNELS.idempotency, onIdempotency)
  subscribe(CHANNELS.lockRelease, onRelease)
  tracing.subscribe(lock)
  let stopped = false
  return function stop (): void {
    if (stopped) return
    stopped = true
    unsubscribe(CHANNELS.precondition, onPrecondition)
    unsubscribe(CHANNELS.idempotency, onIdempotency)
    unsubscribe(CHANNELS.lockRelease, onRelease)
    tracing.unsubscribe(lock)
  }
}

export default preconditionMetrics
