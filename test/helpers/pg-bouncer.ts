// A PgBouncer in front of a test cluster (test/helpers/postgres-server.ts): transaction pooling,
// trust auth for the users given, a free loopback port, `poolSize` server connections per user and
// database, so many client connections share few server sessions. Its log goes to a file
// (`log()`). As root it runs as the `postgres` OS user (PgBouncer refuses root). Tests skip where
// the pgbouncer binary is missing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './port.js'

function findPgbouncer (): string | null {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin', ...(process.env.PATH ?? '').split(':')]) {
    if (dir !== '' && existsSync(join(dir, 'pgbouncer'))) return join(dir, 'pgbouncer')
  }
  return null
}

/** Why no PgBouncer can be started here, or false. */
export function pgbouncerMissing (): string | false {
  return findPgbouncer() === null ? 'pgbouncer not found (apt-get install -y pgbouncer) to run the PgBouncer test' : false
}

/** The PgBouncer version, e.g. '1.18.0'. */
export function pgbouncerVersion (): string {
  const output = spawnSync(findPgbouncer() as string, ['--version'], { encoding: 'utf8' }).stdout
  return /PgBouncer (\S+)/.exec(output)?.[1] ?? 'unknown'
}

function postgresIds (): { uid: number, gid: number } | null {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((entry) => entry.startsWith('postgres:'))
  if (line === undefined) return null
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

export interface Bouncer {
  port: number
  /** A connection string through the bouncer to database `postgres` as `user`. */
  url (user: string): string
  log (): string
  stop (): Promise<void>
}

/** Starts PgBouncer on a free port in front of the server on `serverPort`; stopped when the test ends. */
export async function startBouncer (t: { teardown: (fn: () => Promise<void>) => void }, serverPort: number, users: string[], poolSize = 2): Promise<Bouncer> {
  const binary = findPgbouncer()
  if (binary === null) throw new Error(pgbouncerMissing() as string)
  const dir = mkdtempSync(join(tmpdir(), 'pgbouncer-test-'))
  const port = await freePort()
  const ini = join(dir, 'pgbouncer.ini')
  const logfile = join(dir, 'pgbouncer.log')
  writeFileSync(join(dir, 'userlist.txt'), users.map((user) => `"${user}" ""`).join('\n') + '\n')
  writeFileSync(ini, `[databases]
postgres = host=127.0.0.1 port=${serverPort} dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'userlist.txt')}
pool_mode = transaction
# After a restart, try the server again within a second (the default waits 15 s, answering every
# client with an error meanwhile): see docs/postgresql.md, "PgBouncer".
server_login_retry = 1
default_pool_size = ${poolSize}
max_client_conn = 200
logfile = ${logfile}
pidfile = ${join(dir, 'pgbouncer.pid')}
`)
  const ids = userInfo().uid === 0 ? postgresIds() : null
  if (ids !== null) chownSync(dir, ids.uid, ids.gid)
  const child: ChildProcess = spawn(binary, [ini], { stdio: 'ignore', ...(ids ?? {}) })
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
  }
  t.teardown(stop)
  // Listening once a TCP connection is accepted (within 10 s).
  for (let tries = 0; ; tries++) {
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (up) break
    if (tries === 100 || child.exitCode !== null) {
      throw new Error(`pgbouncer did not start: ${existsSync(logfile) ? readFileSync(logfile, 'utf8') : ''}`)
    }
    await sleep(100)
  }
  return {
    port,
    url: (user) => `postgresql://${user}@127.0.0.1:${port}/postgres`,
    log: () => existsSync(logfile) ? readFileSync(logfile, 'utf8') : '',
    stop
  }
}
