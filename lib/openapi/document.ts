// Puts each guarded route's documentation (route.ts) into the document @fastify/swagger generates,
// after swagger built it: its `transform` and `transformObject` have run by then.
//
// The route's schema is never touched. Whatever the app's schema stack (JSON Schema, TypeBox, Zod
// through fastify-type-provider-zod's `jsonSchemaTransform` or fastify-zod-openapi), Fastify
// compiles, and a swagger `transform` receives, exactly the schema the route declared: no header
// validator or serializer is compiled for what the plugin documents (a 428 can never become a
// 400, a problem body is never reshaped by a route's 4xx schema), and no transform meets a plain
// JSON Schema where it expects its own objects. The document gets the policy all the same, in the
// form of its specification (OpenAPI 3 or Swagger 2.0), merged with what the route documents,
// which wins.
import type { FastifyInstance, RouteOptions } from 'fastify'
import type { Policy } from '../policy.js'
import { ProblemDetailsSchema, type ProblemWriter } from '../problem.js'
import { documentPaths } from './paths.js'
import { routeDocumentation, type HeaderDoc, type RouteDocumentation } from './route.js'

type Schema = Record<string, unknown>
type Generate = (this: unknown, options?: { yaml?: boolean }) => unknown

/** A guarded route as the document is finished with it. */
export interface DocumentedRoute {
  method: string | string[]
  url: string
  documentation: RouteDocumentation
}

const PROBLEM_CONTENT = 'application/problem+json'
const PROBLEM_SCHEMA_ID = (ProblemDetailsSchema as { $id?: string }).$id as string
const STATUS_2XX = /^2(?:\d\d|xx)$/i
const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])

/**
 * Shares the problem-details schema, once, so every documented answer refers to one
 * `PreconditionProblemDetails` component, and has the document @fastify/swagger generates
 * finished once the app is ready. Returns what records a guarded route.
 */
export function documentation (fastify: FastifyInstance, problems: ProblemWriter): (routeOptions: RouteOptions, policy: Policy) => void {
  if (fastify.getSchema(PROBLEM_SCHEMA_ID) === undefined) fastify.addSchema(ProblemDetailsSchema)
  const routes: Array<{ method: string | string[], url: string, policy: Policy }> = []
  fastify.addHook('onReady', async function () {
    // The words are made when a document is first asked for: an app that never generates one
    // never pays for them.
    finishSwagger(fastify as unknown as Schema, () => routes.map(({ method, url, policy }) => ({ method, url, documentation: routeDocumentation(method, url, policy, problems) })))
  })
  return (routeOptions, policy) => {
    routes.push({ method: routeOptions.method, url: routeOptions.url, policy })
  }
}

/**
 * Wraps @fastify/swagger's `swagger()` decorator so the document it returns has what
 * `finishDocument` adds, without the app setting anything up. The YAML form of a document that
 * needed finishing is its JSON text (YAML is a superset of JSON); otherwise it is swagger's own.
 */
function finishSwagger (fastify: Schema, routes: () => DocumentedRoute[]): void {
  const generate = fastify.swagger as Generate | undefined
  if (typeof generate !== 'function') return
  let changed: boolean | undefined
  const finished: Generate = function (options) {
    // Without options swagger returns its cached document object, which is finished in place once.
    const document = generate.call(this) as Schema
    changed ??= finishDocument(document, routes())
    if (options?.yaml !== true) return document
    return changed ? JSON.stringify(document, null, 2) + '\n' : generate.call(this, options)
  }
  fastify.swagger = finished
}

/**
 * Adds each route's documentation to its operations in `document`, and tidies what swagger left:
 * it names shared schemas `def-0`, `def-1`, … unless the app passes a refResolver, so the problem
 * schema gets its own name back; in Swagger 2.0 mode it copies a response's OpenAPI 3 `content`
 * into `schema`, which Swagger 2.0 does not allow, so each such response gets the schema of its
 * media type, its example under `examples`, and the operation `produces` the media type.
 * Returns whether anything changed.
 */
