import * as crypto from 'node:crypto'

// crypto.hash (Node 20.12+, and the package needs 20.19) hashes in one call without a Hash
// object; it gives the SHA-1 base64 digest that @fastify/etag's createHash default produces.
const hash = (crypto as unknown as { hash: (algorithm: string, data: string | Buffer | Uint8Array, encoding: 'base64') => string }).hash

/**
 * A strong entity-tag for a representation's bytes: `"` + base64(SHA-1) + `"`, the same string
 * `@fastify/etag` produces by default, so a GET it served and a validator hashing the same
 * bytes agree.
 */
export function strongEtag (bytes: string | Buffer | Uint8Array): string {
  return '"' + hash('sha1', bytes, 'base64') + '"'
}
