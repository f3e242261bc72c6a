// A throwaway PostgreSQL cluster for one test file: initdb into a temporary directory, trust auth
// on loopback only, a free port, its socket in that directory, fsync off. `kill` stops it the way a
// crash would (pg_ctl stop -m immediate; the next start recovers from the WAL: every commit it
// acknowledged survives), `restart` as an operator would (pg_ctl restart -m fast), `start` again
// brings it back on the same port, `stop` kills it and removes the directory.
//
// initdb and postgres refuse to run as root: as root, the cluster belongs to the `postgres` OS user
// (made by the Debian `postgresql` package) and every command runs through runuser.
import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { freePort } from './port.js'

const INSTALL = 'apt-get install -y postgresql'

/** The directory that holds initdb, pg_ctl and postgres, or null. The newest Debian cluster version first, then PATH. */
function findBinaries (): string | null {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root)
    ? readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a))
    : []
  for (const version of versions) {
    const bin = join(root, version, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir
  }
  return null
}

interface OsUser { uid: number, gid: number }

function postgresUser (): OsUser | null {
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : ''
  const line = passwd.split('\n').find((entry) => entry.startsWith('postgres:'))
  if (line === undefined) return null
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

const isRoot = userInfo().uid === 0

/** Why a cluster cannot be started here (a message for the skip), or false when it can. */
export function postgresMissing (): string | false {
  if (findBinaries() === null) {
    return `PostgreSQL server binaries (initdb, pg_ctl) not found; install them (${INSTALL}) to run the PostgreSQL store tests`
  }
  if (isRoot && postgresUser() === null) {
    return `running as root and there is no postgres OS user to run initdb as; install the server package (${INSTALL}) to run the PostgreSQL store tests`
  }
  return false
}

// Every cluster still running in this process, stopped on exit even if a test left it up.
const live = new Set<PostgresServer>()
process.on('exit', () => {
  for (const server of live) server.stopSync()
})

export class PostgresServer {
  port = 0
  readonly dir: string
  private readonly bin: string
  private readonly data: string
  private readonly log: string
  private initialized = false

  constructor () {
    const bin = findBinaries()
    if (bin === null) throw new Error(postgresMissing() as string)
    this.bin = bin
    this.dir = mkdtempSync(join(tmpdir(), 'pg-test-'))
    this.data = join(this.dir, 'data')
    this.log = join(this.dir, 'server.log')
    if (isRoot) {
      const user = postgresUser()
      if (user === null) throw new Error(postgresMissing() as string)
      chownSync(this.dir, user.uid, user.gid)
    }
  }

  /** A node-postgres connection string to the `postgres` database as the `postgres` role. */
  get connectionString (): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`
  }

  private run (tool: string, args: string[]): string {
    const command = isRoot ? ['runuser', '-u', 'postgres', '--', join(this.bin, tool), ...args] : [join(this.bin, tool), ...args]
    const result = spawnSync(command[0], command.slice(1), { encoding: 'utf8', cwd: this.dir, timeout: 60_000 })
    if (result.error !== undefined || result.status !== 0) {
      const log = existsSync(this.log) ? readFileSync(this.log, 'utf8') : ''
      throw new Error(`${tool} ${args.join(' ')} failed (${String(result.error ?? result.status)}):\n${result.stdout}${result.stderr}${log}`)
    }
    return result.stdout
  }

  /** Makes the cluster on first use, then starts it (on the same port as before after `kill`) and waits until it accepts connections. */
  async start (): Promise<void> {
    if (!this.initialized) {
      this.run('initdb', ['-D', this.data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'])
      this.initialized = true
    }
    if (this.port === 0) this.port = await freePort()
    const options = [
      `-p ${this.port}`, `-k ${this.dir}`, '-c listen_addresses=127.0.0.1', '-c fsync=off',
      '-c full_page_writes=off', '-c max_connections=100'
    ].join(' ')
    // fsync off: a commit is written to the OS, not to the disk, so it survives `kill` (a crash of
    // the server) though not one of the machine. synchronous_commit stays on: with it off, a
    // commit acknowledged just before `kill` would be lost, and crash tests would lie.
    this.run('pg_ctl', ['start', '-D', this.data, '-l', this.log, '-w', '-t', '60', '-o', options])
    live.add(this)
  }

  /** Stops the server at once, as a crash would: no checkpoint, connections cut. The data stays for `start`. */
  kill (): void {
    if (!live.has(this)) return
    live.delete(this)
    this.run('pg_ctl', ['stop', '-D', this.data, '-m', 'immediate', '-w'])
  }

  /**
   * `pg_ctl restart -m fast`, as an operator restarts it: every session is terminated (its client
   * sees the connection end), the server shuts down cleanly and starts again on the same port.
   */
  restart (): void {
    this.run('pg_ctl', ['restart', '-D', this.data, '-l', this.log, '-m', 'fast', '-w', '-t', '60'])
    live.add(this)
  }

  /** Kills the server and removes its directory. */
  async stop (): Promise<void> {
    this.kill()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** For the exit handler: no throwing, no waiting on promises. */
  stopSync (): void {
    live.delete(this)
    const command = isRoot ? ['runuser', '-u', 'postgres', '--', join(this.bin, 'pg_ctl')] : [join(this.bin, 'pg_ctl')]
    spawnSync(command[0], [...command.slice(1), 'stop', '-D', this.data, '-m', 'immediate', '-w'], { stdio: 'ignore' })
    rmSync(this.dir, { recursive: true, force: true })
  }

  get running (): boolean {
    return live.has(this)
  }
}

/**
 * A fresh cluster and a pool to it, both gone when the test ends. `Pool` is node-postgres' class
 * (passed in, so this helper imports no client itself); more pools to the same server can be made
 * from `server.connectionString`.
 */
export async function startPostgres<P extends { end: () => Promise<void>, on: (event: 'error', listener: (error: Error) => void) => unknown }> (
  t: { teardown: (fn: () => Promise<void>) => void },
  Pool: new (options: { connectionString: string, max?: number }) => P
): Promise<{ server: PostgresServer, pool: P }> {
  const server = new PostgresServer()
  try {
    await server.start()
  } catch (error) {
    await server.stop()
    throw error
  }
  const pool = new Pool({ connectionString: server.connectionString, max: 10 })
  // An idle client whose server went away emits 'error' on the pool; a test that kills the server expects that.
  pool.on('error', () => {})
  t.teardown(async () => {
    await pool.end()
    await server.stop()
  })
  return { server, pool }
}
