// Orders from the example's page in headless Chromium: an order whose answer is slower than the
// page's timeout is resent with its key and placed once, and a page on a plain-HTTP origin that is
// not a secure context (no crypto.randomUUID) still sends a key with every write.
import { test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Page } from 'playwright-core'
import { memoryIdempotencyStore } from 'fastify-precondition'
// @ts-expect-error the example is plain JavaScript
import { buildApp } from '../examples/app.js'
import { chromiumSkip, INSECURE_HOST, launchChromium, listen, newContext, openPage, submit } from './helpers/browser.js'

const skip = chromiumSkip()
if (skip !== false) console.log(`# ${skip}`)

const UUID_V4 = /^"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$/

/** The writes the page sends, with their Idempotency-Key, as Chromium sent them. */
function writesOf (page: Page): Array<Promise<{ method: string, path: string, key: string | undefined }>> {
  const writes: Array<Promise<{ method: string, path: string, key: string | undefined }>> = []
  page.on('request', (request) => {
    if (request.method() === 'GET') return
    writes.push(request.allHeaders().then((headers) => ({ method: request.method(), path: new URL(request.url()).pathname, key: headers['idempotency-key'] })))
  })
  return writes
}

/** How many orders the server holds: orders are numbered from 1. */
async function orderCount (origin: string): Promise<number> {
  let count = 0
  while ((await fetch(`${origin}/orders/${count + 1}`)).status === 200) count++
  return count
}

test('orders from the example page in Chromium', { skip }, async (t) => {
  const browser = await launchChromium(t)

  t.test('an order whose answer is slower than the page\'s timeout is placed once', async (t) => {
    // Each order's answer waits 1 s after the order is placed; the page waits 300 ms for it. A
    // resend meets a 409 whose Retry-After is when the first send's lease ends: 2 s here, so the
    // test waits 2 s rather than the default lease's 10.
    const precondition = { idempotencyStore: memoryIdempotencyStore({ lease: 2000 }) }
    const origin = await listen(t, await buildApp({ orderDelay: 1000, precondition }) as FastifyInstance)
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${origin}/`)
    const writes = writesOf(page)
    await page.fill('#order input[name=timeout]', '300')
    const placed = await submit(page, 'order')
    t.equal(placed.outcome, 'replayed', placed.text)
    t.match(placed.text, /got no answer within 300 ms: the client sent the order again, with the same key/)
    t.match(placed.text, /The server answered 409 while the first send was still running, and the client waited the Retry-After it gave \([12] s\)/)
    t.match(placed.text, /order 1 was placed by an earlier send with this key/)
    const sent = await Promise.all(writes)
    t.ok(sent.length >= 2, `the order was sent ${sent.length} times`)
    t.ok(sent.every(({ method, path, key }) => method === 'POST' && path === '/orders' && key === sent[0].key), 'each time with one key')
    t.match(await page.locator('#log li.lost').first().innerText(), /no answer: AbortError|no answer: TimeoutError/, 'the log shows the send that got no answer')
    t.equal(await orderCount(origin), 1, 'one order placed')
  })

  t.test('a page that is not a secure context, without crypto.randomUUID, still sends a key', async (t) => {
    const origin = (await listen(t, await buildApp() as FastifyInstance)).replace('127.0.0.1', INSECURE_HOST)
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${origin}/`)
    t.equal(await page.evaluate('window.isSecureContext'), false, `${origin} over plain HTTP is not a secure context`)
    t.equal(await page.evaluate('typeof crypto.randomUUID'), 'undefined', 'so it has no crypto.randomUUID')
    const writes = writesOf(page)

    await page.fill('#edit input[name=count]', '1')
    t.equal((await submit(page, 'edit')).outcome, 'saved', 'conditionalUpdate saves')
    t.equal((await submit(page, 'order')).outcome, 'placed', 'idempotentWrite places the order, with the key the page made')
    t.equal((await submit(page, 'order')).outcome, 'replayed', 'and the same key again is a replay')
    await page.click('#new-key')
    t.equal((await submit(page, 'order')).outcome, 'placed', 'a new key, a new order')

    const sent = await Promise.all(writes)
    t.same(sent.map(({ method, path }) => `${method} ${path}`), ['PUT /items/1', 'POST /orders', 'POST /orders', 'POST /orders'])
    for (const { method, key } of sent) t.match(key, UUID_V4, `${method}: Idempotency-Key ${key}, a UUID v4`)
    t.equal(sent[1].key, sent[2].key, 'the replay carried the first order\'s key')
    t.equal(new Set(sent.map(({ key }) => key)).size, 3, 'the others, keys of their own')
    t.equal(await orderCount(origin.replace(INSECURE_HOST, '127.0.0.1')), 2, 'two orders placed')
  })
})
