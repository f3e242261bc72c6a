// RFC 9457 problem details for the answers the plugin gives itself: 412, 428 and 503, and for
// Idempotency-Key routes 400, 409 and 422.
// The bodies are assembled from strings prepared at registration, and sent as strings, so
// neither a route's response schema nor the app's error handler can rewrite them, and the
// request path pays for one JSON.stringify of the path and nothing else.
import { Type, type Static } from 'typebox'
import type { FastifyReply } from 'fastify'
import { invalidOption, ProblemCode } from './errors.js'
import { Outcome } from './http/evaluate.js'
import { orList } from './shared.js'
import { peekState, stateOf } from './slots.js'

/** The TypeBox schema of every problem body the plugin sends. */
export const ProblemDetailsSchema = Type.Object({
  type: Type.String({ description: 'A URI identifying the problem type; about:blank unless the app set a base' }),
  title: Type.String({ description: 'A short summary of the problem type' }),
  status: Type.Integer({ description: 'The HTTP status code of this response' }),
  detail: Type.String({ description: 'What went wrong for this request, and what to do about it' }),
  instance: Type.String({ description: 'The request path' }),
  code: Type.String({ description: 'The plugin\'s error code, e.g. FST_PRECONDITION_FAILED' }),
  required: Type.Optional(Type.Array(Type.String(), { description: '428 only: the header fields, any one of which satisfies the route' })),
  etag: Type.Optional(Type.String({ description: '412 only: the current entity-tag of the resource' }))
}, { $id: 'PreconditionProblemDetails', additionalProperties: true })

export type ProblemDetails = Static<typeof ProblemDetailsSchema>

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8'

/**
 * A problem the plugin answered carries no ETag but the current one of a 412: not a hash of the
 * problem body, which app-wide hooks such as @fastify/etag's would add. For an onSend hook.
 */
export function dropForeignProblemEtag (reply: FastifyReply): void {
  if (reply.statusCode < 400 || reply.getHeader('content-type') !== PROBLEM_CONTENT_TYPE) return
  const etag = reply.getHeader('etag')
  if (etag !== undefined && etag !== peekState(reply.request).problemEtag) reply.removeHeader('etag')
}

/**
 * Texts of the problem bodies. In `preconditionRequired`, `{headers}` stands for the header names
 * and `{hints}` for the route's `requireHint…` texts joined with "or".
 */
export interface ProblemMessages {
  titles: { 412: string, 428: string, 503: string, 400: string, 409: string, 422: string }
  details: {
    preconditionRequired: string
    requireHintIfMatch: string
    requireHintIfNoneMatch: string
    requireHintIfUnmodifiedSince: string
    ifMatchMismatch: string
    ifMatchWeak: string
    ifMatchInvalid: string
    ifMatchNone: string
    ifMatchGone: string
    ifUnmodifiedSince: string
    ifNoneMatch: string
    ifNoneMatchInvalid: string
    lockTimeout: string
    lockUnavailable: string
    idempotencyKeyMissing: string
    idempotencyKeyInvalid: string
    idempotencyKeyInUse: string
    idempotencyKeyMismatch: string
    idempotencyUnavailable: string
    idempotencyAnswerNotKept: string
  }
}

export interface ProblemMessagesOption {
  titles?: Partial<ProblemMessages['titles']>
  details?: Partial<ProblemMessages['details']>
}

