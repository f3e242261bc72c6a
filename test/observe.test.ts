// The diagnostics channels of lib/observe.ts on their own: the names, the messages, nothing built
// while nobody subscribes, and the lock acquisition's tracing events on each path a store can take
// (a lease at once, a lease later, a throw, a rejection), within the start channel's stores.
import { AsyncLocalStorage } from 'node:async_hooks'
import { subscribe, tracingChannel, unsubscribe } from 'node:diagnostics_channel'
import type { FastifyRequest } from 'fastify'
import { test } from 'tap'
import {
  CHANNELS, idempotencyChannel, lockChannel, lockReleaseChannel, preconditionChannel, publishIdempotency, publishLockRelease,
  publishPrecondition, traceLockAcquire, type LockAcquireContext
} from '../lib/observe.js'

const request = { id: 'req-1' } as unknown as FastifyRequest

function listen (name: string): { messages: unknown[], stop: () => void } {
  const messages: unknown[] = []
  const onMessage = (message: unknown): void => { messages.push(message) }
  subscribe(name, onMessage)
  return { messages, stop: () => { unsubscribe(name, onMessage) } }
}

test('the channel names', async (t) => {
  t.same(CHANNELS, {
    precondition: 'fastify-precondition:precondition',
    lock: 'fastify-precondition:lock',
    lockRelease: 'fastify-precondition:lock:release',
    idempotency: 'fastify-precondition:idempotency'
  })
  t.equal(preconditionChannel.name, CHANNELS.precondition)
  t.equal(lockReleaseChannel.name, CHANNELS.lockRelease)
  t.equal(idempotencyChannel.name, CHANNELS.idempotency)
  t.equal(lockChannel.start.name, 'tracing:fastify-precondition:lock:start')
  t.equal(lockChannel.asyncEnd.name, 'tracing:fastify-precondition:lock:asyncEnd')
})

test('each publisher sends its message to the subscribers of its channel', async (t) => {
  const precondition = listen(CHANNELS.precondition)
  const idempotency = listen(CHANNELS.idempotency)
  const release = listen(CHANNELS.lockRelease)
  t.teardown(() => { precondition.stop(); idempotency.stop(); release.stop() })
  for (const outcome of ['proceed', 'not-modified', 'failed', 'required'] as const) publishPrecondition(request, 'PUT /items/:id', outcome)
  const outcomes = ['claimed', 'replayed', 'in-progress', 'mismatch', 'missing', 'invalid', 'stored', 'released', 'unavailable'] as const
  for (const outcome of outcomes) publishIdempotency(request, 'POST /orders', outcome)
  publishLockRelease(request, '/items/:id\nid=1:1', 42, 3.5, true)
  t.same(precondition.messages, ['proceed', 'not-modified', 'failed', 'required'].map((outcome) => ({ request, route: 'PUT /items/:id', outcome })))
  t.same(idempotency.messages, outcomes.map((outcome) => ({ request, route: 'POST /orders', outcome })))
  t.same(release.messages, [{ request, key: '/items/:id\nid=1:1', token: 42, heldMs: 3.5, lost: true }])
})

test('nothing is built or sent while a channel has no subscriber', async (t) => {
  const channels = [preconditionChannel, idempotencyChannel, lockReleaseChannel, lockChannel.start, lockChannel.end]
  const published: unknown[] = []
  for (const channel of channels) channel.publish = (message: unknown) => { published.push(message) }
  // Node swaps a channel's prototype as it gains and loses subscribers: drop the own property.
  t.teardown(() => { for (const channel of channels) delete (channel as { publish?: unknown }).publish })
  t.equal(preconditionChannel.hasSubscribers || idempotencyChannel.hasSubscribers || lockReleaseChannel.hasSubscribers || lockChannel.hasSubscribers, false)
  publishPrecondition(request, 'PUT /x', 'failed')
  publishIdempotency(request, 'PUT /x', 'claimed')
  publishLockRelease(request, 'k', 1, 1, false)
  const lease = { token: 1 }
  const store = { acquire: (key: string, timeout: number) => { published.push(['acquire', key, timeout]); return lease } }
  t.equal(traceLockAcquire(store, request, 'k', 5), lease, 'the store\'s own answer')
  t.same(published, [['acquire', 'k', 5]], 'only the store was called')
})

