// A throwaway MariaDB server for one test file: mariadb-install-db into a temporary directory,
// root without a password on loopback only, a free port, its socket and pid file in that directory.
// `kill` stops it the way a crash would (SIGKILL to mariadbd: the next start recovers InnoDB from
// its redo log, so every commit it acknowledged survives), `start` again brings it back on the same
// port, `stop` kills it and removes the directory.
//
// mariadbd refuses to run as root unless told which user to be: as root it runs with `--user=root`
// (the data directory is root's, in a temporary directory nobody else uses); as anyone else, as
// that user.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './port.js'

const INSTALL = 'apt-get install -y mariadb-server'

/** The first of `names` found on PATH or in the sbin folders (mariadbd lives in /usr/sbin, often not on a user's PATH). */
function findBinary (names: string[]): string | null {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin']
  for (const name of names) {
    for (const dir of dirs) {
      if (dir !== '' && existsSync(join(dir, name))) return join(dir, name)
    }
  }
  return null
}

const binaries = (): { server: string | null, install: string | null } => ({
  server: findBinary(['mariadbd', 'mysqld']),
  install: findBinary(['mariadb-install-db', 'mysql_install_db'])
})

const isRoot = userInfo().uid === 0

/** Why a server cannot be started here (a message for the skip), or false when it can. */
export function mariadbMissing (): string | false {
  const { server, install } = binaries()
  if (server === null || install === null) {
    return `MariaDB server binaries (mariadbd, mariadb-install-db) not found; install them (${INSTALL}) to run the MySQL store tests`
  }
  return false
}

// Every server still running in this process, killed on exit even if a test left it up.
const live = new Set<MariaDbServer>()
process.on('exit', () => {
  for (const server of live) server.stopSync()
})

export class MariaDbServer {
  port = 0
  readonly dir: string
  private readonly server: string
  private readonly install: string
  private readonly data: string
  private readonly log: string
  private child: ChildProcess | null = null
  private initialized = false

  constructor () {
    const { server, install } = binaries()
    if (server === null || install === null) throw new Error(mariadbMissing() as string)
    this.server = server
    this.install = install
    this.dir = mkdtempSync(join(tmpdir(), 'mariadb-test-'))
    this.data = join(this.dir, 'data')
    this.log = join(this.dir, 'server.log')
  }

  /** mysql2 connection options: root, no password, the `test` database. */
  get connection (): { host: string, port: number, user: string, database: string } {
    return { host: '127.0.0.1', port: this.port, user: 'root', database: 'test' }
  }

  get pid (): number | undefined {
    return this.child?.pid
  }

  private readLog (): string {
    return existsSync(this.log) ? readFileSync(this.log, 'utf8') : ''
  }

  /** Makes the data directory on first use, then starts the server (on the same port as before after `kill`) and waits until it accepts connections. */
  async start (): Promise<void> {
    if (this.child !== null) throw new Error('mariadbd is already running')
    if (!this.initialized) {
      const result = spawnSync(this.install, [
        '--no-defaults', `--datadir=${this.data}`, '--auth-root-authentication-method=normal',
        '--skip-test-db', '--skip-name-resolve', ...(isRoot ? ['--user=root'] : [])
      ], { encoding: 'utf8', cwd: this.dir, timeout: 120_000 })
      if (result.error !== undefined || result.status !== 0) {
        throw new Error(`mariadb-install-db failed (${String(result.error ?? result.status)}):\n${result.stdout}${result.stderr}`)
      }
      this.initialized = true
    }
    if (this.port === 0) this.port = await freePort()
    const logged = this.readLog().length
    const child = spawn(this.server, [
      '--no-defaults', `--datadir=${this.data}`, `--port=${this.port}`, '--bind-address=127.0.0.1',
      `--socket=${join(this.dir, 'mysqld.sock')}`, `--pid-file=${join(this.dir, 'mysqld.pid')}`,
      `--log-error=${this.log}`, '--skip-name-resolve', '--skip-log-bin', '--performance-schema=OFF',
      // Written to the OS at every commit, synced once a second: a commit survives `kill` (a crash
      // of the server), though not one of the machine. With 0 instead, a commit acknowledged just
      // before `kill` could be lost, and crash tests would lie.
      '--innodb-flush-log-at-trx-commit=2', '--innodb-doublewrite=0',
      '--innodb-buffer-pool-size=32M', '--innodb-log-file-size=16M', '--key-buffer-size=1M',
      '--max-connections=200', '--character-set-server=utf8mb4', '--collation-server=utf8mb4_bin',
      ...(isRoot ? ['--user=root'] : [])
    ], { stdio: 'ignore' })
    child.unref()
    this.child = child
    live.add(this)
    const deadline = Date.now() + 60_000
    for (;;) {
      const log = this.readLog().slice(logged)
      if (/ready for connections/.test(log)) break
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        this.kill()
        throw new Error(`mariadbd did not start (exit ${String(child.exitCode ?? child.signalCode)}):\n${log}`)
      }
      await sleep(50)
    }
    if (logged === 0) {
      // The first start: a database for the tests, made over the socket by the client that ships with the server.
      const client = findBinary(['mariadb', 'mysql'])
      if (client === null) throw new Error(`the mariadb client is missing; ${INSTALL}`)
      const made = spawnSync(client, ['--no-defaults', '-uroot', `--socket=${join(this.dir, 'mysqld.sock')}`, '-e', 'CREATE DATABASE IF NOT EXISTS test'], { encoding: 'utf8', timeout: 30_000 })
      if (made.status !== 0) throw new Error(`CREATE DATABASE test failed:\n${made.stdout}${made.stderr}`)
    }
  }

  /** Kills the server at once (SIGKILL), as a crash would. The data stays for `start`. */
  kill (): void {
    const child = this.child
    if (child === null) return
    this.child = null
    live.delete(this)
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      // Until the process is gone its port and files are still its own.
      for (let i = 0; i < 500 && !isGone(child.pid as number); i++) Atomics.wait(pause, 0, 0, 10)
    }
  }

  /** Kills the server and removes its directory. */
  async stop (): Promise<void> {
    this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** For the exit handler: no throwing, no waiting on promises. */
  stopSync (): void {
    try {
      this.kill()
    } catch {}
    rmSync(this.dir, { recursive: true, force: true })
  }

  get running (): boolean {
    return this.child !== null
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4))

/** Whether `pid` has died: no such process, or a zombie (dead, its sockets closed, not yet reaped by Node). */
function isGone (pid: number): boolean {
  try {
    return /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return true
  }
}

/**
 * A fresh server and a pool to it, both gone when the test ends. `createPool` is mysql2's
 * (`createPool` from 'mysql2/promise', passed in, so this helper imports no client itself); more
 * pools to the same server can be made from `server.connection`.
 */
export async function startMariaDb<P extends { end: () => Promise<void> }> (
  t: { teardown: (fn: () => Promise<void>) => void },
  createPool: (options: { host: string, port: number, user: string, database: string, connectionLimit: number }) => P
): Promise<{ server: MariaDbServer, pool: P }> {
  const server = new MariaDbServer()
  try {
    await server.start()
  } catch (error) {
    await server.stop()
    throw error
  }
  const pool = createPool({ ...server.connection, connectionLimit: 10 })
  t.teardown(async () => {
    await pool.end().catch(() => {})
    await server.stop()
  })
  return { server, pool }
}
