// npm start: the example API on PORT (default 3000), with curl commands that show the plugin.
import { buildApp } from './app.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const app = await buildApp({ logger: process.env.LOG === '1' })
await app.listen({ port, host })

const origin = `http://${host}:${app.server.address().port}`
const url = `${origin}/items/1`
const tag = (await app.inject({ method: 'GET', url: '/items/1' })).headers.etag
console.log(`fastify-precondition example API on ${origin}
Item 1 is seeded; its ETag now is ${tag}. Try:

  # 200 with ETag and Last-Modified
  curl -i ${url}

  # 304 Not Modified: the tag you hold is current
  curl -i ${url} -H 'If-None-Match: ${tag}'

  # 428 Precondition Required: a write without If-Match
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -d '{"name":"lost update"}'

  # 412 Precondition Failed: a stale tag; the body carries the current one
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: "stale"' -d '{"name":"stale"}'

  # 200: a conditional update with the current tag (run it twice: the second is a 412)
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"updated"}'
`)

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0)) })
}