export function finishDocument (document: Schema, routes: DocumentedRoute[] = []): boolean {
  const swagger2 = document.swagger === '2.0'
  const problems = new ProblemSchema(document, swagger2)
  let changed = problems.renamed
  const finished = new Set<Schema>()
  for (const route of routes) {
    for (const operation of operationsOf(document, route)) {
      // The methods of one route share one operation object.
      if (finished.has(operation)) continue
      finished.add(operation)
      addDocumentation(operation, route.documentation, swagger2, document, problems)
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

/** The operations swagger generated for `route`: none when it is hidden, or not in this document. */
function operationsOf (document: Schema, route: DocumentedRoute): Schema[] {
  if (!isPlainObject(document.paths)) return []
  const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((method) => method.toLowerCase()).filter((method) => METHODS.has(method))
  for (const path of documentPaths(route.url, document)) {
    const item = document.paths[path]
    if (!isPlainObject(item)) continue
    const found = methods.map((method) => item[method]).filter(isPlainObject)
    if (found.length > 0) return found
  }
  return []
}

/** Where documented answers refer to the problem schema, found or added once a route needs it. */
class ProblemSchema {
  readonly renamed: boolean
  #reference: string | undefined

  constructor (private readonly document: Schema, private readonly swagger2: boolean) {
    const schemas = this.schemas(false)
    const generated = schemas === undefined ? undefined : Object.keys(schemas).find((name) => /^def-\d+$/.test(name) && isPlainObject(schemas[name]) && schemas[name].title === PROBLEM_SCHEMA_ID)
    this.renamed = false
    if (schemas === undefined || generated === undefined) return
    if (schemas[PROBLEM_SCHEMA_ID] !== undefined) {
      // A name the app uses itself is not taken over.
      this.#reference = this.base + generated
      return
    }
    for (const name of Object.keys(schemas)) {
      const value = schemas[name]
      delete schemas[name]
      schemas[name === generated ? PROBLEM_SCHEMA_ID : name] = value
    }
    replaceRefs(document, this.base + generated, this.base + PROBLEM_SCHEMA_ID)
    this.renamed = true
  }

  get base (): string {
    return this.swagger2 ? '#/definitions/' : '#/components/schemas/'
  }

  /** The reference to the problem schema; the schema is added when the document lacks it. */
  get reference (): string {
    if (this.#reference === undefined) {
      const schemas = this.schemas(true) as Schema
      // A refResolver of the app's own that names it otherwise, or a transformObject that dropped
      // it: the document gets its own copy.
      schemas[PROBLEM_SCHEMA_ID] ??= problemComponent()
      this.#reference = this.base + PROBLEM_SCHEMA_ID
    }
    return this.#reference
  }

  private schemas (create: boolean): Schema | undefined {
    const container = this.swagger2 ? this.document : this.document.components as Schema | undefined
    const key = this.swagger2 ? 'definitions' : 'schemas'
    if (!create) return isPlainObject(container) && isPlainObject(container[key]) ? container[key] : undefined
    const components = this.swagger2 ? this.document : (this.document.components = isPlainObject(container) ? container : {})
    if (!isPlainObject(components[key])) components[key] = {}
    return components[key] as Schema
  }
}

/** The problem schema as a component: its JSON Schema without the `$id`, titled like swagger's. */
function problemComponent (): Schema {
  const { $id, ...schema } = JSON.parse(JSON.stringify(ProblemDetailsSchema)) as Schema
  return { ...schema, title: $id }
}

function addDocumentation (operation: Schema, documentation: RouteDocumentation, swagger2: boolean, document: Schema, problems: ProblemSchema): void {
  const parameters = Array.isArray(operation.parameters) ? operation.parameters as Schema[] : []
  const taken = new Set(parameters.filter((parameter) => parameter?.in === 'header' && typeof parameter.name === 'string').map((parameter) => (parameter.name as string).toLowerCase()))
  for (const { name, description, required } of documentation.parameters) {
    if (taken.has(name.toLowerCase())) continue
    parameters.push(swagger2
      ? { type: 'string', description, required, in: 'header', name }
      : { schema: { type: 'string' }, in: 'header', name, required, description })
  }
  if (parameters.length > 0) operation.parameters = parameters

  if (!isPlainObject(operation.responses)) operation.responses = {}
  const responses = operation.responses as Schema
  if (!swagger2 && isSwaggerDefault(responses)) {
    // What swagger shows for a route that declares no answer, with its body said to be whatever
    // the handler sends, beside the plugin's answers.
    (responses['200'] as Schema).content = { '*/*': { schema: {} } }
  }
  const success = documentation.successHeaders
  if (success !== null) {
    for (const [status, entry] of Object.entries(responses)) {
      if (STATUS_2XX.test(status) && isPlainObject(entry) && entry.$ref === undefined) {
        responses[status] = { ...entry, headers: { ...headersIn(success, swagger2), ...entry.headers as Schema | undefined } }
      }
    }
  }
  let problem = false
  for (const [status, response] of Object.entries(documentation.responses)) {
    if (responses[status] !== undefined) continue
    const entry: Schema = { description: response.description }
    if (response.headers !== undefined) entry.headers = headersIn(response.headers, swagger2)
    if (response.problem !== undefined) {
      problem = true
      if (swagger2) {
        entry.schema = { $ref: problems.reference }
        entry.examples = { [PROBLEM_CONTENT]: response.problem }
      } else {
        entry.content = { [PROBLEM_CONTENT]: { schema: { $ref: problems.reference }, example: response.problem } }
      }
    }
    responses[status] = entry
  }
  if (swagger2 && problem) produce(operation, document, PROBLEM_CONTENT)
}

/** Swagger's answers for a route that declares none: a 200 "Default Response" alone. */
function isSwaggerDefault (responses: Schema): boolean {
  const keys = Object.keys(responses)
  const entry = responses['200']
  return keys.length === 1 && isPlainObject(entry) && Object.keys(entry).length === 1 && entry.description === 'Default Response'
}

function headersIn (headers: Record<string, HeaderDoc>, swagger2: boolean): Schema {
  const result: Schema = {}
  for (const [name, { type, description }] of Object.entries(headers)) {
    result[name] = swagger2 ? { type, description } : { schema: { type }, description }
  }
  return result
}

function produce (operation: Schema, document: Schema, ...mediaTypes: string[]): void {
  const declared = (operation.produces ?? document.produces ?? ['application/json']) as string[]
  operation.produces = [...new Set([...declared, ...mediaTypes])]
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
  produce(operation, document, ...produced)
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
