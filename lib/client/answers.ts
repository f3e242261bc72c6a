// What a response means to a write: the result of one that succeeded, the typed error of one that
// ended it, or a sign that the key's first request is still running.
import {
  AnswerNotKeptError, ConditionalUpdateError, PreconditionFailedError, PreconditionRequiredError, ServiceUnavailableError,
  UnexpectedResponseError, type ProblemDetails
} from './errors.js'
import { parseJson, retryAfterSeconds, type Answer } from './http.js'

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

/** The problem details of a response, when its body is JSON. */
function problemOf (answer: Answer): ProblemDetails | null {
  return parseJson(answer) as ProblemDetails | null
}

/** The typed error for a response that ends a write (or, for `GET`, the read before it). */
export function responseError (answer: Answer, requestMethod: string, method: string, url: string, attempts: number): ConditionalUpdateError {
  const problem = problemOf(answer)
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

/**
 * Whether a 409 says that the key's first request is still running (the plugin's
 * FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE, or a 409 with Retry-After), rather than a conflict of
 * the application's own, which is an answer.
 */
export function keyInUse (answer: Answer): boolean {
  if (answer.headers.has('retry-after')) return true
  const problem = problemOf(answer)
  return problem?.code === 'FST_PRECONDITION_IDEMPOTENCY_KEY_IN_USE'
}

/** What a write that succeeded gives back, from its answer and the key it carried. */
export function writeResult<Written> (answer: Answer, key: string | null): WriteResult<Written> {
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
