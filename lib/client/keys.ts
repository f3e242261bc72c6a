// Idempotency-Keys: a new one, the caller's checked, and the header that carries one.

/**
 * A new Idempotency-Key: a random (version 4) UUID. `crypto.randomUUID` exists only in secure
 * contexts (HTTPS, localhost) of a browser; `crypto.getRandomValues` everywhere.
 */
export function newIdempotencyKey (): string {
  if (typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID()
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

// What the plugin (and the draft) accept: 1 to 255 visible ASCII characters.
const KEY = /^[\x21-\x7e]{1,255}$/

/** The key of a change's first write: the caller's, none (`false`), or a new one. */
export function firstKey (helper: string, option: unknown): string | null {
  if (option === false) return null
  if (option === undefined) return newIdempotencyKey()
  if (typeof option !== 'string' || !KEY.test(option)) {
    throw new TypeError(`${helper}: idempotencyKey must be 1 to 255 visible ASCII characters, or false; got ${JSON.stringify(option)}`)
  }
  return option
}

/** The key as the header's value: a structured-field String, as the draft defines it. */
function keyField (key: string): string {
  return '"' + key.replace(/[\\"]/g, '\\$&') + '"'
}

/** The Idempotency-Key header of a write, or no header when it is sent without a key. */
export function keyHeader (key: string | null): Record<string, string> {
  return key === null ? {} : { 'idempotency-key': keyField(key) }
}
