// Store calls that may throw, answer a value, or answer a promise, and a bounded wait for them.
import { ignore, isThenable } from '../shared.js'

/**
 * Runs a store call that may throw, answer a value, or answer a promise. True when it is over
 * (`failed` or `succeeded` has run); false when its promise is still pending.
 */
export function call<T> (run: () => T | Promise<T>, failed: (error: unknown) => void, succeeded: (value: T) => void = ignore): boolean {
  let result
  try {
    result = run()
  } catch (error) {
    failed(error)
    return true
  }
  if (!isThenable<T>(result)) {
    succeeded(result)
    return true
  }
  result.then(succeeded, failed)
  return false
}

/**
 * How long an answer waits for its store before it goes out anyway, in ms: a store that hangs
 * (a partition, a client without commandTimeout) must not hold up an answer the handler has made.
 */
export const ANSWER_STORE_WAIT = 1000

/** `after`, called once: by the store being done, or by a timer ANSWER_STORE_WAIT ms from now. */
export function onceWithin (after: () => void): () => void {
  let called = false
  const once = (): void => {
    if (called) return
    called = true
    clearTimeout(timer)
    after()
  }
  const timer = setTimeout(once, ANSWER_STORE_WAIT)
  timer.unref()
  return once
}
