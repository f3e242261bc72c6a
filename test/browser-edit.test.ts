// The example's page in headless Chromium: two tabs edit item 1 at once and neither change is lost
// (the second save meets a 412, reads again and reapplies its change), a merge that would decide
// between two values is refused instead, and the plugin's problems reach the page as sent.
// SCREENSHOT=1 also writes docs/client-conflict.png, the page after the resolved conflict.
import { test } from 'tap'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import type { Page, Route } from 'playwright-core'
// @ts-expect-error the example is plain JavaScript
import { buildApp } from '../examples/app.js'
import { chromiumSkip, launchChromium, listen, newContext, openPage, submit } from './helpers/browser.js'

const skip = chromiumSkip()
if (skip !== false) console.log(`# ${skip}`)

const SCREENSHOT = fileURLToPath(new URL('../docs/client-conflict.png', import.meta.url))

/**
 * Holds the page's first PUT of item 1 until `release` is called, so that another tab can save
 * first; `held` settles once that write is waiting.
 */
async function holdFirstWrite (page: Page): Promise<{ held: Promise<void>, release: () => void }> {
  let release!: () => void
  const released = new Promise<void>((resolve) => { release = resolve })
  let arrived!: () => void
  const held = new Promise<void>((resolve) => { arrived = resolve })
  let holding = false
  await page.route('**/items/1', async (route: Route) => {
    if (route.request().method() === 'PUT' && !holding) {
      holding = true
      arrived()
      await released
    }
    await route.continue()
  })
  return { held, release }
}

/** The statuses of the page's requests of item 1 after it loaded, in the order they were answered. */
function statusesOf (page: Page): string[] {
  const statuses: string[] = []
  page.on('response', (response) => {
    if (new URL(response.url()).pathname === '/items/1') statuses.push(`${response.request().method()} ${response.status()}`)
  })
  return statuses
}

