// The write lifecycle of a locked route: take the resource's lock, check the preconditions under
// it, run the handler, give the lock back. One small state machine per write request:
//
//   ACQUIRING ── lease ──▶ CHECKING ── holds, client here, lease held (the gate) ──▶ RUNNING
//       │                     │                                                      │
//       │ store failed: 503   │ 412 · validators or key threw · client gone ·        │ handler over
//       │ client gone         │ lease lost: 503                                      ▼
//       │                     ▼                                                     DONE
//       └───────────────▶ RELEASED ◀──────────── response closed ────────────────────┘
//                              ▲
//                              └─ RUNNING, handler over after the response closed
//
// - The lease is given back once, on entering RELEASED, and every path ends there.
// - RUNNING is entered only from CHECKING through `enter`, the one gate before the handler: it
//   runs only while this request holds a lease that is not known lost and its client is there.
// - The whole lifecycle runs in place of the route's handler, that is after the body was read
//   and after every preValidation/preHandler hook (auth): a client that stalls its body or is
//   refused by a hook never holds a resource.
// - A client that leaves is seen from its response's 'close', on HTTP/1.1 and HTTP/2 alike, and
//   before listening from the stream or response state, since 'close' may have fired already.
// - Each acquisition is traced on the `fastify-precondition:lock` diagnostics channel, and each
//   release of a lease published on `fastify-precondition:lock:release` (lib/observe.ts), when
//   they have subscribers.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import { ProblemCode } from '../errors.js'
import { evaluate, Outcome, type Validators } from '../http/evaluate.js'
import { isSafe } from '../http/methods.js'
import { checkValidators } from '../http/validators.js'
import { lockReleaseChannel, publishLockRelease, publishPrecondition, traceLockAcquire } from '../observe.js'
import type { ProblemWriter } from '../problem.js'
import { clientGone, isThenable, orReply } from '../shared.js'
import { conditionalHeaders, stateOf } from '../slots.js'
import { neverAborted } from './signal.js'
import type { Lease, LockStore, RequestLock } from './types.js'

export const GateState = {
  /** Waiting for the store to hand over the resource's lease. */
  ACQUIRING: 0,
  /** Holds the lease; reading validators and evaluating preconditions. */
  CHECKING: 1,
  /** The handler runs under the lease. */
  RUNNING: 2,
  /** The handler is over; the response has not closed yet. */
  DONE: 3,
  /** The lease was given back, or never taken. Final. */
  RELEASED: 4
} as const
// eslint-disable-next-line @typescript-eslint/no-redeclare -- a value and its type, one name
export type GateState = typeof GateState[keyof typeof GateState]

type AnyValidators = (request: FastifyRequest) => unknown

/** What every write to one route shares, built when the route is declared. */
export interface RouteGate {
  readonly route: string
  readonly store: LockStore
  readonly lockTimeout: number
  readonly problems: ProblemWriter
  readonly validators: AnyValidators | null
  readonly key: (request: FastifyRequest) => string
  readonly handler: RouteHandlerMethod
  /** If-Match compares weakly (the plugin option `weakIfMatch`). */
  readonly weakIfMatch: boolean
  /** A PUT may create the resource (the route option `create`). */
  readonly create: boolean
}

/** `request.lock`: the signal is read from the lease only when asked for. */
class HeldLock implements RequestLock {
  readonly key: string
  readonly token: number
  private readonly lease: Lease

  constructor (key: string, lease: Lease) {
    this.key = key
    this.token = lease.token
    this.lease = lease
  }

  get signal (): AbortSignal {
    return this.lease.signal ?? neverAborted
  }
}

export class WriteGate {
  state: GateState = GateState.ACQUIRING
  /** The response has closed: finished, or its client is gone. */
  closed = false
  /** The response passed onSend. */
  answered = false
  /** A synchronous handler returned without a promise: it is over once it has answered. */
  awaitingAnswer = false
  /** The store reported the lease lost. */
  lost = false
  lease: Lease | null = null
  /** The lease as it was handed over, kept after its release for `request.lock`. */
  private granted: Lease | null = null
  private held: RequestLock | null = null
  /** When the lease arrived (performance.now()), if its release is to be published; else -1. */
  acquiredAt = -1
  readonly instance: FastifyInstance
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly key: string
  readonly gate: RouteGate

