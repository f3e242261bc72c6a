// The page at `/`: plain HTML, CSS and a module script from examples/public/, and the client
// helper as the package ships it. `fastify-precondition/client` resolves to the build
// (dist/esm/client.js, which `npm start` makes first); it is served at /client.js and the helpers
// it imports at /client/*.js, the layout of the build, so its relative imports resolve as they are.
import { readdirSync, readFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' }

function typeOf (file) {
  return `${TYPES[file.slice(file.lastIndexOf('.'))]}; charset=utf-8`
}

/** Every file the page needs, by the path it is served at: a fixed set, read once. */
function pageFiles () {
  const files = new Map()
  const publicDir = fileURLToPath(new URL('./public/', import.meta.url))
  for (const name of readdirSync(publicDir)) files.set(name === 'index.html' ? '/' : `/${name}`, join(publicDir, name))
  const client = fileURLToPath(import.meta.resolve('fastify-precondition/client'))
  files.set(`/${basename(client)}`, client)
  const helpers = join(dirname(client), 'client')
  for (const name of readdirSync(helpers).filter((name) => name.endsWith('.js'))) files.set(`/client/${name}`, join(helpers, name))
  return files
}

/** Registers a GET route for each file of the page, left out of the OpenAPI document. */
export function pageRoutes (app) {
  for (const [path, file] of pageFiles()) {
    const body = readFileSync(file)
    const type = typeOf(file)
    app.get(path, { schema: { hide: true } }, async (_request, reply) => {
      return reply.type(type).header('cache-control', 'no-cache').send(body)
    })
  }
}
