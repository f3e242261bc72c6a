// The options both helpers share, and their checking: one call's options become the Sender its
// requests are sent with.

/**
 * How both helpers send a write, and resend it when its answer is lost. A write carries an
 * `Idempotency-Key`: one key per change, the same on every resend of that change, so a server
 * that honours the header (the plugin's `concurrency.idempotency`) applies it once and answers a
 * resend with the stored response.
 */
export interface WriteOptions {
  /** Headers sent with every request (e.g. authorization). */
  headers?: Record<string, string>
  /** The media type of the write's body. Default `'application/json'`. */
  contentType?: string
  /** Cancels the update, between or during requests. */
  signal?: AbortSignal
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch
  /** The backoff before the second try, in ms; it doubles with every further try. Default 50. */
  baseDelay?: number
  /** The longest backoff, in ms. Default 2000. */
  maxDelay?: number
  /**
   * The Idempotency-Key of the change (of its first write, for `conditionalUpdate`), e.g. the
   * `idempotencyKey` of an `OutcomeUnknownError`, to settle that change. Default: a new random
   * UUID. `false` sends none: a write whose answer is lost is then never resent.
   */
  idempotencyKey?: string | false
  /**
   * How many times one write is resent, with the same key, when no answer came (the fetch
   * rejected or `timeout` passed) or the server answered 409 because the key's first request was
   * still running. Reads are resent as often. Default 3.
   */
  maxResends?: number
  /** The longest wait for each request's whole response, in ms; a longer one counts as lost. Default: none. */
  timeout?: number
}

/** A number option, checked: a whole number or a finite number of ms, at least `min`. */
export function checkNumber (helper: string, name: string, value: unknown, min: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new TypeError(`${helper}: ${name} must be ${integer ? 'a whole number' : 'a finite number of ms'}, ${min} or more; got ${String(value)}`)
  }
  return value
}

/** How one call of a helper sends its requests: its options, checked. */
export interface Sender {
  fetch: typeof fetch
  signal: AbortSignal | undefined
  timeout: number | undefined
  baseDelay: number
  maxDelay: number
  maxResends: number
  headers: Record<string, string>
  contentType: string
}

export function toSender (helper: string, options: WriteOptions): Sender {
  return {
    fetch: options.fetch ?? fetch,
    signal: options.signal,
    timeout: options.timeout === undefined ? undefined : checkNumber(helper, 'timeout', options.timeout, 1, false),
    baseDelay: checkNumber(helper, 'baseDelay', options.baseDelay ?? 50, 0, false),
    maxDelay: checkNumber(helper, 'maxDelay', options.maxDelay ?? 2000, 0, false),
    maxResends: checkNumber(helper, 'maxResends', options.maxResends ?? 3, 0, true),
    headers: options.headers ?? {},
    contentType: options.contentType ?? 'application/json'
  }
}
