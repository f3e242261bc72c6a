// The client side of a lost-update-safe write: read, change, write back conditionally, and on
// 412 read again and reapply the change. Uses the global fetch (Node 20+, browsers, Deno) and
// nothing else, so API clients can import it without the plugin or Fastify.

/**
 * An RFC 9457 problem document as the client parsed it. The plugin's 412, 428 and 503 bodies
 * carry every member; other servers may send fewer, so all are optional here. Declared here
 * rather than taken from the server side, so the client's types need neither Fastify nor TypeBox.
 */
export interface ProblemDetails {
  type?: string
  title?: string
  status?: number
  detail?: string
  instance?: string
  /** The plugin's error code, e.g. `FST_PRECONDITION_FAILED`. */
  code?: string
  /** 428: the header fields, any one of which the server accepts. */
  required?: string[]
  /** 412: the current entity-tag of the resource. */
  etag?: string
  [member: string]: unknown
}

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

/** Options of `idempotentWrite`; all optional. */
export interface IdempotentWriteOptions extends WriteOptions {
  /** The write method. Default `'POST'`. */
  method?: string
}

/** What a successful write gives back. */
export interface WriteResult<Written = unknown> {
  /** The status of the write (2xx). */
  status: number
  /** The write response's parsed JSON body; `null` when it had none or it was not JSON. */
  body: Written | null
  /** The resource's ETag after the write, when the server sent one. */
  etag: string | null
  /** The resource's Last-Modified after the write, when the server sent one. */
  lastModified: string | null
  /** The Location the server answered with (a created resource), when it sent one. */
  location: string | null
  /** The Idempotency-Key of the write that succeeded; `null` with `idempotencyKey: false`. */
  idempotencyKey: string | null
  /**
   * The answer is the server's stored answer to an earlier send of this change
   * (`Idempotent-Replayed: true`): that send was applied, and its answer had been lost.
   */
  replayed: boolean
}

/** What a successful `conditionalUpdate` gives back. */
export interface ConditionalUpdateResult<Written = unknown> extends WriteResult<Written> {
  /** How many writes it took: 1 unless a concurrent change made the server answer 412. */
  attempts: number
  /** The precondition the last write carried: `if-unmodified-since` only with `dateFallback`. */
  precondition: 'if-match' | 'if-unmodified-since'
}

/** A response that ended the update: its status and, when it sent one, its problem details. */
export class ConditionalUpdateError extends Error {
  /** The HTTP status of the response that ended the update. */
  readonly status: number
  /** The parsed `application/problem+json` (or JSON) body, or `null`. */
  readonly problem: ProblemDetails | null
  /** The method of the request that got this response. */
  readonly method: string
  readonly url: string
  /** The writes attempted so far. */
  readonly attempts: number

  constructor (message: string, details: { status: number, problem: ProblemDetails | null, method: string, url: string, attempts: number }) {
    super(message)
    this.name = new.target.name
    this.status = details.status
    this.problem = details.problem
    this.method = details.method
    this.url = details.url
    this.attempts = details.attempts
  }
}

/** 412 on every attempt: the resource kept changing under the update. `problem.etag` is the last current tag. */
export class PreconditionFailedError extends ConditionalUpdateError {}

/** 428: the server requires a precondition this client did not send; `problem.required` lists them. */
export class PreconditionRequiredError extends ConditionalUpdateError {}

/**
 * 503: the server could not guard the write (its lock was busy or unreachable, or the store that
 * keeps its Idempotency-Key was); nothing was written.
 */
export class ServiceUnavailableError extends ConditionalUpdateError {
  /** Seconds the server asked to wait (Retry-After), when it said. */
  readonly retryAfter: number | null

  constructor (message: string, details: ConstructorParameters<typeof ConditionalUpdateError>[1] & { retryAfter: number | null }) {
    super(message, details)
    this.retryAfter = details.retryAfter
  }
}

/**
 * 409 with `FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT`: the write was applied once already, and
 * the server did not keep its answer (too large to store, or streamed by hand). It is not sent
 * again; read the resource to see the result.
 */
export class AnswerNotKeptError extends ConditionalUpdateError {
  /** Always true: the change was applied. */
  readonly applied = true
}

/**
 * Any other status, for the GET or the write (404, 401, 500, …), or a GET that gave no strong
 * ETag this client can read (nor, with `dateFallback`, a Last-Modified).
 */
export class UnexpectedResponseError extends ConditionalUpdateError {}

/** What an `OutcomeUnknownError` knows of the write it could not settle. */
export interface UnsettledWrite {
  method: string
  url: string
  /** The writes attempted so far, the unsettled one included. */
  attempts: number
  /** Its Idempotency-Key, or null when it was sent without one. */
  idempotencyKey: string | null
  /** The headers it carried, its precondition and Idempotency-Key included. */
  headers: Record<string, string>
  /** The body it carried, as sent; undefined when it had none. */
  body: string | undefined
}

