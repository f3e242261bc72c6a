import { test } from 'tap'
import { formatHttpDate, parseHttpDate } from '../lib/http/http-date.js'

// Seconds since the epoch for a UTC calendar time, months counted from 1 as people write them.
function utc (year: number, month: number, day: number, hour = 0, minute = 0, second = 0): number {
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, 0)
  return date.getTime() / 1000
}

// A fixed "now" for the rfc850 two-digit years: 2025-06-01T00:00:00Z.
const NOW = utc(2025, 6, 1)

test('RFC 9110 §5.6.7: the three formats of the same instant', async (t) => {
  const instant = utc(1994, 11, 6, 8, 49, 37)
  t.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT', NOW), instant, 'IMF-fixdate')
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT', NOW), instant, 'rfc850-date')
  t.equal(parseHttpDate('Sun Nov  6 08:49:37 1994', NOW), instant, 'asctime-date')
  t.equal(parseHttpDate('Sun Nov 06 08:49:37 1994', NOW), instant, 'asctime-date, day as 2DIGIT')
})

test('RFC 9110 §5.6.7: valid HTTP-dates', async (t) => {
  const cases: Array<[string, number, string?]> = [
    ['Thu, 01 Jan 1970 00:00:00 GMT', 0],
    ['Wed, 31 Dec 1969 23:59:59 GMT', -1],
    ['Thu, 29 Feb 2024 12:00:00 GMT', utc(2024, 2, 29, 12)],
    ['Tue, 29 Feb 2000 00:00:00 GMT', utc(2000, 2, 29)],
    ['Fri, 31 Dec 9999 23:59:59 GMT', utc(9999, 12, 31, 23, 59, 59)],
    ['Mon, 01 Jan 0001 00:00:00 GMT', utc(1, 1, 1)],
    ['Sat, 06 Nov 0094 08:49:37 GMT', utc(94, 11, 6, 8, 49, 37)],
    ['Sat, 01 Jan 0000 00:00:00 GMT', -62167219200],
    ['Tue, 29 Feb 0000 00:00:00 GMT', utc(0, 2, 29)],
    ['Wed, 31 Dec 1997 23:59:60 GMT', utc(1998, 1, 1), 'a leap second is the next second'],
    ['Mon, 31 Jan 2022 23:59:59 GMT', utc(2022, 1, 31, 23, 59, 59)],
    ['Thu, 30 Apr 2020 00:00:00 GMT', utc(2020, 4, 30)],
    ['Tue, 01 Jan 2030 00:00:00 GMT', utc(2030, 1, 1), 'the day name is not checked against the date']
  ]
  for (const [value, seconds, why] of cases) t.equal(parseHttpDate(value, NOW), seconds, why === undefined ? value : `${value}: ${why}`)
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
  for (let m = 0; m < 12; m++) {
    t.equal(parseHttpDate(`Mon, 15 ${months[m]} 2001 10:20:30 GMT`, NOW), utc(2001, m + 1, 15, 10, 20, 30), months[m])
    t.equal(parseHttpDate(`Mon ${months[m]} 15 10:20:30 2001`, NOW), utc(2001, m + 1, 15, 10, 20, 30), `asctime ${months[m]}`)
    t.equal(parseHttpDate(`Monday, 15-${months[m]}-01 10:20:30 GMT`, NOW), utc(2001, m + 1, 15, 10, 20, 30), `rfc850 ${months[m]}`)
  }
  for (const day of ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']) {
    t.equal(parseHttpDate(`${day}, 15 Jan 2001 00:00:00 GMT`, NOW), utc(2001, 1, 15), day)
  }
  for (const day of ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']) {
    t.equal(parseHttpDate(`${day}, 15-Jan-01 00:00:00 GMT`, NOW), utc(2001, 1, 15), day)
  }
})

