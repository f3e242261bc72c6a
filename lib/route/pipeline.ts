// Attaches a route plan's stages to the route, in the plan's order: each stage is built by its
// feature, and what crosses features is handed in here.
import type { RouteOptions } from 'fastify'
import { claimHandler, carriesKey, markRun, readKeyHook, recordHook, type IdempotencyState } from '../idempotency/stages.js'
import { routeKey } from '../locks/resource-key.js'
import type { LockStore } from '../locks/types.js'
import { gateHandler } from '../locks/write-gate.js'
import { afterWriteStage, answerHeadersHook, writeValidatorsHook, type AfterWrite } from '../preconditions/answer.js'
import { checkHook, checkInHandler, keepConditionalHeaders } from '../preconditions/check.js'
import { requireHook } from '../preconditions/require.js'
import { dropForeignProblemEtag, type ProblemWriter } from '../problem.js'
import { appendHook } from '../shared.js'
import type { Plan, StageName } from './plan.js'

/** What the stages need of the plugin. */
export interface Runtime {
  readonly problems: ProblemWriter
  readonly weakIfMatch: boolean
  readonly lockStore: LockStore
  readonly lockTimeout: number
  /** The Idempotency-Key runtime, made on first use: most apps have no route with idempotency. */
  idempotency: () => IdempotencyState
}

type Handler = RouteOptions['handler']
type Built = { hook: unknown } | { wrap: (handler: Handler) => Handler }

/** Attaches `plan`'s stages to `routeOptions` (its hook arrays and its handler). */
export function attach (routeOptions: RouteOptions, plan: Plan, runtime: Runtime): void {
  const { policy, route } = plan
  const { problems, weakIfMatch } = runtime
  const validators = policy.validators
  let afterWrite: AfterWrite | null = null
  const afterWriteOnce = (): AfterWrite => {
    if (afterWrite === null && validators !== null) afterWrite = afterWriteStage(validators, route)
    return afterWrite as AfterWrite
  }
  const check = (writes: Plan['checkWrites'], leaveKeyed: boolean) => checkHook({
    validators: validators as NonNullable<typeof validators>,
    route,
    problems,
    weakIfMatch,
    create: policy.create,
    writes,
    leave: leaveKeyed ? carriesKey : null
  })
  const hasWriteValidators = plan.stages.some((stage) => stage.name === 'write-validators')

  const build: Record<StageName, () => Built> = {
    'keep-headers': () => ({ hook: keepConditionalHeaders }),
    'read-key': () => ({ hook: readKeyHook(policy.idempotency!, runtime.idempotency(), routeOptions.url, route, plan.stages.some((stage) => stage.name === 'mark-run')) }),
    require: () => ({ hook: requireHook(policy.required!, route, problems) }),
    check: () => ({ hook: check(plan.checkWrites, plan.checkLeavesKeyed) }),
    'write-validators': () => ({ hook: writeValidatorsHook(afterWriteOnce()) }),
    'answer-headers': () => ({ hook: answerHeadersHook(policy, route, hasWriteValidators ? afterWriteOnce() : null) }),
    record: () => ({ hook: recordHook(plan.recordCleansProblems ? dropForeignProblemEtag : null) }),
    'mark-run': () => ({ wrap: markRun }),
    'check-in-handler': () => ({ wrap: (handler) => checkInHandler(check('check', false), handler) }),
    gate: () => ({
      wrap: (handler) => gateHandler({
        route,
        store: runtime.lockStore,
        lockTimeout: runtime.lockTimeout,
        problems,
        validators,
        key: policy.key ?? routeKey(routeOptions.url),
        handler,
        weakIfMatch,
        create: policy.create
      })
    }),
    claim: () => ({ wrap: (handler) => claimHandler(policy.idempotency!, runtime.idempotency(), handler, route) })
  }

  for (const stage of plan.stages) {
    const built = build[stage.name]()
    if ('wrap' in built) routeOptions.handler = built.wrap(routeOptions.handler)
    else appendHook(routeOptions, stage.hook as Exclude<typeof stage.hook, 'handler'>, built.hook)
  }
}
