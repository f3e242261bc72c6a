// The waits between tries: a jittered, growing backoff, and a sleep the caller's signal can end.
import type { Sender } from './options.js'

/**
 * The wait before attempt `attempt + 1`, in ms: "full jitter", a uniformly random share of
 * `baseDelay · 2^(attempt−1)`, capped at `maxDelay`, so clients that collided spread out.
 */
export function retryDelay (attempt: number, baseDelay: number, maxDelay: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxDelay, baseDelay * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * ceiling)
}

/** The backoff of one call before attempt `attempt + 1`, with its `baseDelay` and `maxDelay`. */
export function backoff (sender: Sender, attempt: number): number {
  return retryDelay(attempt, sender.baseDelay, sender.maxDelay)
}

export function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    // Thrown here, it rejects the promise: an abort that came before the wait ends it at once.
    signal?.throwIfAborted()
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
