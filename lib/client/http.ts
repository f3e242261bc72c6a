// One request and its whole response, over the caller's fetch, and what both helpers read of a
// response or put in a request's headers.
import type { Sender } from './options.js'

/** What a write accepts in answer: the resource's JSON, or problem details. */
export const WRITE_ACCEPT = 'application/json, application/problem+json'

/** Header layers merged, later ones winning, names in lower case so none is sent twice. */
export function mergeHeaders (...layers: Array<Record<string, string>>): Record<string, string> {
  const merged: Record<string, string> = {}
  for (const layer of layers) {
    for (const [name, value] of Object.entries(layer)) merged[name.toLowerCase()] = value
  }
  return merged
}

/** A response read whole. */
export interface Answer {
  status: number
  ok: boolean
  headers: Headers
  text: string
}

async function readAnswer (pending: Promise<Response>): Promise<Answer> {
  const response = await pending
  return { status: response.status, ok: response.ok, headers: response.headers, text: await response.text() }
}

/**
 * One request and its whole response. Rejects when no complete answer came: the fetch rejected,
 * the body broke off, `timeout` passed, or the signal aborted (also when a custom fetch ignores
 * its signal).
 */
export async function exchange (sender: Sender, url: string, init: RequestInit): Promise<Answer> {
  const { signal, timeout } = sender
  if (signal?.aborted === true) throw signal.reason
  const controller = new AbortController()
  const aborted = new Promise<never>((_resolve, reject) => {
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true })
  })
  const stop = (): void => { controller.abort(signal?.reason) }
  signal?.addEventListener('abort', stop, { once: true })
  const timer = timeout === undefined
    ? undefined
    : setTimeout(() => controller.abort(new DOMException(`No answer within ${timeout} ms`, 'TimeoutError')), timeout)
  try {
    return await Promise.race([readAnswer(sender.fetch(url, { ...init, signal: controller.signal })), aborted])
  } finally {
    clearTimeout(timer)
    signal?.removeEventListener('abort', stop)
  }
}

/** The body as JSON when it is JSON (any `…json` media type), else null. */
export function parseJson (answer: Answer): unknown {
  const type = answer.headers.get('content-type') ?? ''
  if (answer.text.length === 0 || !/[/+]json\b/i.test(type)) return null
  try {
    return JSON.parse(answer.text)
  } catch {
    return null
  }
}

/** The Retry-After of a response in seconds; NaN when it sent none, or a date. */
export function retryAfterSeconds (answer: Answer): number {
  const header = answer.headers.get('retry-after')
  return header === null ? NaN : Number(header)
}
