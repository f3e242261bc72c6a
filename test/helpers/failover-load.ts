// The client side of the failover tests: app processes (idempotency-failover-app.ts) forked on a
// replicated Redis, keyed orders sent to them at random, each key resent until it gets its 201,
// and the runs of each key read back from the side channel.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { stopChild } from './child.js'
import { send, sleep } from './http.js'

const script = fileURLToPath(new URL('./idempotency-failover-app.ts', import.meta.url))

export interface Apps {
  ports: number[]
  /** How many times each key's handler ran, across every process. */
  runs (): Map<string, number>
}

export async function startApps (t: Test, count: number, env: Record<string, string>): Promise<Apps> {
  const dir = mkdtempSync(join(tmpdir(), 'fp-failover-'))
  const runsFile = join(dir, 'runs')
  writeFileSync(runsFile, '')
  const ports = await Promise.all(Array.from({ length: count }, async () => {
    const child = fork(script, { env: { ...process.env, ...env, RUNS_FILE: runsFile }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    t.teardown(() => stopChild(child))
    const [message] = await Promise.race([
      once(child, 'message'),
      once(child, 'exit').then(([code]) => { throw new Error(`app exited with ${String(code)} before listening`) })
    ])
    return (message as { port: number }).port
  }))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return {
    ports,
    runs () {
      const runs = new Map<string, number>()
      for (const key of readFileSync(runsFile, 'utf8').split('\n').filter(Boolean)) runs.set(key, (runs.get(key) ?? 0) + 1)
      return runs
    }
  }
}

export interface Outcome {
  /** The body of the first 201 each key got. */
  answers: Map<string, string>
  /** Every status seen (connection errors as 0), with how many times. */
  statuses: Map<number, number>
  /** The keys that never got a 201 before `deadline`. */
  unanswered: string[]
}

/**
 * Sends each key in `keys` to a random app, `concurrency` at a time, until it gets a 201 (a 409,
 * a 503 or a dropped connection is resent 100 ms later), or until `deadline` (ms since the epoch).
 */
export async function sendOrders (apps: Apps, keys: string[], concurrency: number, deadline: number): Promise<Outcome> {
  const outcome: Outcome = { answers: new Map(), statuses: new Map(), unanswered: [] }
  const queue = [...keys]
  const count = (status: number): void => { outcome.statuses.set(status, (outcome.statuses.get(status) ?? 0) + 1) }
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let key = queue.shift(); key !== undefined; key = queue.shift()) {
      for (;;) {
        if (Date.now() > deadline) {
          outcome.unanswered.push(key)
          break
        }
        const port = apps.ports[Math.floor(Math.random() * apps.ports.length)]
        const response = await send(port, { method: 'POST', path: `/orders/${key}`, body: { key }, headers: { 'idempotency-key': key } }).catch(() => null)
        count(response?.status ?? 0)
        if (response?.status === 201) {
          outcome.answers.set(key, response.body)
          break
        }
        await sleep(100)
      }
    }
  }))
  return outcome
}
