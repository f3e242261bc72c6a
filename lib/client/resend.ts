// Sending until an answer settles it: a write resent with its key after a lost answer or a 409
// that says the key is in use, a read resent after a lost answer, each within `maxResends`.
import { keyInUse, responseError } from './answers.js'
import { backoff, sleep } from './backoff.js'
import { OutcomeUnknownError, ReadFailedError, type UnsettledWrite } from './errors.js'
import { exchange, mergeHeaders, retryAfterSeconds, type Answer } from './http.js'
import type { Sender } from './options.js'

/** The longest Retry-After of a 409 that is waited for, in seconds; a longer one gets the backoff. */
const MAX_RETRY_AFTER = 60

function outcomeUnknown (write: UnsettledWrite, why: string, cause: unknown, sends: number): OutcomeUnknownError {
  const next = write.idempotencyKey === null
    ? 'It was sent without an Idempotency-Key, so it cannot be resent safely.'
    : `Send it again with Idempotency-Key ${write.idempotencyKey} to learn its outcome without applying it twice.`
  return new OutcomeUnknownError(`${write.method} ${write.url}: ${why}; the change may or may not have been applied. ${next}`, write, cause, sends)
}

// A function, so that TypeScript does not take `aborted` for constant across awaits.
function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

function describe (error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error)
}

/**
 * Sends a write until an answer settles it: resent with the same key after a lost answer or a
 * 409, within `maxResends`. Throws `OutcomeUnknownError` when nothing settles it.
 */
export async function settleWrite (sender: Sender, write: UnsettledWrite): Promise<Answer> {
  const { signal } = sender
  // How many times the write was sent so far.
  let sent = 0
  const wait = async (ms: number): Promise<void> => {
    try {
      await sleep(ms, signal)
    } catch (reason) {
      throw outcomeUnknown(write, `it was aborted while waiting to be resent (${describe(reason)})`, reason, sent)
    }
  }
  // The typed error of an answer to this write, the cause of an outcome left unknown.
  const errorOf = (answer: Answer) => responseError(answer, write.method, write.method, write.url, write.attempts)
  // Once an answer was lost or the key found in use, a server failure leaves the change unknown.
  let unsettled = false
  // Aborted before it was sent: there is nothing to settle.
  if (isAborted(signal)) throw signal?.reason
  for (let resend = 0; ; resend++) {
    sent = resend + 1
    let answer: Answer
    try {
      answer = await exchange(sender, write.url, { method: write.method, headers: write.headers, body: write.body })
    } catch (error) {
      if (write.idempotencyKey === null || isAborted(signal) || resend >= sender.maxResends) {
        const tries = resend === 0 ? '' : ` after ${resend + 1} sends`
        throw outcomeUnknown(write, `no answer came${tries} (${describe(error)})`, error, resend + 1)
      }
      unsettled = true
      await wait(backoff(sender, resend + 1))
      continue
    }
    if (write.idempotencyKey !== null && answer.status === 409 && keyInUse(answer)) {
      const error = errorOf(answer)
      if (resend >= sender.maxResends) {
        throw outcomeUnknown(write, `its Idempotency-Key was still in use after ${resend + 1} sends`, error, resend + 1)
      }
      unsettled = true
      const seconds = retryAfterSeconds(answer)
      await wait(seconds >= 0 && seconds <= MAX_RETRY_AFTER ? seconds * 1000 : backoff(sender, resend + 1))
      continue
    }
    if (unsettled && answer.status >= 500) {
      throw outcomeUnknown(write, `the server answered ${answer.status} to a resend`, errorOf(answer), resend + 1)
    }
    return answer
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}

/**
 * A GET, resent after a lost answer within `maxResends`; throws `ReadFailedError` when none came.
 * It asks for the current representation (`cache: 'no-cache'`): a browser would otherwise answer it
 * from its HTTP cache, where a response with a Last-Modified and no Cache-Control stays fresh for a
 * tenth of its age, and after a 412 hand back the version the server just refused, on every attempt.
 */
export async function readResource (sender: Sender, url: string, attempts: number): Promise<Answer> {
  // `cache` is in the DOM's RequestInit and not in Node's type of it; Node's fetch honours it too.
  const read: RequestInit & { cache: 'no-cache' } = { method: 'GET', cache: 'no-cache', headers: mergeHeaders({ accept: 'application/json' }, sender.headers) }
  for (let resend = 0; ; resend++) {
    try {
      return await exchange(sender, url, read)
    } catch (error) {
      if (sender.signal?.aborted === true) throw sender.signal.reason
      if (resend >= sender.maxResends) {
        throw new ReadFailedError(`GET ${url} got no answer after ${resend + 1} tries (${describe(error)}); nothing was written`, { url, attempts }, error)
      }
      await sleep(backoff(sender, resend + 1), sender.signal)
    }
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}
