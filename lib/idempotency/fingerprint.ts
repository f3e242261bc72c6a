// What makes two requests "the same request" for an Idempotency-Key: method, route, URL, the
// body's media type and the body bytes as they arrived, hashed together with SHA-256 into one fingerprint. (The scope is not
// in it: it is part of the store key, so requests under two scopes never meet.)
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
//
// What is hashed, as UTF-8: the head — method, route, URL and media type, each length-prefixed, so no choice
// of values can make two different requests encode alike ("a" + "bc" against "ab" + "c") — then
// "b" and the body bytes read as latin1 (one character a byte), or "u" when no parser read a body
// (there was none, or the handler reads it itself, so its bytes are not known before it runs and
// such requests are told apart by their head alone). Whether there is a body is left to the
// parser: Fastify parses one wherever there is a Content-Type, and an HTTP/2 request may carry
// one without Content-Length or Transfer-Encoding.
import * as crypto from 'node:crypto'
import { createHash, type Hash } from 'node:crypto'

// crypto.hash (Node 20.12+; the package needs 20.19) hashes in one call without a Hash object.
const hash = (crypto as unknown as { hash: (algorithm: string, data: string | Buffer, encoding: 'base64url') => string }).hash

type Emit = (this: NodeJS.ReadableStream, event: string | symbol, ...args: unknown[]) => boolean

/**
 * The fingerprint of a request whose body a stream hands its reader; `fingerprint` is set once the
 * stream emitted 'end'. A body of one chunk (most JSON bodies) is hashed in one call when it ends;
 * a longer one chunk by chunk, so no chunk is kept. Body bytes are hashed as a latin1 string (one
 * character a byte, so still one input a body), not through a Buffer made per request: small
 * Buffers come from slabs that the stored answers keep alive, which cost a long fresh-key run
 * 18 MB of RSS after GC; strings live and die in the V8 heap.
 */
export class BodyDigest {
  fingerprint: string | null = null
  /** The request head (requestHead), as given. */
  private readonly head: string
  private first: string | null = null
  private hash: Hash | null = null

  /** Starts watching `stream`; call it before the stream is handed to its reader. */
  constructor (stream: NodeJS.ReadableStream, head: string) {
    this.head = head
    const emit = stream.emit as Emit
    const digest = this
    stream.emit = function emitHashed (this: NodeJS.ReadableStream, event: string | symbol, chunk?: unknown) {
      if (event === 'data') digest.update(chunk as Buffer | string)
      else if (event === 'end') digest.end()
      // arguments, not a rest parameter: no array per event.
      return emit.apply(this, arguments as unknown as [string | symbol, ...unknown[]])
    } as Emit
  }

  /**
   * The request's fingerprint: over its body once the stream ended, else (no parser read a body:
   * there was none, or the handler reads it itself) over its head alone.
   */
  result (): string {
    return this.fingerprint ?? unreadFingerprint(this.head)
  }

  private update (chunk: Buffer | string): void {
    // A reader that called setEncoding() is handed strings: hash their UTF-8 bytes.
    const text = (typeof chunk === 'string' ? Buffer.from(chunk) : chunk).toString('latin1')
    if (this.hash !== null) {
      this.hash.update(text)
    } else if (this.first === null) {
      this.first = text
    } else {
      this.hash = createHash('sha256').update(this.head + 'b').update(this.first).update(text)
      this.first = null
    }
  }

  private end (): void {
    if (this.hash !== null) this.fingerprint = this.hash.digest('base64url')
    else this.fingerprint = hash('sha256', this.first === null ? this.head + 'b' : this.head + 'b' + this.first, 'base64url')
    this.hash = null
    this.first = null
  }
}

function encoded (part: string): string {
  return String(Buffer.byteLength(part)) + ':' + part + ';'
}

/** The media type of a Content-Type field: lower case, without parameters ('' when absent). */
export function mediaType (contentType: string | undefined): string {
  if (contentType === undefined) return ''
  const end = contentType.indexOf(';')
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase()
}

/**
 * What a fingerprint hashes before the body: method, route (as declared), URL (as sent) and the
 * body's media type, so the same bytes sent as text/plain and as JSON are two requests.
 */
export function requestHead (method: string, route: string, url: string, contentType?: string): string {
  return encoded(method) + encoded(route) + encoded(url) + encoded(mediaType(contentType))
}

/**
 * requestHead for the requests of one route: the route's part encoded once, and the parts of the
 * last method and media type seen kept (a route sees one or two of each), so a request pays for
 * its URL's part alone. Gives what requestHead gives.
 */
export function routeHead (route: string): (method: string, url: string, contentType?: string) => string {
  const routePart = encoded(route)
  let lastMethod = ''
  let methodPart = ''
  let lastType: string | undefined
  let typePart = encoded('')
  return function head (method: string, url: string, contentType?: string): string {
    if (method !== lastMethod) {
      lastMethod = method
      methodPart = encoded(method) + routePart
    }
    if (contentType !== lastType) {
      lastType = contentType
      typePart = encoded(mediaType(contentType))
    }
    return methodPart + encoded(url) + typePart
  }
}

/** The fingerprint of a request whose body no parser read (it had none, or the handler reads it). */
export function unreadFingerprint (head: string): string {
  return hash('sha256', head + 'u', 'base64url')
}

/**
 * The store key of an Idempotency-Key under a scope (the owner; '' on a route without `scope`).
 * Without a scope it is the key itself: the header's own string, kept by the store as it is (no
 * new string per request, and none kept beside it). Under a scope: a space, the owner's length,
 * ':', the owner, then the key. A key is visible ASCII (parseIdempotencyKey), so it never starts
 * with a space, and the length says where the owner ends: no choice of owners and keys makes two
 * pairs one store key ("a:" + "b" against "a" + ":b").
 */
export function storeKey (owner: string, key: string): string {
  return owner === '' ? key : ' ' + String(owner.length) + ':' + owner + key
}

/** The owner a store key was made under ('' without a scope): what storeKey put in front of the key. */
export function scopeOf (key: string): string {
  if (key.charCodeAt(0) !== 32) return ''
  const colon = key.indexOf(':')
  return key.slice(colon + 1, colon + 1 + Number(key.slice(1, colon)))
}
