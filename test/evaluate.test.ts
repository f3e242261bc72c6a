import { test } from 'tap'
import { evaluate, Outcome, outcomeHeader, outcomeStatus, toWholeSeconds } from '../lib/evaluate.js'
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
})

test('an invalid Date as lastModified never makes a date precondition fail or answer 304', async (t) => {
  const current = { lastModified: new Date(Number.NaN) }
  t.equal(evaluate('PUT', { 'if-unmodified-since': 'Sun, 06 Nov 1994 08:49:37 GMT' }, current), Outcome.PROCEED)
  t.equal(evaluate('GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 GMT' }, current), Outcome.PROCEED)
})
