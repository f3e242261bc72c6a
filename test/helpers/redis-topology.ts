// Replicated Redis topologies on free loopback ports, for the failover tests: Sentinel (one
// primary, one replica, three sentinels) and Cluster (three primaries, three replicas). Every
// server is a redis-server process of RedisServer, stopped by its PID; nothing is persisted but a
// cluster node's own nodes.conf, so a node killed and started again rejoins as what the cluster
// made of it. Timeouts are short (a node is judged down after 1 s), so a failover takes seconds.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sleep } from './http.js'
import { createServer } from 'node:net'
import { once } from 'node:events'
import { freePort } from './port.js'
import { RedisServer } from './redis-server.js'

export const SENTINEL_MISSING = 'redis-server cannot run as a Sentinel here (redis-server --sentinel); install it (apt-get install -y redis-server redis-sentinel) to run the Sentinel failover tests'
export const CLUSTER_MISSING = 'redis-server or redis-cli not found on PATH; install them (apt-get install -y redis-server redis-tools) to run the Redis Cluster tests'

/** Whether `redis-server --sentinel` runs here (Debian's redis-sentinel is the same binary). */
export function hasRedisSentinel (): boolean {
  const probe = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return probe.error === undefined && probe.status === 0
}

/** Whether redis-server and redis-cli run here (the cluster is made with redis-cli --cluster create). */
export function hasRedisCluster (): boolean {
  const server = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  const cli = spawnSync('redis-cli', ['--version'], { stdio: 'ignore' })
  return server.error === undefined && server.status === 0 && cli.error === undefined && cli.status === 0
}

