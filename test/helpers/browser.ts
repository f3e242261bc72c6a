// Headless Chromium for the tests of the example's page: Debian's chromium, driven by
// playwright-core, which never downloads a browser. Each test file launches one browser and gives
// each test a context of its own (a fresh profile: Playwright makes a temporary user-data
// directory per launch and removes it on close); the servers the pages talk to listen on loopback.
import { existsSync } from 'node:fs'
import type { Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
export const CHROMIUM_MISSING = `${CHROMIUM} not found; install it (apt-get install -y chromium) to run the browser tests of the example page`

/** A host name Chromium resolves to 127.0.0.1: an origin on it over HTTP is not a secure context. */
export const INSECURE_HOST = 'fake.test'

/** Why the browser tests cannot run here, or false. */
export function chromiumSkip (): string | false {
  return existsSync(CHROMIUM) ? false : CHROMIUM_MISSING
}

export async function launchChromium (t: Test): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 20_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1`
    ]
  })
  t.teardown(() => browser.close())
  return browser
}

/** A context (a fresh set of tabs, cookies and storage) closed when `t` ends; each wait at most 10 s. */
export async function newContext (t: Test, browser: Browser): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } })
  context.setDefaultTimeout(10_000)
  t.teardown(() => context.close())
  return context
}

/** Listens on 127.0.0.1, on a free port; closed when `t` ends. */
export async function listen (t: Test, app: FastifyInstance): Promise<string> {
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

/** A tab on the example page at `url`, once it has read item 1; an error thrown in the page fails `t`. */
export async function openPage (t: Test, context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage()
  page.on('pageerror', (error) => { t.fail(`the page threw: ${error.message}`) })
  await page.goto(url)
  await page.waitForFunction('document.getElementById("item-etag").textContent !== "…"')
  return page
}

/** Submits a form of the page and waits for its result: its outcome and its text. */
export async function submit (page: Page, form: 'edit' | 'order'): Promise<{ outcome: string | null, text: string }> {
  const result = form === 'edit' ? '#save-result' : '#order-result'
  await page.click(`#${form} button[type=submit]`)
  const settled = page.locator(`${result}[data-outcome]`)
  await settled.waitFor()
  return { outcome: await settled.getAttribute('data-outcome'), text: await settled.innerText() }
}
