// A throwaway PostgreSQL cluster for the PostgreSQL benchmark, made the way the tests make theirs
// (test/helpers/postgres-server.ts): initdb into a temporary directory, trust auth on loopback
// only, a free port, synchronous_commit on. `fsync: true` keeps PostgreSQL's own durability
// (fsync and full_page_writes on, as in production: every commit that wrote waits for its WAL on
// disk); `fsync: false` turns both off, as the tests' clusters do. As root, it belongs to the
// `postgres` OS user and every command runs through runuser. Pinned to one CPU with taskset.
import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { hasTaskset } from './processes.mjs'

function findBinaries () {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((name) => /^\d+$/.test(name)).sort((a, b) => Number(b) - Number(a)) : []
  for (const version of versions) {
    const bin = join(root, version, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'pg_ctl'))) return bin
  }
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return dir
  }
  return null
}

function postgresUser () {
  const passwd = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8') : ''
  const line = passwd.split('\n').find((entry) => entry.startsWith('postgres:'))
  if (line === undefined) return null
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

const isRoot = userInfo().uid === 0
const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100

/** Why no cluster can be started here, or null. */
export function postgresMissing () {
  if (findBinaries() === null) return 'PostgreSQL server binaries (initdb, pg_ctl) not found (apt-get install -y postgresql)'
  if (isRoot && postgresUser() === null) return 'running as root and there is no postgres OS user to run initdb as'
  return null
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

export class PostgresCluster {
  constructor ({ cpu = null, fsync = true } = {}) {
    this.bin = findBinaries()
    this.cpu = cpu
    this.fsync = fsync
    this.dir = mkdtempSync(join(tmpdir(), 'pg-bench-'))
    this.data = join(this.dir, 'data')
    this.log = join(this.dir, 'server.log')
    this.port = 0
    if (isRoot) {
      const user = postgresUser()
      chownSync(this.dir, user.uid, user.gid)
    }
  }

  get connectionString () {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`
  }

  run (tool, args) {
    let command = isRoot ? ['runuser', '-u', 'postgres', '--', join(this.bin, tool), ...args] : [join(this.bin, tool), ...args]
    if (hasTaskset && this.cpu !== null) command = ['taskset', '-c', String(this.cpu), ...command]
    const result = spawnSync(command[0], command.slice(1), { encoding: 'utf8', cwd: this.dir, timeout: 60_000 })
    if (result.error !== undefined || result.status !== 0) {
      const log = existsSync(this.log) ? readFileSync(this.log, 'utf8') : ''
      throw new Error(`${tool} ${args.join(' ')} failed (${String(result.error ?? result.status)}):\n${result.stdout}${result.stderr}${log}`)
    }
  }

  async start () {
    this.run('initdb', ['-D', this.data, '-U', 'postgres', '--auth=trust', '--no-sync', '--no-instructions', '-E', 'UTF8', '--locale=C'])
    this.port = await freePort()
    const options = [`-p ${this.port}`, `-k ${this.dir}`, '-c listen_addresses=127.0.0.1', `-c fsync=${this.fsync ? 'on' : 'off'}`, `-c full_page_writes=${this.fsync ? 'on' : 'off'}`, '-c max_connections=100'].join(' ')
    this.run('pg_ctl', ['start', '-D', this.data, '-l', this.log, '-w', '-t', '60', '-o', options])
    this.postmaster = Number(readFileSync(join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0])
  }

  /**
   * CPU seconds the server has used so far: the postmaster's own and its reaped children's, and
   * every live child's (the backends serving the pools, the WAL writer, …), from /proc.
   */
  cpuSeconds () {
    const stat = (pid) => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
      } catch {
        return null
      }
    }
    const main = stat(this.postmaster)
    if (main === null) return 0
    let ticks = Number(main[11]) + Number(main[12]) + Number(main[13]) + Number(main[14])
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      const fields = stat(name)
      if (fields !== null && Number(fields[1]) === this.postmaster) ticks += Number(fields[11]) + Number(fields[12])
    }
    return ticks / clockTicks
  }

  stop () {
    try {
      this.run('pg_ctl', ['stop', '-D', this.data, '-m', 'immediate', '-w'])
    } finally {
      rmSync(this.dir, { recursive: true, force: true })
    }
  }
}
