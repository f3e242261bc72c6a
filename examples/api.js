// npm start: the example API on PORT (default 3000), with curl commands that show the plugin, and
// the page at / that shows them from a browser. ORDER_DELAY=2000 makes each order's answer wait
// 2 s: on the page, a timeout below that shows an order resent and placed once.
import { buildApp } from './app.js'

const port = Number(process.env.PORT ?? 3000)
const host = process.env.HOST ?? '127.0.0.1'
const app = await buildApp({ logger: process.env.LOG === '1', orderDelay: Number(process.env.ORDER_DELAY ?? 0) })
await app.listen({ port, host })

const origin = `http://${host}:${app.server.address().port}`
const url = `${origin}/items/1`
const tag = (await app.inject({ method: 'GET', url: '/items/1' })).headers.etag
console.log(`fastify-precondition example API on ${origin}
Open ${origin}/ in two browser tabs to edit item 1 in both, and to place an order.
Item 1 is seeded; its ETag now is ${tag}. Try:

  # 200 with ETag and Last-Modified
  curl -i ${url}

  # 304 Not Modified: the tag you hold is current
  curl -i ${url} -H 'If-None-Match: ${tag}'

  # 428 Precondition Required: a write without If-Match
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -d '{"name":"lost update"}'

  # 412 Precondition Failed: a stale tag; the body carries the current one
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: "stale"' -d '{"name":"stale"}'

  # 400: an order without an Idempotency-Key, which this route requires
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -d '{"item":"tea"}'

  # 201 Created: an order with a key (in practice a new UUID for each change)
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'

  # 201 again, with Idempotent-Replayed: true: a resend with the same key is answered as the first time; no second order
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"tea"}'

  # 422 Unprocessable Content: the same key with another body
  curl -i -X POST ${origin}/orders -H 'Content-Type: application/json' -H 'Idempotency-Key: "order-1"' -d '{"item":"coffee"}'

  # 201 Created: item 2, created only if absent (If-None-Match: *), with a key: both policies on one PUT
  curl -i -X PUT ${origin}/items/2 -H 'Content-Type: application/json' -H 'If-None-Match: *' -H 'Idempotency-Key: "create-2"' -d '{"name":"second item"}'

  # 201 again, with Idempotent-Replayed: true: the resent create is not refused with 412, though item 2 exists now
  curl -i -X PUT ${origin}/items/2 -H 'Content-Type: application/json' -H 'If-None-Match: *' -H 'Idempotency-Key: "create-2"' -d '{"name":"second item"}'

  # 200: a conditional update with the current tag (run it twice: the second is a 412)
  curl -i -X PUT ${url} -H 'Content-Type: application/json' -H 'If-Match: ${tag}' -d '{"name":"updated"}'
`)

// This API keeps everything in memory; the same API on PostgreSQL is another example.
if (process.env.DATABASE_URL !== undefined) console.log('DATABASE_URL is set: `node examples/orders-postgres.js` serves orders and items from that PostgreSQL database (docs/postgresql.md).\n')

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { app.close().then(() => process.exit(0)) })
}
