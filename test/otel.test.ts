// fastify-precondition/otel (lib/otel.ts) with the OpenTelemetry SDK: messages published on the
// channels become counters and histograms with the route and outcome as attributes; a real write
// through the plugin records its lock wait and hold; stop() unsubscribes; the global provider is
// the default.
import { tracingChannel } from 'node:diagnostics_channel'
import { metrics } from '@opentelemetry/api'
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, MetricReader, PeriodicExportingMetricReader, type DataPoint, type Histogram } from '@opentelemetry/sdk-metrics'
import Fastify, { type FastifyRequest } from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { LockLostError, LockUnavailableError, MemoryLockStore, type Lease, type LeaseLossListener } from '../lib/index.js'
import {
  CHANNELS, idempotencyChannel, lockChannel, lockReleaseChannel, preconditionChannel, publishIdempotency, publishLockRelease, publishPrecondition,
  traceLockAcquire, type LockAcquireContext
} from '../lib/observe.js'
import preconditionMetricsDefault, { METRICS, preconditionMetrics } from '../lib/otel.js'

class TestReader extends MetricReader {
  protected async onShutdown (): Promise<void> {}
  protected async onForceFlush (): Promise<void> {}
}

type Point = DataPoint<number | Histogram>

function meter () {
  const reader = new TestReader()
  const meterProvider = new MeterProvider({ readers: [reader] })
  return {
    meterProvider,
    /** Every data point recorded so far, by instrument name. */
    async collect (): Promise<Record<string, Point[]>> {
      const { resourceMetrics } = await reader.collect()
      const byName: Record<string, Point[]> = {}
      for (const scope of resourceMetrics.scopeMetrics) {
        for (const metric of scope.metrics) byName[metric.descriptor.name] = metric.dataPoints as Point[]
      }
      return byName
    },
    async scopes (): Promise<string[]> {
      const { resourceMetrics } = await reader.collect()
      return resourceMetrics.scopeMetrics.map((scope) => scope.scope.name)
    }
  }
}

const counts = (points: Point[] | undefined) => (points ?? []).map(({ attributes, value }) => ({ ...attributes, value }))
  .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)))

function fakeRequest (method: string | undefined, url: string | undefined): FastifyRequest {
  return { method, ...(url === undefined ? {} : { routeOptions: { url } }) } as unknown as FastifyRequest
}

test('the instrument names', async (t) => {
  t.same(METRICS, {
    preconditionOutcomes: 'fastify_precondition.precondition.outcomes',
    idempotencyOutcomes: 'fastify_precondition.idempotency.outcomes',
    lockWait: 'fastify_precondition.lock.wait.duration',
    lockHold: 'fastify_precondition.lock.hold.duration',
    lockLost: 'fastify_precondition.lock.lost'
  })
  t.equal(preconditionMetricsDefault, preconditionMetrics, 'the default export')
})

test('outcomes published on the channels are counted by route, method and outcome', async (t) => {
  const { meterProvider, collect, scopes } = meter()
  const stop = preconditionMetrics({ meterProvider })
  t.teardown(stop)
  const put = fakeRequest('PUT', '/items/:id')
  publishPrecondition(put, 'PUT /items/:id', 'failed')
  publishPrecondition(put, 'PUT /items/:id', 'failed')
  publishPrecondition(put, 'PUT /items/:id', 'proceed')
  publishPrecondition(fakeRequest('GET', '/items/:id'), 'GET,PUT /items/:id', 'not-modified')
  publishPrecondition(fakeRequest(undefined, undefined), 'PUT /bare', 'required')
  publishIdempotency(fakeRequest('POST', '/orders'), 'POST /orders', 'claimed')
  publishIdempotency(fakeRequest('POST', '/orders'), 'POST /orders', 'replayed')
  publishIdempotency(fakeRequest('POST', '/orders'), 'POST /orders', 'replayed')
  const recorded = await collect()
  t.same(await scopes(), ['fastify-precondition'], 'on a meter named after the package')
  t.same(counts(recorded[METRICS.preconditionOutcomes]), [
    { 'http.request.method': 'GET', 'http.route': '/items/:id', outcome: 'not-modified', value: 1 },
    { 'http.request.method': 'PUT', 'http.route': '/items/:id', outcome: 'failed', value: 2 },
    { 'http.request.method': 'PUT', 'http.route': '/items/:id', outcome: 'proceed', value: 1 },
    { 'http.route': 'PUT /bare', outcome: 'required', value: 1 }
  ], 'the URL pattern as http.route; the plugin\'s route name where the request has none')
  t.same(counts(recorded[METRICS.idempotencyOutcomes]), [
    { 'http.request.method': 'POST', 'http.route': '/orders', outcome: 'claimed', value: 1 },
    { 'http.request.method': 'POST', 'http.route': '/orders', outcome: 'replayed', value: 2 }
  ])
})

