// Documents a route's policy in its schema, so @fastify/swagger shows the precondition headers
// and the 304/412/428 answers. Runs once, when the route is declared.
import type { RouteOptions } from 'fastify'
import type { Policy } from './policy.js'
import { ProblemDetailsSchema, type ProblemWriter } from './problem.js'

const HEADER_DESCRIPTIONS: Record<string, string> = {
  'if-match': 'The ETag of the representation this write is based on, as a GET of the resource returned it (or * for any current representation). A stale value is answered 412.',
  'if-none-match': 'Entity-tags the client already has (GET: answered 304 when one matches), or * to create only when the resource does not exist.',
  'if-unmodified-since': 'The Last-Modified date of the representation this write is based on, as a GET returned it. A later modification is answered 412.'
}

type Schema = Record<string, unknown>

function isObject (value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Adds the policy's headers and responses to a copy of the route's schema. */
export function documentRoute (routeOptions: RouteOptions, policy: Policy, problems: ProblemWriter): void {
  const schema: Schema = { ...(routeOptions.schema as Schema | undefined) }
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  const writes = methods.some((method) => !['GET', 'HEAD', 'OPTIONS', 'TRACE'].includes(method))
  const reads = methods.some((method) => method === 'GET' || method === 'HEAD')

  const response: Schema = { ...(schema.response as Schema | undefined) }
  const problem = (description: string): Schema => ({
    description,
    content: { 'application/problem+json': { schema: ProblemDetailsSchema } }
  })
  if (policy.required !== null && writes) {
    // Documented, not validated: marking them required would turn a 428 into a 400.
    const headers: Schema = isObject(schema.headers) ? { ...schema.headers } : { type: 'object' }
    const properties: Schema = { ...(headers.properties as Schema | undefined) }
    for (const name of policy.required) {
      if (properties[name] === undefined) {
        properties[name] = { type: 'string', description: HEADER_DESCRIPTIONS[name] }
      }
    }
    headers.properties = properties
    schema.headers = headers
    if (response['428'] === undefined) {
      response['428'] = problem(`${problems.messages.titles[428]}: send ${policy.required.join(' or ')}`)
    }
  }
  if (policy.validators !== null) {
    if (response['412'] === undefined && (writes || policy.required !== null)) {
      response['412'] = problem(`${problems.messages.titles[412]}: the resource changed since the client read it; the current ETag is in the ETag header`)
    }
    if (reads && response['304'] === undefined) {
      response['304'] = { description: 'Not Modified: the representation matches If-None-Match or has not changed since If-Modified-Since', type: 'null' }
    }
    for (const [status, entry] of Object.entries(response)) {
      if (!/^2/.test(status) && status !== '304') continue
      if (!isObject(entry)) continue
      const entryHeaders: Schema = { ...(entry.headers as Schema | undefined) }
      entryHeaders.ETag ??= { type: 'string', description: 'The strong entity-tag of the representation; send it back in If-Match to update it' }
      entryHeaders['Last-Modified'] ??= { type: 'string', description: 'When the representation last changed (HTTP-date)' }
      response[status] = { ...entry, headers: entryHeaders }
    }
  }
  if (Object.keys(response).length > 0) schema.response = response
  routeOptions.schema = schema
}