test('the example page in Chromium', { skip }, async (t) => {
  const browser = await launchChromium(t)

  t.test('two tabs edit item 1 at once: both changes kept, the second after a 412', async (t) => {
    const origin = await listen(t, await buildApp() as FastifyInstance)
    const context = await newContext(t, browser)
    const first = await openPage(t, context, `${origin}/`)
    const second = await openPage(t, context, `${origin}/`)
    const read = await (await fetch(`${origin}/items/1`)).json()
    t.same(read, { id: '1', name: 'first item', count: 0 })
    t.equal(await second.textContent('#item-etag'), await first.textContent('#item-etag'), 'both tabs show the same version')

    await first.fill('#edit input[name=name]', 'renamed in the first tab')
    await second.fill('#edit input[name=count]', '7')
    const statuses = statusesOf(second)
    // The second tab reads item 1 and sends its write; the first tab saves before that write arrives.
    const { held, release } = await holdFirstWrite(second)
    const secondSave = submit(second, 'edit')
    await held
    const firstSave = await submit(first, 'edit')
    t.equal(firstSave.outcome, 'saved', firstSave.text)
    release()
    const secondSaved = await secondSave
    t.equal(secondSaved.outcome, 'saved', 'the second tab saved too')
    t.same(statuses, ['GET 200', 'PUT 412', 'GET 200', 'PUT 200'], 'after a 412, a read and a write of its change on the new version')
    t.match(secondSaved.text, /refused this tab's write with 412 Precondition Failed/, 'the page says what the 412 said')
    t.match(secondSaved.text, /If-Match does not match the current ETag/, 'with its detail as received')
    t.match(secondSaved.text, /reapplied your change \(count: 0 → 7\) to the current version, keeping the other change \(name: "first item" → "renamed in the first tab"\)/)
    t.match(secondSaved.text, /Saved with attempt 2: 200/)

    const now = await fetch(`${origin}/items/1`)
    t.same(await now.json(), { id: '1', name: 'renamed in the first tab', count: 7 }, 'both changes are kept')
    t.equal(await second.textContent('#item-etag'), now.headers.get('etag'), 'the second tab shows the version it saved')
    const logged = await second.locator('#log li.s4xx').first().innerText()
    t.match(logged, /PUT\s+\/items\/1\s+412 Precondition Failed/, 'the log lists the refused write')
    t.match(logged, /"code": "FST_PRECONDITION_FAILED"/, 'with the problem details as the browser received them')
    t.match(logged, /if-match: "/, 'beside the request that caused them')

    if (process.env.SCREENSHOT === '1') {
      await second.setViewportSize({ width: 1280, height: 1000 })
      await second.screenshot({ path: SCREENSHOT })
      t.comment(`wrote ${SCREENSHOT}`)
    }
  })

  t.test('the merge refuses to choose when both tabs change the name', async (t) => {
    const origin = await listen(t, await buildApp() as FastifyInstance)
    const context = await newContext(t, browser)
    const first = await openPage(t, context, `${origin}/`)
    const second = await openPage(t, context, `${origin}/`)
    await first.fill('#edit input[name=name]', 'first')
    await second.fill('#edit input[name=name]', 'second')
    const statuses = statusesOf(second)
    const { held, release } = await holdFirstWrite(second)
    const secondSave = submit(second, 'edit')
    await held
    t.equal((await submit(first, 'edit')).outcome, 'saved')
    release()
    const refused = await secondSave
    t.equal(refused.outcome, 'conflict', refused.text)
    t.same(statuses, ['GET 200', 'PUT 412', 'GET 200'], 'after the 412 and the read, nothing more is written')
    t.match(refused.text, /Not saved: you changed name from "first item" to "second", and another tab changed it to "first"/)
    t.same(await (await fetch(`${origin}/items/1`)).json(), { id: '1', name: 'first', count: 0 }, 'the first change stands')
    t.equal(await second.inputValue('#edit input[name=name]'), 'first', 'the form shows the current version')
  })

  t.test('a change saved elsewhere since the page read the item: the save reads past the browser\'s cache', async (t) => {
    const origin = await listen(t, await buildApp() as FastifyInstance)
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${origin}/`)
    // Another client, not this browser: its cache still holds the version the page read, fresh
    // by its Last-Modified (no Cache-Control), and a 412 does not evict it.
    const read = await fetch(`${origin}/items/1`)
    const elsewhere = await fetch(`${origin}/items/1`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', 'if-match': read.headers.get('etag') as string },
      body: JSON.stringify({ name: 'renamed elsewhere', count: 0 })
    })
    t.equal(elsewhere.status, 200)
    const statuses = statusesOf(page)
    await page.fill('#edit input[name=count]', '2')
    const saved = await submit(page, 'edit')
    t.equal(saved.outcome, 'saved', saved.text)
    t.same(statuses, ['GET 200', 'PUT 200'], 'it read the current version, and its write was not refused')
    t.match(saved.text, /Item 1 had changed since this tab read it; the client applied your change \(count: 0 → 2\) to the current version, keeping the other change \(name: "first item" → "renamed elsewhere"\)/)
    t.same(await (await fetch(`${origin}/items/1`)).json(), { id: '1', name: 'renamed elsewhere', count: 2 })
  })

  t.test('the plugin\'s refusals reach the page as problem details', async (t) => {
    const origin = await listen(t, await buildApp() as FastifyInstance)
    const context = await newContext(t, browser)
    const page = await openPage(t, context, `${origin}/`)
    const cases = [
      { button: 'no-precondition', status: '428 Precondition Required', code: 'FST_PRECONDITION_REQUIRED' },
      { button: 'stale', status: '412 Precondition Failed', code: 'FST_PRECONDITION_FAILED' },
      { button: 'no-key', status: '400 Bad Request', code: 'FST_PRECONDITION_IDEMPOTENCY_KEY_MISSING' }
    ]
    for (const { button, status, code } of cases) {
      await page.click(`#${button}`)
      const entry = page.locator('#log li', { hasText: status })
      await entry.waitFor()
      const text = await entry.innerText()
      t.match(text, 'content-type: application/problem+json', `${status}: a problem document`)
      t.match(text, `"code": "${code}"`, `${status}: ${code}`)
    }
    t.same(await (await fetch(`${origin}/items/1`)).json(), { id: '1', name: 'first item', count: 0 }, 'nothing was written')
  })
})
