// Routine database events staged on the connection a handler's transaction runs on, whatever the
// handler looks like (the shipped example, a recipe of the docs as printed, the test app): the
// test holds a lock that the handler's INSERT INTO orders must wait for, finds that backend in
// pg_stat_activity, and then
// - `mid-statement`: terminates it while its statement waits;
// - `idle-in-transaction`: stops the app's process (SIGSTOP), lets the INSERT finish, so the backend
//   sits idle in its transaction with its answer unread, terminates it, and continues the process;
// - `after-complete`: the same, one statement later: the key's record row is locked too, so the
//   answer's UPDATE waits, and the backend is terminated once that UPDATE is done (before COMMIT);
// - `idle-timeout`: as `idle-in-transaction`, but the server's idle_in_transaction_session_timeout
//   (set on the role the app logs in as) ends the session;
// - `restart`: `pg_ctl restart -m fast` while the INSERT waits (every session ends, the app's idle
//   pooled ones too).
// The request in flight settles with its response, or with the Error of a connection cut by the
// app's death.
import { once } from 'node:events'
import { fork, spawn, type ChildProcess } from 'node:child_process'
import pg from 'pg'
import { send, sleep, type HttpResponse } from './http.js'
import type { PostgresServer } from './postgres-server.js'

function ignore (): void {}

export const FAULTS = ['mid-statement', 'idle-in-transaction', 'after-complete', 'idle-timeout', 'restart'] as const
export type Fault = typeof FAULTS[number]

/** A transaction the test holds open on its own connection (a lock), until `release`. */
export class Hold {
  private constructor (private readonly client: pg.Client) {}

  static async open (connectionString: string, sql: string, values: unknown[] = []): Promise<Hold> {
    const client = new pg.Client({ connectionString })
    client.on('error', ignore) // a restart ends this session too
    await client.connect()
    await client.query('BEGIN')
    await client.query(sql, values)
    return new Hold(client)
  }

  async release (): Promise<void> {
    await this.client.query('COMMIT').catch(ignore)
    await this.client.end().catch(ignore)
  }
}

async function within<T> (ms: number, what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const found = await probe()
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`no ${what} within ${ms} ms`)
    await sleep(20)
  }
}

/** The pid of the backend whose statement matching `pattern` (ILIKE) waits on a lock; only `pid`'s when given. */
export function lockWaiter (admin: pg.Pool, pattern: string, pid?: number, ms = 10_000): Promise<number> {
  return within(ms, `backend waiting on a lock in ${pattern}`, async () => {
    const { rows } = await admin.query("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE $1 AND ($2::int IS NULL OR pid = $2)", [pattern, pid ?? null])
    return rows[0]?.pid as number | undefined
  })
}

/** Resolves once backend `pid` is in `state` (pg_stat_activity), or gone when `state` is null. */
export function backendState (admin: pg.Pool, pid: number, state: string | null, ms = 10_000): Promise<true> {
  return within(ms, `backend ${pid} ${state ?? 'gone'}`, async () => {
    const { rows } = await admin.query('SELECT state FROM pg_stat_activity WHERE pid = $1', [pid])
    if (state === null) return rows.length === 0 ? true : undefined
    return rows[0]?.state === state ? true : undefined
  })
}

export async function terminate (admin: pg.Pool, pid: number): Promise<void> {
  await admin.query('SELECT pg_terminate_backend($1)', [pid])
}

/** What a fault needs: the server, a superuser pool straight to it, the database and the app's process. */
export interface FaultContext {
  server: PostgresServer
  admin: pg.Pool
  /** A superuser connection string straight to the database the app writes its orders in. */
  database: string
  /** The app's process id (SIGSTOP, SIGCONT). */
  pid: () => number
  /** The record table's key of the request (without a scope: the Idempotency-Key itself). */
  storeKey: string
  /** The record table, as the app's store names it. */
  table?: string
}

/**
 * Sends the request (`request()`), stages `fault` on the backend of its transaction, and returns
 * how the request settled: its response, or the Error of a cut connection.
 */