  constructor (instance: FastifyInstance, request: FastifyRequest, reply: FastifyReply, key: string, gate: RouteGate) {
    this.instance = instance
    this.request = request
    this.reply = reply
    this.key = key
    this.gate = gate
  }

  /** The store handed over the lease. Returns what the handler returned, if it ran. */
  acquired (lease: Lease): unknown {
    this.lease = lease
    if (lockReleaseChannel.hasSubscribers) this.acquiredAt = performance.now()
    // Reports a loss found later, during the handler or at release, through the request's logger:
    // by `onLost` where the store has it (its signal is then made only if the handler reads it),
    // else by listening on the signal. (A store written before leases had signals hands none.)
    if (typeof lease.onLost === 'function') {
      lease.onLost(this)
    } else {
      const signal = lease.signal
      if (signal !== neverAborted && signal !== undefined) signal.addEventListener('abort', this, { once: true })
    }
    if (this.closed) {
      this.release()
      return undefined
    }
    this.state = GateState.CHECKING
    // `request.lock` from now, before the validators run: they can read the fence the write will
    // be checked against.
    this.granted = lease
    const validators = this.gate.validators
    if (validators === null) return this.enter()
    let current
    try {
      current = validators(this.request)
    } catch (error) {
      this.release()
      throw error
    }
    if (isThenable(current)) {
      return current.then((value) => orReply(this.decide(value), this.reply), (error: unknown) => {
        this.release()
        throw error
      })
    }
    return this.decide(current)
  }

  /**
   * The store could not hand over the lease: 503, unless nobody is there to hear it.
   * Like every path that answers, it returns the reply, which Fastify then waits on.
   */
  failed (error: unknown): FastifyReply | undefined {
    this.state = GateState.RELEASED
    if (this.closed) return undefined
    const request = this.request
    const timeout = (error as { code?: unknown } | null)?.code === ProblemCode.LOCK_TIMEOUT
    const code = timeout ? ProblemCode.LOCK_TIMEOUT : ProblemCode.LOCK_UNAVAILABLE
    // Once per 503, at warn and without a stack: a busy resource or a store that is down is the
    // state of the service, not a bug, and a stack per refused write would flood the log.
    request.log.warn({ code, key: this.key, route: this.gate.route, reason: error instanceof Error ? error.message : String(error) },
      timeout
        ? 'fastify-precondition: the lock on this resource stayed held past lockTimeout; answering 503'
        : 'fastify-precondition: the lock store failed; answering 503')
    this.gate.problems.sendLockProblem(this.reply, code, request.url)
    return this.reply
  }

  private decide (value: unknown): unknown {
    // The client left while the validators were read: the lease went with it.
    if (this.state !== GateState.CHECKING) return undefined
    let current: Validators | null
    try {
      current = checkValidators(value, this.gate.route)
    } catch (error) {
      this.release()
      throw error
    }
    const outcome = evaluate(this.request.method, conditionalHeaders(this.request), current, this.gate.weakIfMatch, this.gate.create)
    publishPrecondition(this.request, this.gate.route, outcome === Outcome.PROCEED ? 'proceed' : 'failed')
    if (outcome === Outcome.PROCEED) return this.enter()
    this.release()
    const etag = current?.etag
    this.gate.problems.sendFailed(this.reply, outcome, this.request.url, etag as string | undefined)
    return this.reply
  }

  /** The gate: the handler runs only from CHECKING, with the client there and the lease held. */
  private enter (): unknown {
    const lease = this.lease as Lease
    // (Not CHECKING or the client gone already ended in RELEASED before here.) A signal that
    // aborted before the gate listened never told it: it is reported here.
    if (!this.lost && typeof lease.onLost !== 'function' && lease.signal?.aborted === true) this.leaseLost(lease.signal.reason as Error)
    if (this.lost) {
      this.release()
      this.gate.problems.sendLockProblem(this.reply, ProblemCode.LOCK_UNAVAILABLE, this.request.url)
      return this.reply
    }
    this.state = GateState.RUNNING
    let result
    try {
      result = this.gate.handler.call(this.instance, this.request, this.reply)
    } catch (error) {
      this.over()
      throw error
    }
    if (isThenable(result)) {
      // An async handler is over when its promise settles; `return reply` settles when the
      // response has ended. Fastify watches the same promise for the answer.
      const over = (): void => { this.over() }
      result.then(over, over)
    } else if (this.answered) {
      this.over()
    } else {
      // A sync handler answers on return or later, from a callback: over once it has answered.
      this.awaitingAnswer = true
    }
    return result
  }

