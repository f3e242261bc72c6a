// concurrency.idempotency is checked when the route is declared.
import { test } from 'tap'
import { toIdempotencyPolicy } from '../lib/policy.js'

test('accepted forms', async (t) => {
  t.equal(toIdempotencyPolicy(false, 'POST /x'), null, 'false is off')
  t.same(toIdempotencyPolicy(true, 'POST /x'), { required: false, ttl: 86_400_000, scope: null, claim: 'lease' })
  t.same(toIdempotencyPolicy({}, 'POST /x'), { required: false, ttl: 86_400_000, scope: null, claim: 'lease' })
  const scope = () => 'u'
  t.same(toIdempotencyPolicy({ required: true, ttl: 60, scope }, 'POST /x'), { required: true, ttl: 60_000, scope, claim: 'lease' })
  t.equal(toIdempotencyPolicy({ claim: 'transaction' }, 'POST /x')?.claim, 'transaction')
  t.equal(toIdempotencyPolicy({ ttl: 0.25 }, 'POST /x')?.ttl, 250, 'fractions of a second')
  t.equal(toIdempotencyPolicy({ ttl: 365 * 86400 }, 'POST /x')?.ttl, 365 * 86_400_000, 'a year')
})

test('refused forms', async (t) => {
  const rows: Array<[string, unknown, RegExp]> = [
    ['a string', 'yes', /^POST \/x: concurrency.idempotency must be true or an object.*got "yes"$/],
    ['null', null, /must be true or an object/],
    ['an array', [], /must be true or an object/],
    ['an unknown key', { require: true }, /concurrency.idempotency.require is not an option; known: required, ttl, scope, claim/],
    ['claim something else', { claim: 'lock' }, /claim must be 'lease' or 'transaction'; got "lock"/],
    ['required a string', { required: 'yes' }, /required must be a boolean; got "yes"/],
    ['ttl 0', { ttl: 0 }, /ttl must be a number of seconds from 0.001 to 31536000; got 0/],
    ['ttl negative', { ttl: -1 }, /ttl must be a number/],
    ['ttl too long', { ttl: 365 * 86400 + 1 }, /ttl must be a number/],
    ['ttl NaN', { ttl: NaN }, /ttl must be a number/],
    ['ttl a string', { ttl: '60' }, /ttl must be a number/],
    ['scope a string', { scope: 'user' }, /scope must be a function/]
  ]
  for (const [name, option, message] of rows) {
    t.throws(() => toIdempotencyPolicy(option, 'POST /x'), { code: 'FST_PRECONDITION_INVALID_IDEMPOTENCY', message }, name)
  }
})
