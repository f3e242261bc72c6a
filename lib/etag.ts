import * as crypto from 'node:crypto'

// crypto.hash (Node 20.12+) hashes in one call without a Hash object; older runtimes fall back
// to createHash. Both give the SHA-1 base64 digest that @fastify/etag's default produces.
const oneShot = (crypto as { hash?: (algorithm: string, data: string | Buffer | Uint8Array, encoding: 'base64') => string }).hash

/**
 * A strong entity-tag for a representation's bytes: `"` + base64(SHA-1) + `"`, the same string
 * `@fastify/etag` produces by default, so a GET it served and a validator hashing the same
 * bytes agree.
 */
export function strongEtag (bytes: string | Buffer | Uint8Array): string {
  if (oneShot !== undefined) return '"' + oneShot('sha1', bytes, 'base64') + '"'
  /* c8 ignore next */
  return '"' + crypto.createHash('sha1').update(bytes).digest('base64') + '"'
}
