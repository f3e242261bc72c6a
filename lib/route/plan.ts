// A route's `concurrency` option → its plan: which of the plugin's stages run on the route and in
// which hook, in the one order they are attached in. Pure: computed once per route when it is
// declared, from the checked policy and the route's methods; nothing here runs per request.
import { isSafe } from '../http/methods.js'
import { toPolicy, type Policy } from '../policy.js'

/** Where a stage goes: a hook of the route, or around its handler. */
export type StageHook = 'onRequest' | 'preParsing' | 'preHandler' | 'preSerialization' | 'onSend' | 'handler'

/**
 * The stages, each one job of one feature:
 * - `keep-headers` (preconditions): the conditional headers kept before a headers schema strips them;
 * - `read-key` (idempotency): the Idempotency-Key read, 400 when malformed or missing, body hashed;
 * - `require` (preconditions): 428 for a write without a required header;
 * - `check` (preconditions): the precondition check in the route's stage hook (304, 412);
 * - `write-validators` (preconditions): a write's new validators, before app-wide onSend hooks;
 * - `answer-headers` (preconditions): `headers` on 2xx/304, a write's validators if not set yet, problems cleaned;
 * - `record` (idempotency): the claimed request's answer stored, or its key released;
 * - `mark-run` (idempotency): the route's handler marked as called, where something sits between;
 * - `check-in-handler` (preconditions): a keyed write without a lock checked after its claim;
 * - `gate` (locks): the write gate, the lock and the check under it;
 * - `claim` (idempotency): the claim, before everything else around the handler.
 */
export type StageName = 'keep-headers' | 'read-key' | 'require' | 'check' | 'write-validators' | 'answer-headers' |
  'record' | 'mark-run' | 'check-in-handler' | 'gate' | 'claim'

export interface Stage {
  readonly name: StageName
  readonly hook: StageHook
}

export interface Plan {
  /** The route as the plugin names it: `PUT /items/:id`, `GET,HEAD /items/:id`. */
  readonly route: string
  readonly policy: Policy
  /** The stages, in the order they are attached (handler wrappings innermost first). */
  readonly stages: readonly Stage[]
  /**
   * What the `check` hook does with a write: check it; skip it (its gate checks it under the
   * lock); check it early, without the lock (its gate checks it again).
   */
  readonly checkWrites: 'check' | 'skip' | 'early'
  /** The `check` hook leaves writes carrying an Idempotency-Key to be checked after their claim. */
  readonly checkLeavesKeyed: boolean
  /** `record` also cleans problems of foreign ETags: the route has no `answer-headers` to do it. */
  readonly recordCleansProblems: boolean
}

/**
 * The order, written once. Each hook's stages run in this order after the route's own hooks of
 * that name; the handler wrappings are listed innermost first.
 * - keep-headers before a check at onRequest: it keeps what the check reads;
 * - read-key before require: a request carrying neither is told about the key;
 * - answer-headers before record: the answer is stored with the headers the others set;
 * - claim outermost: a stored answer is replayed, not checked again or made to wait for a lock.
 */
const ORDER: ReadonlyArray<StageName> = ['keep-headers', 'read-key', 'require', 'check', 'write-validators', 'answer-headers', 'record',
  'mark-run', 'check-in-handler', 'gate', 'claim']

const FIXED_HOOK: Record<Exclude<StageName, 'check'>, StageHook> = {
  'keep-headers': 'onRequest',
  'read-key': 'preParsing',
  require: 'preParsing',
  'write-validators': 'preSerialization',
  'answer-headers': 'onSend',
  record: 'onSend',
  'mark-run': 'handler',
  'check-in-handler': 'handler',
  gate: 'handler',
  claim: 'handler'
}

/** What plan() needs of a route's options. */
export interface RouteShape {
  method: string | string[]
  url: string
  /** The route declares a headers schema (which may strip the conditional headers). */
  hasHeadersSchema: boolean
}

/** The plan of a route whose policy is already checked. */
export function planFor (policy: Policy, shape: RouteShape): Plan {
  const methods = Array.isArray(shape.method) ? shape.method : [shape.method]
  const route = `${methods.join(',')} ${shape.url}`
  const writes = !methods.every(isSafe)
  const reads = methods.some(isSafe)
  const keyed = policy.idempotency !== null
  const guarded = policy.validators !== null || policy.lock
  const gated = policy.lock && writes
  const early = policy.stage === 'onRequest'
  // A route with `idempotency` alone needs of the answer's headers only the cleaning of problems:
  // the record hook does that, one hook stage fewer (about 2% of a POST).
  const recordCleansProblems = keyed && policy.validators === null && !policy.lock && policy.headers === null

  const present: Record<StageName, boolean> = {
    'keep-headers': guarded && shape.hasHeadersSchema,
    'read-key': keyed,
    require: policy.required !== null,
    // Reads, and writes without a lock, are checked in the stage's hook. A locked write is
    // checked by its gate, under the lock; with stage onRequest it is also checked early.
    check: policy.validators !== null && (!gated || early || reads),
    'write-validators': policy.validators !== null && writes,
    'answer-headers': !recordCleansProblems,
    record: keyed,
    'mark-run': keyed && guarded,
    'check-in-handler': keyed && policy.validators !== null && !gated && writes,
    gate: gated,
    claim: keyed
  }
  const stages: Stage[] = []
  for (const name of ORDER) {
    if (present[name]) stages.push({ name, hook: name === 'check' ? policy.stage : FIXED_HOOK[name] })
  }
  return {
    route,
    policy,
    stages,
    checkWrites: gated ? (early ? 'early' : 'skip') : 'check',
    checkLeavesKeyed: keyed,
    recordCleansProblems
  }
}

/** A route's `concurrency` option → its plan; throws `FST_PRECONDITION_INVALID_…` for a bad option. */
export function plan (option: unknown, shape: RouteShape): Plan {
  return planFor(toPolicy(option, `${String(shape.method)} ${shape.url}`), shape)
}
