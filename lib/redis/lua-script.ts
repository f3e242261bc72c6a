// A Lua script for Redis, run by its SHA1 and sent whole only when the server does not have it
// cached (a first use, a restart, a failover). Shared by the lock store and the idempotency store.
import { createHash } from 'node:crypto'

/** The two commands a script needs: what an ioredis `Redis` or `Cluster` has. */
export interface ScriptClient {
  evalsha (sha: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>
  eval (script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>
}

export class LuaScript {
  readonly lua: string
  readonly sha: string

  constructor (lua: string) {
    this.lua = lua
    this.sha = createHash('sha1').update(lua).digest('hex')
  }

  run (client: ScriptClient, keys: string[], args: Array<string | number>): Promise<unknown> {
    return client.evalsha(this.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return client.eval(this.lua, keys.length, ...keys, ...args)
    })
  }
}
