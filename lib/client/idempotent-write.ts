// idempotentWrite: one change sent with an Idempotency-Key, resent with it until an answer settles
// it.
import { responseError, writeResult, type WriteResult } from './answers.js'
import { mergeHeaders, WRITE_ACCEPT } from './http.js'
import { firstKey, keyHeader } from './keys.js'
import { toSender, type WriteOptions } from './options.js'
import { settleWrite } from './resend.js'

/** Options of `idempotentWrite`; all optional. */
export interface IdempotentWriteOptions extends WriteOptions {
  /** The write method. Default `'POST'`. */
  method?: string
}

/**
 * Sends one change, `body` (as JSON; a string is sent as it is), with an Idempotency-Key, e.g. a
 * POST that creates: resent with the same key when its answer is lost or the key is still in use
 * (409), so a server that honours the key applies it once, and answers the resend with what it
 * answered the first time (`replayed: true`).
 *
 * Throws the same typed errors as `conditionalUpdate`: `UnexpectedResponseError` for a 400 (the
 * key missing or malformed) or a 422 (the key was used for another request), `problem.code`
 * saying which; `OutcomeUnknownError` when no answer settles the change.
 */
export async function idempotentWrite<Written = unknown> (
  url: string | URL,
  body?: unknown,
  options: IdempotentWriteOptions = {}
): Promise<WriteResult<Written>> {
  const helper = 'idempotentWrite'
  const method = (options.method ?? 'POST').toUpperCase()
  if (method === 'GET' || method === 'HEAD') throw new TypeError(`idempotentWrite: method must be one that writes (POST, PUT, PATCH, DELETE, …); got ${method}`)
  const sender = toSender(helper, options)
  const key = firstKey(helper, options.idempotencyKey)
  const target = String(url)
  const sent = body === undefined || typeof body === 'string' ? body : JSON.stringify(body)
  const headers = mergeHeaders({ accept: WRITE_ACCEPT }, sent === undefined ? {} : { 'content-type': sender.contentType }, sender.headers,
    keyHeader(key))
  const answer = await settleWrite(sender, { method, url: target, attempts: 1, idempotencyKey: key, headers, body: sent })
  if (answer.ok) return writeResult<Written>(answer, key)
  throw responseError(answer, method, method, target, 1)
}