/** Runs redis-cli against 127.0.0.1:`port`; its output, trimmed. */
export function cli (port: number, ...args: string[]): string {
  const run = spawnSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 })
  if (run.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed (${String(run.status ?? run.signal)}): ${run.stdout}${run.stderr}`)
  return run.stdout.trim()
}

async function until (what: string, condition: () => boolean, limit: number): Promise<void> {
  const end = Date.now() + limit
  for (;;) {
    try {
      if (condition()) return
    } catch {
      // a server that is still starting, or down: ask again
    }
    if (Date.now() > end) throw new Error(`timed out after ${limit} ms waiting for ${what}`)
    await sleep(50)
  }
}

const infoField = (info: string, field: string): string | undefined => new RegExp(`^${field}:(.*)$`, 'm').exec(info)?.[1]?.trim()

export class SentinelTopology {
  readonly name = 'fp-primary'
  primary!: RedisServer
  replica!: RedisServer
  readonly sentinels: RedisServer[] = []
  private dir = ''

  /** Starts the servers and the sentinels; on a failure, stops what it started. */
  async start (): Promise<void> {
    try {
      await this.create()
    } catch (error) {
      await this.stop()
      throw error
    }
  }

  private async create (): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'fp-sentinel-'))
    // Directories of their own: no dump.rdb another server left in the shared one is loaded.
    this.primary = new RedisServer(['--dir', this.dir])
    await this.primary.start()
    this.replica = new RedisServer(['--dir', this.dir, '--replicaof', '127.0.0.1', String(this.primary.port)])
    await this.replica.start()
    await this.synced(this.replica.port)
    for (let i = 0; i < 3; i++) {
      const file = join(this.dir, `sentinel-${i}.conf`)
      writeFileSync(file, [
        `sentinel monitor ${this.name} 127.0.0.1 ${this.primary.port} 2`,
        `sentinel down-after-milliseconds ${this.name} 1000`,
        `sentinel failover-timeout ${this.name} 5000`,
        `sentinel parallel-syncs ${this.name} 1`,
        ''
      ].join('\n'))
      const sentinel = new RedisServer([], [file, '--sentinel'], '+monitor master')
      await sentinel.start()
      this.sentinels.push(sentinel)
    }
    // Every sentinel knows the replica and the other sentinels, so a failover can be agreed.
    await until('the sentinels to know each other and the replica', () => this.sentinels.every((s) => {
      const master = cli(s.port, 'SENTINEL', 'MASTER', this.name).split('\n')
      const field = (name: string): number => Number(master[master.indexOf(name) + 1])
      return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2
    }), 15_000)
  }

  /** The sentinels' addresses, for ioredis' `sentinels` option. */
  get addresses (): Array<{ host: string, port: number }> {
    return this.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }))
  }

  /** The port of the server the sentinels call the primary now. */
  primaryPort (): number {
    return Number(cli(this.sentinels[0].port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.name).split('\n')[1])
  }

  /** Waits until the replica at `port` has its primary's link up. */
  async synced (port: number, limit = 15_000): Promise<void> {
    await until(`the replica on ${port} to sync`, () => infoField(cli(port, 'INFO', 'replication'), 'master_link_status') === 'up', limit)
  }

  /** SIGKILLs the primary; resolves once the sentinels promoted the replica. Answers the killed server. */
  async killPrimary (limit = 20_000): Promise<RedisServer> {
    const port = this.primaryPort()
    const [dead, survivor] = port === this.primary.port ? [this.primary, this.replica] : [this.replica, this.primary]
    await dead.signal('SIGKILL')
    await until('the sentinels to promote the replica', () => this.primaryPort() === survivor.port &&
      infoField(cli(survivor.port, 'INFO', 'replication'), 'role') === 'master', limit)
    return dead
  }

  /** Starts a killed server again; the sentinels make it a replica of the new primary. */
  async restart (server: RedisServer, limit = 20_000): Promise<void> {
    await server.start()
    await until('the old primary to be made a replica', () => infoField(cli(server.port, 'INFO', 'replication'), 'role') === 'slave', limit)
    await this.synced(server.port, limit)
  }

  async stop (): Promise<void> {
    for (const server of [...this.sentinels, this.replica, this.primary]) await server?.stop()
    if (this.dir !== '') rmSync(this.dir, { recursive: true, force: true })
  }
}

export interface ClusterNode {
  server: RedisServer
  port: number
}

/** A free port whose cluster bus port (the port + 10000) is free too. */
async function freeClusterPort (): Promise<number> {
  for (;;) {
    const port = await freePort()
    if (port + 10_000 > 65_535) continue
    const bus = createServer()
    bus.listen(port + 10_000, '127.0.0.1')
    const [error] = await Promise.race([once(bus, 'listening').then(() => [null]), once(bus, 'error')]) as [Error | null]
    if (error === null) {
      bus.close()
      await once(bus, 'close')
      return port
    }
  }
}

export class ClusterTopology {
  readonly nodes: ClusterNode[] = []
  private dir = ''

  /** Starts the six nodes and makes them a cluster; on a failure, stops what it started. */
  async start (): Promise<void> {
    try {
      await this.create()
    } catch (error) {
      await this.stop()
      throw error
    }
  }

  private async create (): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'fp-cluster-'))
    const ports: number[] = []
    while (ports.length < 6) {
      const port = await freeClusterPort()
      // Nor another node's port or bus port.
      if (!ports.some((other) => other === port || other === port + 10_000 || other + 10_000 === port)) ports.push(port)
    }
    await Promise.all(ports.map(async (port) => {
      const dir = join(this.dir, String(port))
      mkdirSync(dir)
      const server = new RedisServer([
        // A directory of its own: no dump.rdb another server left in the shared one is loaded.
        '--dir', dir,
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(this.dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '1000',
        // A replica takes over however long it was cut off; the slots of a dead primary are
        // refused, the others keep working.
        '--cluster-replica-validity-factor', '0',
        '--cluster-require-full-coverage', 'no'
      ])
      server.port = port
      await server.start()
      this.nodes.push({ server, port })
    }))
    this.nodes.sort((a, b) => a.port - b.port)
    cli(this.nodes[0].port, '--cluster', 'create', ...this.nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes')
    await until('every node to see the cluster ok', () => this.nodes.every((n) => infoField(cli(n.port, 'CLUSTER', 'INFO'), 'cluster_state') === 'ok'), 20_000)
    await until('every replica to sync', () => this.nodes.every((n) => {
      const info = cli(n.port, 'INFO', 'replication')
      return infoField(info, 'role') === 'master' || infoField(info, 'master_link_status') === 'up'
    }), 20_000)
  }

  /** Where ioredis' Cluster starts from. */
  get startupNodes (): Array<{ host: string, port: number }> {
    return this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }))
  }

  /** The port of the primary serving `key` now, as a live node sees it. */
  primaryOf (key: string): number {
    const slot = Number(cli(this.live().port, 'CLUSTER', 'KEYSLOT', key))
    for (const line of cli(this.live().port, 'CLUSTER', 'NODES').split('\n')) {
      const [, address, flags, , , , , state, ...ranges] = line.split(' ')
      if (!flags.includes('master') || flags.includes('fail') || state !== 'connected') continue
      for (const range of ranges) {
        const [from, to = from] = range.split('-').map(Number)
        if (slot >= from && slot <= to) return Number(address.split(':')[1].split('@')[0])
      }
    }
    throw new Error(`no primary serves slot ${slot}`)
  }

  private live (): ClusterNode {
    const node = this.nodes.find((n) => n.server.running)
    if (node === undefined) throw new Error('no node runs')
    return node
  }

  node (port: number): ClusterNode {
    return this.nodes.find((n) => n.port === port) as ClusterNode
  }

  /** SIGKILLs the primary at `port` (no wait for the failover: see failedOver). */
  async kill (port: number): Promise<void> {
    await this.node(port).server.signal('SIGKILL')
  }

  /** Waits until the slots of `key` are served by a primary other than `port`. */
  async failedOver (key: string, port: number, limit = 20_000): Promise<number> {
    let now = port
    await until(`a replica to take over from ${port}`, () => {
      now = this.primaryOf(key)
      return now !== port && infoField(cli(now, 'CLUSTER', 'INFO'), 'cluster_state') === 'ok'
    }, limit)
    return now
  }

  /** Starts a killed node again; it rejoins as a replica of the primary that took its slots. */
  async restart (port: number, limit = 20_000): Promise<void> {
    await this.node(port).server.start()
    await until(`node ${port} to rejoin as a synced replica`, () => {
      const info = cli(port, 'INFO', 'replication')
      return infoField(info, 'role') === 'slave' && infoField(info, 'master_link_status') === 'up'
    }, limit)
  }

  async stop (): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.server.stop()))
    if (this.dir !== '') rmSync(this.dir, { recursive: true, force: true })
  }
}
