// conditionalUpdate: read, change, write back conditionally, and on 412 read again and reapply the
// change.
import { responseError, writeResult, type WriteResult } from './answers.js'
import { backoff, sleep } from './backoff.js'
import { UnexpectedResponseError } from './errors.js'
import { mergeHeaders, WRITE_ACCEPT } from './http.js'
import { firstKey, keyHeader, newIdempotencyKey } from './keys.js'
import { checkNumber, toSender, type WriteOptions } from './options.js'
import { readResource, settleWrite } from './resend.js'

/** Options of `conditionalUpdate`; all optional. */
export interface ConditionalUpdateOptions extends WriteOptions {
  /** The write method. Default `'PUT'`. */
  method?: string
  /** How many writes to attempt before giving up on 412s (each after a fresh GET). Default 5. */
  maxAttempts?: number
  /**
   * When the GET gave no strong ETag that this client can read, make the write conditional on
   * its Last-Modified instead (`If-Unmodified-Since`). Default `false`: a strong ETag is expected,
   * and its absence is an `UnexpectedResponseError` that names the likely cause. A date has
   * one-second resolution, so two changes within one second are not told apart; turn this on
   * only for servers that send no ETag at all.
   */
  dateFallback?: boolean
}

/** What a successful `conditionalUpdate` gives back. */
export interface ConditionalUpdateResult<Written = unknown> extends WriteResult<Written> {
  /** How many writes it took: 1 unless a concurrent change made the server answer 412. */
  attempts: number
  /** The precondition the last write carried: `if-unmodified-since` only with `dateFallback`. */
  precondition: 'if-match' | 'if-unmodified-since'
}

// Browsers show a cross-origin script only the response headers the server exposes, and ETag is
// not among those exposed by default, while Last-Modified is: an API behind a default CORS set-up
// looks like one that sends dates only.
const CORS_HINT = 'If the server does send one, the likely cause is CORS: a browser hides response headers from ' +
  'cross-origin scripts unless the server lists them in Access-Control-Expose-Headers: ETag, Last-Modified ' +
  '(with @fastify/cors: exposedHeaders: [\'ETag\', \'Last-Modified\']).'

/** Why a GET's headers cannot make the write conditional, or null when they can. */
function missingValidator (etag: string | null, lastModified: string | null, dateFallback: boolean): string | null {
  const weak = etag !== null && etag.startsWith('W/')
  if ((etag !== null && !weak) || (dateFallback && lastModified !== null)) return null
  if (weak) {
    return `sent only a weak ETag (${etag}), which can never satisfy If-Match, so the write cannot be made conditional. ` +
      (dateFallback ? 'Nor did it send Last-Modified.' : 'Pass dateFallback: true to use its Last-Modified (one-second resolution) instead.')
  }
  const date = dateFallback ? ' nor a Last-Modified' : ''
  return `sent no ETag${date} this client can read, so the write cannot be made conditional. ${CORS_HINT}` +
    (dateFallback ? '' : ' For a server that sends no ETag at all, pass dateFallback: true to use Last-Modified (one-second resolution).')
}

/**
 * Reads `url`, applies `change` to its JSON representation, and writes the result back with
 * If-Match (If-Unmodified-Since, with `dateFallback`, when the server gives no strong ETag). A GET
 * without a strong ETag this client can read is an `UnexpectedResponseError` that names CORS as the
 * likely cause in a browser; the write is never silently guarded by a date. When the server answers
 * 412 because someone else changed the resource in between, it waits a jittered, growing delay,
 * reads again and reapplies `change`, up to `maxAttempts` writes. So `change` must be a function
 * of the current representation, and may run more than once. It returns the body to send (as
 * JSON), or edits the representation it is given and returns nothing.
 *
 * Each write carries an Idempotency-Key and is resent with it when its answer is lost or the
 * server says the key is still in use (409), so a server that honours the key applies the change
 * once; a 412 means the write was not applied, and the next attempt is sent with a new key.
 *
 * Throws `PreconditionFailedError` (412 on every attempt), `PreconditionRequiredError` (428),
 * `ServiceUnavailableError` (503) or `UnexpectedResponseError` (anything else), each carrying
 * the server's problem details; `OutcomeUnknownError` when a write got no answer that settles it,
 * and `ReadFailedError` when a read got none.
 */
export async function conditionalUpdate<Current = unknown, Written = Current> (
  url: string | URL,
  change: (current: Current) => unknown,
  options: ConditionalUpdateOptions = {}
): Promise<ConditionalUpdateResult<Written>> {
  const helper = 'conditionalUpdate'
  const method = (options.method ?? 'PUT').toUpperCase()
  const maxAttempts = checkNumber(helper, 'maxAttempts', options.maxAttempts ?? 5, 1, true)
  const sender = toSender(helper, options)
  const dateFallback = options.dateFallback ?? false
  if (typeof dateFallback !== 'boolean') throw new TypeError(`conditionalUpdate: dateFallback must be a boolean; got ${String(dateFallback)}`)
  let key = firstKey(helper, options.idempotencyKey)
  const target = String(url)

  for (let attempt = 1; ; attempt++) {
    const read = await readResource(sender, target, attempt - 1)
    if (!read.ok) throw responseError(read, 'GET', method, target, attempt - 1)
    const etag = read.headers.get('etag')
    const lastModified = read.headers.get('last-modified')
    const missing = missingValidator(etag, lastModified, dateFallback)
    if (missing !== null) {
      throw new UnexpectedResponseError(`GET ${target} ${missing}`,
        { status: read.status, problem: null, method: 'GET', url: target, attempts: attempt - 1 })
    }
    // A weak tag can never satisfy If-Match; the date is the next best validator, when allowed.
    const precondition = etag !== null && !etag.startsWith('W/') ? 'if-match' : 'if-unmodified-since'
    const condition = { [precondition]: precondition === 'if-match' ? etag : lastModified } as Record<string, string>
    const current = JSON.parse(read.text) as Current
    const next = await change(current)
    // A change may edit the representation in place and return nothing.
    const body = JSON.stringify(next === undefined ? current : next)
    const headers = mergeHeaders({ accept: WRITE_ACCEPT }, sender.headers, { 'content-type': sender.contentType }, condition, keyHeader(key))

    const written = await settleWrite(sender, { method, url: target, attempts: attempt, idempotencyKey: key, headers, body })
    if (written.ok) return { ...writeResult<Written>(written, key), attempts: attempt, precondition }
    if (written.status !== 412 || attempt >= maxAttempts) throw responseError(written, method, method, target, attempt)
    // The server refused this write, so it was not applied: the next one is another change, with
    // another key (the first key would replay this 412).
    if (key !== null) key = newIdempotencyKey()
    await sleep(backoff(sender, attempt), sender.signal)
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}
