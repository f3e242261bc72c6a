// The Idempotency-Key request header (draft-ietf-httpapi-idempotency-key-header): an RFC 8941
// structured-field String ("abc"); a bare token (abc) is accepted too, since clients commonly send
// UUIDs unquoted. Pure, linear in the field's length, never throws.

/** The longest key accepted, in characters. */
export const MAX_KEY_LENGTH = 255

/** A parsed header: the key, or why there is none. */
export type ParsedIdempotencyKey =
  | { ok: true, key: string }
  | { ok: false, reason: 'missing' | 'invalid' }

const MISSING: ParsedIdempotencyKey = { ok: false, reason: 'missing' }
const INVALID: ParsedIdempotencyKey = { ok: false, reason: 'invalid' }

// tchar (RFC 9110 §5.6.2) plus ":" and "/", which sf-token allows after its first character.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:/]{1,255}$/

function isVisible (code: number): boolean {
  return code > 0x20 && code < 0x7f
}

/**
 * Reads the Idempotency-Key field value as Node gives it (`request.headers['idempotency-key']`).
 * An absent field is `missing`; an empty one is `invalid`.
 * The key is the string's content, so `"abc"` and `abc` are the same key. Refused (invalid): an
 * empty string, more than 255 characters, any character that is not visible ASCII (a space
 * included, although sf-string allows it: a key is an identifier, and a space in one is a client
 * bug more often than a choice), a bad escape, anything after the closing quote (parameters too),
 * and a field sent twice (which Node joins with ", ").
 */
export function parseIdempotencyKey (value: string | string[] | undefined): ParsedIdempotencyKey {
  if (value === undefined) return MISSING
  if (typeof value !== 'string') return INVALID
  // Surrounding whitespace is not part of a field value (RFC 9110 §5.5); Node keeps tabs.
  let start = 0
  let end = value.length
  while (start < end && (value.charCodeAt(start) === 0x20 || value.charCodeAt(start) === 0x09)) start++
  while (end > start && (value.charCodeAt(end - 1) === 0x20 || value.charCodeAt(end - 1) === 0x09)) end--
  if (start === end) return INVALID
  if (value.charCodeAt(start) !== 0x22) {
    const token = value.slice(start, end)
    return TOKEN.test(token) ? { ok: true, key: token } : INVALID
  }
  let key = ''
  for (let i = start + 1; i < end; i++) {
    const code = value.charCodeAt(i)
    if (code === 0x5c) {
      // sf-string: a backslash escapes only DQUOTE and itself.
      const next = value.charCodeAt(++i)
      if (next !== 0x22 && next !== 0x5c) return INVALID
      key += value[i]
    } else if (code === 0x22) {
      if (i !== end - 1 || key.length === 0 || key.length > MAX_KEY_LENGTH) return INVALID
      return { ok: true, key }
    } else if (isVisible(code)) {
      key += value[i]
    } else {
      return INVALID
    }
    if (key.length > MAX_KEY_LENGTH) return INVALID
  }
  return INVALID
}
