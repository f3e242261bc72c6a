// The errors the client helpers throw: a typed one for each response that ends a write (or the read
// before it), one for a write that no answer settled, one for a read that got none.

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
  /** The writes a conditional update attempted, the unsettled one included (1 for `idempotentWrite`). */
  readonly attempts: number
  /** How many times the unsettled write was sent, its resends included (0 when it never left). */
  readonly sends: number
  readonly idempotencyKey: string | null
  readonly headers: Record<string, string>
  readonly body: string | undefined

  constructor (message: string, write: UnsettledWrite, cause: unknown, sends = 1) {
    super(message, { cause })
    this.name = new.target.name
    this.method = write.method
    this.url = write.url
    this.attempts = write.attempts
    this.sends = sends
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
