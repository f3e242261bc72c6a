import { performance } from 'node:perf_hooks'
import fc from 'fast-check'
import { test } from 'tap'
import { normalizeEtag, parseEntityTag, parseEntityTags } from '../lib/http/entity-tag.js'
import { evaluate, Outcome, type ConditionalHeaders, type Validators } from '../lib/http/evaluate.js'
import { formatHttpDate, parseHttpDate } from '../lib/http/http-date.js'
import { parsePreconditions } from '../lib/http/preconditions.js'

// Header-ish text: any UTF-16 code unit (lone surrogates and control characters included),
// full code points, and strings built from the characters the parsers branch on, which random
// unicode would rarely hit.
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))
const tricky = fc.constantFrom('"', 'W', '/', ',', ' ', '\t', '*', 'a', 'W/"', '""', '\u0000', '\u007f', '\u0080', '\u00ff', '\u0100',
  'Sun', 'Sunday', 'Wed', 'Nov', 'GMT', ':', '-', '0', '1', '9', '29', '60', '94', '1994', 'Feb', ', ')
const anyText = fc.oneof(
  fc.string({ unit: codeUnit, maxLength: 60 }),
  fc.string({ unit: 'binary', maxLength: 60 }),
  fc.string({ unit: tricky, maxLength: 40 })
)
const fieldValue = fc.oneof(anyText, fc.array(anyText, { maxLength: 3 }))
const headersArb: fc.Arbitrary<ConditionalHeaders> = fc.record({
  'if-match': fieldValue,
  'if-none-match': fieldValue,
  'if-modified-since': fieldValue,
  'if-unmodified-since': fieldValue,
  'if-range': fieldValue,
  range: fieldValue
}, { requiredKeys: [] })
const time = fc.oneof(
  fc.date({ noInvalidDate: false }),
  fc.integer({ min: -8.64e15, max: 8.64e15 }),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, 0.5)
)
const validatorsArb: fc.Arbitrary<Validators | null> = fc.oneof(
  fc.constant(null),
  fc.record({ etag: anyText, lastModified: time }, { requiredKeys: [] })
)
const methodArb = fc.oneof(fc.constantFrom('GET', 'HEAD', 'PUT', 'POST', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'), anyText)
const outcomes = new Set<number>(Object.values(Outcome))

// An entity-tag as RFC 9110 §8.8.3 defines it: [ "W/" ] DQUOTE *etagc DQUOTE,
// etagc = %x21 / %x23-7E / obs-text, so commas included.
const etagc = fc.oneof(
  fc.integer({ min: 0x23, max: 0x7e }),
  fc.constant(0x21),
  fc.constant(0x2c),
  fc.integer({ min: 0x80, max: 0xff })
).map((c) => String.fromCharCode(c))
const entityTag = fc.tuple(fc.boolean(), fc.string({ unit: etagc, maxLength: 12 }))
  .map(([weak, opaque]) => `${weak ? 'W/' : ''}"${opaque}"`)
const ows = fc.string({ unit: fc.constantFrom(' ', '\t'), maxLength: 3 })

const VALID_TAG = /^(W\/)?"[\x21\x23-\x7e\x80-\xff]*"$/

test('parseEntityTags never throws and returns only valid tags found in its input', async (t) => {
  fc.assert(fc.property(anyText, (value) => {
    const parsed = parseEntityTags(value)
    if (parsed === '*') return value.trim() === '*'
    return parsed.every((tag) => VALID_TAG.test(tag) && value.includes(tag))
  }), { numRuns: 3000 })
  t.pass('3000 inputs')
})

test('parseEntityTag and parseHttpDate never throw', async (t) => {
  fc.assert(fc.property(anyText, fc.oneof(fc.double(), fc.integer()), (value, now) => {
    const tag = parseEntityTag(value)
    const seconds = parseHttpDate(value, now)
    return (tag === null || VALID_TAG.test(tag)) && (Number.isNaN(seconds) || Number.isFinite(seconds))
  }), { numRuns: 3000 })
  t.pass('3000 inputs')
})

test('evaluate and parsePreconditions never throw, and evaluate returns an Outcome', async (t) => {
  fc.assert(fc.property(methodArb, headersArb, validatorsArb, (method, headers, current) => {
    parsePreconditions(headers)
    return outcomes.has(evaluate(method, headers, current))
  }), { numRuns: 3000 })
  t.pass('3000 requests')
})

test('fail closed: a write with If-Match proceeds only when the header holds * or the current tag', async (t) => {
  // Checked against the raw header text, not the parser: a valid member appears in it verbatim.
  const ifMatch = fc.oneof(anyText, fc.array(fc.oneof(entityTag, anyText), { maxLength: 4 }).map((parts) => parts.join(', ')))
  fc.assert(fc.property(fc.constantFrom('PUT', 'PATCH', 'DELETE', 'POST'), ifMatch, fc.oneof(entityTag, anyText), (method, value, etag) => {
    const outcome = evaluate(method, { 'if-match': value }, { etag })
    if (outcome !== Outcome.PROCEED) return true
    const current = normalizeEtag(etag)
    return value.trim() === '*' || (!current.startsWith('W/') && value.includes(current))
  }), { numRuns: 3000 })
  t.pass('3000 writes')
})

test('parse(serialise(tags)) gives the tags back, commas inside them included', async (t) => {
  const list = fc.array(fc.tuple(ows, entityTag, ows, fc.boolean()), { minLength: 1, maxLength: 20 })
  fc.assert(fc.property(list, (members) => {
    const tags = members.map(([, tag]) => tag)
    // OWS around each member, and now and then an empty list element (§5.6.1.2).
    const value = members.map(([before, tag, after, empty]) => `${before}${tag}${after}${empty ? ',' : ''}`).join(',')
    const parsed = parseEntityTags(value)
    return parsed !== '*' && parsed.length === tags.length && parsed.every((tag, i) => tag === tags[i])
  }), { numRuns: 2000 })
  t.pass('2000 lists')
})

test('formatHttpDate then parseHttpDate gives back the whole second', async (t) => {
  // 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z, the years IMF-fixdate's four digits can carry.
  const seconds = fc.integer({ min: -62167219200, max: 253402300799 })
  fc.assert(fc.property(seconds, fc.integer({ min: 0, max: 999 }), (s, ms) => {
    return parseHttpDate(formatHttpDate(s * 1000 + ms)) === s && parseHttpDate(formatHttpDate(new Date(s * 1000))) === s
  }), { numRuns: 3000 })
  t.pass('3000 instants from year 0 to 9999')
})

test('rfc850-date and asctime-date, written independently, parse to the same second', async (t) => {
  const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  const pad = (n: number, width = 2) => String(n).padStart(width, '0')
  const now = Date.UTC(2025, 5, 1) / 1000
  // Within 49 years either side of now, a two-digit year names exactly one year.
  const span = 49 * 365 * 86400
  fc.assert(fc.property(fc.integer({ min: now - span, max: now + span }), (s) => {
    const d = new Date(s * 1000)
    const clock = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`
    const rfc850 = `${DAYS[d.getUTCDay()]}, ${pad(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${pad(d.getUTCFullYear() % 100)} ${clock} GMT`
    const asctime = `${DAYS[d.getUTCDay()].slice(0, 3)} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${clock} ${d.getUTCFullYear()}`
    return parseHttpDate(rfc850, now) === s && parseHttpDate(asctime, now) === s
  }), { numRuns: 2000 })
  t.pass('2000 instants')
})

// A string stand-in that counts every character the parser reads. parseEntityTags touches its
// input only through length, charCodeAt and slice, so the count is its work, exactly, with no
// clock involved: linear means a bounded number of reads per character, whatever the input.
class CountingString {
  reads = 0
  readonly length: number
  private readonly value: string
  constructor (value: string) {
    this.value = value
    this.length = value.length
  }

  charCodeAt (i: number): number { this.reads++; return this.value.charCodeAt(i) }
  slice (start: number, end?: number): string {
    const part = this.value.slice(start, end)
    this.reads += part.length
    return part
  }
}

function readsPerCharacter (value: string): number {
  const counting = new CountingString(value)
  parseEntityTags(counting as unknown as string)
  return counting.reads / Math.max(1, value.length)
}

test('parseEntityTags reads each character a bounded number of times (linear work)', async (t) => {
  const n = 20000
  const shapes: Record<string, (n: number) => string> = {
    'valid tags': (n) => Array.from({ length: n }, (_, i) => `"tag${i}"`).join(', '),
    'weak tags with commas': (n) => Array.from({ length: n }, (_, i) => `W/"a,${i}"`).join(','),
    'stars in a list': (n) => '*, '.repeat(n),
    'stars without commas': (n) => '* '.repeat(n),
    'whitespace, then a star': (n) => ' '.repeat(n) + '*',
    'a star, whitespace, then a letter': (n) => '*' + ' '.repeat(n) + 'x',
    'unterminated tag': (n) => '"' + 'a'.repeat(n),
    'one long tag': (n) => '"' + 'a'.repeat(n) + '"',
    'one long tag with a bad last character': (n) => '"' + 'a'.repeat(n) + ' "',
    'invalid members': (n) => '"a b,'.repeat(n),
    'tags without commas': (n) => '"a" '.repeat(n),
    'weak prefixes': (n) => 'W/'.repeat(n),
    quotes: (n) => '"'.repeat(n),
    commas: (n) => ','.repeat(n),
    'empty tags': (n) => '""'.repeat(n)
  }
  for (const [name, make] of Object.entries(shapes)) {
    const small = readsPerCharacter(make(n / 4))
    const large = readsPerCharacter(make(n))
    t.ok(large <= 4, `${name}: ${large.toFixed(2)} reads per character`)
    t.ok(large <= small + 0.01, `${name}: no more reads per character at 4x the size (${small.toFixed(3)} -> ${large.toFixed(3)})`)
  }
  fc.assert(fc.property(fc.string({ unit: tricky, minLength: 1, maxLength: 2000 }), (value) => readsPerCharacter(value) <= 4), { numRuns: 500 })
})

test('20,000-member lists parse and evaluate correctly', async (t) => {
  const n = 20000
  const tags = Array.from({ length: n }, (_, i) => `"v${i},x"`)
  const value = tags.join(', ')
  const parsed = parseEntityTags(value)
  t.equal(parsed.length, n)
  t.same(parsed, tags)
  t.equal(evaluate('PUT', { 'if-match': value }, { etag: `"v${n - 1},x"` }), Outcome.PROCEED, 'the last member matches')
  t.equal(evaluate('PUT', { 'if-match': value }, { etag: '"nope"' }), Outcome.IF_MATCH_MISMATCH)
  t.equal(evaluate('GET', { 'if-none-match': value }, { etag: `W/"v${n - 1},x"` }), Outcome.NOT_MODIFIED)
  t.equal(evaluate('PUT', { 'if-match': 'junk, '.repeat(n) }, { etag: '"v1"' }), Outcome.IF_MATCH_INVALID)
})

test('evaluation time grows linearly with the list (n vs 8n, equal work per sample)', async (t) => {
  // Each sample does the same amount of linear work at both sizes (8 runs of n members against
  // 1 run of 8n), so both are equally exposed to a busy machine, and the best sample of each is
  // compared: linear work gives a ratio near 1, quadratic work near 8.
  const list = (n: number) => Array.from({ length: n }, (_, i) => `W/"t${i},a"`).join(', ')
  const small = list(2500)
  const large = list(20000)
  const current = { etag: '"absent"' }
  function best (value: string, runs: number): number {
    let min = Infinity
    for (let sample = 0; sample < 15; sample++) {
      const start = performance.now()
      for (let k = 0; k < runs; k++) evaluate('PUT', { 'if-match': value, 'if-none-match': value }, current)
      min = Math.min(min, performance.now() - start)
    }
    return min
  }
  best(small, 8) // warm up the JIT
  best(large, 1)
  const ratio = best(large, 1) / best(small, 8)
  t.ok(ratio < 4, `time(8n) / (8 x time(n)) = ${ratio.toFixed(2)}`)
})
