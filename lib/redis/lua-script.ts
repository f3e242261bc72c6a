// A Lua script for Redis, run by its SHA1 and sent whole only when the server does not have it
// cached (a first use, a restart, a failover). Shared by the lock store and the idempotency store.
//
// `runAndWait` follows the script with WAIT in one pipeline: WAIT counts the replicas that have
// every write its own connection sent, so it must go down the connection the script went down.
// A pipeline is sent whole to one connection (on a Cluster, to the node that owns the slot of the
// script's key: WAIT has no key of its own), so nothing can come between the two.
import { createHash } from 'node:crypto'

/** The two commands a script needs: what an ioredis `Redis` or `Cluster` has. */
export interface ScriptClient {
  evalsha (sha: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>
  eval (script: string, numKeys: number, ...args: Array<string | number>): Promise<unknown>
}

/** What an ioredis pipeline has of what `runAndWait` sends. */
export interface ScriptPipeline {
  evalsha (sha: string, numKeys: number, ...args: Array<string | number>): ScriptPipeline
  eval (script: string, numKeys: number, ...args: Array<string | number>): ScriptPipeline
  wait (replicas: number, timeout: number): ScriptPipeline
  exec (): Promise<Array<[Error | null, unknown]> | null>
}

/** A client that can also pipeline: an ioredis `Redis` or `Cluster`. */
export type PipelineClient = ScriptClient & { pipeline (): ScriptPipeline }

/** What a script answered, and how many replicas had acknowledged its writes when WAIT returned. */
export interface Acknowledged {
  result: unknown
  replicas: number
}

function noScript (error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT')
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
      if (!noScript(error)) throw error
      return client.eval(this.lua, keys.length, ...keys, ...args)
    })
  }

  /**
   * Runs the script, then `WAIT replicas timeout` on the same connection. Rejects when either
   * failed (a redirection included: the pipeline is not followed to another node, the next
   * command is).
   */
  async runAndWait (client: PipelineClient, keys: string[], args: Array<string | number>, replicas: number, timeout: number): Promise<Acknowledged> {
    let results = await client.pipeline().evalsha(this.sha, keys.length, ...keys, ...args).wait(replicas, timeout).exec()
    if (results !== null && noScript(results[0][0])) {
      results = await client.pipeline().eval(this.lua, keys.length, ...keys, ...args).wait(replicas, timeout).exec()
    }
    // exec answers null only for a MULTI whose WATCH failed; none is sent here, but a client may.
    if (results === null) throw new Error('the pipeline was discarded')
    const [[scriptError, result], [waitError, acknowledged]] = results
    if (scriptError !== null) throw scriptError
    if (waitError !== null) throw waitError
    return { result, replicas: Number(acknowledged) }
  }
}

/**
 * `sent`, or a rejection once `ms` have passed without its answer. A Redis Cluster client stays
 * `ready` while one of its primaries is dead, and retries a command for that primary's slots
 * (redirections, reconnections) for seconds: the stores bound each command themselves, so such a
 * write is answered 503 within `ms` whatever the client's own settings.
 */
export function answerWithin<T> (sent: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms)
  })
  return Promise.race([sent, late]).finally(() => clearTimeout(timer))
}