test('lock waits, holds and losses published on the channels', async (t) => {
  const { meterProvider, collect } = meter()
  const stop = preconditionMetrics({ meterProvider })
  t.teardown(stop)
  const request = fakeRequest('PUT', '/items/:id')
  const lease = { token: 1 }
  const store = (answer: () => unknown) => ({ acquire: answer as () => typeof lease })
  traceLockAcquire(store(() => lease), request, 'a', 10)
  await traceLockAcquire(store(async () => lease), request, 'b', 10)
  const timedOut = Object.assign(new Error('timed out'), { code: 'FST_PRECONDITION_LOCK_TIMEOUT' })
  await t.rejects(Promise.resolve(traceLockAcquire(store(() => Promise.reject(timedOut)), request, 'c', 10)), timedOut)
  await t.rejects(Promise.resolve(traceLockAcquire(store(() => Promise.reject(new LockUnavailableError('down'))), request, 'd', 10)))
  t.throws(() => traceLockAcquire(store(() => { throw new Error('broken') }), request, 'e', 10))
  // An acquisition already under way when the metrics subscribed: its end alone is not a wait.
  tracingChannel<unknown, LockAcquireContext>(CHANNELS.lock).asyncEnd.publish({ request, key: 'f', result: lease })
  publishLockRelease(request, 'a', 1, 250, false)
  publishLockRelease(request, 'b', 2, 1500, true)
  const recorded = await collect()
  const waits = recorded[METRICS.lockWait].map(({ attributes, value }) => ({ outcome: attributes.outcome, count: (value as Histogram).count }))
    .sort((a, b) => String(a.outcome).localeCompare(String(b.outcome)))
  t.same(waits, [{ outcome: 'acquired', count: 2 }, { outcome: 'timeout', count: 1 }, { outcome: 'unavailable', count: 2 }])
  t.match(recorded[METRICS.lockWait][0].attributes, { 'http.route': '/items/:id', 'http.request.method': 'PUT' })
  const [holds] = recorded[METRICS.lockHold]
  t.equal((holds.value as Histogram).count, 2)
  t.equal((holds.value as Histogram).sum, 1.75, 'in seconds')
  t.same(counts(recorded[METRICS.lockLost]), [{ 'http.request.method': 'PUT', 'http.route': '/items/:id', value: 1 }, { value: 0 }], 'beside the series at 0 it starts with')
})

test('the lost-lease counter is exported at 0 from the start, so its alert can tell healthy from not wired', async (t) => {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })
  const meterProvider = new MeterProvider({ readers: [reader] })
  t.teardown(() => meterProvider.shutdown())
  const stop = preconditionMetrics({ meterProvider })
  t.teardown(stop)
  await reader.forceFlush()
  const exported = exporter.getMetrics().flatMap(({ scopeMetrics }) => scopeMetrics.flatMap(({ metrics }) => metrics))
  const lost = exported.filter(({ descriptor }) => descriptor.name === METRICS.lockLost)
  t.equal(lost.length, 1, 'the counter is exported before any lease was lost')
  t.same(lost[0].dataPoints.map(({ attributes, value }) => ({ attributes, value })), [{ attributes: {}, value: 0 }], 'one series, at 0')
  t.notOk(exported.some(({ descriptor }) => descriptor.name === METRICS.preconditionOutcomes), 'the outcome counters wait for their first request')
})

test('a write through the plugin records its wait and hold; a lease lost under it is counted', async (t) => {
  const { meterProvider, collect } = meter()
  const stop = preconditionMetrics({ meterProvider })
  t.teardown(stop)
  const app = Fastify()
  const memory = new MemoryLockStore()
  let loseIt = false
  await app.register(fastifyPrecondition, {
    lockStore: {
      acquire (key, timeout) {
        const held = memory.acquire(key, timeout) as Lease
        let listener: LeaseLossListener | undefined
        return {
          token: held.token,
          signal: held.signal,
          onLost (given) { listener = given },
          release () {
            if (loseIt) listener!.leaseLost(new LockLostError(key, 'found at release'))
            return held.release()
          }
        }
      }
    }
  })
  let version = 1
  const validators = () => ({ etag: `"${version}"` })
  app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => {
    await new Promise((resolve) => setTimeout(resolve, 50))
    version++
    return { version }
  })
  t.teardown(() => app.close())
  t.equal((await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"1"' } })).statusCode, 200)
  loseIt = true
  t.equal((await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"1"' } })).statusCode, 412)
  const recorded = await collect()
  const [wait] = recorded[METRICS.lockWait]
  t.same(wait.attributes, { 'http.route': '/items/:id', 'http.request.method': 'PUT', outcome: 'acquired' })
  t.equal((wait.value as Histogram).count, 2)
  const [hold] = recorded[METRICS.lockHold]
  t.same(hold.attributes, { 'http.route': '/items/:id', 'http.request.method': 'PUT' })
  t.equal((hold.value as Histogram).count, 2)
  const held = (hold.value as Histogram).sum!
  t.ok(held >= 0.045, `held for the handler's 50 ms (${held} s)`)
  t.same(counts(recorded[METRICS.lockLost]), [{ 'http.request.method': 'PUT', 'http.route': '/items/:id', value: 1 }, { value: 0 }], 'beside the series at 0 it starts with')
})

test('stop unsubscribes, once', async (t) => {
  const { meterProvider, collect } = meter()
  const stop = preconditionMetrics({ meterProvider })
  t.ok(preconditionChannel.hasSubscribers && idempotencyChannel.hasSubscribers && lockReleaseChannel.hasSubscribers && lockChannel.hasSubscribers)
  stop()
  stop()
  t.notOk(preconditionChannel.hasSubscribers || idempotencyChannel.hasSubscribers || lockReleaseChannel.hasSubscribers || lockChannel.hasSubscribers, 'nothing left listening')
  publishPrecondition(fakeRequest('PUT', '/x'), 'PUT /x', 'failed')
  t.same(Object.keys(await collect()), [METRICS.lockLost], 'nothing recorded after stop, but the lost-lease series at 0 it began with')
})

test('the global meter provider when none is given', async (t) => {
  const { meterProvider, collect } = meter()
  t.ok(metrics.setGlobalMeterProvider(meterProvider))
  t.teardown(() => { metrics.disable() })
  const stop = preconditionMetrics()
  t.teardown(stop)
  publishIdempotency(fakeRequest('POST', '/orders'), 'POST /orders', 'unavailable')
  t.same(counts((await collect())[METRICS.idempotencyOutcomes]), [{ 'http.request.method': 'POST', 'http.route': '/orders', outcome: 'unavailable', value: 1 }])
})
