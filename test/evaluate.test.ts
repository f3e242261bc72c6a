import { test } from 'tap'
import { evaluate, Outcome, outcomeHeader, outcomeStatus, toWholeSeconds } from '../lib/http/evaluate.js'
import { hasUsablePrecondition, parsePreconditions } from '../lib/http/preconditions.js'
import { countCases, evaluationCases } from './helpers/rfc-cases.js'

test('the RFC 9110 table holds at least 150 cases', async (t) => {
  t.ok(countCases(evaluationCases) >= 150, `${countCases(evaluationCases)} cases`)
})

for (const group of evaluationCases) {
  test(group.section, async (t) => {
    for (const { name, method, headers, current, expected } of group.cases) {
      t.equal(evaluate(method, headers, current), Outcome[expected], `${method} ${JSON.stringify(headers)}: ${name} -> ${expected}`)
    }
  })
}

test('If-Match that is the current tag, character for character, proceeds only where a parse would', async (t) => {
  t.equal(evaluate('PUT', { 'if-match': '"v1"' }, { etag: '"v1"' }), Outcome.PROCEED, 'a strong tag')
  t.equal(evaluate('PUT', { 'if-match': 'W/"v1"' }, { etag: 'W/"v1"' }), Outcome.IF_MATCH_WEAK, 'a weak one never matches strongly')
  t.equal(evaluate('PUT', { 'if-match': 'W/"v1"' }, { etag: 'W/"v1"' }, true), Outcome.PROCEED, 'unless weakIfMatch')
  t.equal(evaluate('PUT', { 'if-match': 'v1' }, { etag: 'v1' }), Outcome.IF_MATCH_INVALID, 'a bare value is no entity-tag in the field')
  t.equal(evaluate('PUT', { 'if-match': '"a" "b"' }, { etag: '"a" "b"' }), Outcome.IF_MATCH_INVALID, 'nor two tags without a comma')
  t.equal(evaluate('PUT', { 'if-match': '"a", "b"' }, { etag: '"a", "b"' }), Outcome.IF_MATCH_MISMATCH, 'a list that reads as the current "tag" holds two other tags')
  t.equal(evaluate('PUT', { 'if-match': '"v1"', 'if-none-match': '"v1"' }, { etag: '"v1"' }), Outcome.IF_NONE_MATCH, 'If-None-Match is still evaluated after it')
})

test('evaluation leaves its inputs alone', async (t) => {
  const headers = { 'if-match': ['"a"', '"v1"'], range: 'bytes=0-1', 'if-range': '"x"' }
  const current = { etag: 'v1', lastModified: new Date(0) }
  evaluate('GET', headers, current)
  t.same(headers, { 'if-match': ['"a"', '"v1"'], range: 'bytes=0-1', 'if-range': '"x"' })
  t.same(current, { etag: 'v1', lastModified: new Date(0) })
})

test('outcomeStatus: proceed is 0, the not-modified outcomes 304, the failures 412', async (t) => {
  t.equal(outcomeStatus(Outcome.PROCEED), 0)
  t.equal(outcomeStatus(Outcome.IGNORE_RANGE), 0)
  for (const outcome of [Outcome.IF_MATCH_MISMATCH, Outcome.IF_MATCH_WEAK, Outcome.IF_MATCH_INVALID, Outcome.IF_MATCH_NONE,
    Outcome.IF_UNMODIFIED_SINCE, Outcome.IF_NONE_MATCH, Outcome.IF_NONE_MATCH_INVALID]) {
    t.equal(outcomeStatus(outcome), 412, `outcome ${outcome}`)
  }
  t.equal(outcomeStatus(Outcome.NOT_MODIFIED), 304)
  t.equal(outcomeStatus(Outcome.NOT_MODIFIED_SINCE), 304)
})

test('outcomeHeader names the header field each outcome is about', async (t) => {
  const expected: Array<[Outcome, string]> = [
    [Outcome.PROCEED, 'If-Match'],
    [Outcome.IGNORE_RANGE, 'If-Range'],
    [Outcome.IF_MATCH_MISMATCH, 'If-Match'],
    [Outcome.IF_MATCH_WEAK, 'If-Match'],
    [Outcome.IF_MATCH_INVALID, 'If-Match'],
    [Outcome.IF_MATCH_NONE, 'If-Match'],
    [Outcome.IF_UNMODIFIED_SINCE, 'If-Unmodified-Since'],
    [Outcome.IF_NONE_MATCH, 'If-None-Match'],
    [Outcome.IF_NONE_MATCH_INVALID, 'If-None-Match'],
    [Outcome.NOT_MODIFIED, 'If-None-Match'],
    [Outcome.NOT_MODIFIED_SINCE, 'If-Modified-Since']
  ]
  for (const [outcome, header] of expected) t.equal(outcomeHeader(outcome), header, `outcome ${outcome}`)
})

test('toWholeSeconds truncates to the second, towards the past', async (t) => {
  t.ok(Number.isNaN(toWholeSeconds(undefined)))
  t.equal(toWholeSeconds(0), 0)
  t.equal(toWholeSeconds(999), 0)
  t.equal(toWholeSeconds(1000), 1)
  t.equal(toWholeSeconds(new Date(1999)), 1)
  t.equal(toWholeSeconds(-1), -1, 'a millisecond before the epoch is in the second before it')
  t.equal(toWholeSeconds(-1000), -1)
  t.ok(Number.isNaN(toWholeSeconds(new Date(Number.NaN))))
  t.equal(toWholeSeconds('Thu, 01 Jan 1970 00:00:01 GMT'), 1, 'an HTTP-date string')
  t.equal(toWholeSeconds('1970-01-01T00:00:01.999Z'), 1, 'an ISO 8601 string')
  t.ok(Number.isNaN(toWholeSeconds('yesterday')))
})

