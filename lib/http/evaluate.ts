// RFC 9110 §13.2.2, "Evaluation of Preconditions", as one pure function. It returns a number,
// not an object, so the request path allocates nothing to learn that a request may proceed.
import {
  anyStrongMatch, anyWeakMatch, isEntityTag, isEntityTagStart, normalizeEtag, parseEntityTag, parseEntityTags, strongCompare
} from './entity-tag.js'
import { parseHttpDate } from './http-date.js'
import { fieldValue } from './methods.js'

/** The validators of the current selected representation (RFC 9110 §8.8). */
export interface Validators {
  /** The entity-tag, quoted (`"v42"`, `W/"v42"`); a bare `v42` is quoted for you. */
  etag?: string
  /**
   * The last modification time: a Date, epoch milliseconds, or an HTTP-date or ISO 8601 string.
   * Compared at whole seconds, as HTTP-dates carry no more.
   */
  lastModified?: Date | number | string
}

/** The request header fields that evaluation reads. */
export interface ConditionalHeaders {
  'if-match'?: string | string[]
  'if-none-match'?: string | string[]
  'if-modified-since'?: string | string[]
  'if-unmodified-since'?: string | string[]
  'if-range'?: string | string[]
  range?: string | string[]
}

/** What evaluation decided. `PROCEED` is 0, so `if (outcome)` reads "something to answer". */
export const Outcome = {
  /** Perform the method. */
  PROCEED: 0,
  /** Perform the method, but ignore Range: If-Range did not match (§13.2.2 step 5). */
  IGNORE_RANGE: 1,
  /** 412: no If-Match member matched the current tag. */
  IF_MATCH_MISMATCH: 2,
  /** 412: an If-Match member matched only weakly, which strong comparison never accepts. */
  IF_MATCH_WEAK: 3,
  /** 412: If-Match held no valid entity-tag (unquoted, empty, garbage). */
  IF_MATCH_INVALID: 4,
  /** 412: If-Match was sent but no current representation exists. */
  IF_MATCH_NONE: 5,
  /** 412: the representation changed after the If-Unmodified-Since date. */
  IF_UNMODIFIED_SINCE: 6,
  /** 412: If-None-Match matched on a method other than GET/HEAD. */
  IF_NONE_MATCH: 7,
  /** 412: If-None-Match held no valid entity-tag on a method other than GET/HEAD. */
  IF_NONE_MATCH_INVALID: 8,
  /** 304: If-None-Match matched on GET/HEAD. */
  NOT_MODIFIED: 9,
  /** 304: not modified since the If-Modified-Since date. */
  NOT_MODIFIED_SINCE: 10
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare -- a value and its type, one name
export type Outcome = typeof Outcome[keyof typeof Outcome]

/** The HTTP status an outcome answers with; 0 when the method is performed. */
export function outcomeStatus (outcome: Outcome): 0 | 304 | 412 {
  if (outcome <= Outcome.IGNORE_RANGE) return 0
  return outcome >= Outcome.NOT_MODIFIED ? 304 : 412
}

/** The header field an outcome is about. */
export function outcomeHeader (outcome: Outcome): string {
  switch (outcome) {
    case Outcome.IF_UNMODIFIED_SINCE: return 'If-Unmodified-Since'
    case Outcome.IF_NONE_MATCH: case Outcome.IF_NONE_MATCH_INVALID: case Outcome.NOT_MODIFIED: return 'If-None-Match'
    case Outcome.NOT_MODIFIED_SINCE: return 'If-Modified-Since'
    case Outcome.IGNORE_RANGE: return 'If-Range'
    default: return 'If-Match'
  }
}

/** Seconds since the epoch, truncated: HTTP-dates have one-second resolution. */
export function toWholeSeconds (time: Date | number | string | undefined): number {
  if (time === undefined) return NaN
  if (typeof time === 'string') {
    const seconds = parseHttpDate(time)
    return Number.isNaN(seconds) ? Math.floor(Date.parse(time) / 1000) : seconds
  }
  return Math.floor((typeof time === 'number' ? time : time.getTime()) / 1000)
}

/**
 * Evaluates the preconditions of a request against the current representation.
 * `weakIfMatch` departs from §13.1.1 on purpose: If-Match compares weakly, so `W/"x"` matches
 * `"x"` (for deployments behind proxies that weaken tags; see the plugin option).
 * `current` is null when no representation exists; then only PUT evaluates its preconditions,
 * since any other method would answer 404 first (§13.2.1); a PUT that may not create
 * (`create` false) answers its 404 too.
 */
export function evaluate (method: string, headers: ConditionalHeaders, current: Validators | null, weakIfMatch = false, create = true): Outcome {
  if (current === null && (method !== 'PUT' || !create)) return Outcome.PROCEED
  // §13.2.1: "a server MUST ignore the conditional request header fields ... when received with
  // a request method that does not involve the selection or modification of a selected
  // representation, such as CONNECT, OPTIONS, or TRACE."
  if (method === 'OPTIONS' || method === 'TRACE' || method === 'CONNECT') return Outcome.PROCEED
  const getOrHead = method === 'GET' || method === 'HEAD'

  // Step 1: If-Match; step 2: otherwise If-Unmodified-Since.
  const ifMatch = fieldValue(headers['if-match'])
  if (ifMatch !== undefined) {
    const outcome = evaluateIfMatch(ifMatch, current, weakIfMatch)
    if (outcome !== Outcome.PROCEED) return outcome
  } else {
    const ifUnmodifiedSince = fieldValue(headers['if-unmodified-since'])
    if (ifUnmodifiedSince !== undefined && current !== null && current.lastModified !== undefined) {
      const since = parseHttpDate(ifUnmodifiedSince)
      // An invalid date is ignored (§13.1.4).
      if (!Number.isNaN(since) && toWholeSeconds(current.lastModified) > since) return Outcome.IF_UNMODIFIED_SINCE
    }
  }

  // Step 3: If-None-Match; step 4: otherwise If-Modified-Since, on GET and HEAD only.
  const ifNoneMatch = fieldValue(headers['if-none-match'])
  if (ifNoneMatch !== undefined) {
    // On a write every member must be valid: `*, "x"` is neither "any" nor a list, and a write
    // that asked for a condition it did not state clearly is refused rather than done unguarded.
    const tags = parseEntityTags(ifNoneMatch, !getOrHead)
    if (tags === '*') {
      if (current !== null) return getOrHead ? Outcome.NOT_MODIFIED : Outcome.IF_NONE_MATCH
    } else if (tags.length === 0) {
      // Nothing valid to compare. On a read that is harmless, so the field is ignored; a write
      // that asked for a condition it did not state is refused rather than done unguarded.
      if (!getOrHead) return Outcome.IF_NONE_MATCH_INVALID
    } else if (current !== null && current.etag !== undefined && anyWeakMatch(tags, normalizeEtag(current.etag))) {
      return getOrHead ? Outcome.NOT_MODIFIED : Outcome.IF_NONE_MATCH
    }
  } else if (getOrHead && current !== null && current.lastModified !== undefined) {
    const ifModifiedSince = fieldValue(headers['if-modified-since'])
    if (ifModifiedSince !== undefined) {
      const since = parseHttpDate(ifModifiedSince)
      if (!Number.isNaN(since) && toWholeSeconds(current.lastModified) <= since) return Outcome.NOT_MODIFIED_SINCE
    }
  }

  // Step 5: If-Range, which only matters to a GET with Range (and a GET got here with a
  // current representation: without one it proceeded above).
  if (method === 'GET' && headers.range !== undefined && current !== null) {
    const ifRange = fieldValue(headers['if-range'])
    if (ifRange !== undefined && !ifRangeHolds(ifRange, current)) return Outcome.IGNORE_RANGE
  }
  return Outcome.PROCEED
}

function evaluateIfMatch (ifMatch: string, current: Validators | null, weakIfMatch: boolean): Outcome {
  // The common case without a parse: the field is the current strong tag itself.
  const currentTag = current === null ? undefined : current.etag
  if (ifMatch === currentTag && currentTag.charCodeAt(0) === 0x22 && isEntityTag(currentTag)) return Outcome.PROCEED
  const tags = parseEntityTags(ifMatch)
  if (tags === '*') return current === null ? Outcome.IF_MATCH_NONE : Outcome.PROCEED
  if (tags.length === 0) return Outcome.IF_MATCH_INVALID
  if (current === null) return Outcome.IF_MATCH_NONE
  if (current.etag === undefined) return Outcome.IF_MATCH_MISMATCH
  const etag = normalizeEtag(current.etag)
  if (anyStrongMatch(tags, etag)) return Outcome.PROCEED
  if (!anyWeakMatch(tags, etag)) return Outcome.IF_MATCH_MISMATCH
  return weakIfMatch ? Outcome.PROCEED : Outcome.IF_MATCH_WEAK
}

// §13.1.5: an entity-tag holds by strong comparison; a date holds only when it is exactly the
// Last-Modified date (and, being a date, only a strong validator could make it safe; the
// server's Last-Modified is treated as such, as the resource owner supplied it).
// A "W" alone does not start a weak tag: "Wed, 21 Oct 2015 07:28:00 GMT" is a date.
function ifRangeHolds (ifRange: string, current: Validators): boolean {
  const trimmed = ifRange.trim()
  if (isEntityTagStart(trimmed)) {
    const tag = parseEntityTag(trimmed)
    return tag !== null && current.etag !== undefined && strongCompare(tag, normalizeEtag(current.etag))
  }
  const date = parseHttpDate(trimmed)
  return !Number.isNaN(date) && current.lastModified !== undefined && toWholeSeconds(current.lastModified) === date
}
