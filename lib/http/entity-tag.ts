// Entity-tag lists as RFC 9110 §8.8.3 and §13.1.1/§13.1.2 define them:
//   If-Match = "*" / #entity-tag      entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE
//   etagc    = %x21 / %x23-7E / obs-text
// A comma is a valid etagc, so a list cannot be split on commas: it is scanned once, left to
// right, quoted string by quoted string. Invalid members are dropped; the scan never throws and
// never looks at a character twice (linear in the header's length).

/** A parsed If-Match or If-None-Match: `'*'`, or the valid entity-tags it lists (maybe none). */
export type EntityTagCondition = '*' | string[]

const DQUOTE = 0x22
const COMMA = 0x2c
const SPACE = 0x20
const TAB = 0x09

function isEtagc (c: number): boolean {
  return c === 0x21 || (c >= 0x23 && c <= 0x7e) || (c >= 0x80 && c <= 0xff)
}

/**
 * Parses an entity-tag list header field value. Returns `'*'` for a lone star, otherwise the
 * valid members in order, each as sent (`"xyz"` or `W/"xyz"`). An empty array means the field
 * was present but held no valid member. With `strict`, one invalid member (a `*` in a list
 * among them) makes the whole field invalid: an empty array.
 */
export function parseEntityTags (value: string, strict = false): EntityTagCondition {
  const length = value.length
  // The common case, one well-formed strong tag, costs a scan and no intermediate strings.
  if (length >= 2 && value.charCodeAt(0) === DQUOTE && value.charCodeAt(length - 1) === DQUOTE) {
    let i = 1
    while (i < length - 1 && isEtagc(value.charCodeAt(i))) i++
    if (i === length - 1) return [value]
  }
  const tags: string[] = []
  let i = 0
  while (i < length) {
    let c = value.charCodeAt(i)
    if (c === SPACE || c === TAB || c === COMMA) { i++; continue }
    const start = i
    let valid = true
    if (c === 0x2a /* * */) {
      i++
      // "*" is only valid as the whole field value.
      let j = i
      while (j < length && (value.charCodeAt(j) === SPACE || value.charCodeAt(j) === TAB)) j++
      if (tags.length === 0 && j === length && onlyWhitespaceBefore(value, start)) return '*'
      valid = false
    } else {
      if (c === 0x57 /* W */ && value.charCodeAt(i + 1) === 0x2f /* / */) {
        i += 2
        c = value.charCodeAt(i)
      }
      if (c !== DQUOTE) {
        valid = false
      } else {
        i++
        while (i < length) {
          c = value.charCodeAt(i)
          if (c === DQUOTE) break
          if (!isEtagc(c)) { valid = false; break }
          i++
        }
        if (valid && i >= length) valid = false // no closing quote
        if (valid) i++ // past the closing quote
      }
    }
    if (valid) {
      const end = i
      while (i < length && (value.charCodeAt(i) === SPACE || value.charCodeAt(i) === TAB)) i++
      if (i === length || value.charCodeAt(i) === COMMA) {
        tags.push(value.slice(start, end))
        continue
      }
    }
    if (strict) return []
    // Drop the invalid member: resume after the next comma that is outside a quoted string
    // as far as this member's own quotes go. Every character is passed once.
    while (i < length && value.charCodeAt(i) !== COMMA) i++
  }
  return tags
}

/**
 * Parses a field that holds exactly one entity-tag, as If-Range = entity-tag / HTTP-date does:
 * the tag, or null for anything else, including a list or a tag with a trailing comma.
 * Surrounding whitespace is allowed.
 */
export function parseEntityTag (value: string): string | null {
  const trimmed = value.trim()
  const tags = parseEntityTags(trimmed)
  return tags !== '*' && tags.length === 1 && tags[0].length === trimmed.length ? tags[0] : null
}

/** True when `value` begins the way an entity-tag does, `"` or `W/"`, not merely with a `W`. */
export function isEntityTagStart (value: string): boolean {
  const first = value.charCodeAt(0)
  return first === DQUOTE || (first === 0x57 && value.charCodeAt(1) === 0x2f && value.charCodeAt(2) === DQUOTE)
}

function onlyWhitespaceBefore (value: string, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = value.charCodeAt(i)
    if (c !== SPACE && c !== TAB) return false
  }
  return true
}

function isWeak (tag: string): boolean {
  return tag.charCodeAt(0) === 0x57
}

/** Strong comparison (RFC 9110 §8.8.3.2): both tags strong and their opaque-tags identical. */
export function strongCompare (a: string, b: string): boolean {
  return a === b && !isWeak(a)
}

/** Weak comparison (RFC 9110 §8.8.3.2): opaque-tags identical, weakness ignored. */
export function weakCompare (a: string, b: string): boolean {
  if (a === b) return true
  const aStart = isWeak(a) ? 2 : 0
  const bStart = isWeak(b) ? 2 : 0
  if (aStart === bStart) return false
  const length = a.length - aStart
  if (length !== b.length - bStart) return false
  return a.startsWith(b.slice(bStart), aStart)
}

/** True when any listed tag matches `current` by strong comparison. */
export function anyStrongMatch (tags: string[], current: string): boolean {
  for (let i = 0; i < tags.length; i++) {
    if (strongCompare(tags[i], current)) return true
  }
  return false
}

/** True when any listed tag matches `current` by weak comparison. */
export function anyWeakMatch (tags: string[], current: string): boolean {
  for (let i = 0; i < tags.length; i++) {
    if (weakCompare(tags[i], current)) return true
  }
  return false
}

/** True when `value` is exactly one entity-tag: `"…"` or `W/"…"` with only etagc inside. */
export function isEntityTag (value: string): boolean {
  const start = value.charCodeAt(0) === 0x57 && value.charCodeAt(1) === 0x2f ? 2 : 0
  const last = value.length - 1
  if (last - start < 1 || value.charCodeAt(start) !== DQUOTE || value.charCodeAt(last) !== DQUOTE) return false
  for (let i = start + 1; i < last; i++) {
    if (!isEtagc(value.charCodeAt(i))) return false
  }
  return true
}

/** True when `value` can be quoted into an entity-tag: etagc only, so no quote, space or control. */
export function isOpaqueTag (value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    if (!isEtagc(value.charCodeAt(i))) return false
  }
  return true
}

/**
 * Makes a validator's tag well-formed: a value given without quotes (`abc`) is quoted
 * (`"abc"`), so users may hand over a bare version string.
 */
export function normalizeEtag (etag: string): string {
  return etag.charCodeAt(etag.length - 1) === DQUOTE && etag.length >= 2 ? etag : '"' + etag + '"'
}
