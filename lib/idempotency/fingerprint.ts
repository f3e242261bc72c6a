// What makes two requests "the same request" for an Idempotency-Key: method, route, URL, scope
// and a SHA-256 of the body bytes as they arrived.
//
// The body is hashed as the content-type parser consumes it, seen through the stream's own 'data'
// events: every way of reading a Readable (a 'data' listener, pipe, read() in paused mode, async
// iteration) emits each chunk once as 'data', in order, when it is consumed. So the digest covers
// exactly the bytes the parser received, whatever kind of parser it is and whenever it starts
// reading, and the stream is neither replaced nor switched into flowing mode. A pass-through
// Transform in front of the parser did the same at several times the cost (a stream, a pipe and
// a tick per chunk), the largest share of a keyed POST. Hashing the parsed body
// (JSON.stringify of request.body) would call two different byte sequences the same request, and
// depend on the schema's coercions.
import * as crypto from 'node:crypto'
import { createHash, type Hash } from 'node:crypto'

// crypto.hash (Node 20.12+; the package needs 20.19) hashes in one call without a Hash object.
const hash = (crypto as unknown as { hash: (algorithm: string, data: string | Buffer, encoding: 'base64url') => string }).hash

/** The digest of an empty body. */
export const EMPTY_BODY_DIGEST = hash('sha256', '', 'base64url')

/**
 * Stands for the body when the handler, not a content-type parser, reads it: its digest is not
 * known before the handler runs, so such requests are told apart by method, route, URL and scope.
 */
export const UNREAD_BODY = 'unread'

type Emit = (this: NodeJS.ReadableStream, event: string | symbol, ...args: unknown[]) => boolean

/**
 * The SHA-256 of what a stream hands its reader; `digest` is set once the stream emitted 'end'.
 * A body of one chunk (most JSON bodies) is hashed in one call when it ends; a longer one is
 * hashed chunk by chunk, so no chunk is kept.
 */
export class BodyDigest {
  digest: string | null = null
  private first: Buffer | null = null
  private hash: Hash | null = null

  /** Starts watching `stream`; call it before the stream is handed to its reader. */
  constructor (stream: NodeJS.ReadableStream) {
    const emit = stream.emit as Emit
    const digest = this
    stream.emit = function emitHashed (this: NodeJS.ReadableStream, event: string | symbol, chunk?: unknown) {
      if (event === 'data') digest.update(chunk as Buffer | string)
      else if (event === 'end') digest.end()
      // arguments, not a rest parameter: no array per event.
      return emit.apply(this, arguments as unknown as [string | symbol, ...unknown[]])
    } as Emit
  }

  private update (chunk: Buffer | string): void {
    // A reader that called setEncoding() is handed strings: hash their UTF-8 bytes.
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (this.hash !== null) {
      this.hash.update(bytes)
    } else if (this.first === null) {
      this.first = bytes
    } else {
      this.hash = createHash('sha256').update(this.first).update(bytes)
      this.first = null
    }
  }

  private end (): void {
    if (this.hash !== null) this.digest = this.hash.digest('base64url')
    else this.digest = this.first === null ? EMPTY_BODY_DIGEST : hash('sha256', this.first, 'base64url')
    this.hash = null
    this.first = null
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
  /** `BodyDigest.digest`, `EMPTY_BODY_DIGEST` or `UNREAD_BODY`. */
  body: string
}

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