/**
 * A write was sent and no answer settled it: the connection failed or timed out (after every
 * resend), the signal aborted it, its key stayed in use (409) or the server failed (5xx) after an
 * answer was lost. The change may or may not have been applied. `cause` is the last failure.
 *
 * To find out without applying it twice, send the same write again later with the same key:
 * `idempotentWrite(error.url, error.body, { method: error.method, headers: error.headers,
 * idempotencyKey: error.idempotencyKey })` answers with the stored response (`replayed: true`)
 * if it was applied, and applies it now if it was not (or answers 412 when the resource changed
 * since, for a write with If-Match: it was not applied).
 */
export class OutcomeUnknownError extends Error implements UnsettledWrite {
  readonly method: string
  readonly url: string
  readonly attempts: number
  readonly idempotencyKey: string | null
  readonly headers: Record<string, string>
  readonly body: string | undefined

  constructor (message: string, write: UnsettledWrite, cause: unknown) {
    super(message, { cause })
    this.name = new.target.name
    this.method = write.method
    this.url = write.url
    this.attempts = write.attempts
    this.idempotencyKey = write.idempotencyKey
    this.headers = write.headers
    this.body = write.body
  }
}

/**
 * `conditionalUpdate`'s GET got no answer (the fetch rejected or timed out) after every resend.
 * Nothing was written: every write before it was refused with 412. `cause` is the last failure.
 */
export class ReadFailedError extends Error {
  readonly url: string
  /** The writes attempted so far, all refused. */
  readonly attempts: number

  constructor (message: string, details: { url: string, attempts: number }, cause: unknown) {
    super(message, { cause })
    this.name = new.target.name
    this.url = details.url
    this.attempts = details.attempts
  }
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
 * The wait before attempt `attempt + 1`, in ms: "full jitter", a uniformly random share of
 * `baseDelay · 2^(attempt−1)`, capped at `maxDelay`, so clients that collided spread out.
 */
export function retryDelay (attempt: number, baseDelay: number, maxDelay: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxDelay, baseDelay * 2 ** Math.max(0, attempt - 1))
  return Math.floor(random() * ceiling)
}

/** A number option, checked: a whole number or a finite number of ms, at least `min`. */
function checkNumber (helper: string, name: string, value: unknown, min: number, integer: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new TypeError(`${helper}: ${name} must be ${integer ? 'a whole number' : 'a finite number of ms'}, ${min} or more; got ${String(value)}`)
  }
  return value
}

function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
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

/**
 * A new Idempotency-Key: a random (version 4) UUID. `crypto.randomUUID` exists only in secure
 * contexts (HTTPS, localhost) of a browser; `crypto.getRandomValues` everywhere.
 */
