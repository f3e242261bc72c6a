// The route plan (lib/route/plan.ts) as a table: for each `concurrency` option and each set of
// methods, which stages the route gets, in which hook, in which order.
import { test } from 'tap'
import { plan, type Plan } from '../lib/route/plan.js'

const validators = (): null => null

interface Row {
  name: string
  option: Record<string, unknown>
  method?: string | string[]
  headersSchema?: boolean
  /** `hook:stage`, in the order attached. */
  stages: string[]
  checkWrites?: Plan['checkWrites']
  recordCleansProblems?: boolean
}

const TABLE: Row[] = [
  {
    name: 'require alone',
    option: { require: 'if-match' },
    stages: ['preParsing:require', 'onSend:answer-headers']
  },
  {
    name: 'validators on a write: locked, checked by its gate',
    option: { validators },
    stages: ['preSerialization:write-validators', 'onSend:answer-headers', 'handler:gate'],
    checkWrites: 'skip'
  },
  {
    name: 'require and validators on a write',
    option: { require: 'if-match', validators },
    stages: ['preParsing:require', 'preSerialization:write-validators', 'onSend:answer-headers', 'handler:gate']
  },
  {
    name: 'validators, lock: false: checked in preHandler',
    option: { validators, lock: false },
    stages: ['preHandler:check', 'preSerialization:write-validators', 'onSend:answer-headers'],
    checkWrites: 'check'
  },
  {
    name: 'validators at stage onRequest: checked early, and again by the gate',
    option: { validators, stage: 'onRequest' },
    stages: ['onRequest:check', 'preSerialization:write-validators', 'onSend:answer-headers', 'handler:gate'],
    checkWrites: 'early'
  },
  {
    name: 'validators on a read: checked in preHandler, no gate, no write validators',
    option: { validators },
    method: 'GET',
    stages: ['preHandler:check', 'onSend:answer-headers']
  },
  {
    name: 'validators on GET and PUT: reads checked in the hook, writes by the gate',
    option: { validators },
    method: ['GET', 'PUT'],
    stages: ['preHandler:check', 'preSerialization:write-validators', 'onSend:answer-headers', 'handler:gate'],
    checkWrites: 'skip'
  },
  {
    name: 'a headers schema keeps the conditional headers first',
    option: { validators, stage: 'onRequest' },
    headersSchema: true,
    stages: ['onRequest:keep-headers', 'onRequest:check', 'preSerialization:write-validators', 'onSend:answer-headers', 'handler:gate']
  },
  {
    name: 'a headers schema without validators or lock keeps nothing',
    option: { require: 'if-match' },
    headersSchema: true,
    stages: ['preParsing:require', 'onSend:answer-headers']
  },
  {
    name: 'lock alone',
    option: { lock: true },
    stages: ['onSend:answer-headers', 'handler:gate']
  },
  {
    name: 'idempotency alone: the record hook cleans problems, no answer-headers hook',
    option: { idempotency: true },
    method: 'POST',
    stages: ['preParsing:read-key', 'onSend:record', 'handler:claim'],
    recordCleansProblems: true
  },
  {
    name: 'idempotency with route headers keeps the answer-headers hook',
    option: { idempotency: true, headers: { 'cache-control': 'no-store' } },
    method: 'POST',
    stages: ['preParsing:read-key', 'onSend:answer-headers', 'onSend:record', 'handler:claim'],
    recordCleansProblems: false
  },
  {
    name: 'idempotency and require: the key is read before the 428, whose problem the record hook cleans',
    option: { idempotency: true, require: 'if-match' },
    method: 'PATCH',
    stages: ['preParsing:read-key', 'preParsing:require', 'onSend:record', 'handler:claim'],
    recordCleansProblems: true
  },
  {
    name: 'idempotency, validators, lock: claim outside the gate, the handler marked inside',
    option: { idempotency: true, validators, require: 'if-match' },
    stages: ['preParsing:read-key', 'preParsing:require', 'preSerialization:write-validators', 'onSend:answer-headers', 'onSend:record',
      'handler:mark-run', 'handler:gate', 'handler:claim'],
    checkWrites: 'skip'
  },
  {
    name: 'idempotency, validators, no lock: keyed writes checked after the claim',
    option: { idempotency: true, validators, lock: false },
    stages: ['preParsing:read-key', 'preHandler:check', 'preSerialization:write-validators', 'onSend:answer-headers', 'onSend:record',
      'handler:mark-run', 'handler:check-in-handler', 'handler:claim'],
    checkWrites: 'check'
  },
  {
    name: 'idempotency and lock, no validators',
    option: { idempotency: true, lock: true },
    stages: ['preParsing:read-key', 'onSend:answer-headers', 'onSend:record', 'handler:mark-run', 'handler:gate', 'handler:claim']
  },
  {
    name: 'idempotency on a read route: the stages are attached, and pass reads through',
    option: { idempotency: true, validators },
    method: 'GET',
    stages: ['preParsing:read-key', 'preHandler:check', 'onSend:answer-headers', 'onSend:record', 'handler:mark-run', 'handler:claim']
  },
  {
    name: 'idempotency: false is no idempotency',
    option: { idempotency: false, require: 'if-match' },
    stages: ['preParsing:require', 'onSend:answer-headers']
  }
]

test('the plan of each route, as a table', async (t) => {
  for (const row of TABLE) {
    const method = row.method ?? 'PUT'
    const made = plan(row.option, { method, url: '/items/:id', hasHeadersSchema: row.headersSchema === true })
    t.same(made.stages.map((stage) => `${stage.hook}:${stage.name}`), row.stages, row.name)
    if (row.checkWrites !== undefined) t.equal(made.checkWrites, row.checkWrites, `${row.name}: the check's writes`)
    if (row.recordCleansProblems !== undefined) t.equal(made.recordCleansProblems, row.recordCleansProblems, `${row.name}: record cleans problems`)
    t.equal(made.checkLeavesKeyed, made.policy.idempotency !== null, `${row.name}: the check leaves keyed writes exactly when the route is keyed`)
    t.equal(made.route, `${Array.isArray(method) ? method.join(',') : method} /items/:id`, `${row.name}: the route's name`)
  }
})

test('a bad option is refused with its code when the plan is made', async (t) => {
  t.throws(() => plan({ stage: 'onSend', validators }, { method: 'PUT', url: '/x', hasHeadersSchema: false }), { code: 'FST_PRECONDITION_INVALID_STAGE' })
  t.throws(() => plan({}, { method: 'PUT', url: '/x', hasHeadersSchema: false }), { code: 'FST_PRECONDITION_INVALID_CONCURRENCY', message: /^PUT \/x: / })
})

test('the order is one order: every hook\'s stages, and the handler wrappings, keep it', async (t) => {
  const order = ['keep-headers', 'read-key', 'require', 'check', 'write-validators', 'answer-headers', 'record', 'mark-run', 'check-in-handler', 'gate', 'claim']
  for (const row of TABLE) {
    const made = plan(row.option, { method: row.method ?? 'PUT', url: '/x', hasHeadersSchema: row.headersSchema === true })
    const positions = made.stages.map((stage) => order.indexOf(stage.name))
    t.same(positions, [...positions].sort((a, b) => a - b), `${row.name}: stages in the one order`)
  }
})
