// The example's page served from one origin and the API on another (another port of 127.0.0.1),
// in headless Chromium: with @fastify/cors exposing ETag the page reads the tag, saves and sees an
// order's replay; without the exposure the browser hides the tag, and the client's error says what
// the server must send, before anything is written.
import { test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
// @ts-expect-error the example is plain JavaScript
import { buildApp } from '../examples/app.js'
// @ts-expect-error the example is plain JavaScript
import { pageRoutes } from '../examples/page.js'
import { chromiumSkip, launchChromium, listen, newContext, openPage, submit } from './helpers/browser.js'
import type { IncomingMessage } from 'node:http'

const skip = chromiumSkip()
if (skip !== false) console.log(`# ${skip}`)

const METHODS = ['GET', 'HEAD', 'PUT', 'PATCH', 'DELETE', 'POST']

/** The page alone, on an origin of its own. */
async function pageServer (t: Parameters<typeof listen>[0]): Promise<string> {
  const app = Fastify()
  pageRoutes(app)
  return await listen(t, app)
}

/** The method and Origin of each request the API receives, as its HTTP server sees them. */
function requestsTo (api: FastifyInstance): Array<{ method: string | undefined, origin: string | undefined }> {
  const seen: Array<{ method: string | undefined, origin: string | undefined }> = []
  api.server.on('request', (request: IncomingMessage) => { seen.push({ method: request.method, origin: request.headers.origin }) })
  return seen
}

test('the example page on another origin than the API, in Chromium', { skip }, async (t) => {
  const browser = await launchChromium(t)

  t.test('with ETag exposed: reads the tag, saves, and sees a replay', async (t) => {
    const site = await pageServer(t)
    const app = await buildApp({
      cors: { origin: site, methods: METHODS, exposedHeaders: ['ETag', 'Last-Modified', 'Location', 'Idempotent-Replayed'] }
    }) as FastifyInstance
    const api = await listen(t, app)
    t.not(new URL(site).origin, new URL(api).origin, 'two origins')
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${site}/?api=${encodeURIComponent(api)}`)
    const tag = (await fetch(`${api}/items/1`)).headers.get('etag')
    const seen = requestsTo(app)
    t.equal(await page.textContent('#item-etag'), tag, 'the page reads the ETag')

    await page.fill('#edit input[name=count]', '3')
    const saved = await submit(page, 'edit')
    t.equal(saved.outcome, 'saved', saved.text)
    t.same(seen.map(({ method }) => method), ['GET', 'OPTIONS', 'PUT'], 'the read, a preflight for the write, the write')
    t.ok(seen.every(({ origin }) => origin === site), `each from ${site}`)
    t.same(await (await fetch(`${api}/items/1`)).json(), { id: '1', name: 'first item', count: 3 })

    t.equal((await submit(page, 'order')).outcome, 'placed')
    const again = await submit(page, 'order')
    t.equal(again.outcome, 'replayed', 'Idempotent-Replayed is exposed too: the page sees the replay')
    t.equal((await fetch(`${api}/orders/2`)).status, 404, 'one order')
  })

  t.test('without ETag exposed: the error says what the server must send', async (t) => {
    const site = await pageServer(t)
    const app = await buildApp({ cors: { origin: site, methods: METHODS } }) as FastifyInstance
    const api = await listen(t, app)
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${site}/?api=${encodeURIComponent(api)}`)
    t.ok((await fetch(`${api}/items/1`)).headers.get('etag'), 'the server sends an ETag')
    const seen = requestsTo(app)
    t.match(await page.textContent('#item-etag'), /none this page can read/, 'which the browser hides from the page')

    await page.fill('#edit input[name=count]', '3')
    const failed = await submit(page, 'edit')
    t.equal(failed.outcome, 'error')
    t.match(failed.text, /^UnexpectedResponseError: GET http:\/\/127\.0\.0\.1:\d+\/items\/1 sent no ETag this client can read/)
    t.match(failed.text, /Access-Control-Expose-Headers: ETag, Last-Modified/, 'it names the header the server must send')
    t.match(failed.text, /exposedHeaders: \['ETag', 'Last-Modified'\]/, 'and the @fastify/cors option that sends it')
    t.same(seen, [{ method: 'GET', origin: site }], 'nothing was written: one read, from the page')
    t.same(await (await fetch(`${api}/items/1`)).json(), { id: '1', name: 'first item', count: 0 })
  })
})
