// The validator headers on the plugin's answers: ETag and Last-Modified from `validators`, and
// the route's `headers` on its 2xx and 304 answers.
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Validators } from '../http/evaluate.js'
import { formatHttpDate } from '../http/http-date.js'
import { checkHeaders, type Policy } from '../policy.js'

/**
 * `etagSet` null: both fields set. Else only the fields the reply has not set (the handler's own
 * win), `etagSet` saying whether it has an ETag (the caller asked the reply already).
 */
export function setValidatorHeaders (reply: FastifyReply, current: Validators | null | undefined, etagSet: boolean | null = null): void {
  if (current === null || current === undefined) return
  if (current.etag !== undefined && etagSet !== true) reply.header('etag', current.etag)
  if (current.lastModified !== undefined && !(etagSet !== null && reply.hasHeader('last-modified'))) {
    reply.header('last-modified', formatHttpDate(current.lastModified as Date | number))
  }
}

export function unsetValidatorHeaders (reply: FastifyReply, current: Validators): void {
  if (current.etag !== undefined && reply.getHeader('etag') === current.etag) reply.removeHeader('etag')
  if (current.lastModified !== undefined && reply.getHeader('last-modified') === formatHttpDate(current.lastModified as Date | number)) {
    reply.removeHeader('last-modified')
  }
}

export function setRouteHeaders (request: FastifyRequest, reply: FastifyReply, headers: NonNullable<Policy['headers']>, route: string): void {
  const fields = typeof headers === 'function' ? checkHeaders(headers(request), route) : headers
  for (const name in fields) {
    if (!reply.hasHeader(name)) reply.header(name, fields[name])
  }
}
