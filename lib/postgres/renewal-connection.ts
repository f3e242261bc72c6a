// The connection a PostgreSQL store renews its leases through: one of its own, opened with the
// pool's settings, beside the pool and not in it. A renewal queued in a pool whose connections the
// handlers hold (a small pool shared by the store and the handlers, under load) would wait past
// the lease, and a duplicate would take the key and run again; on its own connection it is on
// time whatever the handlers do. Where the pool is not a node-postgres Pool (no `Client` and
// `options` to open one with), renewals go through the pool.

/** What a connection of the store's own needs of node-postgres' Client. */
interface OwnClient {
  connect (): Promise<unknown>
  query (text: string, values: unknown[]): Promise<{ rows: any[], rowCount: number | null }>
  on (event: 'error', listener: (error: Error) => void): unknown
  end (): Promise<void>
}

/** What a node-postgres Pool has to open a connection like its own. */
interface PoolSettings {
  Client?: new (options: object) => OwnClient
  options?: object
}

/** The statements' way through the pool, where no connection of the store's own can be opened. */
interface Fallback {
  query (text: string, values: unknown[]): Promise<{ rows: any[], rowCount: number | null }>
}

export class RenewalConnection {
  private readonly settings: PoolSettings
  private readonly fallback: Fallback
  private client: Promise<OwnClient> | null = null
  private closed = false

  constructor (pool: unknown, fallback: Fallback) {
    this.settings = pool as PoolSettings
    this.fallback = fallback
  }

  async query (text: string, values: unknown[]): Promise<{ rows: any[], rowCount: number | null }> {
    const { Client, options } = this.settings
    if (typeof Client !== 'function' || typeof options !== 'object' || options === null || this.closed) return await this.fallback.query(text, values)
    return await (await this.connected(Client, options)).query(text, values)
  }

  private connected (Client: new (options: object) => OwnClient, options: object): Promise<OwnClient> {
    if (this.client !== null) return this.client
    const client = new Client(options)
    const opened = client.connect().then(() => client)
    this.client = opened
    // A connection that broke (its backend terminated, the server restarted) is opened anew for
    // the next renewal; the one in flight fails, and the next tick renews.
    const forget = (): void => {
      if (this.client === opened) this.client = null
    }
    client.on('error', forget)
    opened.catch(forget)
    return opened
  }

  /** Ends the store's own connection, if it was opened. */
  async close (): Promise<void> {
    this.closed = true
    const client = this.client
    this.client = null
    if (client !== null) await client.then((opened) => opened.end(), () => {})
  }
}
