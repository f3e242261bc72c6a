// What makes two requests "the same request" for an Idempotency-Key: method, route, URL, scope
// and a SHA-256 of the body bytes as they arrived.
//
// The body is hashed as it streams, by a pass-through stage returned from a preParsing hook:
// every chunk is hashed once on its way to the content-type parser, nothing is copied or kept,
// and backpressure and the body limit work as before. Hashing what a parser receives instead
// would only work for parsers that buffer (parseAs string or buffer); a stream parser, or one that
// hands the stream to the handler, would be left out. Hashing the parsed body (JSON.stringify of
// request.body) would call two different byte sequences the same request, and depend on the
// schema's coercions.
import * as crypto from 'node:crypto'
import { createHash, type Hash } from 'node:crypto'
import { Transform, type TransformCallback } from 'node:stream'

/** The digest of an empty body. */
export const EMPTY_BODY_DIGEST = createHash('sha256').digest('base64url')

/**
 * Stands for the body when the handler, not a content-type parser, reads it: its digest is not
 * known before the handler runs, so such requests are told apart by method, route, URL and scope.
 */
export const UNREAD_BODY = 'unread'

/** A pass-through stream that hashes what flows through it; `digest` is set once it ended. */
export class DigestStream extends Transform {
  digest: string | null = null
  private readonly hash: Hash = createHash('sha256')
  private readonly source: NodeJS.ReadableStream & { receivedEncodedLength?: number }

  constructor (source: NodeJS.ReadableStream & { receivedEncodedLength?: number }) {
    super()
    this.source = source
  }

  /** Passed on from a stream an earlier preParsing hook returned (a decompressor), for the body limit. */
  get receivedEncodedLength (): number | undefined {
    return this.source.receivedEncodedLength
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk)
    callback(null, chunk)
  }

  override _flush (callback: TransformCallback): void {
    this.digest = this.hash.digest('base64url')
    callback()
  }
}

/** Whether a request has a body to read, by its head (as Fastify decides whether to parse one). */
export function hasBody (headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

export interface FingerprintParts {
  method: string
  /** The route as declared (`/orders/:id`). */
  route: string
  /** The request URL, path and query, as sent. */
  url: string
  scope: string
  /** `DigestStream.digest`, `EMPTY_BODY_DIGEST` or `UNREAD_BODY`. */
  body: string
}

// crypto.hash (Node 20.12+; the package needs 20.19) hashes in one call without a Hash object.
const hash = (crypto as unknown as { hash: (algorithm: string, data: string, encoding: 'base64url') => string }).hash

function encoded (part: string): string {
  return String(Buffer.byteLength(part)) + ':' + part + ';'
}

/**
 * One string for the parts, hashed. Every part is length-prefixed, so no choice of values can
 * make two different requests encode alike ("a" + "bc" against "ab" + "c"). Hashed in one call:
 * the digest is that of the parts hashed one after another, as stores already hold it.
 */
export function fingerprint (parts: FingerprintParts): string {
  return hash('sha256', encoded(parts.method) + encoded(parts.route) + encoded(parts.url) + encoded(parts.scope) + encoded(parts.body), 'base64url')
}