interface Event { name: string, context: LockAcquireContext, result?: unknown, error?: unknown }

function traceEvents (): { events: Event[], stop: () => void } {
  const events: Event[] = []
  const record = (name: string) => (context: LockAcquireContext) => {
    events.push({ name, context, ...('result' in context ? { result: context.result } : {}), ...('error' in context ? { error: context.error } : {}) })
  }
  const handlers = { start: record('start'), end: record('end'), asyncStart: record('asyncStart'), asyncEnd: record('asyncEnd'), error: record('error') }
  // Subscribed by name, as an outside subscriber does: the same channels.
  const channel = tracingChannel<unknown, LockAcquireContext>('fastify-precondition:lock')
  channel.subscribe(handlers)
  return { events, stop: () => { channel.unsubscribe(handlers) } }
}

const names = (events: Event[]) => events.map((event) => event.name)

test('a lock acquisition is traced: start, end, and asyncStart, asyncEnd for a lease that comes later', async (t) => {
  const { events, stop } = traceEvents()
  t.teardown(stop)
  t.equal(lockChannel.hasSubscribers, true)
  const lease = { token: 7 }
  const now = traceLockAcquire({ acquire: () => lease }, request, 'a', 10)
  t.equal(now, lease, 'a lease at once is handed back at once')
  t.same(names(events), ['start', 'end'])
  t.same(events[0].context, { request, key: 'a', result: lease }, 'one context, carrying the request, the key and the lease')
  t.notOk('result' in events[0], 'no result at start')
  t.equal(events[1].result, lease)
  events.length = 0

  const later = traceLockAcquire({ acquire: async () => lease }, request, 'b', 10)
  t.ok(later instanceof Promise)
  t.same(names(events), ['start', 'end'], 'start and end while the store is asked')
  t.equal(await later, lease)
  t.same(names(events), ['start', 'end', 'asyncStart', 'asyncEnd'])
  t.equal(events[3].result, lease)
  t.equal(events[0].context, events[3].context, 'the same context throughout')
})

test('an acquisition that fails is traced with its error, and still fails', async (t) => {
  const { events, stop } = traceEvents()
  t.teardown(stop)
  const timeout = Object.assign(new Error('Timed out'), { code: 'FST_PRECONDITION_LOCK_TIMEOUT' })
  const rejected = traceLockAcquire({ acquire: () => Promise.reject(timeout) }, request, 'a', 10)
  await t.rejects(rejected, timeout)
  t.same(names(events), ['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
  t.equal(events[2].error, timeout)
  t.equal(events[4].error, timeout)
  events.length = 0

  const down = new Error('store down')
  t.throws(() => traceLockAcquire({ acquire: () => { throw down } }, request, 'b', 10), down, 'a throw is thrown')
  t.same(names(events), ['start', 'error', 'end'])
  t.equal(events[1].error, down)
})

test('the store is asked within the stores bound to the start channel', async (t) => {
  const storage = new AsyncLocalStorage<string>()
  lockChannel.start.bindStore(storage, (context) => `span for ${context.key}`)
  t.teardown(() => { lockChannel.start.unbindStore(storage) })
  const seen: Array<string | undefined> = []
  const lease = await traceLockAcquire({
    acquire: async () => {
      seen.push(storage.getStore())
      await new Promise((resolve) => setTimeout(resolve, 1))
      seen.push(storage.getStore())
      return { token: 1 }
    }
  }, request, '/items/1', 10)
  t.equal(lease.token, 1)
  t.same(seen, ['span for /items/1', 'span for /items/1'])
  t.equal(storage.getStore(), undefined, 'and not outside it')
})
