// Documents a route's policy in its schema, so @fastify/swagger shows the precondition headers,
// the 304/412/428/503 answers and the validators' response headers, and for Idempotency-Key the
// header, its 400/409/422 answers and Idempotent-Replayed.
//
// Documentation only. Fastify compiles the schema a route holds once its onRoute hooks have run
// (it keeps that object in the route's context), while @fastify/swagger reads the route options
// when the document is generated. So the route keeps its declared schema through onRoute, and
// the documented copy replaces it on the route options one microtask later. Fastify never sees
// the added entries: no header validator is compiled for them (a route without a headers schema
// keeps validating nothing per request, and a 428 can never become a 400), no serializer is
// compiled for them, and custom validator or serializer compilers are never handed a schema
// they did not expect.
import type { FastifyInstance, FastifyReply, RouteOptions } from 'fastify'
import { ProblemCode } from '../errors.js'
import { strongEtag } from '../http/etag.js'
import { Outcome } from '../http/evaluate.js'
import { isSafe } from '../http/methods.js'
import type { IdempotencyPolicy, Policy, RequirableHeader } from '../policy.js'
import { canonicalHeaderName, ProblemDetailsSchema, type IdempotencyProblemCode, type ProblemDetails, type ProblemWriter } from '../problem.js'
import { orList } from '../shared.js'

type Schema = Record<string, unknown>

const PROBLEM_CONTENT = 'application/problem+json'
const PROBLEM_SCHEMA_ID = (ProblemDetailsSchema as { $id?: string }).$id as string
const PROBLEM_REF = { $ref: PROBLEM_SCHEMA_ID + '#' }
const EXAMPLE_ETAG = strongEtag('{"id":"1","name":"example"}')
const STATUS_2XX = /^2(?:\d\d|xx)$/i

/**
 * Adds the problem-details schema to the instance's shared schemas, once, so every documented
 * route refers to one `PreconditionProblemDetails` component instead of repeating it, and has
 * the document @fastify/swagger generates finished once the app is ready (see `finishDocument`).
 */
export function shareProblemSchema (fastify: FastifyInstance): void {
  if (fastify.getSchema(PROBLEM_SCHEMA_ID) === undefined) fastify.addSchema(ProblemDetailsSchema)
  fastify.addHook('onReady', async function () {
    finishSwagger(fastify as unknown as Schema)
  })
}

type Generate = (this: unknown, options?: { yaml?: boolean }) => unknown

/**
 * Wraps @fastify/swagger's `swagger()` decorator so the document it returns has what
 * `finishDocument` adds, without the app setting anything up. The YAML form of a document that
 * needed finishing is its JSON text (YAML is a superset of JSON); otherwise it is swagger's own.
 */
function finishSwagger (fastify: Schema): void {
  const generate = fastify.swagger as Generate | undefined
  if (typeof generate !== 'function') return
  let changed: boolean | undefined
  const finished: Generate = function (options) {
    // Without options swagger returns its cached document object, which is finished in place once.
    const document = generate.call(this) as Schema
    changed ??= finishDocument(document)
    if (options?.yaml !== true) return document
    return changed ? JSON.stringify(document, null, 2) + '\n' : generate.call(this, options)
  }
  fastify.swagger = finished
}

/**
 * @fastify/swagger names shared schemas `def-0`, `def-1`, … unless the app passes a refResolver:
 * the problem schema gets its own name back. In Swagger 2.0 mode it copies a response's OpenAPI 3
 * `content` into `schema`, which Swagger 2.0 does not allow: each such response gets the schema of
 * its media type, its example under `examples`, and the operation `produces` the media type.
 * Returns whether anything changed.
 */
