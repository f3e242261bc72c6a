// Precondition cases written from RFC 9110 §13 (and the sections it leans on), one row each.
// Every expected outcome is read off the RFC text quoted in the group's comment, by hand: none
// is computed by the code under test. `expected` names a member of Outcome.
import type { ConditionalHeaders, Outcome, Validators } from '../../lib/http/evaluate.js'

type OutcomeName = {
  [K in keyof typeof Outcome]: K
}[keyof typeof Outcome]

export interface EvaluationCase {
  name: string
  method: string
  headers: ConditionalHeaders
  current: Validators | null
  expected: OutcomeName
}

export interface CaseGroup {
  section: string
  cases: EvaluationCase[]
}

function row (expected: OutcomeName, method: string, headers: ConditionalHeaders, current: Validators | null, name: string): EvaluationCase {
  return { name, method, headers, current, expected }
}

// The RFC's own example instant, Sunday 6 November 1994 08:49:37 UTC, in the three formats of
// §5.6.7, and one second either side of it. The rfc850 forms carry the year as "94", which
// reads as 1994 until late 2044 (a later "now" would place 2094 within 50 years).
export const LM = new Date(Date.UTC(1994, 10, 6, 8, 49, 37))
export const IMF = 'Sun, 06 Nov 1994 08:49:37 GMT'
export const RFC850 = 'Sunday, 06-Nov-94 08:49:37 GMT'
export const ASCTIME = 'Sun Nov  6 08:49:37 1994'
const IMF_BEFORE = 'Sun, 06 Nov 1994 08:49:36 GMT'
const IMF_AFTER = 'Sun, 06 Nov 1994 08:49:38 GMT'
const RFC850_BEFORE = 'Sunday, 06-Nov-94 08:49:36 GMT'
const RFC850_AFTER = 'Sunday, 06-Nov-94 08:49:38 GMT'
const ASCTIME_BEFORE = 'Sun Nov  6 08:49:36 1994'
const ASCTIME_AFTER = 'Sun Nov  6 08:49:38 1994'
// A Wednesday, whose day name begins with the same "W" as a weak entity-tag.
const LM_WED = new Date(Date.UTC(2015, 9, 21, 7, 28, 0))
const IMF_WED = 'Wed, 21 Oct 2015 07:28:00 GMT'
const RFC850_WED = 'Wednesday, 21-Oct-15 07:28:00 GMT'
const ASCTIME_WED = 'Wed Oct 21 07:28:00 2015'

const V1 = { etag: '"v1"', lastModified: LM }
const WEAK_V1 = { etag: 'W/"v1"', lastModified: LM }
const ETAG_ONLY = { etag: '"v1"' }
const DATE_ONLY = { lastModified: LM }
const NOTHING = {}
const EPOCH = { lastModified: new Date(0) }
const RANGE = 'bytes=0-99'