test('RFC 9110 §5.6.7: anything else is not an HTTP-date', async (t) => {
  const invalid = [
    '',
    ' ',
    'GMT',
    'yesterday',
    '784111777',
    '1994-11-06T08:49:37Z',
    'Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT',
    ' Sun, 06 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37 GMT ',
    'Sun, 06 Nov 1994 08:49:37 UTC',
    'Sun, 06 Nov 1994 08:49:37 gmt',
    'Sun, 06 Nov 1994 08:49:37 +0000',
    'sun, 06 Nov 1994 08:49:37 GMT',
    'SUN, 06 Nov 1994 08:49:37 GMT',
    'Sux, 06 Nov 1994 08:49:37 GMT',
    'Sun, 06 nov 1994 08:49:37 GMT',
    'Sun, 06 NOV 1994 08:49:37 GMT',
    'Sun, 06 Nox 1994 08:49:37 GMT',
    'Sun, 6 Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 94 08:49:37 GMT',
    'Sun, 06 Nov 1994 8:49:37 GMT',
    'Sun,  6 Nov 1994 08:49:37 GMT',
    'Sun; 06 Nov 1994 08:49:37 GMT',
    'Sun,x06 Nov 1994 08:49:37 GMT',
    'Sun, 06-Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov-1994 08:49:37 GMT',
    'Sun, 06 Nov 1994T08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37_GMT',
    'Sun, 06 Nov 1994 08.49.37 GMT',
    'Sun, 06 Nov 1994 08:49.37 GMT',
    'Sun, 0x Nov 1994 08:49:37 GMT',
    'Sun, 06 Nov 19x4 08:49:37 GMT',
    'Sun, 06 Nov 1994 0x:49:37 GMT',
    'Sun, 06 Nov 1994 08:4x:37 GMT',
    'Sun, 06 Nov 1994 08:49:3x GMT',
    'Sun, 06 Nov 1994 08:49:-1 GMT',
    'Sun, 06 Nov 1994 24:00:00 GMT',
    'Sun, 06 Nov 1994 08:60:00 GMT',
    'Sun, 06 Nov 1994 08:49:61 GMT',
    'Sun, 00 Nov 1994 08:49:37 GMT',
    'Sun, 32 Jan 1994 08:49:37 GMT',
    'Sat, 31 Feb 2024 00:00:00 GMT',
    'Fri, 30 Feb 2024 00:00:00 GMT',
    'Wed, 29 Feb 2023 00:00:00 GMT',
    'Thu, 29 Feb 1900 00:00:00 GMT',
    'Thu, 31 Apr 2024 00:00:00 GMT',
    'Mon, 31 Jun 2024 00:00:00 GMT',
    'Tue, 31 Sep 2024 00:00:00 GMT',
    'Sat, 31 Nov 2024 00:00:00 GMT',
    'Sun Nov 6 08:49:37 1994',
    'Sun Nov  6 08:49:37 1994 ',
    'Sun Nov  6 08:49:37 94  ',
    'Sun Nov 6  08:49:37 1994',
    'Sux Nov  6 08:49:37 1994',
    'Sun,Nov  6 08:49:37 1994',
    'Sun Nox  6 08:49:37 1994',
    'Sun Nov  0 08:49:37 1994',
    'Sun Nov 31 08:49:37 1994',
    'Sun Nov  6T08:49:37 1994',
    'Sun Nov  6 08:49:37T1994',
    'Sun-Nov  6 08:49:37 1994',
    'Sun Nov- 6 08:49:37 1994',
    'Sun Nov  6 08:49:37 19x4',
    'Sunday, 06-Nov-1994 08:49:37 GMT',
    'Sunday, 06 Nov 94 08:49:37 GMT',
    'Sunday,06-Nov-94 08:49:37 GMT ',
    'Sunday, 06-Nov-94 08:49:37 UTC',
    'Sunday, 06-Nov-94 08:49:37 gmt',
    'Sunday, 06-Nov-94T08:49:37 GMT',
    'Sunday, 06-Nov-94 08:49:37_GMT',
    'Sunday, 06-Nov-9x 08:49:37 GMT',
    'Sunday, 06-Nov-94 25:49:37 GMT',
    'Sunday, 6-Nov-94 08:49:37 GMT',
    'Sundae, 06-Nov-94 08:49:37 GMT',
    'sunday, 06-Nov-94 08:49:37 GMT',
    'Sun, 06-Nov-94 08:49:37 GMT',
    'Sunday, 06-nov-94 08:49:37 GMT',
    'Sunday, 31-Feb-94 08:49:37 GMT',
    'Sunday, 29-Feb-94 08:49:37 GMT',
    'Wednesdays, 06-Nov-94 08:49:37 GMT',
    'Sunday, 06-Nov-94 08:49:37 GMT, Sunday, 06-Nov-94 08:49:37 GMT',
    'Sun, 06 Nov 1994 08:49:37 G\u00d4T',
    'Sun, 06 Nov 1994 08:49:37 GMT\u0000',
    '\u0000\u0000\u0000,\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000\u0000'
  ]
  for (const value of invalid) t.ok(Number.isNaN(parseHttpDate(value, NOW)), JSON.stringify(value))
})

