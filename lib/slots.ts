// Every per-request slot of the plugin, declared here and decorated once (`declareSlots`), so
// requests and replies keep one shape; and the few things one feature reads of another's state,
// through these slots rather than through each other's modules.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ConditionalHeaders, Validators } from './http/evaluate.js'
import { parsePreconditions, type Preconditions } from './http/preconditions.js'

/** The validators the precondition check read for this request. */
export const kValidators = Symbol('fastify-precondition.validators')
/** `request.preconditions`, parsed on first use. */
export const kParsed = Symbol('fastify-precondition.parsed')
/** The conditional headers as they arrived, kept where a headers schema may strip them. */
export const kHeaders = Symbol('fastify-precondition.headers')
/** A write's validators were read after it (or handed over with `reply.setValidators`). */
export const kWritten = Symbol('fastify-precondition.written')
/** The write gate of a locked write (locks/), also on its raw response. */
export const kGate = Symbol('fastify-precondition.gate')
/** The Idempotency-Key claim of a keyed request (idempotency/). */
export const kClaim = Symbol('fastify-precondition.idempotency')
/** On a reply: the ETag a 412 problem carries, the only one a problem may keep. */
export const kProblemEtag = Symbol('fastify-precondition.problemEtag')

/** What the answer's hook needs of the write gate: the handler has answered. */
export interface GateSlot {
  answer (): void
}

/** What others read of a request's claim: whether this answer is a stored one replayed. */
export interface ClaimSlot {
  readonly replayed: boolean
}

export interface RequestSlots {
  [kValidators]: Validators | null | undefined
  [kParsed]: Preconditions | null
  [kHeaders]: ConditionalHeaders | null
  [kWritten]: boolean
  [kGate]: GateSlot | null
  [kClaim]: ClaimSlot | null
}

export type SlottedRequest = FastifyRequest & RequestSlots
export type SlottedReply = FastifyReply & { [kProblemEtag]: string | null }

interface Decorating {
  decorateRequest: (name: string, value: unknown) => unknown
  decorateReply: (name: string, value: unknown) => unknown
}

/** Declares every slot and the public request properties, once per registration. */
export function declareSlots (fastify: Decorating): void {
  fastify.decorateRequest(kValidators as unknown as string, undefined)
  fastify.decorateRequest(kParsed as unknown as string, null)
  fastify.decorateRequest(kHeaders as unknown as string, null)
  fastify.decorateRequest(kWritten as unknown as string, false)
  fastify.decorateRequest(kGate as unknown as string, null)
  fastify.decorateRequest(kClaim as unknown as string, null)
  fastify.decorateReply(kProblemEtag as unknown as string, null)
  fastify.decorateRequest('lock', null)
  fastify.decorateRequest('preconditions', {
    getter (this: SlottedRequest): Preconditions {
      let parsed = this[kParsed]
      if (parsed === null) parsed = this[kParsed] = parsePreconditions(this[kHeaders] ?? this.headers)
      return parsed
    }
  })
  fastify.decorateRequest('idempotency', {
    getter (this: SlottedRequest): unknown {
      return this[kClaim]
    }
  })
}

/** The conditional headers as they arrived: a strict headers schema may have stripped them since. */
export function conditionalHeaders (request: FastifyRequest): ConditionalHeaders {
  return (request as SlottedRequest)[kHeaders] ?? request.headers
}

/** Whether this reply is a replay of a stored response (so an onSend hook leaves it as stored). */
export function isReplay (request: FastifyRequest): boolean {
  return (request as SlottedRequest)[kClaim]?.replayed === true
}

/** Whether this request carries a key that its handler will claim. */
export function isKeyed (request: FastifyRequest): boolean {
  return (request as SlottedRequest)[kClaim] !== null
}
