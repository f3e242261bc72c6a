// Plain HTTP over loopback, one connection per request, so concurrent requests really are
// concurrent and a test can cut a connection half-way.
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { connect, type Socket } from 'node:net'

export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  body: string
  json (): any
}

export interface HttpRequest {
  /** A keep-alive agent for a client that sends one request after another; default: a fresh connection. */
  agent?: Agent
  method?: string
  path: string
  headers?: Record<string, string>
  body?: unknown
}

/** Sends one request on a fresh connection and reads the whole response. */
export function send (port: number, options: HttpRequest): Promise<HttpResponse> {
  const body = options.body === undefined ? undefined : JSON.stringify(options.body)
  const headers: Record<string, string> = { ...options.headers }
  if (body !== undefined) {
    headers['content-type'] = 'application/json'
    headers['content-length'] = String(Buffer.byteLength(body))
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        resolve({ status: res.statusCode as number, headers: res.headers, body: text, json: () => JSON.parse(text) })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * Opens a connection and writes a request head announcing `length` body bytes followed by `body`
 * (the whole body, or only its start); the caller then destroys the socket or lets it stall.
 */
export async function partialRequest (port: number, method: string, path: string, headers: Record<string, string>, length: number, body: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const head = [`${method} ${path} HTTP/1.1`, 'host: 127.0.0.1', 'content-type: application/json', `content-length: ${length}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)].join('\r\n')
  socket.write(head + '\r\n\r\n' + body)
  return socket
}

/** Resolves once `socket` has closed (the server cut it, or it was destroyed). */
export function closed (socket: Socket): Promise<void> {
  if (socket.destroyed) return Promise.resolve()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The unhandled rejections seen until the test ends (the array fills as they happen). */
export function watchRejections (t: { teardown: (fn: () => void) => void }): unknown[] {
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => { rejections.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })
  return rejections
}
