// What a route's policy documents: the precondition headers, the 304/412/428/503 answers and the
// validators' response headers, and for Idempotency-Key the header, its 400/409/422 answers and
// Idempotent-Replayed. Pure: the same words for every schema stack and both specifications;
// `document.ts` puts them into the document @fastify/swagger generated.
import type { FastifyReply } from 'fastify'
import { ProblemCode } from '../errors.js'
import { strongEtag } from '../http/etag.js'
import { Outcome } from '../http/evaluate.js'
import { isSafe } from '../http/methods.js'
import type { IdempotencyPolicy, Policy, RequirableHeader } from '../policy.js'
import { canonicalHeaderName, type IdempotencyProblemCode, type ProblemDetails, type ProblemWriter } from '../problem.js'
import { orList } from '../shared.js'

/** A header of an answer: its type and what it says. */
export interface HeaderDoc {
  type: 'string' | 'integer'
  description: string
}

/** A request header the route reads. */
export interface ParameterDoc {
  name: string
  description: string
  required: boolean
}

/** An answer the plugin gives on the route; `problem` is the body it sends (none: no body). */
export interface ResponseDoc {
  description: string
  headers?: Record<string, HeaderDoc>
  problem?: ProblemDetails
}

export interface RouteDocumentation {
  parameters: ParameterDoc[]
  /** Headers of every 2xx answer, or null when there are none. */
  successHeaders: Record<string, HeaderDoc> | null
  /** By status, in the order they are added; the route's own entry for a status wins. */
  responses: Record<string, ResponseDoc>
}

const EXAMPLE_ETAG = strongEtag('{"id":"1","name":"example"}')

/** The documentation of a route with `policy`, declared with `method` at `url`. */
export function routeDocumentation (method: string | string[], url: string, policy: Policy, problems: ProblemWriter): RouteDocumentation {
  const methods = Array.isArray(method) ? method : [method]
  const writeMethods = methods.filter((name) => !isSafe(name))
  const writes = writeMethods.length > 0
  const reads = methods.some((name) => name === 'GET' || name === 'HEAD')
  // One schema documents every method of a route: a header is only marked required when every
  // one of them requires it.
  const onlyWrites = writeMethods.length === methods.length
  const writesNote = onlyWrites ? '' : ` (on ${writeMethods.join(', ')})`
  const path = examplePath(url)

  const parameters: ParameterDoc[] = []
  const required = writes ? policy.required : null
  if (required !== null) {
    const alone = required.length === 1
    for (const name of required) {
      parameters.push({ name: canonicalHeaderName(name), description: requiredDescription(name, required, writesNote), required: alone && onlyWrites })
    }
  }
  if (policy.validators !== null) {
    if (writes && required === null) {
      parameters.push({ name: 'If-Match', description: `Optional${writesNote}: the ETag of the representation this write is based on, as a GET returned it. When the resource changed since, the write is refused with 412.`, required: false })
    }
    if (reads) {
      parameters.push({ name: 'If-None-Match', description: 'Optional on GET and HEAD: ETags of representations you already hold. When one is still current the answer is 304 Not Modified, without a body.', required: false })
    }
  }
  const idempotency = writes ? policy.idempotency : null
  if (idempotency !== null) {
    parameters.push({ name: 'Idempotency-Key', description: idempotencyKeyDescription(idempotency, writesNote), required: idempotency.required && onlyWrites })
  }

  const successHeaders = policy.validators === null && idempotency === null
    ? null
    : {
        ...(policy.validators === null ? undefined : responseValidatorHeaders(reads, writes)),
        ...(idempotency === null ? undefined : { 'Idempotent-Replayed': { type: 'string' as const, description: `"true"${writesNote} when this is the stored answer to an earlier request with the same Idempotency-Key, sent again without running the request again; absent otherwise` } })
      }

  const responses: Record<string, ResponseDoc> = {}
  if (policy.validators !== null && reads) {
    responses['304'] = {
      description: 'Not Modified (GET and HEAD): the representation you hold, named in If-None-Match or dated by If-Modified-Since, is still current. No body.',
      headers: {
        ETag: { type: 'string', description: 'The current entity-tag' },
        'Last-Modified': { type: 'string', description: 'When the representation last changed (HTTP-date), when known' }
      }
    }
  }
  if (policy.validators !== null && writes) {
    responses['412'] = problem(
      `Precondition Failed${writesNote}: a precondition did not hold, usually because the resource changed since you read it. ` +
      'GET it again, reapply your change and retry.' +
      (problems.exposeEtag ? ' The current ETag is in the ETag header and the etag member.' : ''),
      capture((reply) => problems.sendFailed(reply, Outcome.IF_MATCH_MISMATCH, path, EXAMPLE_ETAG)),
      problems.exposeEtag ? { ETag: { type: 'string', description: 'The current entity-tag of the resource' } } : undefined)
  }
  if (required !== null) {
    responses['428'] = problem(
      `Precondition Required${writesNote}: the request carried none of ${orList(required.map(canonicalHeaderName))}; the required member lists them.`,
      capture((reply) => problems.sendRequired(reply, problems.required(required), path)))
  }
  if (idempotency !== null) {
    const keyProblem = (code: IdempotencyProblemCode) => capture((reply) => problems.sendIdempotencyProblem(reply, code, path))
    responses['400'] = problem(
      `Bad Request${writesNote}: the Idempotency-Key is ${idempotency.required ? 'missing or ' : ''}malformed; the code member says which. ` +
      'Nothing was run. (A request the route\'s own schema refuses is answered 400 too, in Fastify\'s error format.)',
      keyProblem(idempotency.required ? ProblemCode.IDEMPOTENCY_KEY_MISSING : ProblemCode.IDEMPOTENCY_KEY_INVALID))
    responses['409'] = problem(
      `Conflict${writesNote}: the first request with this Idempotency-Key is still being processed ` +
      `(code ${ProblemCode.IDEMPOTENCY_KEY_IN_USE}): retry after the Retry-After delay with the same key to receive its answer. ` +
      `Or it was applied and its answer not kept (code ${ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT}, no Retry-After): do not send it again.`,
      keyProblem(ProblemCode.IDEMPOTENCY_KEY_IN_USE),
      RETRY_AFTER)
    responses['422'] = problem(
      `Unprocessable Content${writesNote}: this Idempotency-Key was already used for another request (another method, path or body). ` +
      'Nothing was run; send a new key for a new change.',
      keyProblem(ProblemCode.IDEMPOTENCY_KEY_MISMATCH))
  }
  if (policy.lock && writes) {
    responses['503'] = problem(
      `Service Unavailable${writesNote}: another write to this resource held it too long, or the lock store could not be reached` +
      (idempotency === null ? '' : ', or the idempotency store') + '. Nothing was written; retry after the Retry-After delay.',
      capture((reply) => problems.sendLockProblem(reply, ProblemCode.LOCK_TIMEOUT, path)),
      RETRY_AFTER)
  } else if (idempotency !== null) {
    responses['503'] = problem(
      `Service Unavailable${writesNote}: the idempotency store could not be reached. Nothing was run; retry after the Retry-After delay with the same Idempotency-Key.`,
      capture((reply) => problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_UNAVAILABLE, path)),
      RETRY_AFTER)
  }
  return { parameters, successHeaders, responses }
}

