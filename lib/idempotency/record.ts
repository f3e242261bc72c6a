// A streamed answer, recorded as it flows to its client, or drained and recorded when nobody reads it.
import type { Readable } from 'node:stream'
import { ignore } from '../shared.js'
import type { StoredResponse } from './store.js'

/** What recording needs of a claim. */
export interface Recording {
  /** Past what the store keeps. */
  tooLarge (bytes: number): boolean
  /** The answer to store, with the reply's status and the headers that are replayed. */
  response (status: number, body: Buffer | string): StoredResponse
  keep (response: StoredResponse, after: () => void): void
  /** Applied, its answer not kept. */
  notKept (): void
  /** Broken off: the key is let go. */
  release (): void
}

/**
 * Records a stream's bytes as it is read for its client, and stores them once it has ended.
 * `draining`: nobody else reads it, so past the store's limit it is stopped.
 */
export function recordStream (claim: Recording, stream: Readable, status: number, draining: boolean): void {
  // Past the limit a stream nobody else reads is stopped; one its client reads flows on.
  const stop: () => unknown = draining ? stream.destroy.bind(stream) : ignore
  const chunks: Buffer[] = []
  let bytes = 0
  let kept = true
  let ended = false
  const emit = stream.emit
  stream.emit = function recordAnswer (this: Readable, event: string | symbol, chunk?: unknown) {
    if (event === 'data' && kept) {
      const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer
      bytes += piece.length
      if (claim.tooLarge(bytes)) {
        kept = false
        chunks.length = 0
        stop()
      } else {
        chunks.push(piece)
      }
    } else if (event === 'end') {
      ended = true
      if (kept) claim.keep(claim.response(status, Buffer.concat(chunks)), ignore)
      else claim.notKept()
    } else if (event === 'error') {
      // The answer broke off: as a 5xx, the key is let go.
      if (!ended) {
        ended = true
        claim.release()
      }
    } else if (event === 'close' && !ended) {
      // Destroyed before its end (its client left): applied, its answer not whole.
      ended = true
      claim.notKept()
    }
    return emit.apply(this, arguments as unknown as [string | symbol, ...unknown[]])
  } as typeof stream.emit
}
