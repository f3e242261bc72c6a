// With @fastify/type-provider-typebox, a route with a concurrency policy keeps the request types
// its schema infers, and validators and key receive that typed request.
import Fastify, { type FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import fastifyPrecondition, { strongEtag, type Validators } from '../lib/index.js'

/** Compiles only when `value` is a `T`. */
function expectType<T> (value: T): T {
  return value
}

const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
app.register(fastifyPrecondition)

const items = new Map<string, { body: string, etag: string }>()
const Params = Type.Object({ id: Type.String() })
const Body = Type.Object({ name: Type.String(), count: Type.Optional(Type.Integer()) })
const Query = Type.Object({ dryRun: Type.Optional(Type.Boolean()) })

app.put('/items/:id', {
  schema: { params: Params, body: Body, querystring: Query },
  concurrency: {
    require: 'if-match',
    validators: (request) => {
      const id = expectType<string>(request.params.id)
      // @ts-expect-error params.id is a string, not a number
      expectType<number>(request.params.id)
      // @ts-expect-error the params schema has no such property
      expectType<string>(request.params.missing)
      expectType<boolean | undefined>(request.query.dryRun)
      const item = items.get(id)
      return item === undefined ? null : { etag: item.etag }
    },
    key: (request) => `item:${request.params.id.toUpperCase()}`
  }
}, async (request, reply) => {
  // The handler keeps its inferred types with concurrency added.
  const name = expectType<string>(request.body.name)
  const count = expectType<number | undefined>(request.body.count)
  // @ts-expect-error name is a string
  expectType<number>(request.body.name)
  items.set(request.params.id, { body: JSON.stringify({ name, count }), etag: strongEtag(name) })
  return reply.code(204).send()
})

// Async validators and app.route() infer the same way.
app.route({
  method: 'PATCH',
  url: '/items/:id',
  schema: { params: Params, body: Body },
  concurrency: {
    require: ['if-match', 'if-unmodified-since'],
    validators: async (request): Promise<Validators | null> => {
      const length = expectType<number>(request.params.id.length)
      return length > 0 ? { etag: '"v1"', lastModified: new Date() } : null
    }
  },
  handler: async (request) => ({ name: request.body.name })
})

// A validator written apart from the route, for the plain request type, still fits.
const untyped = (request: FastifyRequest): Validators | null => ({ etag: strongEtag(request.url) })
app.get('/items/:id', { schema: { params: Params }, concurrency: { validators: untyped } }, async (request) => request.params.id)

app.delete('/items/:id', {
  schema: { params: Params },
  concurrency: {
    require: 'if-match',
    // @ts-expect-error validators must return validators or null, not the id
    validators: (request) => request.params.id
  }
}, async () => null)
