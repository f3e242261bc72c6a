// A throwaway redis-server on a free loopback port, for the Redis lock store tests. Nothing is
// persisted (no RDB, no AOF); `stop` and `start` again on the same port simulate an outage.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { freePort } from './port.js'

export const REDIS_MISSING = 'redis-server not found on PATH; install it (apt-get install -y redis-server) to run the Redis lock store tests'

/** Whether a redis-server binary can be run here. */
export function hasRedisServer (): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}

export class RedisServer {
  port = 0
  private child: ChildProcess | null = null
  private readonly extraArgs: string[]
  private readonly config: string[]
  private readonly readyLine: string

  /**
   * `extraArgs` are added to the command line, e.g. `['--enable-debug-command', 'local']` for DEBUG
   * SLEEP. `config` is a configuration file to start from (`[file, '--sentinel']` for a Sentinel),
   * `readyLine` what it logs once it accepts connections.
   */
  constructor (extraArgs: string[] = [], config: string[] = [], readyLine = 'Ready to accept connections') {
    this.extraArgs = extraArgs
    this.config = config
    this.readyLine = readyLine
  }

  /** Starts redis-server (on the same port as before when restarting) and waits until it accepts connections. */
  async start (): Promise<void> {
    if (this.child !== null) throw new Error('redis-server is already running')
    if (this.port === 0) this.port = await freePort()
    const child = spawn('redis-server', [
      ...this.config, '--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', tmpdir(), '--loglevel', 'notice', '--logfile', '', ...this.extraArgs
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    let output = ''
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not start within 5 s:\n${output}`)), 5000)
      const onData = (chunk: Buffer): void => {
        output += chunk.toString()
        if (output.includes(this.readyLine)) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stdout!.on('data', onData)
      child.stderr!.on('data', onData)
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`redis-server exited with ${String(code)}:\n${output}`))
      })
    })
    try {
      await ready
    } catch (error) {
      this.child = null
      throw error
    }
    // Keep draining so a chatty server never blocks on a full pipe.
    child.stdout!.resume()
    child.stderr!.resume()
  }

  /** Stops the server and waits for it to exit. */
  async stop (): Promise<void> {
    const child = this.child
    if (child === null) return
    this.child = null
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT') // in case a test left it paused
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }

  get running (): boolean {
    return this.child !== null
  }

  /** The server's process id, while it runs. */
  get pid (): number | undefined {
    return this.child?.pid
  }

  /**
   * Sends `signal` to the server: SIGSTOP and SIGCONT pause and resume it; SIGKILL kills it, as a
   * crash does (it can be started again on the same port).
   */
  async signal (signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (child === null) return
    if (signal !== 'SIGKILL') {
      child.kill(signal)
      return
    }
    this.child = null
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGCONT')
    child.kill('SIGKILL')
    await exited
  }
}

/**
 * A fresh redis-server and an ioredis client to it, both gone when the test ends. `Client` is the
 * ioredis class (passed in, so this helper imports no client itself).
 */
export async function startRedis<C extends { disconnect: () => void }> (
  t: { teardown: (fn: () => Promise<void>) => void },
  Client: new (options: { port: number, host: string }) => C
): Promise<{ server: RedisServer, redis: C }> {
  const server = new RedisServer()
  await server.start()
  const redis = new Client({ port: server.port, host: '127.0.0.1' })
  t.teardown(async () => {
    redis.disconnect()
    await server.stop()
  })
  return { server, redis }
}
