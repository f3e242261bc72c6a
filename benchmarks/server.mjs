// One server of a pair, pinned by its parent to a CPU. It listens on loopback, tells the parent
// its port over IPC, and answers `cpu` requests with process.cpuUsage() between bursts, so the
// measurement itself never runs during a burst.
import v8 from 'node:v8'
import { builders } from './apps.mjs'

const name = process.argv[2]
const build = builders[name]
if (build === undefined) {
  console.error(`unknown server ${name}; known: ${Object.keys(builders).join(', ')}`)
  process.exit(2)
}

let server
try {
  server = await build()
  const port = await server.listen()
  process.send({ type: 'ready', port })
} catch (error) {
  process.send({ type: 'failed', message: error.message })
  process.exit(1)
}

process.on('message', async (message) => {
  if (message.type === 'cpu') {
    const { user, system } = process.cpuUsage()
    process.send({ type: 'cpu', id: message.id, micros: user + system, rss: process.memoryUsage.rss(), ...server.stats?.() })
  } else if (message.type === 'memory') {
    // Two full collections: the first may only queue finalizers that the second completes.
    globalThis.gc?.()
    await new Promise((resolve) => setTimeout(resolve, 50))
    globalThis.gc?.()
    const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage()
    const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((space) => [space.space_name, space.space_size]))
    process.send({ type: 'memory', id: message.id, rss, heapUsed, heapTotal, external, arrayBuffers, spaces, gc: typeof globalThis.gc === 'function', ...server.stats?.() })
  } else if (message.type === 'stop') {
    await server.close()
    // Not from inside the message handler: Node then throws on messages still queued on the
    // channel (TypeError: Cannot set properties of null, setting kPendingMessages).
    setImmediate(() => process.disconnect())
  }
})
// The parent went away without a stop: do not linger.
process.on('disconnect', () => process.exit(0))
