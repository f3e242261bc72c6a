import { test } from 'tap'
import {
  anyStrongMatch, anyWeakMatch, isEntityTagStart, normalizeEtag, parseEntityTag, parseEntityTags, strongCompare, weakCompare,
  type EntityTagCondition
} from '../lib/http/entity-tag.js'

test('RFC 9110 §8.8.3 / §13.1.1: parseEntityTags', async (t) => {
  const cases: Array<[string, EntityTagCondition, string]> = [
    ['"a"', ['"a"'], 'one strong tag'],
    ['W/"a"', ['W/"a"'], 'one weak tag'],
    ['""', ['""'], 'the empty opaque-tag'],
    ['W/""', ['W/""'], 'the empty weak tag'],
    ['"a,b"', ['"a,b"'], 'a comma is an etagc'],
    ['",,"', ['",,"'], 'commas only'],
    ['"a,b", "c"', ['"a,b"', '"c"'], 'a tag with a comma, then another'],
    ['"a", "b,c", W/"d,e"', ['"a"', '"b,c"', 'W/"d,e"'], 'a list with commas inside tags'],
    ['"a","b"', ['"a"', '"b"'], 'no OWS'],
    ['  "a"  ,  "b"  ', ['"a"', '"b"'], 'spaces'],
    ['\t"a"\t,\t"b"\t', ['"a"', '"b"'], 'tabs'],
    [',,"a",,,"b",,', ['"a"', '"b"'], 'empty list elements'],
    ['"a", W/"a"', ['"a"', 'W/"a"'], 'the same opaque-tag strong and weak'],
    ['"!#~"', ['"!#~"'], 'the edges of etagc: %x21, %x23, %x7E'],
    ['"\u0080\u00ff"', ['"\u0080\u00ff"'], 'obs-text'],
    ['"W/a"', ['"W/a"'], 'W/ inside the quotes'],
    ['*', '*', 'a star'],
    [' \t* \t', '*', 'a star with OWS'],
    ['', [], 'empty'],
    ['  ', [], 'whitespace'],
    [',', [], 'a comma'],
    ['a', [], 'unquoted'],
    ['"', [], 'a lone quote'],
    ['"a', [], 'no closing quote'],
    ['a"', [], 'no opening quote'],
    ['"a"b', [], 'text after the closing quote'],
    ['"a" b', [], 'a word after the tag'],
    ['"a" "b"', [], 'two tags without a comma'],
    ['"a b"', [], 'SP inside'],
    ['"a\tb"', [], 'HTAB inside'],
    ['"a\u007fb"', [], 'DEL inside'],
    ['"a\u0000b"', [], 'NUL inside'],
    ['"a\u0100b"', [], 'a code unit above obs-text'],
    ['"\ud83d\ude00"', [], 'an emoji'],
    ['W/', [], 'a weak prefix alone'],
    ['W', [], 'a W alone'],
    ['W/a', [], 'a weak prefix on an unquoted tag'],
    ['w/"a"', [], 'a lower-case weak prefix'],
    ['W"a"', [], 'W without the slash'],
    ['/"a"', [], 'a slash without the W'],
    ['**', [], 'two stars'],
    ['*,', [], 'a star and a comma'],
    [',*', [], 'a comma and a star'],
    ['*, *', [], 'two star members'],
    ['*a', [], 'a star and a letter'],
    ['"a", *', ['"a"'], 'a star inside a list is dropped'],
    ['*, "a"', ['"a"'], 'a star before a tag is dropped'],
    ['* "a", "b"', ['"b"'], 'a star with a tag after it is dropped up to the comma'],
    ['junk, "a"', ['"a"'], 'garbage before a valid tag'],
    ['"a", junk', ['"a"'], 'garbage after a valid tag'],
    ['"a b, "c"', ['"c"'], 'an invalid member is dropped at the next comma'],
    ['"a"x, "b"', ['"b"'], 'an invalid tail is dropped at the next comma'],
    ['"a', [], 'unterminated at the end'],
    ['"a, "b"', [], 'an unterminated tag swallows the rest'],
    ['"a",\u0000"b"', ['"a"'], 'a NUL before a member'],
    ['"a",W/"b" ,"c"', ['"a"', 'W/"b"', '"c"'], 'mixed']
  ]
  for (const [value, expected, why] of cases) t.same(parseEntityTags(value), expected, `${JSON.stringify(value)}: ${why}`)
})

test('parseEntityTags keeps one valid tag as the very string given', async (t) => {
  const value = '"abc"'
  const tags = parseEntityTags(value)
  t.same(tags, [value])
})