export async function stage (fault: Fault, context: FaultContext, request: () => Promise<HttpResponse>): Promise<HttpResponse | Error> {
  const { admin, server, database } = context
  const table = context.table ?? 'fastify_precondition_idempotency'
  // EXCLUSIVE: reads go on, writes to orders wait.
  const orders = await Hold.open(database, 'LOCK TABLE orders IN EXCLUSIVE MODE')
  let row: Hold | null = null
  let stopped = false
  let answered: HttpResponse | Error | null = null
  const answer = request().then((response) => response, (error: Error) => error)
  answer.then((settled) => { answered = settled }, ignore)
  try {
    // A request that settles before its INSERT reached the database has no backend to fault.
    const pid = await Promise.race([
      lockWaiter(admin, 'INSERT INTO orders%'),
      answer.then(async (settled) => {
        await sleep(500)
        if (answered !== null) throw new Error(`the request was answered before its transaction reached the database: ${describe(settled)}`)
        return await new Promise<number>(ignore)
      })
    ])
    if (fault === 'mid-statement') {
      await terminate(admin, pid)
    } else if (fault === 'restart') {
      server.restart()
    } else {
      if (fault === 'after-complete') {
        // The claim is committed (the handler runs): its row can be locked now, and the answer's
        // UPDATE will wait for it.
        row = await Hold.open(database, `SELECT 1 FROM ${table} WHERE key = $1 FOR UPDATE`, [context.storeKey])
        await orders.release()
        await lockWaiter(admin, `%${table}%`, pid)
      }
      process.kill(context.pid(), 'SIGSTOP')
      stopped = true
      await (row ?? orders).release()
      await backendState(admin, pid, 'idle in transaction')
      if (fault === 'idle-timeout') await backendState(admin, pid, null)
      else await terminate(admin, pid)
    }
  } finally {
    if (stopped) process.kill(context.pid(), 'SIGCONT')
    await orders.release()
    await row?.release()
  }
  return await answer
}

/** An app run as a process of its own, on a free port: its output, its death, and starting it again. */
export class AppProcess {
  child: ChildProcess | null = null
  port = 0
  output = ''
  /** How each run ended: `exit <code>` or the signal; a run still going is not listed. */
  readonly exits: string[] = []

  /**
   * `start` runs the app (spawn or fork); `listening` finds the port in its output (stdout, or an
   * IPC message `{ port }`).
   */
  constructor (private readonly start: () => ChildProcess, private readonly listening: RegExp = /127\.0\.0\.1:(\d+)/) {}

  get alive (): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null
  }

  get pid (): number {
    return this.child?.pid as number
  }

  /** Starts the app unless it runs; resolves once it listens (within 60 s). */
  async ensure (): Promise<void> {
    if (this.alive) return
    const child = this.start()
    this.child = child
    this.output = ''
    child.on('exit', (code, signal) => { this.exits.push(signal ?? `exit ${String(code)}`) })
    const collect = (chunk: Buffer): void => { this.output += chunk.toString() }
    child.stdout?.on('data', collect)
    child.stderr?.on('data', collect)
    this.port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => finish(new Error(`the app did not listen within 60 s:\n${this.output}`)), 60_000)
      const check = (): void => {
        const match = this.listening.exec(this.output)
        if (match !== null) finish(null, Number(match[1]))
      }
      const onMessage = (message: { port?: number }): void => { if (message.port !== undefined) finish(null, message.port) }
      const onExit = (): void => finish(new Error(`the app exited before it listened:\n${this.output}`))
      const finish = (error: Error | null, port?: number): void => {
        clearTimeout(timer)
        child.stdout?.off('data', check)
        child.off('message', onMessage)
        child.off('exit', onExit)
        if (error === null) resolve(port as number)
        else reject(error)
      }
      child.stdout?.on('data', check)
      child.on('message', onMessage)
      child.on('exit', onExit)
    })
  }

  /** Stops it: SIGCONT, SIGTERM (or 'close' over IPC), SIGKILL after 5 s. */
  async stop (): Promise<void> {
    const child = this.child
    if (child === null || child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT')
    if (child.connected) child.send('close', ignore)
    else child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  /** POST /orders with `key` and `item`. */
  post (key: string, item: string, headers: Record<string, string> = {}): Promise<HttpResponse> {
    return send(this.port, { method: 'POST', path: '/orders', headers: { 'idempotency-key': `"${key}"`, ...headers }, body: { item } })
  }
}

/** A JavaScript app (the example, a recipe written to a file) run with node, `env` added to the environment. */
export function nodeApp (file: string, env: Record<string, string>, cwd?: string): AppProcess {
  return new AppProcess(() => spawn(process.execPath, [file], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }))
}

/** test/helpers/pg-orders-app.ts, forked (it compiles lib/ as it starts), `env` added to the environment. */
export function ordersApp (env: Record<string, string>): AppProcess {
  const script = new URL('./pg-orders-app.ts', import.meta.url)
  return new AppProcess(() => fork(script, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }))
}

/** Settles with the response, or with the Error of a connection that was cut. */
export function settled (promise: Promise<HttpResponse>): Promise<HttpResponse | Error> {
  return promise.then((response) => response, (error: Error) => error)
}

/** `HTTP <status> <code>` of a response, or the Error's message: for messages. */
export function describe (answer: HttpResponse | Error): string {
  if (answer instanceof Error) return `no answer (${answer.message})`
  let code = ''
  try { code = String(answer.json().code ?? '') } catch {}
  return `${answer.status}${code === '' ? '' : ` ${code}`}`
}