  /** `request.lock`: made when first read, null until the lease arrived. */
  requestLock (): RequestLock | null {
    if (this.held === null && this.granted !== null) this.held = new HeldLock(this.key, this.granted)
    return this.held
  }

  /** onSend: the answer is on its way. */
  answer (): void {
    this.answered = true
    if (this.awaitingAnswer) {
      this.awaitingAnswer = false
      this.over()
    }
  }

  /** Called once, from RUNNING: the handler's throw, its promise, its answer, or its hijacked end. */
  private over (): void {
    this.state = GateState.DONE
    if (this.closed) this.release()
  }

  /** The response closed: finished, or the client is gone. */
  close (): void {
    this.closed = true
    const state = this.state
    if (state === GateState.CHECKING || state === GateState.DONE) {
      this.release()
    } else if (state === GateState.RUNNING && this.awaitingAnswer && this.reply.raw.writableEnded) {
      // A hijacked reply that a synchronous handler wrote and ended itself.
      this.awaitingAnswer = false
      this.over()
    }
    // ACQUIRING: released when the lease arrives. RUNNING: when the handler is over.
  }

  release (): void {
    this.state = GateState.RELEASED
    const lease = this.lease
    if (lease === null) return
    this.lease = null
    // Published once the store has taken the lease back, so that a loss found at release counts.
    const heldMs = this.acquiredAt < 0 ? -1 : performance.now() - this.acquiredAt
    let released
    try {
      released = lease.release()
    } catch (error) {
      this.releaseFailed(error)
    }
    if (!isThenable(released)) {
      if (heldMs >= 0) this.publishRelease(lease, heldMs)
    } else if (heldMs < 0) {
      released.then(undefined, (error: unknown) => this.releaseFailed(error))
    } else {
      released.then(() => this.publishRelease(lease, heldMs), (error: unknown) => {
        this.releaseFailed(error)
        this.publishRelease(lease, heldMs)
      })
    }
  }

  private publishRelease (lease: Lease, heldMs: number): void {
    publishLockRelease(this.request, this.key, lease.token, heldMs, this.lost)
  }

  private releaseFailed (error: unknown): void {
    this.request.log.warn({ err: error, key: this.key }, 'fastify-precondition: releasing a lock failed; it expires with its lease')
  }

  /** The lease's signal aborted: another writer may have written meanwhile. */
  handleEvent (event: Event): void {
    this.leaseLost((event.target as AbortSignal).reason as Error)
  }

  /** The store found the lease lost (`Lease.onLost`, or the signal through `handleEvent`). */
  leaseLost (reason: Error): void {
    this.lost = true
    this.request.log.error({
      err: reason,
      code: ProblemCode.LOCK_LOST,
      key: this.key,
      route: this.gate.route
    }, 'fastify-precondition: the lock on this resource was lost while the write held it; another write may have run meanwhile')
  }
}

/**
 * The route's handler, wrapped in the write lifecycle. Safe methods of the same route go straight
 * to the handler: they take no lock.
 */
export function gateHandler (gate: RouteGate): RouteHandlerMethod {
  const { store, lockTimeout, handler } = gate
  return function gatedHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
    if (isSafe(request.method)) return handler.call(this, request, reply)
    const raw = reply.raw
    // Gone before its turn (its 'close' may have fired already): no lock, no handler.
    if (clientGone(raw)) return undefined
    // A key() that throws is the route's bug: a 500 through Fastify's error path.
    const write = new WriteGate(this, request, reply, gate.key(request), gate)
    stateOf(request).gate = write
    // A closure, not a property on the response: Node's own objects keep their shape.
    raw.on('close', () => { write.close() })
    let lease: Lease | Promise<Lease>
    try {
      lease = traceLockAcquire(store, request, write.key, lockTimeout)
    } catch (error) {
      return write.failed(error)
    }
    if (!isThenable<Lease>(lease)) return write.acquired(lease)
    return lease.then((held) => orReply(write.acquired(held), reply), (error: unknown) => write.failed(error))
  }
}