test('an invalid Date as lastModified never makes a date precondition fail or answer 304', async (t) => {
  const current = { lastModified: new Date(Number.NaN) }
  t.equal(evaluate('PUT', { 'if-unmodified-since': 'Sun, 06 Nov 1994 08:49:37 GMT' }, current), Outcome.PROCEED)
  t.equal(evaluate('GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 GMT' }, current), Outcome.PROCEED)
})

// request.preconditions: the same headers, parsed for a handler that compares by itself.
test('parsePreconditions: absent headers are null', async (t) => {
  t.same(parsePreconditions({}), { ifMatch: null, ifNoneMatch: null, ifModifiedSince: null, ifUnmodifiedSince: null, ifRange: null })
})

test('parsePreconditions: entity-tag lists, dates and If-Range', async (t) => {
  const lm = new Date(Date.UTC(1994, 10, 6, 8, 49, 37))
  t.same(parsePreconditions({
    'if-match': '"a", W/"b", "c,d"',
    'if-none-match': '*',
    'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 GMT',
    'if-unmodified-since': 'Sunday, 06-Nov-94 08:49:37 GMT',
    'if-range': '"a"'
  }), { ifMatch: ['"a"', 'W/"b"', '"c,d"'], ifNoneMatch: '*', ifModifiedSince: lm, ifUnmodifiedSince: lm, ifRange: { etag: '"a"' } })
  t.same(parsePreconditions({ 'if-match': ['"a"', '"b"'], 'if-none-match': ['W/"x"'] }).ifMatch, ['"a"', '"b"'], 'a repeated field')
  t.same(parsePreconditions({ 'if-match': '', 'if-none-match': 'junk' }), {
    ifMatch: [], ifNoneMatch: [], ifModifiedSince: null, ifUnmodifiedSince: null, ifRange: null
  }, 'present without a valid member: an empty list, not null')
  t.same(parsePreconditions({ 'if-modified-since': 'yesterday', 'if-unmodified-since': ['Sun, 06 Nov 1994 08:49:37 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT'] }), {
    ifMatch: null, ifNoneMatch: null, ifModifiedSince: null, ifUnmodifiedSince: null, ifRange: null
  }, 'an invalid date and a list of dates are null')
  t.same(parsePreconditions({ 'if-unmodified-since': ['Sun Nov  6 08:49:37 1994'] }).ifUnmodifiedSince, lm, 'asctime, given as an array')
})

test('parsePreconditions: If-Range is one entity-tag or one date (§13.1.5)', async (t) => {
  const wednesday = new Date(Date.UTC(2015, 9, 21, 7, 28, 0))
  const cases: Array<[string | string[], unknown]> = [
    ['"a"', { etag: '"a"' }],
    ['W/"a"', { etag: 'W/"a"' }],
    [' "a" ', { etag: '"a"' }],
    ['"a,b"', { etag: '"a,b"' }],
    [['"a"'], { etag: '"a"' }],
    ['Wed, 21 Oct 2015 07:28:00 GMT', { date: wednesday }],
    ['Wednesday, 21-Oct-15 07:28:00 GMT', { date: wednesday }],
    ['Wed Oct 21 07:28:00 2015', { date: wednesday }],
    ['"a",', null],
    ['"a", "b"', null],
    [['"a"', '"b"'], null],
    ['"a', null],
    ['*', null],
    ['', null],
    ['garbage', null],
    ['Wed, 31 Feb 2015 07:28:00 GMT', null]
  ]
  for (const [value, expected] of cases) t.same(parsePreconditions({ 'if-range': value }).ifRange, expected, JSON.stringify(value))
})

test('hasUsablePrecondition: a listed header counts when present, a date only when valid', async (t) => {
  const date = 'Sun, 06 Nov 1994 08:49:37 GMT'
  t.equal(hasUsablePrecondition({}, ['if-match']), false, 'nothing sent')
  t.equal(hasUsablePrecondition({}, []), false, 'nothing required')
  t.equal(hasUsablePrecondition({ 'if-match': '"a"' }, ['if-match']), true)
  t.equal(hasUsablePrecondition({ 'if-match': '' }, ['if-match']), true, 'a malformed If-Match counts: evaluation answers it 412')
  t.equal(hasUsablePrecondition({ 'if-none-match': '*' }, ['if-match']), false, 'a header not listed')
  t.equal(hasUsablePrecondition({ 'if-none-match': '*' }, ['if-match', 'if-none-match']), true, 'the second listed header')
  t.equal(hasUsablePrecondition({ 'if-unmodified-since': date }, ['if-unmodified-since']), true, 'a valid date')
  t.equal(hasUsablePrecondition({ 'if-unmodified-since': [date] }, ['if-unmodified-since']), true, 'a valid date as an array')
  t.equal(hasUsablePrecondition({ 'if-unmodified-since': 'yesterday' }, ['if-unmodified-since']), false, 'an invalid date')
  t.equal(hasUsablePrecondition({ 'if-unmodified-since': [date, date] }, ['if-unmodified-since']), false, 'a list of dates')
  t.equal(hasUsablePrecondition({ 'if-unmodified-since': 'yesterday', 'if-match': '"a"' }, ['if-unmodified-since', 'if-match']), true,
    'an invalid date, then a listed tag')
  t.equal(hasUsablePrecondition({ 'if-modified-since': date }, ['if-unmodified-since']), false, 'If-Modified-Since is not If-Unmodified-Since')
})
