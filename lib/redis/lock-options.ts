// The options of the Redis lock store (lock-store.ts), and the client it takes.
import type { Redis } from 'ioredis'
import type { ScriptPipeline } from './lua-script.js'

/**
 * An ioredis client: a `Redis` or a `Cluster`. The store runs its scripts with EVALSHA (EVAL when
 * Redis does not know them yet), so any client with those two commands and ioredis' `status` works;
 * with `replicas`, it needs `pipeline` too.
 */
export type RedisLockClient = Pick<Redis, 'eval' | 'evalsha'> & { readonly status?: string, pipeline?: () => ScriptPipeline }

export interface RedisLockStoreOptions {
  /** The ioredis client. The store never connects, disconnects or quits it: it is yours. */
  client: RedisLockClient
  /**
   * Lease lifetime in milliseconds. The lease is renewed every `ttl / 3` while the request runs,
   * so `ttl` only bounds how long a key stays locked after its process died. Default 10000.
   */
  ttl?: number
  /**
   * How long (ms) a resource's Redis key, with the last fencing token handed out for it, is kept
   * after its lease ended (released, or expired unrenewed). Tokens keep growing across the key's
   * expiry as long as Redis' clock never steps back by this much or more; a longer one keeps the
   * keys of idle resources longer. Default 10000.
   */
  fenceTtl?: number
  /**
   * Prepended to the Redis keys: a resource's lease and fence are the hash
   * `<prefix>lock:{<key>}`, where the resource key is written with its control characters, `%`,
   * `{` and `}` percent-encoded (`/items/:id\nid=1:7` is `{/items/:id%0Aid=1:7}`). Default
   * `'fastify-precondition:'`.
   */
  prefix?: string
  /** How often (ms) a waiting write asks Redis again whether the key is free. Default 10. */
  retryInterval?: number
  /**
   * Called, besides aborting the lease's `signal`, when a held lease is found lost while its
   * request still ran (at a renewal, when no renewal succeeded within `ttl`, or at release):
   * another process may have written meanwhile. Default: none.
   */
  onLockLost?: (error: Error, key: string) => void
  /**
   * How many replicas must acknowledge a lease before its write runs (Redis `WAIT`, behind the
   * acquire on the same connection). A lease they do not acknowledge within `replicaTimeout` is
   * given back and the write answered 503 (`FST_PRECONDITION_LOCK_UNAVAILABLE`). Default 0: no wait.
   */
  replicas?: number
  /** How long (ms) an acquisition waits for the replicas' acknowledgement. Default 1000. */
  replicaTimeout?: number
  /**
   * How long (ms) an acquire command waits for Redis' answer (besides `replicaTimeout`) before the
   * write is answered 503: a Cluster client stays `ready` while the primary of a key's slot is
   * dead, and retries for seconds. What the command may have taken is deleted behind it. Default
   * 1000.
   */
  commandTimeout?: number
}
