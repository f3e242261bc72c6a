// Idempotency-Key parsing, one row per case: an RFC 8941 sf-string or a bare token, 1–255
// visible characters. Expected keys are written by hand, not computed by the code under test.
import { test } from 'tap'
import { MAX_KEY_LENGTH, parseIdempotencyKey } from '../lib/idempotency/key.js'

const long = 'k'.repeat(255)

const rows: Array<[string, string | string[] | undefined, string | 'missing' | 'invalid']> = [
  ['absent', undefined, 'missing'],
  ['empty', '', 'invalid'],
  ['only spaces', '   ', 'invalid'],
  ['a quoted string', '"abc"', 'abc'],
  ['a bare token', 'abc', 'abc'],
  ['a bare UUID', '8e03978e-40d5-43e8-bc93-6894a57f9324', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
  ['a quoted UUID', '"8e03978e-40d5-43e8-bc93-6894a57f9324"', '8e03978e-40d5-43e8-bc93-6894a57f9324'],
  ['surrounding whitespace', ' \t"abc" ', 'abc'],
  ['surrounding whitespace, bare', '\tabc ', 'abc'],
  ['an escaped quote', '"a\\"b"', 'a"b'],
  ['an escaped backslash', '"a\\\\b"', 'a\\b'],
  ['a bad escape', '"a\\nb"', 'invalid'],
  ['an escape at the end', '"ab\\', 'invalid'],
  ['an escaped closing quote', '"ab\\"', 'invalid'],
  ['an empty string', '""', 'invalid'],
  ['no closing quote', '"abc', 'invalid'],
  ['a lone quote', '"', 'invalid'],
  ['text after the string', '"abc"x', 'invalid'],
  ['a parameter after the string', '"abc";a=1', 'invalid'],
  ['two strings joined by Node', '"a", "b"', 'invalid'],
  ['two tokens joined by Node', 'a, b', 'invalid'],
  ['a field given as an array', ['a', 'b'], 'invalid'],
  ['a space inside a string', '"a b"', 'invalid'],
  ['a tab inside a string', '"a\tb"', 'invalid'],
  ['a space inside a token', 'a b', 'invalid'],
  ['a quote inside a token', 'a"b', 'invalid'],
  ['a comma in a token', 'a,b', 'invalid'],
  ['a semicolon in a token', 'a;b', 'invalid'],
  ['token chars', "!#$%&'*+-.^_`|~:/09AZaz", "!#$%&'*+-.^_`|~:/09AZaz"],
  ['visible chars in a string', '"(a,b;c=d){}[]@<>?=,"', '(a,b;c=d){}[]@<>?=,'],
  ['non-ASCII in a string', '"café"', 'invalid'],
  ['non-ASCII in a token', 'café', 'invalid'],
  ['a control char in a string', '"a\u0001b"', 'invalid'],
  ['DEL in a string', '"a\u007fb"', 'invalid'],
  ['255 chars, bare', long, long],
  ['255 chars, quoted', `"${long}"`, long],
  ['256 chars, bare', long + 'k', 'invalid'],
  ['256 chars, quoted', `"${long}k"`, 'invalid'],
  ['256 chars, quoted, no closing quote', `"${long}k`, 'invalid'],
  ['255 chars with an escape, quoted', `"${'k'.repeat(254)}\\""`, 'k'.repeat(254) + '"']
]

test('parseIdempotencyKey', async (t) => {
  t.equal(MAX_KEY_LENGTH, 255)
  for (const [name, value, expected] of rows) {
    const parsed = parseIdempotencyKey(value)
    if (expected === 'missing' || expected === 'invalid') t.same(parsed, { ok: false, reason: expected }, name)
    else t.same(parsed, { ok: true, key: expected }, name)
  }
})

test('long input is refused without reading it all', async (t) => {
  const huge = '"' + 'k'.repeat(1_000_000) + '"'
  const started = process.hrtime.bigint()
  t.same(parseIdempotencyKey(huge), { ok: false, reason: 'invalid' })
  t.ok(process.hrtime.bigint() - started < 50_000_000n, 'stops at the 256th character')
})
