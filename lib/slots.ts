// Every per-request slot of the plugin, declared here and decorated once (`declareSlots`), so
// requests and replies keep one shape; and the few things one feature reads of another's state,
// through these slots rather than through each other's modules.
import type { FastifyRequest } from 'fastify'
import type { ConditionalHeaders, Validators } from './http/evaluate.js'
import { parsePreconditions, type Preconditions } from './http/preconditions.js'

/**
 * The plugin's state of one request (`RequestState`), made on first use. One slot, not one per
 * field: Fastify's Request constructor stores every decorated value on every request of the app,
 * guarded or not, each a megamorphic store (about 250 instructions apiece).
 */
export const kState = Symbol('fastify-precondition.state')

/** What others need of the write gate: the handler has answered; `request.lock`. */
export interface GateSlot {
  answer (): void
  /** `request.lock` (a RequestLock of locks/), made when first read; null while no lease is held. */
  requestLock (): object | null
}

/** What others read of a request's claim: whether this answer is a stored one replayed. */
export interface ClaimSlot {
  readonly replayed: boolean
}

/** Every per-request field of the plugin, one fixed shape. */
export class RequestState {
  /** The validators the precondition check read for this request. */
  validators: Validators | null | undefined = undefined
  /** `request.preconditions`, parsed on first use. */
  parsed: Preconditions | null = null
  /** The conditional headers as they arrived, kept where a headers schema may strip them. */
  headers: ConditionalHeaders | null = null
  /** A write's validators were read after it (or handed over with `reply.setValidators`). */
  written = false
  /** The write gate of a locked write (locks/). */
  gate: GateSlot | null = null
  /** The Idempotency-Key claim of a keyed request (idempotency/). */
  claim: ClaimSlot | null = null
  /** The ETag a 412 problem carries, the only one a problem may keep. */
  problemEtag: string | null = null
}

export interface RequestSlots {
  [kState]: RequestState | null
}

export type SlottedRequest = FastifyRequest & RequestSlots

interface Decorating {
  decorateRequest: (name: string, value: unknown) => unknown
}

/** The plugin's state of `request`, made on first use. */
export function stateOf (request: FastifyRequest): RequestState {
  const slotted = request as SlottedRequest
  const state = slotted[kState]
  // undefined: a request of an app where the slot was not declared (the stages used on their own).
  if (state !== null && state !== undefined) return state
  return (slotted[kState] = new RequestState())
}

// What peekState gives for a request the plugin has not touched: read, never written.
const UNTOUCHED: Readonly<RequestState> = new RequestState()

/** The plugin's state of `request` to read, without making one where there is none yet. */
export function peekState (request: FastifyRequest): Readonly<RequestState> {
  return (request as SlottedRequest)[kState] ?? UNTOUCHED
}

/**
 * Declares the one slot and the public request properties, once per registration. The public
 * ones are getters on the prototype: a value decorated would be stored on every request.
 */
export function declareSlots (fastify: Decorating): void {
  fastify.decorateRequest(kState as unknown as string, null)
  fastify.decorateRequest('lock', {
    getter (this: SlottedRequest): object | null {
      const gate = peekState(this).gate
      return gate === null ? null : gate.requestLock()
    }
  })
  fastify.decorateRequest('preconditions', {
    getter (this: SlottedRequest): Preconditions {
      const state = stateOf(this)
      let parsed = state.parsed
      if (parsed === null) parsed = state.parsed = parsePreconditions(state.headers ?? this.headers)
      return parsed
    }
  })
  fastify.decorateRequest('idempotency', {
    getter (this: SlottedRequest): unknown {
      return stateOf(this).claim
    }
  })
}

/** The conditional headers as they arrived: a strict headers schema may have stripped them since. */
export function conditionalHeaders (request: FastifyRequest): ConditionalHeaders {
  return peekState(request).headers ?? request.headers
}

/** Whether this reply is a replay of a stored response (so an onSend hook leaves it as stored). */
export function isReplay (request: FastifyRequest): boolean {
  return peekState(request).claim?.replayed === true
}

/** Whether this request carries a key that its handler will claim. */
export function isKeyed (request: FastifyRequest): boolean {
  return peekState(request).claim !== null
}