export function finishDocument (document: Schema): boolean {
  const swagger2 = document.swagger === '2.0'
  const schemas = (swagger2 ? document.definitions : (document.components as Schema | undefined)?.schemas) as Schema | undefined
  const base = swagger2 ? '#/definitions/' : '#/components/schemas/'
  let changed = false
  if (isPlainObject(schemas) && schemas[PROBLEM_SCHEMA_ID] === undefined) {
    const generated = Object.keys(schemas).find((name) => /^def-\d+$/.test(name) && (schemas[name] as Schema).title === PROBLEM_SCHEMA_ID)
    if (generated !== undefined) {
      for (const name of Object.keys(schemas)) {
        const value = schemas[name]
        delete schemas[name]
        schemas[name === generated ? PROBLEM_SCHEMA_ID : name] = value
      }
      replaceRefs(document, base + generated, base + PROBLEM_SCHEMA_ID)
      changed = true
    }
  }
  if (swagger2 && isPlainObject(document.paths)) {
    for (const operations of Object.values(document.paths as Schema)) {
      for (const operation of Object.values(operations as Schema) as Schema[]) {
        if (isPlainObject(operation) && isPlainObject(operation.responses) && contentToSwagger2(operation, document)) changed = true
      }
    }
  }
  return changed
}

function contentToSwagger2 (operation: Schema, document: Schema): boolean {
  const produced = new Set<string>()
  for (const response of Object.values(operation.responses as Schema) as Schema[]) {
    const schema = response.schema as Schema | undefined
    if (!isPlainObject(schema) || !isPlainObject(schema.content)) continue
    const [mediaType, media] = Object.entries(schema.content)[0] as [string, Schema]
    const body = media.schema as Schema
    if (Object.keys(body).length === 0) delete response.schema
    else response.schema = body
    if (media.example !== undefined) response.examples = { [mediaType]: media.example }
    if (mediaType !== '*/*') produced.add(mediaType)
  }
  if (produced.size === 0) return false
  const declared = (operation.produces ?? document.produces ?? ['application/json']) as string[]
  operation.produces = [...new Set([...declared, ...produced])]
  return true
}

function replaceRefs (node: unknown, from: string, to: string): void {
  if (Array.isArray(node)) {
    for (const item of node) replaceRefs(item, from, to)
  } else if (typeof node === 'object' && node !== null) {
    const object = node as Schema
    if (object.$ref === from) object.$ref = to
    for (const value of Object.values(object)) replaceRefs(value, from, to)
  }
}

