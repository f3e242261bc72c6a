// Adding the plugin's hooks to a route's options, shared by the precondition and the
// Idempotency-Key wiring.
import type { RouteOptions } from 'fastify'

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
