// What the plugin decides, published on node:diagnostics_channel. Nothing is built or sent while a
// channel has no subscriber: each publisher checks `hasSubscribers` before it makes its message.
// Channels are found by name, so a subscriber needs nothing from this package (and two copies of
// it, an ESM and a CommonJS one, publish on the same channels):
//
//   import { subscribe } from 'node:diagnostics_channel'
//   subscribe('fastify-precondition:precondition', ({ route, outcome }) => { ... })
//
// `fastify-precondition/otel` turns them into OpenTelemetry metrics. This module imports nothing
// from the rest of lib/, so any part of the plugin can publish through it.
import { channel, tracingChannel, type Channel, type TracingChannel } from 'node:diagnostics_channel'
import type { FastifyRequest } from 'fastify'
import { isThenable } from './shared.js'

/** The channel names. */
export const CHANNELS = {
  precondition: 'fastify-precondition:precondition',
  /** A TracingChannel: its channels are `tracing:fastify-precondition:lock:start`, `:end`, … */
  lock: 'fastify-precondition:lock',
  lockRelease: 'fastify-precondition:lock:release',
  idempotency: 'fastify-precondition:idempotency'
} as const

/**
 * What the preconditions of a request came to: it goes on to its handler (`proceed`), a 304
 * (`not-modified`), a 412 (`failed`) or a 428 (`required`).
 */
export type PreconditionOutcome = 'proceed' | 'not-modified' | 'failed' | 'required'

/**
 * What became of a request's Idempotency-Key: its first request took the key (`claimed`), a later
 * one was answered from the store (`replayed`) or refused while the first ran (`in-progress`, 409)
 * or for a different request (`mismatch`, 422); the key was missing where required (`missing`) or
 * malformed (`invalid`), both 400; the answer was stored (`stored`), or the claim given back
 * without one (`released`); the store could not be reached (`unavailable`, 503).
 */
export type IdempotencyOutcome = 'claimed' | 'replayed' | 'in-progress' | 'mismatch' | 'missing' | 'invalid' | 'stored' | 'released' | 'unavailable'

/**
 * On `fastify-precondition:precondition`. `route` is the route as the plugin names it in its logs
 * and errors: its methods and URL pattern (`'PUT /items/:id'`).
 */
export interface PreconditionMessage {
  readonly request: FastifyRequest
  readonly route: string
  readonly outcome: PreconditionOutcome
}

/** On `fastify-precondition:idempotency`; `route` as in `PreconditionMessage`. */
export interface IdempotencyMessage {
  readonly request: FastifyRequest
  readonly route: string
  readonly outcome: IdempotencyOutcome
}

/**
 * The context of one lock acquisition on the `fastify-precondition:lock` TracingChannel. `start`
 * comes before the store is asked. A lease handed over at once: `end` with `result`. Otherwise
 * `end` when the store has been asked, then `asyncStart` and `asyncEnd` once it answered, with
 * `result` or, after `error`, with `error` (a `LockTimeoutError`, a `LockUnavailableError`, or
 * whatever else the store failed with). A store that throws: `error`, then `end`.
 */
export interface LockAcquireContext {
  readonly request: FastifyRequest
  /** The resource key. */
  readonly key: string
  /** The lease, once handed over. */
  result?: { readonly token: number }
  /** What the store failed with: the write is answered 503. */
  error?: unknown
}

/**
 * On `fastify-precondition:lock:release`, once per acquired lease, when the store has taken it
 * back (so a loss found at release counts). `heldMs`: from the lease's arrival to its release.
 * `lost`: the store reported the lease lost while the request held it, or at release.
 */
export interface LockReleaseMessage {
  readonly request: FastifyRequest
  readonly key: string
  readonly token: number
  readonly heldMs: number
  readonly lost: boolean
}

export const preconditionChannel: Channel = channel(CHANNELS.precondition)
export const lockChannel: TracingChannel<unknown, LockAcquireContext> = tracingChannel<unknown, LockAcquireContext>(CHANNELS.lock)
export const lockReleaseChannel: Channel = channel(CHANNELS.lockRelease)
export const idempotencyChannel: Channel = channel(CHANNELS.idempotency)

export function publishPrecondition (request: FastifyRequest, route: string, outcome: PreconditionOutcome): void {
  if (preconditionChannel.hasSubscribers) preconditionChannel.publish({ request, route, outcome } satisfies PreconditionMessage)
}

export function publishIdempotency (request: FastifyRequest, route: string, outcome: IdempotencyOutcome): void {
  if (idempotencyChannel.hasSubscribers) idempotencyChannel.publish({ request, route, outcome } satisfies IdempotencyMessage)
}

export function publishLockRelease (request: FastifyRequest, key: string, token: number, heldMs: number, lost: boolean): void {
  if (lockReleaseChannel.hasSubscribers) lockReleaseChannel.publish({ request, key, token, heldMs, lost } satisfies LockReleaseMessage)
}

/** What `traceLockAcquire` needs of a lock store. */
export interface Acquirer<L> {
  acquire (key: string, timeout: number): L | Promise<L>
}

/**
 * `store.acquire(key, timeout)`, traced on the `fastify-precondition:lock` TracingChannel while it
 * has subscribers (see `LockAcquireContext`). What it hands back is what the store did: a lease at
 * once stays at once, and a throw is thrown.
 */
export function traceLockAcquire<L extends { readonly token: number }> (store: Acquirer<L>, request: FastifyRequest, key: string, timeout: number): L | Promise<L> {
  if (!lockChannel.hasSubscribers) return store.acquire(key, timeout)
  const context: LockAcquireContext = { request, key }
  // Within the start channel's bound stores, as TracingChannel's own trace* methods run theirs.
  return lockChannel.start.runStores(context, acquireTraced<L>, undefined, store, context, timeout)
}

function acquireTraced<L extends { readonly token: number }> (store: Acquirer<L>, context: LockAcquireContext, timeout: number): L | Promise<L> {
  const { end, asyncStart, asyncEnd, error } = lockChannel
  let lease: L | Promise<L>
  try {
    lease = store.acquire(context.key, timeout)
  } catch (thrown) {
    context.error = thrown
    error.publish(context)
    end.publish(context)
    throw thrown
  }
  if (!isThenable<L>(lease)) {
    context.result = lease
    end.publish(context)
    return lease
  }
  end.publish(context)
  return Promise.resolve(lease).then((held) => {
    context.result = held
    asyncStart.publish(context)
    asyncEnd.publish(context)
    return held
  }, (failure: unknown) => {
    context.error = failure
    error.publish(context)
    asyncStart.publish(context)
    asyncEnd.publish(context)
    throw failure
  })
}