export const defaultMessages: ProblemMessages = {
  titles: {
    412: 'Precondition Failed',
    428: 'Precondition Required',
    503: 'Service Unavailable',
    400: 'Bad Request',
    409: 'Conflict',
    422: 'Unprocessable Content'
  },
  details: {
    preconditionRequired: 'This request must be conditional, so that a change made since you read the resource is not overwritten. Send {hints}.',
    requireHintIfMatch: 'If-Match with the ETag that a GET of this resource returned',
    requireHintIfNoneMatch: 'If-None-Match: * to create the resource only if it does not exist yet',
    requireHintIfUnmodifiedSince: 'If-Unmodified-Since with the Last-Modified date that a GET of this resource returned',
    ifMatchMismatch: 'If-Match does not match the current ETag of the resource: it was changed since you read it. GET it again, reapply your change, and retry with the new ETag.',
    ifMatchWeak: 'If-Match uses strong comparison, and a weak entity-tag (W/"...") can never satisfy it. Send the strong ETag of the current representation.',
    ifMatchInvalid: 'If-Match holds no valid entity-tag. Send the ETag exactly as the server gave it, in double quotes (If-Match: "abc"), or * for any current representation.',
    ifMatchNone: 'If-Match requires a current representation, and this resource has none. Create it without If-Match, or with If-None-Match: *.',
    ifMatchGone: 'If-Match requires a current representation, and this resource has none: it does not exist, or no longer does.',
    ifUnmodifiedSince: 'The resource was modified after the If-Unmodified-Since date. GET it again, reapply your change, and retry with its new Last-Modified date.',
    ifNoneMatch: 'If-None-Match matched a current representation of the resource. With If-None-Match: * the request only creates, and the resource already exists.',
    ifNoneMatchInvalid: 'If-None-Match holds no valid entity-tag. Send quoted entity-tags (If-None-Match: "abc") or * to create only when the resource does not exist.',
    lockTimeout: 'Another write to this resource is in progress and did not finish in time. Retry after the Retry-After delay.',
    lockUnavailable: 'The lock that makes this write safe could not be taken, so the write was not attempted. Retry after the Retry-After delay.',
    idempotencyKeyMissing: 'This request must carry an Idempotency-Key header, so that a retry of it is never applied twice. Send a new unique key (a UUID, say) for each change, and the same key when you retry that change.',
    idempotencyKeyInvalid: 'The Idempotency-Key header must be 1 to 255 visible characters, sent as a quoted string ("abc") or a bare token (abc).',
    idempotencyKeyInUse: 'A request with this Idempotency-Key is still being processed. Retry after the Retry-After delay to receive its response.',
    idempotencyKeyMismatch: 'This Idempotency-Key was already used for a different request (another method, path or body). Send a new key for a new change.',
    idempotencyUnavailable: 'The store that keeps this request from being applied twice could not be reached, so the request was not attempted. Retry after the Retry-After delay with the same Idempotency-Key.',
    idempotencyAnswerNotKept: 'A request with this Idempotency-Key was already applied, and its response was not kept (it was streamed by hand or too large to store). Do not send it again: read the resource to see its result.'
  }
}

const OUTCOME_DETAIL: Record<number, keyof ProblemMessages['details']> = {
  [Outcome.IF_MATCH_MISMATCH]: 'ifMatchMismatch',
  [Outcome.IF_MATCH_WEAK]: 'ifMatchWeak',
  [Outcome.IF_MATCH_INVALID]: 'ifMatchInvalid',
  [Outcome.IF_MATCH_NONE]: 'ifMatchNone',
  [Outcome.IF_UNMODIFIED_SINCE]: 'ifUnmodifiedSince',
  [Outcome.IF_NONE_MATCH]: 'ifNoneMatch',
  [Outcome.IF_NONE_MATCH_INVALID]: 'ifNoneMatchInvalid'
}

const SLUGS: Record<string, string> = {
  [ProblemCode.PRECONDITION_REQUIRED]: 'precondition-required',
  [ProblemCode.PRECONDITION_FAILED]: 'precondition-failed',
  [ProblemCode.LOCK_TIMEOUT]: 'lock-timeout',
  [ProblemCode.LOCK_UNAVAILABLE]: 'lock-unavailable',
  [ProblemCode.IDEMPOTENCY_KEY_MISSING]: 'idempotency-key-missing',
  [ProblemCode.IDEMPOTENCY_KEY_INVALID]: 'idempotency-key-invalid',
  [ProblemCode.IDEMPOTENCY_KEY_IN_USE]: 'idempotency-key-in-use',
  [ProblemCode.IDEMPOTENCY_KEY_MISMATCH]: 'idempotency-key-mismatch',
  [ProblemCode.IDEMPOTENCY_UNAVAILABLE]: 'idempotency-unavailable',
  [ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT]: 'idempotency-answer-not-kept'
}

/** The Idempotency-Key problems: their status and their detail text. */
const IDEMPOTENCY_PROBLEMS: Record<IdempotencyProblemCode, [400 | 409 | 422 | 503, keyof ProblemMessages['details']]> = {
  [ProblemCode.IDEMPOTENCY_KEY_MISSING]: [400, 'idempotencyKeyMissing'],
  [ProblemCode.IDEMPOTENCY_KEY_INVALID]: [400, 'idempotencyKeyInvalid'],
  [ProblemCode.IDEMPOTENCY_KEY_IN_USE]: [409, 'idempotencyKeyInUse'],
  [ProblemCode.IDEMPOTENCY_KEY_MISMATCH]: [422, 'idempotencyKeyMismatch'],
  [ProblemCode.IDEMPOTENCY_UNAVAILABLE]: [503, 'idempotencyUnavailable'],
  [ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT]: [409, 'idempotencyAnswerNotKept']
}

