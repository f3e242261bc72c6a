// The owner token of an idempotency claim: 12 random bytes, base64url (16 characters).
//
// randomBytes(12) per claim costs a synchronous crypto job each time, a few microseconds, a
// visible share of a keyed POST. The bytes come from a pool drawn 256 tokens at a time instead:
// each token is still 96 fresh random bits, used once.
import { randomBytes } from 'node:crypto'

const TOKEN_BYTES = 12
const POOL_TOKENS = 256

let pool = Buffer.alloc(0)
let offset = 0

export function claimToken (): string {
  if (offset === pool.length) {
    pool = randomBytes(TOKEN_BYTES * POOL_TOKENS)
    offset = 0
  }
  const token = pool.toString('base64url', offset, offset + TOKEN_BYTES)
  offset += TOKEN_BYTES
  return token
}
