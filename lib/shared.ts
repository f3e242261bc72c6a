// The small helpers every part of the plugin uses, written once. Imports nothing at run time, so
// every module may use it (observe.ts and the otel subpath too).
import type { FastifyReply, RouteOptions } from 'fastify'

export function isThenable<T> (value: unknown): value is PromiseLike<T> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<T>).then === 'function'
}

/** For a promise whose failure is handled elsewhere, or does not matter. */
export function ignore (): void {}

/** An error's message, or the thrown value as text. */
export function message (error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** `a`, `a or b`, `a, b or c`. */
export function orList (names: readonly string[]): string {
  return names.length === 1 ? names[0] : names.slice(0, -1).join(', ') + ' or ' + names[names.length - 1]
}

/**
 * True when the client of this response is gone. An HTTP/2 response has no `destroyed`: its
 * stream tells. Needed before listening for 'close', which may have fired already.
 */
export function clientGone (raw: FastifyReply['raw']): boolean {
  const stream = (raw as { stream?: { destroyed: boolean } }).stream
  return stream !== undefined ? stream.destroyed : (raw as { destroyed?: boolean }).destroyed === true
}

/**
 * What a wrapping handler hands Fastify: the handler's own result, or the reply where it
 * answers by itself (from a callback, or hijacked), so the promise gives the reply, which settles
 * once the response has ended. Given undefined, Fastify would send an empty answer at once.
 */
export function orReply (result: unknown, reply: FastifyReply): unknown {
  return result === undefined ? reply : result
}

export type RouteHookName = 'onRequest' | 'preParsing' | 'preHandler' | 'preSerialization' | 'onSend'

/**
 * Appends `hook` after the route's own hooks of that name, as a fresh array: user arrays are
 * shared with Fastify's automatic HEAD route.
 */
export function appendHook (routeOptions: RouteOptions, name: RouteHookName, hook: unknown): void {
  const existing = routeOptions[name] as unknown
  const list = existing === undefined ? [] : Array.isArray(existing) ? [...existing] : [existing]
  list.push(hook)
  ;(routeOptions as unknown as Record<string, unknown>)[name] = list
}