/** The codes of the problems an Idempotency-Key route answers with. */
export type IdempotencyProblemCode =
  | typeof ProblemCode.IDEMPOTENCY_KEY_MISSING
  | typeof ProblemCode.IDEMPOTENCY_KEY_INVALID
  | typeof ProblemCode.IDEMPOTENCY_KEY_IN_USE
  | typeof ProblemCode.IDEMPOTENCY_KEY_MISMATCH
  | typeof ProblemCode.IDEMPOTENCY_UNAVAILABLE
  | typeof ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT

export interface ProblemOptions {
  problemTypeBase?: string
  messages?: ProblemMessagesOption
  exposeEtag?: boolean
  retryAfter?: number
  /** `'send'` (default): problems go out as problem+json. `'error-handler'`: as errors, to the app's error handler. */
  problems?: 'send' | 'error-handler'
}

/** The path part of a request URL: the problem's `instance`. */
export function requestPath (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : url.slice(0, query)
}

/**
 * Sends the plugin's problems. Built once per plugin registration: every body's fixed head
 * (type, title, status, detail) is a ready string.
 */
export class ProblemWriter {
  readonly messages: ProblemMessages
  readonly exposeEtag: boolean
  private readonly typeBase: string | undefined
  private readonly retryAfter: string
  private readonly failedHeads: string[] = []
  private readonly failedTail: string
  private readonly toErrorHandler: boolean
  private readonly goneHead: string
  private readonly lockHeads: Record<string, string>
  private readonly idempotencyHeads: Record<string, string> = {}

  constructor (options: ProblemOptions) {
    this.messages = mergeMessages(options.messages)
    this.exposeEtag = options.exposeEtag ?? true
    this.toErrorHandler = options.problems === 'error-handler'
    this.typeBase = options.problemTypeBase
    this.retryAfter = String(options.retryAfter ?? 1)
    for (const [outcome, key] of Object.entries(OUTCOME_DETAIL)) {
      this.failedHeads[Number(outcome)] = this.head(ProblemCode.PRECONDITION_FAILED, 412, this.messages.details[key])
    }
    this.failedTail = ',"code":"' + ProblemCode.PRECONDITION_FAILED + '"'
    this.goneHead = this.head(ProblemCode.PRECONDITION_FAILED, 412, this.messages.details.ifMatchGone)
    this.lockHeads = {
      [ProblemCode.LOCK_TIMEOUT]: this.head(ProblemCode.LOCK_TIMEOUT, 503, this.messages.details.lockTimeout),
      [ProblemCode.LOCK_UNAVAILABLE]: this.head(ProblemCode.LOCK_UNAVAILABLE, 503, this.messages.details.lockUnavailable)
    }
    for (const [code, [status, detail]] of Object.entries(IDEMPOTENCY_PROBLEMS)) {
      this.idempotencyHeads[code] = this.head(code, status, this.messages.details[detail])
    }
  }

  private head (code: string, status: 400 | 409 | 412 | 422 | 428 | 503, detail: string): string {
    const type = this.typeBase === undefined ? 'about:blank' : this.typeBase + SLUGS[code]
    return '{"type":' + JSON.stringify(type) + ',"title":' + JSON.stringify(this.messages.titles[status]) +
      ',"status":' + status + ',"detail":' + JSON.stringify(detail) + ',"instance":'
  }

  /** A route's 428 body, around the path: [head, tail]. Built when the route is declared. */
  required (headers: string[]): [string, string] {
    const names = headers.map(canonicalHeaderName)
    const list = orList(names)
    const details = this.messages.details
    const hints = headers.map((name) => name === 'if-match'
      ? details.requireHintIfMatch
      : name === 'if-none-match' ? details.requireHintIfNoneMatch : details.requireHintIfUnmodifiedSince)
    const detail = details.preconditionRequired.replaceAll('{headers}', list).replaceAll('{hints}', hints.join(', or '))
    const head = this.head(ProblemCode.PRECONDITION_REQUIRED, 428, detail)
    return [head, ',"code":"' + ProblemCode.PRECONDITION_REQUIRED + '","required":' + JSON.stringify(names) + '}']
  }

  sendRequired (reply: FastifyReply, body: [string, string], url: string): void {
    this.emit(reply, 428, body[0] + JSON.stringify(requestPath(url)) + body[1], null)
  }

  /**
   * 412 for an evaluation outcome; `etag` is the current tag, if any. `detail` replaces the
   * outcome's text (a handler's own reason); `gone`: no representation exists, said without
   * suggesting to create one.
   */
  sendFailed (reply: FastifyReply, outcome: number, url: string, etag: string | undefined, detail?: string, gone = false): void {
    const head = detail !== undefined
      ? this.head(ProblemCode.PRECONDITION_FAILED, 412, detail)
      : gone ? this.goneHead : this.failedHeads[outcome]
    let body = head + JSON.stringify(requestPath(url)) + this.failedTail
    if (etag !== undefined && this.exposeEtag) {
      body += ',"etag":' + JSON.stringify(etag)
      stateOf(reply.request).problemEtag = etag
      this.emit(reply, 412, body + '}', { etag })
    } else {
      this.emit(reply, 412, body + '}', null)
    }
  }