test('parseEntityTag: If-Range holds exactly one entity-tag (§13.1.5)', async (t) => {
  const cases: Array<[string, string | null]> = [
    ['"a"', '"a"'],
    ['W/"a"', 'W/"a"'],
    [' "a" ', '"a"'],
    ['"a,b"', '"a,b"'],
    ['"a",', null],
    [',"a"', null],
    ['"a", "b"', null],
    ['*', null],
    ['', null],
    ['a', null],
    ['"a" b', null]
  ]
  for (const [value, expected] of cases) t.equal(parseEntityTag(value), expected, JSON.stringify(value))
})

test('isEntityTagStart tells a tag from a date that begins with W', async (t) => {
  t.equal(isEntityTagStart('"a"'), true)
  t.equal(isEntityTagStart('W/"a"'), true)
  t.equal(isEntityTagStart('W/"'), true)
  t.equal(isEntityTagStart('Wed, 21 Oct 2015 07:28:00 GMT'), false)
  t.equal(isEntityTagStart('Wednesday, 21-Oct-15 07:28:00 GMT'), false)
  t.equal(isEntityTagStart('W/a'), false)
  t.equal(isEntityTagStart('W'), false)
  t.equal(isEntityTagStart(''), false)
  t.equal(isEntityTagStart('*'), false)
})

test('RFC 9110 §8.8.3.2: the comparison table', async (t) => {
  // ETag 1  ETag 2  Strong Comparison  Weak Comparison
  // W/"1"   W/"1"   no match           match
  // W/"1"   W/"2"   no match           no match
  // W/"1"   "1"     no match           match
  // "1"     "1"     match              match
  const table: Array<[string, string, boolean, boolean]> = [
    ['W/"1"', 'W/"1"', false, true],
    ['W/"1"', 'W/"2"', false, false],
    ['W/"1"', '"1"', false, true],
    ['"1"', '"1"', true, true]
  ]
  for (const [a, b, strong, weak] of table) {
    t.equal(strongCompare(a, b), strong, `strong ${a} ${b}`)
    t.equal(strongCompare(b, a), strong, `strong ${b} ${a}`)
    t.equal(weakCompare(a, b), weak, `weak ${a} ${b}`)
    t.equal(weakCompare(b, a), weak, `weak ${b} ${a}`)
  }
})

test('comparison beyond the table', async (t) => {
  t.equal(strongCompare('"1"', '"2"'), false)
  t.equal(weakCompare('"1"', '"2"'), false)
  t.equal(weakCompare('W/"1"', '"12"'), false, 'lengths differ')
  t.equal(weakCompare('"12"', 'W/"1"'), false, 'lengths differ the other way')
  t.equal(weakCompare('W/"ab"', '"ac"'), false, 'same length, different opaque-tag')
  t.equal(weakCompare('"a"', 'W/"A"'), false, 'case-sensitive')
  t.equal(strongCompare('"a"', '"A"'), false, 'case-sensitive')
  t.equal(weakCompare('"W/1"', '"1"'), false, 'W/ inside the quotes is opaque')
  t.equal(weakCompare('"a,b"', 'W/"a,b"'), true, 'commas inside')
})

test('anyStrongMatch and anyWeakMatch', async (t) => {
  t.equal(anyStrongMatch([], '"a"'), false)
  t.equal(anyStrongMatch(['"x"', '"a"'], '"a"'), true)
  t.equal(anyStrongMatch(['W/"a"'], '"a"'), false)
  t.equal(anyStrongMatch(['"a"'], 'W/"a"'), false)
  t.equal(anyWeakMatch([], '"a"'), false)
  t.equal(anyWeakMatch(['"x"', 'W/"a"'], '"a"'), true)
  t.equal(anyWeakMatch(['"x"', '"y"'], '"a"'), false)
})

test('normalizeEtag quotes a bare validator tag and keeps a quoted one', async (t) => {
  const cases: Array<[string, string]> = [
    ['"a"', '"a"'],
    ['W/"a"', 'W/"a"'],
    ['""', '""'],
    ['a', '"a"'],
    ['v42', '"v42"'],
    ['', '""'],
    ['W1', '"W1"'],
    ['"', '"""'],
    ['a,b', '"a,b"']
  ]
  for (const [value, expected] of cases) t.equal(normalizeEtag(value), expected, JSON.stringify(value))
  t.equal(strongCompare(normalizeEtag('W1'), '"W1"'), true, 'a bare tag starting with W is strong')
})
