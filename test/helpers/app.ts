import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import fastifyPrecondition, { type FastifyPreconditionOptions, type Validators } from '../../lib/index.js'

export interface Item { etag: string, lastModified: Date, name: string }

/**
 * A small app over a Map of items, guarded by the plugin; `calls` counts how often handlers and
 * validators ran, so a test can tell "answered before the handler" from "answered by it".
 */
export async function itemsApp (options: FastifyPreconditionOptions = {}) {
  const app: FastifyInstance = Fastify()
  await app.register(fastifyPrecondition, options)
  const items = new Map<string, Item>([
    ['1', { etag: '"v1"', lastModified: new Date('2026-01-01T10:00:00.750Z'), name: 'one' }]
  ])
  const calls = { handler: 0, validators: 0 }
  const validators = (request: FastifyRequest): Validators | null => {
    calls.validators++
    const item = items.get((request.params as { id: string }).id)
    return item === undefined ? null : { etag: item.etag, lastModified: item.lastModified }
  }
  let version = 1
  app.get('/items/:id', { concurrency: { validators } }, async (request, reply) => {
    calls.handler++
    const item = items.get((request.params as { id: string }).id)
    if (item === undefined) return reply.code(404).send({ message: 'not found' })
    return { name: item.name }
  })
  const write = async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
    calls.handler++
    const id = (request.params as { id: string }).id
    if (request.method === 'DELETE') {
      if (!items.delete(id)) return reply.code(404).send({ message: 'not found' })
      return reply.code(204).send()
    }
    if (request.method !== 'PUT' && !items.has(id)) return reply.code(404).send({ message: 'not found' })
    const created = !items.has(id)
    version++
    items.set(id, { etag: `"v${version}"`, lastModified: new Date(), name: (request.body as { name: string }).name })
    return reply.code(created ? 201 : 200).send({ name: (request.body as { name: string }).name })
  }
  app.put('/items/:id', { concurrency: { require: ['if-match', 'if-none-match'], validators } }, write)
  app.patch('/items/:id', { concurrency: { require: ['if-match', 'if-unmodified-since'], validators } }, write)
  app.delete('/items/:id', { concurrency: { require: 'if-match', validators } }, write)
  return { app, items, calls }
}
