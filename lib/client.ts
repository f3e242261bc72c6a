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

/** Options of `conditionalUpdate`; all optional. */
export interface ConditionalUpdateOptions {
  /** The write method. Default `'PUT'`. */
  method?: string
  /** How many writes to attempt before giving up on 412s (each after a fresh GET). Default 5. */
  maxAttempts?: number
  /** The backoff before the second attempt, in ms; it doubles with every further attempt. Default 50. */
  baseDelay?: number
  /** The longest backoff, in ms. Default 2000. */
  maxDelay?: number
  /** Headers sent with the GET and the write (e.g. authorization). */
  headers?: Record<string, string>
  /** The media type of the write's body. Default `'application/json'`. */
  contentType?: string
  /** Cancels the update, between or during requests. */
  signal?: AbortSignal
  /** The fetch to use. Default: the global `fetch`. */
  fetch?: typeof fetch
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
export interface ConditionalUpdateResult<Written = unknown> {
  /** The status of the write (2xx). */
  status: number
  /** The write response's parsed JSON body; `null` when it had none or it was not JSON. */
  body: Written | null
  /** The resource's ETag after the write, when the server sent one. */
  etag: string | null
  /** The resource's Last-Modified after the write, when the server sent one. */
  lastModified: string | null
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

/** 503: the server could not guard the write (its lock was busy or unreachable); nothing was written. */
export class ServiceUnavailableError extends ConditionalUpdateError {
  /** Seconds the server asked to wait (Retry-After), when it said. */
  readonly retryAfter: number | null

  constructor (message: string, details: ConstructorParameters<typeof ConditionalUpdateError>[1] & { retryAfter: number | null }) {
    super(message, details)
    this.retryAfter = details.retryAfter
  }
}

/**
 * Any other status, for the GET or the write (404, 401, 500, …), or a GET that gave no strong
 * ETag this client can read (nor, with `dateFallback`, a Last-Modified).
 */
export class UnexpectedResponseError extends ConditionalUpdateError {}

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

function positive (name: string, value: number, integer: boolean): number {
  if (typeof value !== 'number' || !(value >= (integer ? 1 : 0)) || (integer && !Number.isInteger(value)) || !Number.isFinite(value)) {
    throw new TypeError(`conditionalUpdate: ${name} must be ${integer ? 'a whole number, 1 or more' : 'a finite number of ms, 0 or more'}; got ${String(value)}`)
  }
  return value
}

function sleep (ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason)
      return
    }
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

/** The body as JSON when it is JSON (any `…json` media type), else null. */
async function readJson (response: Response): Promise<unknown> {
  const type = response.headers.get('content-type') ?? ''
  const text = await response.text()
  if (text.length === 0 || !/[/+]json\b/i.test(type)) return null
  try {
    return JSON.parse(text)
  } catch {
    return null
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
 * Throws `PreconditionFailedError` (412 on every attempt), `PreconditionRequiredError` (428),
 * `ServiceUnavailableError` (503) or `UnexpectedResponseError` (anything else), each carrying
 * the server's problem details.
 */
export async function conditionalUpdate<Current = unknown, Written = Current> (
  url: string | URL,
  change: (current: Current) => unknown,
  options: ConditionalUpdateOptions = {}
): Promise<ConditionalUpdateResult<Written>> {
  const method = (options.method ?? 'PUT').toUpperCase()
  const maxAttempts = positive('maxAttempts', options.maxAttempts ?? 5, true)
  const baseDelay = positive('baseDelay', options.baseDelay ?? 50, false)
  const maxDelay = positive('maxDelay', options.maxDelay ?? 2000, false)
  const contentType = options.contentType ?? 'application/json'
  const request = options.fetch ?? fetch
  const signal = options.signal
  const target = String(url)
  const headers = options.headers ?? {}
  const dateFallback = options.dateFallback ?? false
  if (typeof dateFallback !== 'boolean') throw new TypeError(`conditionalUpdate: dateFallback must be a boolean; got ${String(dateFallback)}`)

  const fail = async (response: Response, requestMethod: string, attempts: number): Promise<never> => {
    const problem = await readJson(response) as ProblemDetails | null
    const details = { status: response.status, problem, method: requestMethod, url: target, attempts }
    const said = problem !== null && typeof problem.detail === 'string' ? `: ${problem.detail}` : ''
    if (requestMethod === method) {
      if (response.status === 412) {
        throw new PreconditionFailedError(`${method} ${target} failed its precondition on all ${attempts} attempts${said}`, details)
      }
      if (response.status === 428) {
        throw new PreconditionRequiredError(`${method} ${target} requires a precondition${said}`, details)
      }
      if (response.status === 503) {
        const header = response.headers.get('retry-after')
        const seconds = header === null ? NaN : Number(header)
        throw new ServiceUnavailableError(`${method} ${target} was not attempted by the server${said}`,
          { ...details, retryAfter: Number.isFinite(seconds) ? seconds : null })
      }
    }
    throw new UnexpectedResponseError(`${requestMethod} ${target} answered ${response.status}${said}`, details)
  }

  for (let attempt = 1; ; attempt++) {
    const read = await request(target, { method: 'GET', headers: { accept: 'application/json', ...headers }, signal })
    if (!read.ok) return await fail(read, 'GET', attempt - 1)
    const etag = read.headers.get('etag')
    const lastModified = read.headers.get('last-modified')
    const missing = missingValidator(etag, lastModified, dateFallback)
    if (missing !== null) {
      await read.body?.cancel()
      throw new UnexpectedResponseError(`GET ${target} ${missing}`,
        { status: read.status, problem: null, method: 'GET', url: target, attempts: attempt - 1 })
    }
    // A weak tag can never satisfy If-Match; the date is the next best validator, when allowed.
    const precondition = etag !== null && !etag.startsWith('W/') ? 'if-match' : 'if-unmodified-since'
    const condition = { [precondition]: precondition === 'if-match' ? etag : lastModified } as Record<string, string>
    const current = await read.json() as Current
    const next = await change(current)
    // A change may edit the representation in place and return nothing.
    const body = JSON.stringify(next === undefined ? current : next)

    const written = await request(target, {
      method,
      headers: { accept: 'application/json, application/problem+json', ...headers, 'content-type': contentType, ...condition },
      body,
      signal
    })
    if (written.ok) {
      return {
        status: written.status,
        body: await readJson(written) as Written | null,
        etag: written.headers.get('etag'),
        lastModified: written.headers.get('last-modified'),
        attempts: attempt,
        precondition
      }
    }
    if (written.status !== 412 || attempt >= maxAttempts) return await fail(written, method, attempt)
    await written.body?.cancel()
    await sleep(retryDelay(attempt, baseDelay, maxDelay), signal)
  }
  /* c8 ignore next -- the loop only ends by return or throw */
}
