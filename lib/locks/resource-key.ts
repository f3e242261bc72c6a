// The default resource key of a locked write: the matched route and its decoded params. Every
// spelling the router sends to one route and one set of params (`/items/1`, `/items/%31`, and with
// the router's options `/items/1/`, `/ITEMS/1`, `//items//1`) is one resource, one lock.
import type { FastifyRequest } from 'fastify'

/**
 * The key function for a route declared at `url` (with its prefix). Each param is written with its
 * length, so no value can pass for two (`a|b` + `c` against `a` + `b|c`).
 */
export function routeKey (url: string): (request: FastifyRequest) => string {
  return function defaultKey (request: FastifyRequest): string {
    const params = request.params as Record<string, unknown> | null | undefined
    let key = url
    if (params !== null && typeof params === 'object') {
      for (const name in params) {
        const value = String(params[name])
        key += '\n' + name + '=' + value.length + ':' + value
      }
    }
    return key
  }
}