export function newIdempotencyKey (): string {
  if (typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID()
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  bytes[6] = (bytes[6] & 0x0f) | 0x40
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

// What the plugin (and the draft) accept: 1 to 255 visible ASCII characters.
const KEY = /^[\x21-\x7e]{1,255}$/

/** The key of a change's first write: the caller's, none (`false`), or a new one. */
function firstKey (helper: string, option: unknown): string | null {
  if (option === false) return null
  if (option === undefined) return newIdempotencyKey()
  if (typeof option !== 'string' || !KEY.test(option)) {
    throw new TypeError(`${helper}: idempotencyKey must be 1 to 255 visible ASCII characters, or false; got ${JSON.stringify(option)}`)
  }
  return option
}

/** The key as the header's value: a structured-field String, as the draft defines it. */
function keyField (key: string): string {
  return '"' + key.replace(/[\\"]/g, '\\$&') + '"'
}

/** Header layers merged, later ones winning, names in lower case so none is sent twice. */
function mergeHeaders (...layers: Array<Record<string, string>>): Record<string, string> {
  const merged: Record<string, string> = {}
  for (const layer of layers) {
    for (const [name, value] of Object.entries(layer)) merged[name.toLowerCase()] = value
  }
  return merged
}

/** How one call of a helper sends its requests: its options, checked. */
interface Sender {
  fetch: typeof fetch
  signal: AbortSignal | undefined
  timeout: number | undefined
  baseDelay: number
  maxDelay: number
  maxResends: number
  headers: Record<string, string>
  contentType: string
}

function toSender (helper: string, options: WriteOptions): Sender {
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

/** A response read whole. */
interface Answer {
  status: number
  ok: boolean
  headers: Headers
  text: string
}

async function readAnswer (pending: Promise<Response>): Promise<Answer> {
  const response = await pending
  return { status: response.status, ok: response.ok, headers: response.headers, text: await response.text() }
}

/**
 * One request and its whole response. Rejects when no complete answer came: the fetch rejected,
 * the body broke off, `timeout` passed, or the signal aborted (also when a custom fetch ignores
 * its signal).
 */
async function exchange (sender: Sender, url: string, init: RequestInit): Promise<Answer> {
  const { signal, timeout } = sender
  if (signal?.aborted === true) throw signal.reason
  const controller = new AbortController()
  const aborted = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
  })
  const stop = (): void => { controller.abort(signal?.reason) }
  signal?.addEventListener('abort', stop, { once: true })
  const timer = timeout === undefined
    ? undefined
    : setTimeout(() => controller.abort(new DOMException(`No answer within ${timeout} ms`, 'TimeoutError')), timeout)
  try {
    return await Promise.race([readAnswer(sender.fetch(url, { ...init, signal: controller.signal })), aborted])
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', stop)
  }
}

/** The body as JSON when it is JSON (any `…json` media type), else null. */
function parseJson (answer: Answer): unknown {
  const type = answer.headers.get('content-type') ?? ''
  if (answer.text.length === 0 || !/[/+]json\b/i.test(type)) return null
  try {
    return JSON.parse(answer.text)
  } catch {
    return null
  }
}

/** The typed error for a response that ends a write (or, for `GET`, the read before it). */
function responseError (answer: Answer, requestMethod: string, method: string, url: string, attempts: number): ConditionalUpdateError {
  const problem = parseJson(answer) as ProblemDetails | null
  const details = { status: answer.status, problem, method: requestMethod, url, attempts }
  const said = problem !== null && typeof problem.detail === 'string' ? `: ${problem.detail}` : ''
  if (requestMethod === method) {
    if (answer.status === 412) {
      const all = attempts > 1 ? ` on all ${attempts} attempts` : ''
      return new PreconditionFailedError(`${method} ${url} failed its precondition${all}${said}`, details)
    }
    if (answer.status === 428) {
      return new PreconditionRequiredError(`${method} ${url} requires a precondition${said}`, details)
    }
    if (answer.status === 409 && problem?.code === 'FST_PRECONDITION_IDEMPOTENCY_ANSWER_NOT_KEPT') {
      return new AnswerNotKeptError(`${method} ${url} was applied already; the server did not keep its answer${said}`, details)
    }
    if (answer.status === 503) {
      const seconds = retryAfterSeconds(answer)
      return new ServiceUnavailableError(`${method} ${url} was not attempted by the server${said}`,
        { ...details, retryAfter: Number.isFinite(seconds) ? seconds : null })
    }
  }
  return new UnexpectedResponseError(`${requestMethod} ${url} answered ${answer.status}${said}`, details)
}

function retryAfterSeconds (answer: Answer): number {
  const header = answer.headers.get('retry-after')
  return header === null ? NaN : Number(header)
}

/** The longest Retry-After of a 409 that is waited for, in seconds; a longer one gets the backoff. */
const MAX_RETRY_AFTER = 60

/**
 * Whether a 409 says that the key's first request is still running (the plugin's
 * FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE, or a 409 with Retry-After), rather than a conflict of
 * the application's own, which is an answer.
 */
function keyInUse (answer: Answer): boolean {
  if (answer.headers.has('retry-after')) return true
  const problem = parseJson(answer) as ProblemDetails | null
  return problem?.code === 'FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE'
}

function outcomeUnknown (write: UnsettledWrite, why: string, cause: unknown): OutcomeUnknownError {
  const next = write.idempotencyKey === null
    ? 'It was sent without an Idempotency-Key, so it cannot be resent safely.'
    : `Send it again with Idempotency-Key ${write.idempotencyKey} to learn its outcome without applying it twice.`
  return new OutcomeUnknownError(`${write.method} ${write.url}: ${why}; the change may or may not have been applied. ${next}`, write, cause)
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
async function settleWrite (sender: Sender, write: UnsettledWrite): Promise<Answer> {
  const { signal } = sender
  const wait = async (ms: number): Promise<void> => {
    try {
      await sleep(ms, signal)
    } catch (reason) {
      throw outcomeUnknown(write, `it was aborted while waiting to be resent (${describe(reason)})`, reason)
    }
  }
  // Once an answer was lost or the key found in use, a server failure leaves the change unknown.
  let unsettled = false
  // Aborted before it was sent: there is nothing to settle.
  if (isAborted(signal)) throw signal?.reason
  for (let resend = 0; ; resend++) {
    let answer: Answer
    try {
      answer = await exchange(sender, write.url, { method: write.method, headers: write.headers, body: write.body })
    } catch (error) {
      if (write.idempotencyKey === null || isAborted(signal) || resend >= sender.maxResends) {
        const tries = resend === 0 ? '' : ` after ${resend + 1} sends`
        throw outcomeUnknown(write, `no answer came${tries} (${describe(error)})`, error)
      }
      unsettled = true
      await wait(retryDelay(resend + 1, sender.baseDelay, sender.maxDelay))
      continue
    }
    if (write.idempotencyKey !== null && answer.status === 409 && keyInUse(answer)) {
      const error = responseError(answer, write.method, write.method, write.url, write.attempts)
      if (resend >= sender.maxResends) {
        throw outcomeUnknown(write, `its Idempotency-Key was still in use after ${resend + 1} sends`, error)
      }
      unsettled = true
      const seconds = retryAfterSeconds(answer)
      await wait(seconds >= 0 && seconds <= MAX_RETRY_AFTER ? seconds * 1000 : retryDelay(resend + 1, sender.baseDelay, sender.maxDelay))
      continue
    }
    if (unsettled && answer.status >= 500) {
      throw outcomeUnknown(write, `the server answered ${answer.status} to a resend`,
        responseError(answer, write.method, write.method, write.url, write.attempts))
    }
    return answer
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}

/** A GET, resent after a lost answer within `maxResends`; throws `ReadFailedError` when none came. */
async function readResource (sender: Sender, url: string, attempts: number): Promise<Answer> {
  for (let resend = 0; ; resend++) {
    try {
      return await exchange(sender, url, { method: 'GET', headers: mergeHeaders({ accept: 'application/json' }, sender.headers) })
    } catch (error) {
      if (sender.signal?.aborted === true) throw sender.signal.reason
      if (resend >= sender.maxResends) {
        throw new ReadFailedError(`GET ${url} got no answer after ${resend + 1} tries (${describe(error)}); nothing was written`, { url, attempts }, error)
      }
      await sleep(retryDelay(resend + 1, sender.baseDelay, sender.maxDelay), sender.signal)
    }
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}

function writeResult<Written> (answer: Answer, key: string | null): WriteResult<Written> {
  return {
    status: answer.status,
    body: parseJson(answer) as Written | null,
    etag: answer.headers.get('etag'),
    lastModified: answer.headers.get('last-modified'),
    location: answer.headers.get('location'),
    idempotencyKey: key,
    replayed: answer.headers.get('idempotent-replayed') === 'true'
  }
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
    const headers = mergeHeaders({ accept: 'application/json, application/problem+json' }, sender.headers,
      { 'content-type': sender.contentType }, condition, key === null ? {} : { 'idempotency-key': keyField(key) })

    const written = await settleWrite(sender, { method, url: target, attempts: attempt, idempotencyKey: key, headers, body })
    if (written.ok) return { ...writeResult<Written>(written, key), attempts: attempt, precondition }
    if (written.status !== 412 || attempt >= maxAttempts) throw responseError(written, method, method, target, attempt)
    // The server refused this write, so it was not applied: the next one is another change, with
    // another key (the first key would replay this 412).
    if (key !== null) key = newIdempotencyKey()
    await sleep(retryDelay(attempt, sender.baseDelay, sender.maxDelay), sender.signal)
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}

/**
 * Sends one change, `body` (as JSON; a string is sent as it is), with an Idempotency-Key, e.g. a
 * POST that creates: resent with the same key when its answer is lost or the key is still in use
 * (409), so a server that honours the key applies it once, and answers the resend with what it
 * answered the first time (`replayed: true`).
 *
 * Throws the same typed errors as `conditionalUpdate`: `UnexpectedResponseError` for a 400 (the
 * key missing or malformed) or a 422 (the key was used for another request), `problem.code`
 * saying which; `OutcomeUnknownError` when no answer settles the change.
 */
export async function idempotentWrite<Written = unknown> (
  url: string | URL,
  body?: unknown,
  options: IdempotentWriteOptions = {}
): Promise<WriteResult<Written>> {
  const helper = 'idempotentWrite'
  const method = (options.method ?? 'POST').toUpperCase()
  if (method === 'GET' || method === 'HEAD') throw new TypeError(`idempotentWrite: method must be one that writes (POST, PUT, PATCH, DELETE, …); got ${method}`)
  const sender = toSender(helper, options)
  const key = firstKey(helper, options.idempotencyKey)
  const target = String(url)
  const sent = body === undefined || typeof body === 'string' ? body : JSON.stringify(body)
  const headers = mergeHeaders({ accept: 'application/json, application/problem+json' },
    sent === undefined ? {} : { 'content-type': sender.contentType }, sender.headers,
    key === null ? {} : { 'idempotency-key': keyField(key) })
  const answer = await settleWrite(sender, { method, url: target, attempts: 1, idempotencyKey: key, headers, body: sent })
  if (answer.ok) return writeResult<Written>(answer, key)
  throw responseError(answer, method, method, target, 1)
}