test('RFC 9110 §5.6.7: an rfc850 two-digit year more than 50 years ahead is the most recent past one', async (t) => {
  // "Recipients of a timestamp value in rfc850-date format, which uses a two-digit year, MUST
  // interpret a timestamp that appears to be more than 50 years in the future as representing
  // the most recent year in the past that had the same last two digits."
  const cases: Array<[string, number, number, string]> = [
    ['Sunday, 06-Nov-94 08:49:37 GMT', NOW, utc(1994, 11, 6, 8, 49, 37), '2094 is 69 years ahead'],
    ['Sunday, 01-Jun-25 00:00:00 GMT', NOW, utc(2025, 6, 1), 'now itself'],
    ['Saturday, 15-Mar-25 00:00:00 GMT', NOW, utc(2025, 3, 15), 'earlier this year'],
    ['Wednesday, 01-Jan-70 00:00:00 GMT', NOW, utc(2070, 1, 1), '2070 is 44 years ahead, so it stays'],
    ['Tuesday, 01-Jan-75 00:00:00 GMT', NOW, utc(2075, 1, 1), '2075-01-01 is 49.4 years ahead'],
    ['Saturday, 01-Jun-75 00:00:00 GMT', NOW, utc(2075, 6, 1), 'exactly 50 years ahead is not more than 50'],
    ['Sunday, 01-Jun-75 00:00:01 GMT', NOW, utc(1975, 6, 1, 0, 0, 1), 'a second more than 50 years ahead'],
    ['Monday, 01-Dec-75 00:00:00 GMT', NOW, utc(1975, 12, 1), '2075-12-01 is 50.5 years ahead'],
    ['Thursday, 01-Jan-76 00:00:00 GMT', NOW, utc(1976, 1, 1), '2076 is more than 50 years ahead'],
    ['Friday, 31-Dec-99 23:59:59 GMT', NOW, utc(1999, 12, 31, 23, 59, 59), '2099 is 74 years ahead'],
    ['Saturday, 01-Jan-00 00:00:00 GMT', NOW, utc(2000, 1, 1), '00 is 2000'],
    ['Tuesday, 29-Feb-00 00:00:00 GMT', NOW, utc(2000, 2, 29), '29 Feb 2000 exists'],
    ['Sunday, 01-Jun-49 00:00:00 GMT', utc(2099, 12, 31), utc(2149, 6, 1), 'from 2099: 2149 is 49.4 years ahead'],
    ['Saturday, 01-Jan-50 00:00:00 GMT', utc(2099, 12, 31), utc(2050, 1, 1), 'from 2099: 2150-01-01 is a day more than 50 years ahead'],
    ['Thursday, 31-Dec-99 00:00:00 GMT', utc(2099, 12, 31), utc(2099, 12, 31), 'from 2099: 99 is this year'],
    ['Saturday, 01-Jan-50 00:00:00 GMT', utc(2000, 1, 1), utc(2050, 1, 1), 'from 2000: exactly 50 years ahead'],
    ['Sunday, 01-Jan-51 00:00:00 GMT', utc(2000, 1, 1), utc(1951, 1, 1), 'from 2000: 2051 is more than 50 years ahead'],
    ['Saturday, 01-Jan-50 00:00:01 GMT', utc(2000, 1, 1), utc(1950, 1, 1, 0, 0, 1), 'from 2000: a second past 50 years'],
    ['Friday, 31-Dec-49 23:59:59 GMT', utc(2000, 1, 1, 0, 0, 1), utc(2049, 12, 31, 23, 59, 59), 'from 2000: late 2049 is within 50 years'],
    ['Saturday, 01-Jan-50 00:00:00 GMT', utc(2000, 1, 1) + 0.5, utc(2050, 1, 1), 'a fractional now: 50 years minus half a second'],
    ['Saturday, 01-Jan-50 00:00:01 GMT', utc(2000, 1, 1) + 0.5, utc(1950, 1, 1, 0, 0, 1), 'a fractional now: 50 years plus half a second'],
    ['Monday, 28-Feb-74 00:00:00 GMT', utc(2024, 2, 29), utc(2074, 2, 28), 'from 29 Feb 2024, 28 Feb 2074 is within 50 years'],
    ['Thursday, 01-Mar-74 00:00:00 GMT', utc(2024, 2, 29), utc(1974, 3, 1), 'from 29 Feb 2024, 1 Mar 2074 is beyond 50 years'],
    ['Monday, 01-Jan-01 00:00:00 GMT', utc(1970, 1, 1), utc(2001, 1, 1), 'from 1970: 2001 is 31 years ahead'],
    ['Monday, 01-Jan-20 00:00:00 GMT', utc(1970, 1, 1), utc(2020, 1, 1), 'from 1970: exactly 50 years ahead'],
    ['Monday, 01-Jan-21 00:00:00 GMT', utc(1970, 1, 1), utc(1921, 1, 1), 'from 1970: 2021 is more than 50 years ahead']
  ]
  for (const [value, now, expected, why] of cases) t.equal(parseHttpDate(value, now), expected, `${value}: ${why}`)
})

