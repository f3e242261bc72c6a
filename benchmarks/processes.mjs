// Child processes pinned to one CPU each (taskset), talked to over IPC with request/answer ids.
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const here = (file) => fileURLToPath(new URL(file, import.meta.url))

export const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0

/** The command line that runs `argv` on `cpu`, or unpinned where taskset is missing. */
export function pinned (cpu, argv) {
  return hasTaskset && cpu !== null ? ['taskset', ['-c', String(cpu), ...argv]] : [argv[0], argv.slice(1)]
}

export class Child {
  /**
   * @param {object} options
   * @param {string} options.script file in benchmarks/
   * @param {string[]} [options.args]
   * @param {number|null} [options.cpu] CPU to pin to
   * @param {string[]} [options.nodeArgs] e.g. ['--cpu-prof']
   * @param {object} [options.env]
   */
  constructor ({ script, args = [], cpu = null, nodeArgs = [], env = {} }) {
    const [command, argv] = pinned(cpu, [process.execPath, ...nodeArgs, here(script), ...args])
    this.name = `${script} ${args.join(' ')}`.trim()
    this.process = spawn(command, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, ...env } })
    this.pending = new Map()
    this.nextId = 1
    this.exited = new Promise((resolve) => this.process.once('exit', (code, signal) => {
      for (const { reject } of this.pending.values()) reject(new Error(`${this.name} exited (${signal ?? code})`))
      this.pending.clear()
      resolve(code)
    }))
    this.process.on('message', (message) => {
      const waiter = this.pending.get(message.id ?? message.type)
      if (waiter === undefined) return
      this.pending.delete(message.id ?? message.type)
      waiter.resolve(message)
    })
  }

  /** Waits for an unsolicited message of this type (e.g. `ready`), or a `failed` one. */
  waitFor (type, timeout = 30_000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${type} within ${timeout} ms`)), timeout)
      const onMessage = (message) => {
        if (message.type !== type && message.type !== 'failed') return
        clearTimeout(timer)
        this.process.off('message', onMessage)
        if (message.type === 'failed') reject(new Error(`${this.name}: ${message.message}`))
        else resolve(message)
      }
      this.process.on('message', onMessage)
      this.exited.then(() => { clearTimeout(timer); reject(new Error(`${this.name} exited before ${type}`)) })
    })
  }

  /** Sends `{ type, id, ...payload }` and resolves with the answer carrying the same id. */
  request (type, payload = {}, timeout = 120_000) {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: no answer to ${type} within ${timeout} ms`))
      }, timeout)
      this.pending.set(id, {
        resolve: (message) => { clearTimeout(timer); resolve(message) },
        reject: (error) => { clearTimeout(timer); reject(error) }
      })
      this.process.send({ type, id, ...payload })
    })
  }

  /** Asks the child to stop, and kills it (by its own pid) if it does not within `grace` ms. */
  async stop (message = { type: 'stop' }, grace = 5000) {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return
    // The child may be disconnecting on its own; a failed send only means it is.
    if (this.process.connected) this.process.send(message, () => {})
    const timer = setTimeout(() => this.process.kill('SIGKILL'), grace)
    await this.exited
    clearTimeout(timer)
  }
}
