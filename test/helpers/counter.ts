// The read-modify-write client of the race tests: GET the counter, PUT it back one higher with
// If-Match, and on 412 read again and retry, as a well-behaved client does.
import { Agent } from 'node:http'
import { send, sleep } from './http.js'

export interface IncrementResult {
  /** Writes answered 2xx. */
  written: number
  /** Writes refused with 412 (then retried). */
  refused: number
  /** Any other status, by status. */
  other: Record<number, number>
}

/** One client incrementing `times` times through the servers on `ports`, in turn. */
export async function incrementer (ports: number[], path: string, times: number, client: number): Promise<IncrementResult> {
  const agents = ports.map(() => new Agent({ keepAlive: true, maxSockets: 1 }))
  const result: IncrementResult = { written: 0, refused: 0, other: {} }
  let turn = client
  try {
    while (result.written < times) {
      const at = turn++ % ports.length
      const read = await send(ports[at], { path, agent: agents[at] })
      const { value } = read.json() as { value: number }
      const write = await send(ports[at], {
        method: 'PUT',
        path,
        agent: agents[at],
        headers: { 'if-match': read.headers.etag as string },
        body: { value: value + 1 }
      })
      if (write.status >= 200 && write.status < 300) {
        result.written++
      } else if (write.status === 412) {
        result.refused++
        // A little jitter, so twenty clients do not retry in lockstep.
        await sleep(Math.random() * 3)
      } else {
        result.other[write.status] = (result.other[write.status] ?? 0) + 1
        if (Object.values(result.other).reduce((a, b) => a + b, 0) > 20) throw new Error(`unexpected statuses: ${JSON.stringify(result.other)}`)
        await sleep(20)
      }
    }
  } finally {
    for (const agent of agents) agent.destroy()
  }
  return result
}

/** `clients` incrementers side by side; resolves with their combined result. */
export async function incrementAll (ports: number[], path: string, clients: number, times: number): Promise<IncrementResult> {
  const results = await Promise.all(Array.from({ length: clients }, (_, client) => incrementer(ports, path, times, client)))
  const total: IncrementResult = { written: 0, refused: 0, other: {} }
  for (const result of results) {
    total.written += result.written
    total.refused += result.refused
    for (const [status, count] of Object.entries(result.other)) total.other[Number(status)] = (total.other[Number(status)] ?? 0) + count
  }
  return total
}