  /** 503 with Retry-After when the resource's lock could not be taken. */
  sendLockProblem (reply: FastifyReply, code: string, url: string): void {
    this.emit(reply, 503, this.lockHeads[code] + JSON.stringify(requestPath(url)) + ',"code":"' + code + '"}', { 'retry-after': this.retryAfter })
  }

  /**
   * 400 (key missing or malformed), 409 (its first request still runs, or it was applied and its
   * answer not kept), 422 (the key was used for another request) or 503 (the store is down). A
   * 409 of a running request and a 503 carry Retry-After: `retryAfter` seconds, else the plugin's.
   */
  sendIdempotencyProblem (reply: FastifyReply, code: IdempotencyProblemCode, url: string, retryAfter?: number): void {
    const status = IDEMPOTENCY_PROBLEMS[code][0]
    const body = this.idempotencyHeads[code] + JSON.stringify(requestPath(url)) + ',"code":"' + code + '"}'
    // A request that was applied is not to be retried; one in progress, when its lease ends.
    const wait = code === ProblemCode.IDEMPOTENCY_KEY_IN_USE || status === 503
    this.emit(reply, status, body, wait ? { 'retry-after': retryAfter === undefined ? this.retryAfter : String(retryAfter) } : null)
  }

  /**
   * Sends a problem: the body as it is (`problems: 'send'`), or an error through Fastify's error
   * path (`'error-handler'`) that carries the status, the code, these headers and the body parsed.
   */
  private emit (reply: FastifyReply, status: number, body: string, headers: Record<string, string> | null): void {
    reply.code(status)
    if (headers !== null) reply.headers(headers)
    if (this.toErrorHandler) {
      // Status and headers are on the reply already: an error handler that only writes a body
      // keeps them.
      reply.send(new PreconditionProblemError(JSON.parse(body) as ProblemDetails, headers ?? {}))
      return
    }
    reply.header('content-type', PROBLEM_CONTENT_TYPE).send(body)
  }
}

/**
 * With the plugin option `problems: 'error-handler'`, what the plugin would answer with itself
 * (412, 428, 503, and the Idempotency-Key's 400, 409, 422), sent to Fastify's error path, so the
 * app's `setErrorHandler` writes it in the app's own format. The reply has its status and
 * `headers` (ETag of a 412, Retry-After) already when the error handler runs.
 */
export class PreconditionProblemError extends Error {
  /** The HTTP status. */
  readonly statusCode: number
  /** The plugin's code, as in `ProblemCode` (e.g. `FST_PRECONDITION_FAILED`). */
  readonly code: string
  /** The headers the plugin would send with it. */
  readonly headers: Record<string, string>
  /** The RFC 9457 body the plugin would send. */
  readonly problem: ProblemDetails

  constructor (problem: ProblemDetails, headers: Record<string, string>) {
    super(problem.detail)
    this.name = 'PreconditionProblemError'
    this.statusCode = problem.status
    this.code = problem.code
    this.headers = headers
    this.problem = problem
  }
}

/** `if-match` → `If-Match`. */
export function canonicalHeaderName (name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, dash: string, letter: string) => dash + letter.toUpperCase())
}

function mergeMessages (option: ProblemMessagesOption | undefined): ProblemMessages {
  if (option === undefined) return defaultMessages
  // A misspelt group ("title") would silently leave every text in English: refuse it.
  if (typeof option !== 'object' || option === null || Array.isArray(option) ||
    Object.keys(option).some((group) => group !== 'titles' && group !== 'details')) {
    throw invalidOption('messages', 'messages must be an object with optional "titles" and "details"')
  }
  const merged: ProblemMessages = {
    titles: { ...defaultMessages.titles },
    details: { ...defaultMessages.details }
  }
  for (const group of ['titles', 'details'] as const) {
    const given = option[group]
    if (given === undefined) continue
    if (typeof given !== 'object' || given === null || Array.isArray(given)) throw invalidOption('messages', `messages.${group} must be an object`)
    for (const [key, text] of Object.entries(given)) {
      if (!Object.hasOwn(merged[group], key)) {
        throw invalidOption('messages', `messages.${group}.${key} is not a known message; known: ${Object.keys(merged[group]).join(', ')}`)
      }
      if (typeof text !== 'string' || text.length === 0) throw invalidOption('messages', `messages.${group}.${key} must be a non-empty string`)
      ;(merged[group] as Record<string, string>)[key] = text
    }
  }
  return merged
}