const RETRY_AFTER: Record<string, HeaderDoc> = { 'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying' } }

function problem (description: string, example: ProblemDetails, headers?: Record<string, HeaderDoc>): ResponseDoc {
  return headers === undefined ? { description, problem: example } : { description, headers, problem: example }
}

/** The route's URL as a request would spell it: each parameter `1`, a wildcard `example`. */
function examplePath (url: string): string {
  return url.replace(/:\w+(?:\([^)]*\))?/g, '1').replace(/\*$/, 'example')
}

function requiredDescription (name: RequirableHeader, required: RequirableHeader[], writesNote: string): string {
  const others = required.filter((other) => other !== name).map(canonicalHeaderName)
  const need = others.length === 0
    ? `Required${writesNote}: without it the request is answered 428.`
    : `Required unless ${orList(others)} is sent${writesNote}: without any of them the request is answered 428.`
  switch (name) {
    case 'if-match':
      return `${need} Send the ETag response header of your last GET of this resource, unchanged (or * for any current representation). When the resource changed since, the answer is 412.`
    case 'if-unmodified-since':
      return `${need} Send the Last-Modified response header of your last GET of this resource, unchanged. When the resource changed after that date, the answer is 412; an unparsable date counts as absent.`
    default:
      return `${need} Send * to create the resource only if it does not exist yet; when it exists, the answer is 412.`
  }
}

function idempotencyKeyDescription (idempotency: IdempotencyPolicy, writesNote: string): string {
  const need = idempotency.required ? `Required${writesNote}: without it the request is answered 400.` : `Optional${writesNote}.`
  return `${need} A key of your own for this change, unique to it (a UUID, say): 1 to 255 visible ASCII characters, ` +
    'as a quoted string ("…") or a bare token. Send the same key when you retry the same change, after a lost answer or a timeout. ' +
    `The first request with a key runs, and its answer is kept for ${duration(idempotency.ttl)}; a retry with the same key and the same ` +
    'request (method, path and body) gets that answer again, with Idempotent-Replayed: true, and does not run again. ' +
    'The same key while its first request still runs: 409; with another request: 422.'
}

/** Milliseconds in words: "24 hours", "10 minutes", "1.5 seconds". */
function duration (ms: number): string {
  const [amount, unit] = ms % 3600_000 === 0 ? [ms / 3600_000, 'hour'] : ms % 60_000 === 0 ? [ms / 60_000, 'minute'] : [ms / 1000, 'second']
  return `${amount} ${unit}${amount === 1 ? '' : 's'}`
}

function responseValidatorHeaders (reads: boolean, writes: boolean): Record<string, HeaderDoc> {
  const after = writes ? (reads ? 'of the representation (after a write: the one it produced)' : 'of the representation this write produced') : 'of the representation'
  return {
    ETag: { type: 'string', description: `The strong entity-tag ${after}; send it back in If-Match to change the resource` },
    'Last-Modified': { type: 'string', description: 'When the representation last changed (HTTP-date), when known; If-Unmodified-Since takes it back' }
  }
}

/** The body the plugin would send, written by the plugin's own writer: examples cannot drift. */
function capture (write: (reply: FastifyReply) => void): ProblemDetails {
  let body = ''
  const reply = {
    // The request whose state a 412 notes its ETag in.
    request: {},
    code () { return reply },
    header () { return reply },
    headers () { return reply },
    // With problems: 'error-handler' the writer sends an error that carries the body.
    send (payload: string | { problem: ProblemDetails }) {
      body = typeof payload === 'string' ? payload : JSON.stringify(payload.problem)
      return reply
    }
  }
  write(reply as unknown as FastifyReply)
  return JSON.parse(body) as ProblemDetails
}
