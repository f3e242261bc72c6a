import { LockTimeoutError, LockUnavailableError } from '../errors.js'
import { neverAborted } from './signal.js'
import type { Lease, LockStore } from './types.js'

interface Waiter {
  resolve: (lease: Lease) => void
  reject: (error: Error) => void
  timer: NodeJS.Timeout | undefined
}

// One entry per held key. The entry is the lease: it is handed from owner to owner while waiters
// queue, and deleted when the last owner releases, so idle keys hold no memory.
class KeyLock implements Lease {
  readonly key: string
  readonly store: MemoryLockStore
  readonly token: number
  waiters: Waiter[] | null = null
  released = false

  constructor (key: string, store: MemoryLockStore, token: number) {
    this.key = key
    this.store = store
    this.token = token
  }

  get signal (): AbortSignal {
    return neverAborted
  }

  release (): void {
    if (this.released) return
    this.released = true
    this.store.handOver(this)
  }
}

/**
 * A keyed mutex for one process: first come, first served, waiters give up after `timeout`.
 * Fencing tokens come from one counter per store; leases are never lost, so `signal` never aborts.
 */
export class MemoryLockStore implements LockStore {
  readonly locks = new Map<string, KeyLock>()
  // One counter for every key: strictly increasing across keys, hence per key, with nothing kept
  // for a key nobody holds. 2^53 acquisitions would take centuries, so it stays a safe integer.
  private tokens = 0
  private closed = false

  /** How many keys are held now (for tests and monitoring). */
  get size (): number {
    return this.locks.size
  }

  acquire (key: string, timeout: number): Lease | Promise<Lease> {
    if (this.closed) return Promise.reject(new LockUnavailableError('the server is closing'))
    const held = this.locks.get(key)
    if (held === undefined) {
      const lock = new KeyLock(key, this, ++this.tokens)
      this.locks.set(key, lock)
      return lock
    }
    return new Promise<Lease>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, timer: undefined }
      if (held.waiters === null) held.waiters = []
      held.waiters.push(waiter)
      waiter.timer = setTimeout(() => {
        const waiters = this.locks.get(key)?.waiters
        /* c8 ignore next -- a waiter is always queued while its timer runs */
        const index = waiters === null || waiters === undefined ? -1 : waiters.indexOf(waiter)
        if (index !== -1) waiters!.splice(index, 1)
        reject(new LockTimeoutError(timeout, key))
      }, timeout)
    })
  }

  handOver (previous: KeyLock): void {
    const waiters = previous.waiters
    const next = waiters === null ? undefined : waiters.shift()
    if (next === undefined) {
      this.locks.delete(previous.key)
      return
    }
    clearTimeout(next.timer)
    const lock = new KeyLock(previous.key, this, ++this.tokens)
    lock.waiters = waiters
    this.locks.set(previous.key, lock)
    next.resolve(lock)
  }

  close (): void {
    this.closed = true
    for (const lock of this.locks.values()) {
      if (lock.waiters === null) continue
      for (const waiter of lock.waiters) {
        clearTimeout(waiter.timer)
        waiter.reject(new LockUnavailableError('the server is closing'))
      }
      lock.waiters = null
    }
  }
}
