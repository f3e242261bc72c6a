// A forked orders app (test/helpers/pg-orders-app.ts, mysql-orders-app.ts) seen from the test:
// its port, the messages it sends over IPC (its port, the stall points its handler reached, the
// plugin's log lines), its stall points resumed, SIGKILL, and POST /orders.
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { send, type HttpResponse } from './http.js'

export interface Order { id: number, item: string }
export interface Message { port?: number, stalled?: string, pid?: number, order?: Order, log?: { msg?: string, key?: string, level?: number } }

/** A forked instance: its port, the messages it sent, and its faults. */
export class Instance {
  readonly messages: Message[] = []
  port = 0
  private readonly waiters = new Set<() => void>()

  constructor (readonly child: ChildProcess) {
    const wake = (): void => { for (const waiter of this.waiters) waiter() }
    child.on('message', (message: Message) => {
      this.messages.push(message)
      wake()
    })
    child.on('exit', wake)
  }

  /** The first message, received or to come, that `match` accepts; rejects after `ms` or when the process exits. */
  message (match: (message: Message) => boolean, what: string, ms = 10_000): Promise<Message> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.messages.find(match)
        if (found !== undefined) finish(null, found)
        else if (this.child.exitCode !== null || this.child.signalCode !== null) finish(new Error(`the instance exited before ${what}`))
      }
      const timer = setTimeout(() => finish(new Error(`no ${what} within ${ms} ms`)), ms)
      const finish = (error: Error | null, found?: Message): void => {
        clearTimeout(timer)
        this.waiters.delete(check)
        if (error === null) resolve(found as Message)
        else reject(error)
      }
      this.waiters.add(check)
      check()
    })
  }

  /** Waits until the handler of a request carrying `x-test-stall: point` has reached it. */
  async stalled (point: string): Promise<Order> {
    return (await this.message((message) => message.stalled === point, `a handler stalled ${point}`)).order as Order
  }

  /** Lets the handler stalled at `point` go on. */
  resume (point: string): void {
    this.child.send({ continue: point })
  }

  /** SIGKILL, and its exit (within 5 s). */
  async kill (): Promise<void> {
    const exited = once(this.child, 'exit')
    this.child.kill('SIGKILL')
    await bounded(exited, 5000, 'the killed instance to exit')
  }

  /** POST /orders with `key`; a connection the process's death cut resolves to the Error. */
  post (key: string, item: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
    return send(this.port, { method: 'POST', path: '/orders', headers: { 'idempotency-key': `"${key}"`, ...headers }, body: { item } })
  }

  /** The plugin's log lines. */
  get logs (): Array<NonNullable<Message['log']>> {
    return this.messages.flatMap((message) => message.log === undefined ? [] : [message.log])
  }

  /** The plugin's log lines at error or above. */
  get errors (): Array<NonNullable<Message['log']>> {
    return this.logs.filter((log) => (log.level ?? 0) >= 50)
  }
}

export async function bounded<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}
