// The database compare-and-swap path: the write itself checks the version, in one statement
// (`UPDATE items SET … WHERE id = ? AND version = ?`), so no lock is needed and none is taken
// (`lock: false`). The plugin still answers 428 for a write without If-Match, parses the headers
// into `request.preconditions`, and `reply.failPrecondition()` answers a lost race with the
// same 412 problem the plugin sends.
//
//   node examples/cas.js          (PORT, default 3001)
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyPrecondition from 'fastify-precondition'

/**
 * A stand-in for an SQL table of items (id, name, version). Each method is one statement, atomic
 * as it is in a database; each yields to the event loop first, as a real query would, so
 * concurrent requests interleave.
 */
export class ItemsTable {
  #rows = new Map()

  // SELECT id, name, version FROM items WHERE id = ?
  async get (id) {
    await new Promise((resolve) => setImmediate(resolve))
    const row = this.#rows.get(id)
    return row === undefined ? null : { ...row }
  }

  // INSERT INTO items (id, name, version) VALUES (?, ?, 1)
  async insert (id, name) {
    await new Promise((resolve) => setImmediate(resolve))
    this.#rows.set(id, { id, name, version: 1 })
  }

  // UPDATE items SET name = ?, version = version + 1 WHERE id = ? [AND version IN (…)]
  //   RETURNING id, name, version
  // `versions` null means any version (If-Match: *). Returns the changed row, or null.
  async updateIfVersion (id, versions, name) {
    await new Promise((resolve) => setImmediate(resolve))
    const row = this.#rows.get(id)
    if (row === undefined || (versions !== null && !versions.includes(row.version))) return null
    row.name = name
    row.version++
    return { ...row }
  }
}

// The ETag is the row's version, so an If-Match tag converts straight into a WHERE clause.
const etagOf = (row) => `"v${row.version}"`
function versionOf (tag) {
  const match = /^"v(\d+)"$/.exec(tag) // weak tags (W/"…") never satisfy If-Match: no match
  return match === null ? null : Number(match[1])
}

export async function buildCasApp (options = {}) {
  const app = Fastify({ logger: options.logger ?? false })
  await app.register(fastifyPrecondition)
  const table = new ItemsTable()
  await table.insert('1', 'first item')

  const params = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] }
  const body = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false }

  // Reads: the plugin sends the ETag and answers If-None-Match with 304.
  app.get('/items/:id', {
    schema: { params },
    concurrency: {
      validators: async (request) => {
        const row = await table.get(request.params.id)
        return row === null ? null : { etag: etagOf(row) }
      }
    }
  }, async (request, reply) => {
    const row = await table.get(request.params.id)
    if (row === null) return reply.code(404).send({ message: 'no such item' })
    return { id: row.id, name: row.name }
  })

  // Writes: If-Match is required (428 without it); the handler does the compare-and-swap.
  app.put('/items/:id', {
    schema: { params, body },
    concurrency: { require: 'if-match', lock: false }
  }, async (request, reply) => {
    const { id } = request.params
    const { ifMatch } = request.preconditions
    // '*' means "whatever version exists"; otherwise the versions the client holds. A header
    // with no valid member gives an empty list: nothing can match, the write fails closed.
    const versions = ifMatch === '*' ? null : ifMatch.map(versionOf).filter((version) => version !== null)
    const row = versions !== null && versions.length === 0
      ? null
      : await table.updateIfVersion(id, versions, request.body.name)
    if (row === null) {
      // Lost the race, or never had it: 412 with the current tag, exactly as the plugin answers.
      const current = await table.get(id)
      return reply.failPrecondition(current === null ? null : etagOf(current))
    }
    // The tag of this write's own version, from RETURNING: a later read could see someone else's.
    reply.header('etag', etagOf(row))
    return { id: row.id, name: row.name }
  })

  return app
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { PORT = '3001', HOST = '127.0.0.1', LOG } = process.env
  const app = await buildCasApp({ logger: LOG === '1' })
  await app.listen({ port: Number(PORT), host: HOST })
  const url = `http://${HOST}:${app.server.address().port}/items/1`
  console.log(`compare-and-swap example on ${url}
  curl -i ${url}
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: "v1"' -d '{"name":"renamed"}'
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: "v1"' -d '{"name":"again"}'   # 412`)
}
