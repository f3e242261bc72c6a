// Type tests of the public API, compiled with `tsc -p types/tsconfig.json --noEmit`. Each line
// marked as an expected error must be one, so a type that became too loose fails the check.
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import fastifyPrecondition, {
  fastifyPrecondition as named,
  strongEtag,
  evaluate,
  Outcome,
  MemoryLockStore,
  ProblemDetailsSchema,
  type ConcurrencyOptions,
  type FastifyPreconditionOptions,
  type LockStore,
  type Preconditions,
  type ProblemDetails,
  type Validators
} from '../lib/index.js'

const app = Fastify()
app.register(fastifyPrecondition)
app.register(named, { lockStore: 'memory', lockTimeout: 500, retryAfter: 2, exposeEtag: false })
app.register(fastifyPrecondition, { lockStore: new MemoryLockStore(), problemTypeBase: 'https://example.com/problems/' })
app.register(fastifyPrecondition, { messages: { titles: { 412: 'Vorbedingung fehlgeschlagen' }, details: { ifMatchMismatch: 'Veraltet' } } })

// @ts-expect-error lockStore is 'memory' or a LockStore
app.register(fastifyPrecondition, { lockStore: 'redis' })
// @ts-expect-error lockTimeout is a number
app.register(fastifyPrecondition, { lockTimeout: '5s' })
// @ts-expect-error messages only know their own keys
app.register(fastifyPrecondition, { messages: { titles: { 418: 'teapot' } } })

const validators = (request: FastifyRequest): Validators | null => ({ etag: strongEtag(request.url), lastModified: new Date() })

app.put('/items/:id', { concurrency: { require: 'if-match', validators } }, async () => 'ok')
app.put('/a', { concurrency: { require: ['if-match', 'if-unmodified-since'], validators, stage: 'onRequest', lock: true } }, async () => 'ok')
app.put('/b', { concurrency: { validators: async () => null, key: (request) => request.url } }, async () => 'ok')
app.route({ method: 'PATCH', url: '/c', concurrency: { require: 'if-none-match' }, handler: async () => 'ok' })

// @ts-expect-error require takes header names the plugin knows
app.put('/d', { concurrency: { require: 'if-range' } }, async () => 'ok')
// @ts-expect-error require takes lower-case names
app.put('/e', { concurrency: { require: 'If-Match' } }, async () => 'ok')
// @ts-expect-error stage is preHandler or onRequest
app.put('/f', { concurrency: { validators, stage: 'preValidation' } }, async () => 'ok')
// @ts-expect-error lock is a boolean
app.put('/g', { concurrency: { validators, lock: 'yes' } }, async () => 'ok')
// @ts-expect-error validators returns validators, not a string
app.put('/h', { concurrency: { validators: () => 'abc' } }, async () => 'ok')
// @ts-expect-error etag is a string
app.put('/i', { concurrency: { validators: () => ({ etag: 42 }) } }, async () => 'ok')
// @ts-expect-error key returns a string
app.put('/j', { concurrency: { validators, key: () => 42 } }, async () => 'ok')
// @ts-expect-error unknown keys are refused
app.put('/k', { concurrency: { validators, retries: 3 } }, async () => 'ok')

app.get('/typed/:id', {
  concurrency: {
    validators: (request) => {
      const id: string = (request.params as { id: string }).id
      return { etag: `"${id}"` }
    }
  }
}, async (request, reply: FastifyReply) => {
  const pre: Preconditions = request.preconditions
  if (pre.ifMatch !== null && pre.ifMatch !== '*' && pre.ifMatch.length === 0) return reply.failPrecondition()
  // @ts-expect-error preconditions are read-only
  request.preconditions = pre
  return reply.failPrecondition({ etag: '"v1"' })
})

const outcome: Outcome = evaluate('PUT', { 'if-match': '"a"' }, { etag: '"a"' })
const options: FastifyPreconditionOptions = { exposeEtag: true }
const policy: ConcurrencyOptions = { require: 'if-match' }
const store: LockStore = { acquire: () => ({ token: 1, signal: AbortSignal.abort(), release: () => {} }) }
// @ts-expect-error a lease has a fencing token and a signal
const tokenless: LockStore = { acquire: () => ({ release: () => {} }) }
const problem: ProblemDetails = { type: 'about:blank', title: 'Precondition Failed', status: 412, detail: '', instance: '/', code: 'FST_PRECONDITION_FAILED' }
export { outcome, options, policy, store, tokenless, problem, ProblemDetailsSchema }
