// The page's script: item 1 read, edited and saved with conditionalUpdate, an order placed with
// idempotentWrite, and every request listed beside what the browser received for it.
import { conditionalUpdate, idempotentWrite, newIdempotencyKey } from 'fastify-precondition/client'

// The API: this page's own origin, or the one given as ?api=http://host:port (which must then
// allow this origin with CORS and expose ETag to it).
const api = new URLSearchParams(window.location.search).get('api') ?? window.location.origin
const itemUrl = `${api}/items/1`
const ordersUrl = `${api}/orders`
const FIELDS = ['name', 'count']
// The answer headers the log shows, when the browser lets the page read them.
const SHOWN = ['content-type', 'etag', 'last-modified', 'location', 'retry-after', 'idempotent-replayed']

const $ = (id) => document.getElementById(id)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const quote = (value) => JSON.stringify(value)

// The request log ---------------------------------------------------------------------------------

function element (tag, className, text) {
  const node = document.createElement(tag)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

/** The body as JSON, when it is JSON; else undefined. */
function jsonOf (text, type) {
  if (!/[/+]json\b/.test(type ?? '')) return undefined
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * A fetch that lists each request, and its answer as the browser handed it to the page, under
 * `label`; `sent` collects them, for the page to explain what happened.
 */
function listingFetch (label, sent = []) {
  return async (input, init = {}) => {
    const url = new URL(String(input))
    const exchange = { method: init.method ?? 'GET', url }
    sent.push(exchange)
    const entry = element('li')
    const line = element('div', 'line')
    line.append(element('b', '', exchange.method), ` ${url.origin === window.location.origin ? '' : url.origin}${url.pathname} `)
    const status = element('span', 'status', '…')
    line.append(status, element('span', 'label', label))
    const headers = Object.entries(init.headers ?? {}).map(([name, value]) => `${name}: ${value}`)
    const request = [...headers, ...(init.body === undefined ? [] : ['', init.body])].join('\n')
    entry.append(line)
    if (request !== '') entry.append(element('pre', 'sent', request))
    $('log').prepend(entry)
    try {
      const response = await fetch(input, init)
      const text = await response.clone().text()
      const type = response.headers.get('content-type')
      Object.assign(exchange, { status: response.status, headers: response.headers, text, json: jsonOf(text, type) })
      // A problem's JSON laid out to be read; other bodies as they came.
      const body = response.status >= 400 && exchange.json !== undefined ? JSON.stringify(exchange.json, null, 2) : text
      entry.className = `s${String(response.status)[0]}xx`
      status.textContent = `${response.status} ${response.statusText}`
      const got = SHOWN.filter((name) => response.headers.has(name)).map((name) => `${name}: ${response.headers.get(name)}`)
      entry.append(element('pre', 'got', [...got, ...(text === '' ? [] : ['', body])].join('\n')))
      return response
    } catch (error) {
      exchange.error = error
      entry.className = 'lost'
      status.textContent = `no answer: ${error.name}: ${error.message}`
      throw error
    }
  }
}

function report (id, outcome, lines) {
  const result = $(id)
  result.replaceChildren(...lines.map((text) => element('p', '', text)))
  result.className = `result ${outcome}`
  result.dataset.outcome = outcome
  result.hidden = false
}

function start (form, id) {
  delete $(id).dataset.outcome
  for (const button of form.querySelectorAll('button')) button.disabled = true
}

function done (form) {
  for (const button of form.querySelectorAll('button')) button.disabled = false
}

function errorLines (error) {
  const lines = [`${error.name}: ${error.message}`]
  if (error.problem) lines.push(`The problem details: ${JSON.stringify(error.problem)}`)
  return lines
}

// Item 1 ------------------------------------------------------------------------------------------

const edit = $('edit')
// What this tab shows, and what the user's edit is based on: the item and its ETag.
let shown = null

function show (item, etag) {
  shown = { item, etag }
  $('item-etag').textContent = etag ?? 'none this page can read (across origins, the server must expose ETag)'
  $('item-json').textContent = JSON.stringify(item, null, 2)
  edit.elements.name.value = item.name
  edit.elements.count.value = item.count
}

async function load (label) {
  // Not from the browser's cache: it would keep showing a version another tab replaced.
  const response = await listingFetch(label)(itemUrl, { cache: 'no-cache', headers: { accept: 'application/json' } })
  show(await response.json(), response.headers.get('etag'))
}

class MergeConflict extends Error {
  constructor (conflicts) {
    super('both changed the same field')
    this.name = 'MergeConflict'
    this.conflicts = conflicts
  }
}

/**
 * The user's change, reapplied to `current`: the fields they edited (those that differ from what
 * the tab showed, `base`) take their values, the others keep the current ones. A field that someone
 * else changed to another value meanwhile is a conflict the merge does not decide.
 */
function reapply (base, mine, current) {
  const edited = FIELDS.filter((field) => mine[field] !== base[field])
  const conflicts = edited.filter((field) => current[field] !== base[field] && current[field] !== mine[field])
  if (conflicts.length > 0) {
    throw new MergeConflict(conflicts.map((field) => ({ field, base: base[field], theirs: current[field], mine: mine[field] })))
  }
  const next = { name: current.name, count: current.count }
  for (const field of edited) next[field] = mine[field]
  return next
}

const changes = (fields, from, to) => fields.map((field) => `${field}: ${quote(from[field])} → ${quote(to[field])}`).join(', ')

/** What the 412s a save met said: the writes the server refused, because another tab saved first. */
function refusals (sent) {
  return sent.filter((exchange) => exchange.status === 412).map((refused) => {
    const problem = refused.json ?? {}
    return `Another tab saved first: the server refused this tab's write with 412 ${problem.title ?? ''}: “${problem.detail ?? refused.text}” ` +
      `The current ETag, in the problem: ${problem.etag ?? 'not given'}.`
  })
}

/** How a save was applied: reapplied after a 412, or to a version changed since the tab read it. */
function saveLines (sent, base, mine, current) {
  const edited = FIELDS.filter((field) => mine[field] !== base[field])
  const theirs = FIELDS.filter((field) => !edited.includes(field) && current[field] !== base[field])
  const lines = refusals(sent)
  const reread = lines.length > 0 ? 'The client read item 1 again and reapplied' : 'Item 1 had changed since this tab read it; the client applied'
  if (lines.length > 0 || theirs.length > 0) {
    lines.push(`${reread} your change (${changes(edited, base, mine)}) to the current version` +
      (theirs.length > 0 ? `, keeping the other change (${changes(theirs, base, current)}).` : '.'))
  }
  return lines
}

edit.addEventListener('submit', async (event) => {
  event.preventDefault()
  const base = shown.item
  const mine = { name: edit.elements.name.value, count: Number(edit.elements.count.value) }
  if (FIELDS.every((field) => mine[field] === base[field])) {
    report('save-result', 'unchanged', ['Nothing to save: the form shows the item as read.'])
    return
  }
  const pause = Number(edit.elements.pause.value)
  const sent = []
  let current = null
  start(edit, 'save-result')
  try {
    const result = await conditionalUpdate(itemUrl, async (item) => {
      current = item
      // Time to save in another tab between this tab's first read and its write.
      if (pause > 0 && sent.length === 1) await sleep(pause)
      return reapply(base, mine, item)
    }, { fetch: listingFetch('Save', sent) })
    report('save-result', 'saved', [...saveLines(sent, base, mine, current),
      `Saved${result.attempts > 1 ? ` with attempt ${result.attempts}` : ''}: ${result.status}, ETag ${result.etag}.`])
    show(result.body, result.etag)
  } catch (error) {
    if (!(error instanceof MergeConflict)) {
      report('save-result', 'error', errorLines(error))
      return
    }
    const lines = refusals(sent)
    const refused = lines.length > 0
    for (const { field, base: from, theirs, mine: wanted } of error.conflicts) {
      lines.push(`Not saved: you changed ${field} from ${quote(from)} to ${quote(wanted)}, and another tab changed it to ${quote(theirs)}.`)
    }
    lines.push(`The merge leaves that choice to you${refused ? ', so the client did not write again' : ''}. ` +
      'The form now shows the current version: make your change again if it still holds.')
    report('save-result', 'conflict', lines)
    const lastRead = sent.findLast((exchange) => exchange.method === 'GET')
    show(current, lastRead.headers.get('etag'))
  } finally {
    done(edit)
  }
})

$('reload').addEventListener('click', () => { load('Reload').catch((error) => report('save-result', 'error', errorLines(error))) })

// An order ----------------------------------------------------------------------------------------

const order = $('order')
order.elements.key.value = newIdempotencyKey()
$('new-key').addEventListener('click', () => { order.elements.key.value = newIdempotencyKey() })

order.addEventListener('submit', async (event) => {
  event.preventDefault()
  const body = { item: order.elements.namedItem('item').value, quantity: Number(order.elements.quantity.value) }
  const timeout = Number(order.elements.timeout.value) > 0 ? Number(order.elements.timeout.value) : undefined
  const sent = []
  start(order, 'order-result')
  try {
    const result = await idempotentWrite(ordersUrl, body, { idempotencyKey: order.elements.key.value, timeout, fetch: listingFetch('Order', sent) })
    const lines = []
    const lost = sent.filter((exchange) => exchange.error !== undefined).length
    if (lost > 0) lines.push(`${lost === 1 ? 'A send' : `${lost} sends`} got no answer within ${timeout} ms: the client sent the order again, with the same key.`)
    const inUse = sent.find((exchange) => exchange.status === 409)
    if (inUse !== undefined) {
      lines.push(`The server answered 409 while the first send was still running, and the client waited the Retry-After it gave (${inUse.headers.get('retry-after')} s).`)
    }
    lines.push(result.replayed
      ? `Replayed (Idempotent-Replayed: true): order ${result.body.id} was placed by an earlier send with this key, and this is its answer. No second order was placed.`
      : `Order ${result.body.id} placed: ${result.status}, Location ${result.location}.`)
    report('order-result', result.replayed ? 'replayed' : 'placed', lines)
  } catch (error) {
    report('order-result', 'error', errorLines(error))
  } finally {
    done(order)
  }
})

// Without the helper --------------------------------------------------------------------------------

const json = { 'content-type': 'application/json' }
const tries = {
  'no-precondition': () => listingFetch('Without If-Match')(itemUrl, { method: 'PUT', headers: json, body: JSON.stringify({ name: 'lost update' }) }),
  stale: () => listingFetch('Stale If-Match')(itemUrl, { method: 'PUT', headers: { ...json, 'if-match': '"stale"' }, body: JSON.stringify({ name: 'stale' }) }),
  'no-key': () => listingFetch('Without a key')(ordersUrl, { method: 'POST', headers: json, body: JSON.stringify({ item: 'tea' }) })
}
for (const [id, send] of Object.entries(tries)) {
  // The log shows the answer, or that none came.
  $(id).addEventListener('click', () => { send().catch(() => {}) })
}

if (api !== window.location.origin) $('api-origin').textContent = `The API is at ${api}, another origin: CORS decides what the page may read.`
load('Page load').catch((error) => report('save-result', 'error', errorLines(error)))
