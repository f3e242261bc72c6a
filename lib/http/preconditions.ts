import { isEntityTagStart, parseEntityTag, parseEntityTags, type EntityTagCondition } from './entity-tag.js'
import type { ConditionalHeaders } from './evaluate.js'
import { parseHttpDate } from './http-date.js'
import { fieldValue as single } from './methods.js'

/** The precondition header fields a route can demand with `require`. */
export type RequirableHeader = 'if-match' | 'if-unmodified-since' | 'if-none-match'

/** The conditional request headers, parsed; what `request.preconditions` returns. */
export interface Preconditions {
  /** `'*'`, the valid tags (maybe none, when all were malformed), or null when absent. */
  ifMatch: EntityTagCondition | null
  ifNoneMatch: EntityTagCondition | null
  /** null when absent or not a valid HTTP-date. */
  ifModifiedSince: Date | null
  ifUnmodifiedSince: Date | null
  /** An entity-tag or a date, or null when absent or invalid. */
  ifRange: { etag: string } | { date: Date } | null
}

function date (value: string | undefined): Date | null {
  if (value === undefined) return null
  const seconds = parseHttpDate(value)
  return !Number.isNaN(seconds) ? new Date(seconds * 1000) : null
}

export function parsePreconditions (headers: ConditionalHeaders): Preconditions {
  const ifMatch = single(headers['if-match'])
  const ifNoneMatch = single(headers['if-none-match'])
  const ifRange = single(headers['if-range'])?.trim()
  let range: Preconditions['ifRange'] = null
  if (ifRange !== undefined) {
    if (isEntityTagStart(ifRange)) {
      // One entity-tag, not a list: `"a",` is no If-Range, as evaluation agrees.
      const etag = parseEntityTag(ifRange)
      if (etag !== null) range = { etag }
    } else {
      const when = date(ifRange)
      if (when !== null) range = { date: when }
    }
  }
  return {
    ifMatch: ifMatch === undefined ? null : parseEntityTags(ifMatch),
    ifNoneMatch: ifNoneMatch === undefined ? null : parseEntityTags(ifNoneMatch),
    ifModifiedSince: date(single(headers['if-modified-since'])),
    ifUnmodifiedSince: date(single(headers['if-unmodified-since'])),
    ifRange: range
  }
}

/**
 * True when the request carries one of the required headers in a usable form: an entity-tag
 * header counts when present (a malformed one is then answered 412 by evaluation, never
 * ignored); a date header only when it is a valid HTTP-date.
 */
export function hasUsablePrecondition (headers: ConditionalHeaders, required: RequirableHeader[]): boolean {
  for (let i = 0; i < required.length; i++) {
    const name = required[i]
    const value = headers[name]
    if (value === undefined) continue
    if (name !== 'if-unmodified-since') return true
    const seconds = parseHttpDate(single(value) as string)
    if (!Number.isNaN(seconds)) return true
  }
  return false
}

/**
 * The versions an If-Match names, for a handler's own compare-and-swap
 * (`UPDATE items SET … WHERE id = $1 AND version = ANY($2)`): `'any'` for `*`, `null` when the
 * request carries no If-Match, else what `parse` makes of each strong tag's opaque part
 * (`"v7"` → `parse('v7')`). Weak tags are left out (strong comparison never matches them), and so
 * are the values `parse` refuses (undefined). An empty array matches nothing: answer 412, with
 * `reply.failPrecondition(current)`, which says why.
 */
export function ifMatchVersions<T> (preconditions: Preconditions, parse: (opaque: string) => T | undefined): T[] | 'any' | null {
  const condition = preconditions.ifMatch
  if (condition === null || condition === '*') return condition === null ? null : 'any'
  const versions: T[] = []
  for (const tag of condition) {
    if (tag.charCodeAt(0) !== 0x22) continue
    const version = parse(tag.slice(1, -1))
    if (version !== undefined) versions.push(version)
  }
  return versions
}
