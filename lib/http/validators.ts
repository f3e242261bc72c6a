// What a route's `validators` returned, checked before any of it is compared or sent as a header.
// A value that is not a valid entity-tag or date would otherwise go out as an ETag that no
// If-Match can ever match again, or as `Last-Modified: Invalid Date`.
import { isEntityTag, isOpaqueTag } from './entity-tag.js'
import type { Validators } from './evaluate.js'
import { parseHttpDate } from './http-date.js'

// ISO 8601 as JSON stores and ORMs write it: a date, optionally a time and a zone.
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/

function describe (value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (value instanceof Date) return 'an invalid Date'
  if (Array.isArray(value)) return 'an array'
  if (value === undefined || value === null) return String(value)
  if (typeof value === 'object') return 'an object'
  return `${typeof value} ${String(value)}`
}

function invalid (route: string, what: string, value: unknown, expected: string): TypeError {
  return new TypeError(`${route}: concurrency.validators returned ${what} ${describe(value)}; expected ${expected}`)
}

/** A tag as sent: a quoted entity-tag as is, a bare opaque value quoted. */
function toEntityTag (etag: unknown, route: string): string {
  if (typeof etag === 'string') {
    if (isEntityTag(etag)) return etag
    if (isOpaqueTag(etag)) return '"' + etag + '"'
  }
  throw invalid(route, 'etag', etag, 'an entity-tag ("v1", W/"v1") or a bare value of visible ASCII characters without quotes or spaces')
}

/** Epoch milliseconds or a Date; strings are read as HTTP-date or ISO 8601. */
function toTime (time: unknown, route: string): Date | number {
  if (time instanceof Date) {
    if (!Number.isNaN(time.getTime())) return time
  } else if (typeof time === 'number') {
    if (Number.isFinite(time)) return time
  } else if (typeof time === 'string') {
    const seconds = parseHttpDate(time)
    if (!Number.isNaN(seconds)) return seconds * 1000
    if (ISO_8601.test(time)) {
      const ms = Date.parse(time)
      if (!Number.isNaN(ms)) return ms
    }
  }
  throw invalid(route, 'lastModified', time, 'a valid Date, epoch milliseconds, or an HTTP-date or ISO 8601 string')
}

/**
 * Checks and normalises a `validators` result: `null`, or `{ etag?, lastModified? }` with a valid
 * entity-tag and a valid time. Returns the same object when nothing needs changing. Throws a
 * TypeError naming the route and the bad value otherwise.
 */
export function checkValidators (value: unknown, route: string): Validators | null {
  if (value === null) return null
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalid(route, '', value, '{ etag?, lastModified? } or null')
  }
  const { etag, lastModified } = value as { etag?: unknown, lastModified?: unknown }
  const tag = etag === undefined ? undefined : toEntityTag(etag, route)
  const time = lastModified === undefined ? undefined : toTime(lastModified, route)
  if (tag === etag && time === lastModified) return value as Validators
  return { etag: tag, lastModified: time }
}