export const evaluationCases: CaseGroup[] = [
  {
    // "An origin server MUST use the strong comparison function when comparing entity tags for
    // If-Match"; "If the field value is "*", the condition is false if the origin server does
    // not have a current representation"; "If the field value is a list of entity tags, the
    // condition is true if any of the listed tags match the entity tag of the selected
    // representation"; a false condition MUST NOT perform the method (412).
    section: 'RFC 9110 §13.1.1 If-Match',
    cases: [
      row('PROCEED', 'PUT', { 'if-match': '"v1"' }, V1, 'the current strong tag'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"v2"' }, V1, 'another tag'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"V1"' }, V1, 'opaque-tags compare case-sensitively'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"v10"' }, V1, 'a longer tag with the current one as prefix'),
      row('PROCEED', 'PUT', { 'if-match': '*' }, V1, '* with a current representation'),
      row('PROCEED', 'PUT', { 'if-match': '*' }, NOTHING, '* when the representation has no validators at all'),
      row('PROCEED', 'PUT', { 'if-match': '  *  ' }, V1, '* surrounded by whitespace'),
      row('PROCEED', 'PUT', { 'if-match': '"a", "b", "v1"' }, V1, 'a list whose last member matches'),
      row('PROCEED', 'PUT', { 'if-match': '"v1", "a", "b"' }, V1, 'a list whose first member matches'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"a", "b", "c"' }, V1, 'a list with no match'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"v1"' }, V1, 'a weak request tag never matches strongly'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': '"v1"' }, WEAK_V1, 'a weak current tag never matches strongly'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"v1"' }, WEAK_V1, 'two identical weak tags still fail strong comparison'),
      row('PROCEED', 'PUT', { 'if-match': 'W/"v1", "v1"' }, V1, 'a list where a strong member matches after a weak one'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': '"x", W/"v1"' }, V1, 'a list whose only near-match is weak'),
      row('PROCEED', 'PUT', { 'if-match': '"a,b"' }, { etag: '"a,b"' }, 'a tag containing a comma'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"a,b"' }, { etag: '"a"' }, 'a tag containing a comma is one tag, not two'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"a", "b"' }, { etag: '"a,b"' }, 'two tags are not one tag with a comma'),
      row('PROCEED', 'PUT', { 'if-match': '"x,1", "y,2", "z,3"' }, { etag: '"y,2"' }, 'a list of tags that all contain commas'),
      row('PROCEED', 'PUT', { 'if-match': '",,,"' }, { etag: '",,,"' }, 'a tag made of commas'),
      row('PROCEED', 'PUT', { 'if-match': '"a","v1"' }, V1, 'no whitespace after the comma'),
      row('PROCEED', 'PUT', { 'if-match': '\t"a" ,\t"v1"\t' }, V1, 'tabs and spaces as OWS'),
      row('PROCEED', 'PUT', { 'if-match': ', ,"v1",,' }, V1, 'empty list elements (§5.6.1.2)'),
      row('PROCEED', 'PUT', { 'if-match': ['"a"', '"v1"'] }, V1, 'a repeated field, the second line matching (§5.3)'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': ['"a"', '"b"'] }, V1, 'a repeated field with no match'),
      row('PROCEED', 'PUT', { 'if-match': ['"v1"'] }, V1, 'a field given once, as an array'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '*, "x"' }, V1, '* inside a list is invalid and does not mean "any"'),
      row('PROCEED', 'PUT', { 'if-match': ['*', '"v1"'] }, V1, 'a repeated * is dropped, the valid tag still counts'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"v1"' }, DATE_ONLY, 'no current entity-tag to match'),
      row('IF_MATCH_NONE', 'PUT', { 'if-match': '*' }, null, '* without a current representation'),
      row('IF_MATCH_NONE', 'PUT', { 'if-match': '"v1"' }, null, 'a tag without a current representation'),
      row('IF_MATCH_MISMATCH', 'GET', { 'if-match': '"v2"' }, V1, 'evaluated on GET too, answered 412'),
      row('PROCEED', 'DELETE', { 'if-match': '"v1"' }, V1, 'DELETE with the current tag'),
      row('IF_MATCH_MISMATCH', 'PATCH', { 'if-match': '"v0"' }, V1, 'PATCH with a stale tag'),
      row('IF_MATCH_WEAK', 'POST', { 'if-match': 'W/"v1"' }, V1, 'POST with a weak tag'),
      row('PROCEED', 'PUT', { 'if-match': '"v1"' }, { etag: 'v1' }, 'a bare validator etag is quoted before comparing'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"v1"' }, { etag: 'v1' }, 'a bare validator etag is strong'),
      row('PROCEED', 'PUT', { 'if-match': '"caf\u00e9"' }, { etag: '"caf\u00e9"' }, 'obs-text in an opaque-tag'),
      row('PROCEED', 'PUT', { 'if-match': '""' }, { etag: '""' }, 'the empty opaque-tag is a valid tag'),
      row('PROCEED', 'PUT', { 'if-match': '"W/v1"' }, { etag: '"W/v1"' }, 'W/ inside the quotes is part of a strong opaque-tag')
    ]
  },
  {
    // If-Match = "*" / #entity-tag. An If-Match without a valid member cannot evaluate true, so
    // the method is not performed: invalid members are dropped, and none left means 412.
    section: 'RFC 9110 §13.1.1 If-Match with invalid members (fail closed)',
    cases: [
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '' }, V1, 'empty'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '   ' }, V1, 'whitespace only'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'v1' }, V1, 'unquoted, even though it spells the current tag'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"v1' }, V1, 'no closing quote'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'v1"' }, V1, 'no opening quote'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': "'v1'" }, V1, 'single quotes'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '%%%' }, V1, 'garbage'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"v 1"' }, { etag: '"v 1"' }, 'a space is not an etagc'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"a"b' }, V1, 'text after the closing quote'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"a" "v1"' }, V1, 'two tags without a comma'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': ', ,' }, V1, 'only empty list elements'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '**' }, V1, 'two stars'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '*,' }, V1, 'a star followed by a comma'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'W/' }, V1, 'a weak prefix alone'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'W/v1' }, V1, 'a weak prefix on an unquoted tag'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'w/"v1"' }, V1, 'the weak prefix is case-sensitive (%s"W/")'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'W /"v1"' }, V1, 'a space inside the weak prefix'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"v1"\u0000' }, V1, 'a NUL after the tag'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"v\u007f1"' }, V1, 'DEL inside the tag'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': '"v\u20ac1"' }, V1, 'a character above obs-text inside the tag'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': ['', ''] }, V1, 'a repeated empty field'),
      row('IF_MATCH_INVALID', 'GET', { 'if-match': 'v1' }, V1, 'invalid on GET as well'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'v1' }, null, 'invalid and no current representation'),
      row('PROCEED', 'PUT', { 'if-match': 'junk, "v1"' }, V1, 'an invalid member is dropped, a valid one still matches'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': 'junk, "a"' }, V1, 'an invalid member is dropped, the valid one does not match'),
      row('PROCEED', 'PUT', { 'if-match': '"v 1", "v1"' }, V1, 'a member with a space is dropped at its own comma')
    ]
  },
  {
    // "A recipient MUST use the weak comparison function when comparing entity tags for
    // If-None-Match"; "*": false if a current representation exists; a list: false if one of
    // the listed tags matches. False: 304 for GET or HEAD, 412 for all other methods.
    section: 'RFC 9110 §13.1.2 If-None-Match',
    cases: [
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"v1"' }, V1, 'GET with the current tag'),
      row('NOT_MODIFIED', 'HEAD', { 'if-none-match': '"v1"' }, V1, 'HEAD with the current tag'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': 'W/"v1"' }, V1, 'a weak request tag matches weakly'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"v1"' }, WEAK_V1, 'a weak current tag matches weakly'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': 'W/"v1"' }, WEAK_V1, 'two weak tags match weakly'),
      row('PROCEED', 'GET', { 'if-none-match': '"v2"' }, V1, 'GET with another tag'),
      row('PROCEED', 'GET', { 'if-none-match': 'W/"V1"' }, V1, 'weak comparison is still case-sensitive'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"a", W/"v1"' }, V1, 'a list with a weak match'),
      row('PROCEED', 'GET', { 'if-none-match': '"a", "b"' }, V1, 'a list with no match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '*' }, V1, '* on GET when a representation exists'),
      row('NOT_MODIFIED', 'HEAD', { 'if-none-match': '*' }, NOTHING, '* on HEAD when a representation without validators exists'),
      row('IF_NONE_MATCH', 'PUT', { 'if-none-match': '*' }, V1, '* on PUT when a representation exists'),
      row('PROCEED', 'PUT', { 'if-none-match': '*' }, null, '* on PUT creates when none exists'),
      row('IF_NONE_MATCH', 'POST', { 'if-none-match': '*' }, V1, '* on POST when a representation exists'),
      row('IF_NONE_MATCH', 'PUT', { 'if-none-match': '"v1"' }, V1, 'PUT with the current tag'),
      row('IF_NONE_MATCH', 'DELETE', { 'if-none-match': 'W/"v1"' }, V1, 'DELETE with a weakly matching tag'),
      row('IF_NONE_MATCH', 'PATCH', { 'if-none-match': '"x", "v1"' }, V1, 'PATCH with a list that matches'),
      row('PROCEED', 'PUT', { 'if-none-match': '"v2"' }, V1, 'PUT with another tag'),
      row('PROCEED', 'PUT', { 'if-none-match': '"v1"' }, null, 'PUT with a tag when nothing exists'),
      row('PROCEED', 'GET', { 'if-none-match': '"v1"' }, DATE_ONLY, 'no current entity-tag to match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"a,b"' }, { etag: '"a,b"' }, 'a tag containing a comma'),
      row('PROCEED', 'GET', { 'if-none-match': '"a,b"' }, { etag: '"a"' }, 'a tag containing a comma is one tag'),
      row('PROCEED', 'GET', { 'if-none-match': '"a,b"' }, { etag: '"b"' }, 'its second half is not a tag either'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': ['"x"', 'W/"v1"'] }, V1, 'a repeated field'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': ' \t"x" , "v1" \t' }, V1, 'whitespace around members'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"v1"' }, { etag: 'v1' }, 'a bare validator etag is quoted'),
      row('PROCEED', 'GET', { 'if-none-match': '*, "x"' }, V1, '* inside a list does not mean "any"'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': 'junk, "v1"' }, V1, 'an invalid member is dropped, a valid one matches')
    ]
  },
  {
    // If-None-Match = "*" / #entity-tag. With no valid member there is nothing to compare: a
    // GET or HEAD loses nothing by ignoring it, a write is refused rather than done unguarded.
    section: 'RFC 9110 §13.1.2 If-None-Match with no valid member',
    cases: [
      row('PROCEED', 'GET', { 'if-none-match': '' }, V1, 'empty on GET is ignored'),
      row('PROCEED', 'HEAD', { 'if-none-match': '' }, V1, 'empty on HEAD is ignored'),
      row('PROCEED', 'GET', { 'if-none-match': 'v1' }, V1, 'unquoted on GET is ignored'),
      row('PROCEED', 'GET', { 'if-none-match': '"v1' }, V1, 'unterminated on GET is ignored'),
      row('IF_NONE_MATCH_INVALID', 'PUT', { 'if-none-match': '' }, V1, 'empty on PUT'),
      row('IF_NONE_MATCH_INVALID', 'PUT', { 'if-none-match': 'v1' }, V1, 'unquoted on PUT'),
      row('IF_NONE_MATCH_INVALID', 'PUT', { 'if-none-match': '**' }, null, 'garbage on PUT that would create'),
      row('IF_NONE_MATCH_INVALID', 'DELETE', { 'if-none-match': '%%' }, V1, 'garbage on DELETE'),
      row('IF_NONE_MATCH_INVALID', 'PATCH', { 'if-none-match': 'W/v1' }, V1, 'unquoted weak on PATCH'),
      row('IF_NONE_MATCH_INVALID', 'POST', { 'if-none-match': ', ,' }, V1, 'only empty elements on POST'),
      row('PROCEED', 'GET', { 'if-none-match': 'v1', 'if-modified-since': IMF }, V1, 'still present, so If-Modified-Since stays ignored (§13.1.3)')
    ]
  },
  {
    // "A recipient MUST ignore If-Modified-Since if the request contains an If-None-Match header
    // field"; "... if the received field value is not a valid HTTP-date, the field value has
    // more than one member, or if the request method is neither GET nor HEAD"; "... if the
    // resource does not have a modification date available". "If the selected
    // representation's last modification date is earlier or equal to the date provided in the
    // field value, the condition is false" (304).
    section: 'RFC 9110 §13.1.3 If-Modified-Since',
    cases: [
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, V1, 'the Last-Modified date itself'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF_AFTER }, V1, 'a second after Last-Modified'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF_BEFORE }, V1, 'a second before Last-Modified'),
      row('NOT_MODIFIED_SINCE', 'HEAD', { 'if-modified-since': IMF }, V1, 'HEAD'),
      row('PROCEED', 'HEAD', { 'if-modified-since': IMF_BEFORE }, V1, 'HEAD, modified since'),
      row('PROCEED', 'PUT', { 'if-modified-since': IMF }, V1, 'ignored on PUT'),
      row('PROCEED', 'POST', { 'if-modified-since': IMF_AFTER }, V1, 'ignored on POST'),
      row('PROCEED', 'DELETE', { 'if-modified-since': IMF }, V1, 'ignored on DELETE'),
      row('PROCEED', 'PATCH', { 'if-modified-since': IMF }, V1, 'ignored on PATCH'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': RFC850 }, V1, 'rfc850-date'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': ASCTIME }, V1, 'asctime-date'),
      row('PROCEED', 'GET', { 'if-modified-since': RFC850_BEFORE }, V1, 'rfc850-date a second before'),
      row('PROCEED', 'GET', { 'if-modified-since': ASCTIME_BEFORE }, V1, 'asctime-date a second before'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': RFC850_AFTER }, V1, 'rfc850-date a second after'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': ASCTIME_AFTER }, V1, 'asctime-date a second after'),
      row('PROCEED', 'GET', { 'if-modified-since': 'yesterday' }, V1, 'not an HTTP-date'),
      row('PROCEED', 'GET', { 'if-modified-since': `${IMF}, ${IMF}` }, V1, 'more than one member'),
      row('PROCEED', 'GET', { 'if-modified-since': [IMF, IMF] }, V1, 'a repeated field is more than one member'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': [IMF] }, V1, 'a single field given as an array'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF }, ETAG_ONLY, 'no modification date available'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF }, null, 'no representation at all'),
      row('PROCEED', 'GET', { 'if-none-match': '"v2"', 'if-modified-since': IMF_AFTER }, V1, 'ignored when If-None-Match is present'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"v1"', 'if-modified-since': IMF_BEFORE }, V1, 'If-None-Match decides, not the older date'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, { lastModified: new Date(LM.getTime() + 500) }, 'Last-Modified half a second past the date is the same second'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, { lastModified: new Date(LM.getTime() + 999) }, 'Last-Modified 999 ms past the date is the same second'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF }, { lastModified: new Date(LM.getTime() + 1000) }, 'Last-Modified a whole second past the date'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, { lastModified: LM.getTime() }, 'lastModified as milliseconds'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, { lastModified: LM.getTime() + 250 }, 'lastModified as milliseconds with a fraction of a second'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF_BEFORE }, { lastModified: LM.getTime() }, 'lastModified as milliseconds, modified since'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Fri, 01 Jan 2100 00:00:00 GMT' }, V1, 'a date in the future is still a date'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' }, V1, 'the epoch'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' }, EPOCH, 'Last-Modified at the epoch'),
      row('PROCEED', 'GET', { 'if-modified-since': 'sun, 06 nov 1994 08:49:37 gmt' }, V1, 'HTTP-date is case-sensitive'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 UTC' }, V1, 'UTC instead of GMT'),
      row('PROCEED', 'GET', { 'if-modified-since': '1994-11-06T08:49:37Z' }, V1, 'ISO 8601'),
      row('PROCEED', 'GET', { 'if-modified-since': '784111777' }, V1, 'seconds since the epoch')
    ]
  },
  {
    // "A recipient MUST ignore If-Unmodified-Since if the request contains an If-Match header
    // field"; "... if the received field value is not a valid HTTP-date (including when the
    // field value appears to be a list of dates)"; "... if the resource does not have a
    // modification date available". "If the selected representation's last modification date
    // is earlier than or equal to the date provided in the field value, the condition is
    // true"; otherwise false, and the method is not performed (412).
    section: 'RFC 9110 §13.1.4 If-Unmodified-Since',
    cases: [
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF }, V1, 'the Last-Modified date itself'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF_AFTER }, V1, 'a second after Last-Modified'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': IMF_BEFORE }, V1, 'a second before Last-Modified'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': RFC850_BEFORE }, V1, 'rfc850-date a second before'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': ASCTIME_BEFORE }, V1, 'asctime-date a second before'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': RFC850 }, V1, 'rfc850-date, same second'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': ASCTIME }, V1, 'asctime-date, same second'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': 'not a date' }, V1, 'not an HTTP-date'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': `${IMF_BEFORE}, ${IMF_BEFORE}` }, V1, 'a list of dates'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': [IMF_BEFORE, IMF_BEFORE] }, V1, 'a repeated field is a list of dates'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': [IMF_BEFORE] }, V1, 'a single field given as an array'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF_BEFORE }, ETAG_ONLY, 'no modification date available'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF_BEFORE }, null, 'no representation at all'),
      row('PROCEED', 'PUT', { 'if-match': '"v1"', 'if-unmodified-since': IMF_BEFORE }, V1, 'ignored when If-Match is present and true'),
      row('PROCEED', 'PUT', { 'if-match': '*', 'if-unmodified-since': IMF_BEFORE }, V1, 'ignored when If-Match: * is present'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'v1', 'if-unmodified-since': IMF_AFTER }, V1, 'an invalid If-Match is not rescued by a true date'),
      row('IF_UNMODIFIED_SINCE', 'GET', { 'if-unmodified-since': IMF_BEFORE }, V1, 'evaluated on GET too'),
      row('IF_UNMODIFIED_SINCE', 'HEAD', { 'if-unmodified-since': IMF_BEFORE }, V1, 'evaluated on HEAD too'),
      row('IF_UNMODIFIED_SINCE', 'DELETE', { 'if-unmodified-since': IMF_BEFORE }, V1, 'DELETE'),
      row('IF_UNMODIFIED_SINCE', 'PATCH', { 'if-unmodified-since': IMF_BEFORE }, V1, 'PATCH'),
      row('IF_UNMODIFIED_SINCE', 'POST', { 'if-unmodified-since': IMF_BEFORE }, V1, 'POST'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF }, { lastModified: new Date(LM.getTime() + 999) }, 'Last-Modified 999 ms past the date is the same second'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': IMF }, { lastModified: new Date(LM.getTime() + 1000) }, 'Last-Modified a whole second past the date'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF }, { lastModified: LM.getTime() + 999 }, 'lastModified as milliseconds, same second'),
      row('IF_UNMODIFIED_SINCE', 'PUT', { 'if-unmodified-since': IMF_BEFORE }, { lastModified: LM.getTime() }, 'lastModified as milliseconds, modified since'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': 'Sat, 31 Feb 1990 00:00:00 GMT' }, V1, '31 February is not a date'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': 'Thu, 29 Feb 1900 00:00:00 GMT' }, V1, '1900 was not a leap year')
    ]
  },
  {
    // If-Range "MUST be ignored" without Range; evaluated only for GET (§13.2.2 step 5). An
    // entity-tag holds if it "exactly matches the ETag field value ... using the strong
    // comparison function"; an HTTP-date holds if it "exactly matches the Last-Modified field
    // value" ("this comparison by exact match ... differs from the 'earlier than or equal to'
    // comparison"). Otherwise the server "MUST ignore the Range header field".
    section: 'RFC 9110 §13.1.5 If-Range',
    cases: [
      row('PROCEED', 'GET', { range: RANGE, 'if-range': '"v1"' }, V1, 'the current strong tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '"v2"' }, V1, 'another tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': 'W/"v1"' }, V1, 'a weak tag never holds'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '"v1"' }, WEAK_V1, 'a weak current tag never holds'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': 'W/"v1"' }, WEAK_V1, 'two weak tags do not hold'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': IMF }, V1, 'the exact Last-Modified date'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': RFC850 }, V1, 'the exact date as rfc850-date'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': ASCTIME }, V1, 'the exact date as asctime-date'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': IMF_AFTER }, V1, 'a later date is not an exact match'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': IMF_BEFORE }, V1, 'an earlier date is not an exact match'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': IMF }, { lastModified: new Date(LM.getTime() + 400) }, 'Last-Modified compared at whole seconds'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': IMF }, { lastModified: LM.getTime() }, 'lastModified as milliseconds'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': IMF }, ETAG_ONLY, 'a date without a Last-Modified'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '"v1"' }, DATE_ONLY, 'a tag without an ETag'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': IMF_WED }, { lastModified: LM_WED }, 'a Wednesday date, exact (not a weak tag)'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': RFC850_WED }, { lastModified: LM_WED }, 'a Wednesday rfc850-date, exact'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': ASCTIME_WED }, { lastModified: LM_WED }, 'a Wednesday asctime-date, exact'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': IMF_WED }, V1, 'a Wednesday date that does not match'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': 'garbage' }, V1, 'neither a tag nor a date'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '' }, V1, 'empty'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '*' }, V1, '* is not an entity-tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': 'v1' }, V1, 'an unquoted tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '"v1", "v2"' }, V1, 'a list is not one entity-tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': '"v1",' }, V1, 'a trailing comma is not one entity-tag'),
      row('IGNORE_RANGE', 'GET', { range: RANGE, 'if-range': ['"v1"', '"v1"'] }, V1, 'a repeated field is not one entity-tag'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': ['"v1"'] }, V1, 'a single field given as an array'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': ' "v1" ' }, V1, 'surrounding whitespace'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': '"v1"' }, { etag: 'v1' }, 'a bare validator etag is quoted'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': '"a,b"' }, { etag: '"a,b"' }, 'a tag containing a comma'),
      row('PROCEED', 'GET', { 'if-range': '"v2"' }, V1, 'ignored without Range'),
      row('PROCEED', 'GET', { range: RANGE }, V1, 'Range without If-Range'),
      row('PROCEED', 'HEAD', { range: RANGE, 'if-range': '"v2"' }, V1, 'not evaluated for HEAD'),
      row('PROCEED', 'PUT', { range: RANGE, 'if-range': '"v2"' }, V1, 'not evaluated for PUT')
    ]
  },
  {
    // "A server MUST ignore all received preconditions if its response to the same request
    // without those conditions ... would have been a status code other than a 2xx ... or 412":
    // with no current representation every method but PUT answers 404, so its preconditions
    // are ignored; PUT would create, so it evaluates them. "a server MUST ignore the
    // conditional request header fields defined by this specification when received with a
    // request method that does not involve the selection or modification of a selected
    // representation, such as CONNECT, OPTIONS, or TRACE."
    section: 'RFC 9110 §13.2.1 when to evaluate',
    cases: [
      row('PROCEED', 'GET', { 'if-match': '"v1"' }, null, 'GET of nothing with If-Match'),
      row('PROCEED', 'GET', { 'if-none-match': '*' }, null, 'GET of nothing with If-None-Match: *'),
      row('PROCEED', 'HEAD', { 'if-match': '*' }, null, 'HEAD of nothing with If-Match: *'),
      row('PROCEED', 'DELETE', { 'if-match': '"v1"' }, null, 'DELETE of nothing with If-Match'),
      row('PROCEED', 'DELETE', { 'if-match': '' }, null, 'DELETE of nothing with an invalid If-Match'),
      row('PROCEED', 'PATCH', { 'if-match': '*' }, null, 'PATCH of nothing with If-Match: *'),
      row('PROCEED', 'POST', { 'if-match': '"x"' }, null, 'POST to nothing with If-Match'),
      row('PROCEED', 'PATCH', { 'if-none-match': 'v1' }, null, 'PATCH of nothing with an invalid If-None-Match'),
      row('PROCEED', 'GET', { 'if-modified-since': IMF }, null, 'GET of nothing with If-Modified-Since'),
      row('PROCEED', 'GET', { range: RANGE, 'if-range': '"v1"' }, null, 'GET of nothing with If-Range'),
      row('IF_MATCH_NONE', 'PUT', { 'if-match': '"x"' }, null, 'PUT of nothing with If-Match'),
      row('PROCEED', 'PUT', { 'if-none-match': '*' }, null, 'PUT of nothing with If-None-Match: *'),
      row('PROCEED', 'PUT', { 'if-unmodified-since': IMF_BEFORE }, null, 'PUT of nothing with If-Unmodified-Since'),
      row('IF_NONE_MATCH_INVALID', 'PUT', { 'if-none-match': '' }, null, 'PUT of nothing with an invalid If-None-Match'),
      row('PROCEED', 'OPTIONS', { 'if-match': '"stale"' }, V1, 'OPTIONS ignores a failing If-Match'),
      row('PROCEED', 'OPTIONS', { 'if-none-match': '*' }, V1, 'OPTIONS ignores If-None-Match: *'),
      row('PROCEED', 'OPTIONS', { 'if-unmodified-since': IMF_BEFORE }, V1, 'OPTIONS ignores a failing If-Unmodified-Since'),
      row('PROCEED', 'TRACE', { 'if-match': '' }, V1, 'TRACE ignores an invalid If-Match'),
      row('PROCEED', 'TRACE', { 'if-none-match': '"v1"' }, V1, 'TRACE ignores a matching If-None-Match'),
      row('PROCEED', 'CONNECT', { 'if-match': '"stale"' }, V1, 'CONNECT ignores a failing If-Match'),
      row('PROCEED', 'GET', {}, V1, 'GET without preconditions'),
      row('PROCEED', 'PUT', {}, V1, 'PUT without preconditions'),
      row('PROCEED', 'PUT', {}, null, 'PUT of nothing without preconditions'),
      row('PROCEED', 'DELETE', {}, NOTHING, 'DELETE without preconditions or validators')
    ]
  },
  {
    // The order of §13.2.2: 1 If-Match; 2 If-Unmodified-Since when If-Match is absent; 3
    // If-None-Match; 4 If-Modified-Since when If-None-Match is absent, GET/HEAD only; 5
    // If-Range for a GET with Range. A false step answers at once; later steps are not reached.
    section: 'RFC 9110 §13.2.2 precedence',
    cases: [
      row('IF_MATCH_MISMATCH', 'GET', { 'if-match': '"v2"', 'if-none-match': '"v1"' }, V1, 'step 1 fails before step 3 would answer 304'),
      row('NOT_MODIFIED', 'GET', { 'if-match': '"v1"', 'if-none-match': '"v1"' }, V1, 'step 1 holds, step 3 answers 304'),
      row('IF_NONE_MATCH', 'PUT', { 'if-match': '"v1"', 'if-none-match': '"v1"' }, V1, 'step 1 holds, step 3 answers 412 on PUT'),
      row('IF_NONE_MATCH', 'PUT', { 'if-match': '*', 'if-none-match': '*' }, V1, 'both stars: step 3 fails'),
      row('PROCEED', 'PUT', { 'if-match': '"v1"', 'if-none-match': '"v2"' }, V1, 'both hold'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"v2"', 'if-unmodified-since': IMF_AFTER }, V1, 'step 1 fails, step 2 is skipped'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"v1"', 'if-unmodified-since': IMF }, V1, 'a weak If-Match fails though the date holds'),
      row('IF_UNMODIFIED_SINCE', 'GET', { 'if-unmodified-since': IMF_BEFORE, 'if-none-match': '"v1"' }, V1, 'step 2 fails before step 3'),
      row('NOT_MODIFIED', 'GET', { 'if-unmodified-since': IMF, 'if-none-match': '"v1"' }, V1, 'step 2 holds, step 3 answers 304'),
      row('IF_NONE_MATCH', 'PUT', { 'if-unmodified-since': IMF, 'if-none-match': '*' }, V1, 'step 2 holds, step 3 answers 412'),
      row('IF_UNMODIFIED_SINCE', 'GET', { 'if-unmodified-since': IMF_BEFORE, 'if-modified-since': IMF }, V1, 'step 2 fails before step 4'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-unmodified-since': IMF, 'if-modified-since': IMF }, V1, 'step 2 holds, step 4 answers 304'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-match': '"v1"', 'if-modified-since': IMF }, V1, 'step 1 holds, step 4 answers 304'),
      row('IF_MATCH_MISMATCH', 'GET', { 'if-match': '"v2"', 'if-modified-since': IMF }, V1, 'step 1 fails before step 4'),
      row('PROCEED', 'GET', { 'if-none-match': '"v2"', 'if-modified-since': IMF }, V1, 'step 3 holds, step 4 is skipped'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"v1"', 'if-modified-since': IMF_BEFORE }, V1, 'step 3 answers 304 though step 4 would not'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF, range: RANGE, 'if-range': '"v2"' }, V1, 'step 4 answers 304 before step 5'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '*', range: RANGE, 'if-range': '"v2"' }, V1, 'step 3 answers 304 before step 5'),
      row('IGNORE_RANGE', 'GET', { 'if-match': '"v1"', range: RANGE, 'if-range': '"v2"' }, V1, 'step 1 holds, step 5 fails'),
      row('IF_MATCH_MISMATCH', 'GET', { 'if-match': '"v2"', range: RANGE, 'if-range': '"v1"' }, V1, 'step 1 fails before step 5'),
      row('IF_UNMODIFIED_SINCE', 'GET', { 'if-unmodified-since': IMF_BEFORE, range: RANGE, 'if-range': '"v1"' }, V1, 'step 2 fails before step 5'),
      row('IGNORE_RANGE', 'GET', { 'if-none-match': '"v2"', range: RANGE, 'if-range': IMF_BEFORE }, V1, 'step 3 holds, step 5 fails'),
      row('PROCEED', 'GET', { 'if-match': '"v1"', 'if-unmodified-since': IMF, 'if-none-match': '"v2"', 'if-modified-since': IMF_BEFORE, range: RANGE, 'if-range': '"v1"' }, V1, 'all five hold'),
      row('IF_MATCH_WEAK', 'GET', { 'if-match': 'W/"v1"', 'if-unmodified-since': IMF, 'if-none-match': '"v2"', 'if-modified-since': IMF_BEFORE, range: RANGE, 'if-range': '"v1"' }, V1, 'all five, If-Match weak'),
      row('IF_NONE_MATCH_INVALID', 'PUT', { 'if-match': '"v1"', 'if-none-match': 'v1' }, V1, 'step 1 holds, step 3 has no valid member'),
      row('IF_MATCH_INVALID', 'PUT', { 'if-match': 'v1', 'if-none-match': 'v1' }, V1, 'both invalid: step 1 answers first'),
      row('PROCEED', 'PUT', { 'if-match': '"v1"', 'if-modified-since': IMF }, V1, 'step 4 is not reached on PUT')
    ]
  },
  {
    // The comparison table of §8.8.3.2, through the header that uses each function: If-Match
    // compares strongly (§13.1.1), If-None-Match weakly (§13.1.2).
    //   ETag 1  ETag 2  strong    weak
    //   W/"1"   W/"1"   no match  match
    //   W/"1"   W/"2"   no match  no match
    //   W/"1"   "1"     no match  match
    //   "1"     "1"     match     match
    section: 'RFC 9110 §8.8.3.2 strong and weak comparison',
    cases: [
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"1"' }, { etag: 'W/"1"' }, 'W/"1" vs W/"1", strong: no match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': 'W/"1"' }, { etag: 'W/"1"' }, 'W/"1" vs W/"1", weak: match'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': 'W/"1"' }, { etag: 'W/"2"' }, 'W/"1" vs W/"2", strong: no match'),
      row('PROCEED', 'GET', { 'if-none-match': 'W/"1"' }, { etag: 'W/"2"' }, 'W/"1" vs W/"2", weak: no match'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': 'W/"1"' }, { etag: '"1"' }, 'W/"1" vs "1", strong: no match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': 'W/"1"' }, { etag: '"1"' }, 'W/"1" vs "1", weak: match'),
      row('IF_MATCH_WEAK', 'PUT', { 'if-match': '"1"' }, { etag: 'W/"1"' }, '"1" vs W/"1", strong: no match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"1"' }, { etag: 'W/"1"' }, '"1" vs W/"1", weak: match'),
      row('PROCEED', 'PUT', { 'if-match': '"1"' }, { etag: '"1"' }, '"1" vs "1", strong: match'),
      row('NOT_MODIFIED', 'GET', { 'if-none-match': '"1"' }, { etag: '"1"' }, '"1" vs "1", weak: match'),
      row('IF_MATCH_MISMATCH', 'PUT', { 'if-match': '"1"' }, { etag: '"2"' }, '"1" vs "2", strong: no match'),
      row('PROCEED', 'GET', { 'if-none-match': '"1"' }, { etag: '"2"' }, '"1" vs "2", weak: no match'),
      row('PROCEED', 'GET', { 'if-none-match': 'W/"1"' }, { etag: '"W/1"' }, 'W/"1" vs "W/1": the W/ inside quotes is opaque')
    ]
  },
  {
    // HTTP-date = IMF-fixdate / obs-date; obs-date = rfc850-date / asctime-date; "HTTP-date is
    // case sensitive"; second 60 is allowed (leap second). Anything else is not a valid
    // HTTP-date, which If-Modified-Since ignores (§13.1.3). Last-Modified here is the epoch,
    // so every valid date answers 304 and every invalid one proceeds.
    section: 'RFC 9110 §5.6.7 HTTP-date formats (through If-Modified-Since)',
    cases: [
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': IMF }, EPOCH, 'IMF-fixdate'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': RFC850 }, EPOCH, 'rfc850-date'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': ASCTIME }, EPOCH, 'asctime-date with a one-digit day'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Sun Nov 06 08:49:37 1994' }, EPOCH, 'asctime-date with a two-digit day'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Thu, 29 Feb 2024 00:00:00 GMT' }, EPOCH, '29 February in a leap year'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Tue, 29 Feb 2000 00:00:00 GMT' }, EPOCH, '29 February 2000 (divisible by 400)'),
      row('NOT_MODIFIED_SINCE', 'GET', { 'if-modified-since': 'Wed, 31 Dec 1997 23:59:60 GMT' }, EPOCH, 'a leap second'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Wed, 29 Feb 2023 00:00:00 GMT' }, EPOCH, '29 February in a common year'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Thu, 29 Feb 1900 00:00:00 GMT' }, EPOCH, '29 February 1900 (a century, not divisible by 400)'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sat, 31 Feb 2024 00:00:00 GMT' }, EPOCH, '31 February'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sat, 30 Feb 2024 00:00:00 GMT' }, EPOCH, '30 February'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Thu, 31 Apr 2024 00:00:00 GMT' }, EPOCH, '31 April'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 00 Nov 1994 08:49:37 GMT' }, EPOCH, 'day 0'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 24:00:00 GMT' }, EPOCH, 'hour 24'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:60:00 GMT' }, EPOCH, 'minute 60'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:61 GMT' }, EPOCH, 'second 61'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sux, 06 Nov 1994 08:49:37 GMT' }, EPOCH, 'a bad day name'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sunday, 06 Nov 1994 08:49:37 GMT' }, EPOCH, 'a long day name in IMF-fixdate'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06-Nov-94 08:49:37 GMT' }, EPOCH, 'a short day name in rfc850-date'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sundae, 06-Nov-94 08:49:37 GMT' }, EPOCH, 'a bad long day name'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sux Nov  6 08:49:37 1994' }, EPOCH, 'a bad day name in asctime-date'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nox 1994 08:49:37 GMT' }, EPOCH, 'a bad month'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 nov 1994 08:49:37 GMT' }, EPOCH, 'a lower-case month'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 gmt' }, EPOCH, 'a lower-case GMT'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 6 Nov 1994 08:49:37 GMT' }, EPOCH, 'a one-digit day in IMF-fixdate (too short)'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 94 08:49:37 GMT' }, EPOCH, 'a two-digit year in IMF-fixdate'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun,  06 Nov 1994 08:49:37 GMT' }, EPOCH, 'an extra space (too long)'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37 GMT+1' }, EPOCH, 'an offset after GMT'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 08:49:37' }, EPOCH, 'no GMT'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun, 06 Nov 1994 8:49:37 GMT ' }, EPOCH, 'a one-digit hour padded to length'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun Nov 6 08:49:37 1994' }, EPOCH, 'asctime-date without the day padding'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sun Nov  6 08:49:37 94  ' }, EPOCH, 'asctime-date with a two-digit year'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sunday, 06-Nov-1994 08:49:37 GMT' }, EPOCH, 'rfc850-date with a four-digit year'),
      row('PROCEED', 'GET', { 'if-modified-since': 'Sunday, 06-Nov-94 08:49:37 UTC' }, EPOCH, 'rfc850-date with UTC'),
      row('PROCEED', 'GET', { 'if-modified-since': '' }, EPOCH, 'empty')
    ]
  }
]

/** The rows in all groups. */
export function countCases (groups: CaseGroup[]): number {
  let n = 0
  for (const group of groups) n += group.cases.length
  return n
}