function isPlainObject (value: unknown): value is Schema {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** Adds the policy's documentation to the route's schema; see the head of this file for when. */
export function documentRoute (routeOptions: RouteOptions, policy: Policy, problems: ProblemWriter): void {
  const declared = routeOptions.schema as unknown
  // Something other than a plain JSON Schema object (a schema builder, another type system's
  // objects) is the user's to document.
  if (declared !== undefined && !isPlainObject(declared)) return
  // Fastify only compiles a route's schema when the route had one at declaration, and then
  // expects it in the route's context too: an empty one keeps both in step.
  if (declared === undefined) routeOptions.schema = {}
  queueMicrotask(() => {
    const current = routeOptions.schema as unknown
    // A later onRoute hook may have put a schema of its own in place.
    if (!isPlainObject(current)) return
    routeOptions.schema = documentedSchema(current, routeOptions, policy, problems)
  })
}

function documentedSchema (declared: Schema, routeOptions: RouteOptions, policy: Policy, problems: ProblemWriter): Schema {
  const methods = Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
  const writeMethods = methods.filter((method) => !isSafe(method))
  const writes = writeMethods.length > 0
  const reads = methods.some((method) => method === 'GET' || method === 'HEAD')
  // One schema documents every method of a route: a header is only marked required when every
  // one of them requires it.
  const onlyWrites = writeMethods.length === methods.length
  const writesNote = onlyWrites ? '' : ` (on ${writeMethods.join(', ')})`
  const path = examplePath(routeOptions.url)
  const schema: Schema = { ...declared }

  const headers: Array<[string, Schema, boolean]> = []
  const required = writes ? policy.required : null
  if (required !== null) {
    const alone = required.length === 1
    for (const name of required) {
      headers.push([canonicalHeaderName(name), { type: 'string', description: requiredDescription(name, required, writesNote) }, alone && onlyWrites])
    }
  }
  if (policy.validators !== null) {
    if (writes && required === null) {
      headers.push(['If-Match', { type: 'string', description: `Optional${writesNote}: the ETag of the representation this write is based on, as a GET returned it. When the resource changed since, the write is refused with 412.` }, false])
    }
    if (reads) {
      headers.push(['If-None-Match', { type: 'string', description: 'Optional on GET and HEAD: ETags of representations you already hold. When one is still current the answer is 304 Not Modified, without a body.' }, false])
    }
  }
  const idempotency = writes ? policy.idempotency : null
  if (idempotency !== null) {
    headers.push(['Idempotency-Key', { type: 'string', description: idempotencyKeyDescription(idempotency, writesNote) }, idempotency.required && onlyWrites])
  }
  if (headers.length > 0) {
    const merged = withHeaders(schema.headers, headers)
    if (merged !== null) schema.headers = merged
  }

  const declaredResponse = schema.response
  if (declaredResponse !== undefined && !isPlainObject(declaredResponse)) return schema
  const response: Schema = { ...declaredResponse }
  const successHeaders = policy.validators === null && idempotency === null
    ? null
    : {
        ...(policy.validators === null ? undefined : responseValidatorHeaders(reads, writes)),
        ...(idempotency === null ? undefined : { 'Idempotent-Replayed': { type: 'string', description: `"true"${writesNote} when this is the stored answer to an earlier request with the same Idempotency-Key, sent again without running the request again; absent otherwise` } })
      }
  if (declaredResponse === undefined) {
    // What @fastify/swagger shows for a route that declares no response, kept beside ours; the
    // body is whatever the handler sends.
    response['200'] = { description: 'Default Response', content: { '*/*': { schema: {} } } }
    if (successHeaders !== null) (response['200'] as Schema).headers = successHeaders
  } else if (successHeaders !== null) {
    for (const [status, entry] of Object.entries(response)) {
      if (STATUS_2XX.test(status) && isPlainObject(entry)) {
        response[status] = { ...entry, headers: { ...successHeaders, ...(entry.headers as Schema | undefined) } }
      }
    }
  }
  if (policy.validators !== null && reads) {
    response['304'] ??= {
      description: 'Not Modified (GET and HEAD): the representation you hold, named in If-None-Match or dated by If-Modified-Since, is still current. No body.',
      type: 'null',
      headers: {
        ETag: { type: 'string', description: 'The current entity-tag' },
        'Last-Modified': { type: 'string', description: 'When the representation last changed (HTTP-date), when known' }
      }
    }
  }
  if (policy.validators !== null && writes) {
    const failed = capture((reply) => problems.sendFailed(reply, Outcome.IF_MATCH_MISMATCH, path, EXAMPLE_ETAG))
    response['412'] ??= problem(
      `Precondition Failed${writesNote}: a precondition did not hold, usually because the resource changed since you read it. ` +
      'GET it again, reapply your change and retry.' +
      (problems.exposeEtag ? ' The current ETag is in the ETag header and the etag member.' : ''),
      failed,
      problems.exposeEtag ? { ETag: { type: 'string', description: 'The current entity-tag of the resource' } } : undefined)
  }
  if (required !== null) {
    const missing = capture((reply) => problems.sendRequired(reply, problems.required(required), path))
    response['428'] ??= problem(
      `Precondition Required${writesNote}: the request carried none of ${orList(required.map(canonicalHeaderName))}; the required member lists them.`,
      missing)
  }
  if (idempotency !== null) {
    const keyProblem = (code: IdempotencyProblemCode) => capture((reply) => problems.sendIdempotencyProblem(reply, code, path))
    response['400'] ??= problem(
      `Bad Request${writesNote}: the Idempotency-Key is ${idempotency.required ? 'missing or ' : ''}malformed; the code member says which. ` +
      'Nothing was run. (A request the route\'s own schema refuses is answered 400 too, in Fastify\'s error format.)',
      keyProblem(idempotency.required ? ProblemCode.IDEMPOTENCY_KEY_MISSING : ProblemCode.IDEMPOTENCY_KEY_INVALID))
    response['409'] ??= problem(
      `Conflict${writesNote}: the first request with this Idempotency-Key is still being processed ` +
      `(code ${ProblemCode.IDEMPOTENCY_KEY_IN_USE}): retry after the Retry-After delay with the same key to receive its answer. ` +
      `Or it was applied and its answer not kept (code ${ProblemCode.IDEMPOTENCY_ANSWER_NOT_KEPT}, no Retry-After): do not send it again.`,
      keyProblem(ProblemCode.IDEMPOTENCY_KEY_IN_USE),
      retryAfterHeader())
    response['422'] ??= problem(
      `Unprocessable Content${writesNote}: this Idempotency-Key was already used for another request (another method, path or body). ` +
      'Nothing was run; send a new key for a new change.',
      keyProblem(ProblemCode.IDEMPOTENCY_KEY_MISMATCH))
  }
  if (policy.lock && writes) {
    const busy = capture((reply) => problems.sendLockProblem(reply, ProblemCode.LOCK_TIMEOUT, path))
    response['503'] ??= problem(
      `Service Unavailable${writesNote}: another write to this resource held it too long, or the lock store could not be reached` +
      (idempotency === null ? '' : ', or the idempotency store') + '. Nothing was written; retry after the Retry-After delay.',
      busy,
      retryAfterHeader())
  } else if (idempotency !== null) {
    const down = capture((reply) => problems.sendIdempotencyProblem(reply, ProblemCode.IDEMPOTENCY_UNAVAILABLE, path))
    response['503'] ??= problem(
      `Service Unavailable${writesNote}: the idempotency store could not be reached. Nothing was run; retry after the Retry-After delay with the same Idempotency-Key.`,
      down,
      retryAfterHeader())
  }
  schema.response = response
  return schema
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

function responseValidatorHeaders (reads: boolean, writes: boolean): Schema {
  const after = writes ? (reads ? 'of the representation (after a write: the one it produced)' : 'of the representation this write produced') : 'of the representation'
  return {
    ETag: { type: 'string', description: `The strong entity-tag ${after}; send it back in If-Match to change the resource` },
    'Last-Modified': { type: 'string', description: 'When the representation last changed (HTTP-date), when known; If-Unmodified-Since takes it back' }
  }
}

/** The user's headers schema with ours added, or null when it is not one we can safely extend. */
function withHeaders (declared: unknown, headers: Array<[string, Schema, boolean]>): Schema | null {
  if (declared !== undefined && !(isPlainObject(declared) && declared.$ref === undefined &&
    (declared.type === undefined || declared.type === 'object') &&
    (declared.properties === undefined || isPlainObject(declared.properties)))) {
    return null
  }
  const base: Schema = declared === undefined ? { type: 'object' } : { ...declared }
  const properties: Schema = { ...(base.properties as Schema | undefined) }
  const taken = new Set(Object.keys(properties).map((name) => name.toLowerCase()))
  const requiredList = Array.isArray(base.required) ? [...base.required as string[]] : []
  for (const [name, property, mandatory] of headers) {
    if (taken.has(name.toLowerCase())) continue
    properties[name] = property
    if (mandatory) requiredList.push(name)
  }
  base.properties = properties
  if (requiredList.length > 0) base.required = requiredList
  return base
}

function retryAfterHeader (): Schema {
  return { 'Retry-After': { type: 'integer', description: 'Seconds to wait before retrying' } }
}

function problem (description: string, example: ProblemDetails, headers?: Schema): Schema {
  const entry: Schema = { description, content: { [PROBLEM_CONTENT]: { schema: PROBLEM_REF, example } } }
  if (headers !== undefined) entry.headers = headers
  return entry
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