test('without a "now", the two-digit year is read against the clock', async (t) => {
  // 94 is 1994 until late 2044, when 2094 comes within 50 years.
  t.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT'), utc(1994, 11, 6, 8, 49, 37))
  const year = new Date().getUTCFullYear()
  const twoDigits = String(year % 100).padStart(2, '0')
  t.equal(parseHttpDate(`Monday, 01-Jan-${twoDigits} 00:00:00 GMT`), utc(year, 1, 1), 'this year')
})

test('formatHttpDate writes IMF-fixdate at whole seconds', async (t) => {
  t.equal(formatHttpDate(new Date(Date.UTC(1994, 10, 6, 8, 49, 37))), 'Sun, 06 Nov 1994 08:49:37 GMT')
  t.equal(formatHttpDate(Date.UTC(1994, 10, 6, 8, 49, 37, 999)), 'Sun, 06 Nov 1994 08:49:37 GMT', 'milliseconds are dropped')
  t.equal(formatHttpDate(0), 'Thu, 01 Jan 1970 00:00:00 GMT')
  t.equal(formatHttpDate(-1), 'Wed, 31 Dec 1969 23:59:59 GMT')
  t.equal(formatHttpDate(new Date(Date.UTC(2024, 1, 29, 23, 5, 9))), 'Thu, 29 Feb 2024 23:05:09 GMT')
  t.equal(parseHttpDate(formatHttpDate(Date.UTC(2015, 9, 21, 7, 28, 0, 500))), utc(2015, 10, 21, 7, 28, 0))
})

test('formatHttpDate called again and again answers for the time it is given each time', async (t) => {
  const first = Date.UTC(2026, 0, 1, 12, 0, 0)
  const sequence = [first, first + 999, first + 1000, first, new Date(first + 1000), first - 1, NaN, NaN, new Date(NaN), first]
  for (const time of sequence) {
    const expected = (typeof time === 'number' ? new Date(time) : time).toUTCString()
    t.equal(formatHttpDate(time), expected, `${String(time)} after the one before`)
  }
})
