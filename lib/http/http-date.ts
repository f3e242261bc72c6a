// HTTP-date as RFC 9110 §5.6.7 defines it, all three formats:
//   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
//   rfc850-date  Sunday, 06-Nov-94 08:49:37 GMT
//   asctime-date Sun Nov  6 08:49:37 1994
// Parsed by position, without regular expressions: linear, never throws. Anything else,
// including a list of dates, is invalid and yields NaN, which every caller treats as "ignore".

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const SHORT_DAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']
const LONG_DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']
// The last time formatHttpDate formatted, by whole second. A resource's Last-Modified goes out
// with every 200 and 304 it answers, and Date#toUTCString costs about 0.27 microseconds where
// comparing two numbers costs nothing (benchmarks/RESULTS.md). An invalid date's NaN never equals
// itself, so it is never cached.
let lastSeconds = NaN
let lastFormatted = ''

function digits (value: string, start: number, count: number): number {
  let n = 0
  for (let i = start; i < start + count; i++) {
    const c = value.charCodeAt(i) - 48
    if (c < 0 || c > 9) return -1
    n = n * 10 + c
  }
  return n
}

function month (value: string, start: number): number {
  return MONTHS.indexOf(value.slice(start, start + 3))
}

// hh:mm:ss at `start`, as seconds into the day, or -1.
function time (value: string, start: number): number {
  if (value.charCodeAt(start + 2) !== 0x3a || value.charCodeAt(start + 5) !== 0x3a) return -1
  const h = digits(value, start, 2)
  const m = digits(value, start + 3, 2)
  const s = digits(value, start + 6, 2)
  // second may be 60 (a leap second, RFC 9110 §5.6.7)
  if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 60) return -1
  return h * 3600 + m * 60 + s
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]

function toSeconds (year: number, mon: number, day: number, seconds: number): number {
  if (mon < 0 || year < 0 || seconds < 0 || day < 1 || day > DAYS_IN_MONTH[mon]) return NaN
  // 29 Feb only in leap years: Date.UTC would roll it into March.
  if (mon === 1 && day === 29 && (year % 4 !== 0 || (year % 100 === 0 && year % 400 !== 0))) return NaN
  // Date.UTC reads years 0-99 as 1900-1999; shift by 400 years (same calendar) for those.
  const ms = year < 100 ? Date.UTC(year + 400, mon, day) - 12622780800000 : Date.UTC(year, mon, day)
  return ms / 1000 + seconds
}

/**
 * Parses an HTTP-date into seconds since the epoch, or NaN when the value is not one.
 * `nowSeconds` anchors the two-digit years of rfc850-date (RFC 9110 §5.6.7: a year more than
 * 50 years in the future means the most recent past year with the same last two digits).
 */
export function parseHttpDate (value: string, nowSeconds = Date.now() / 1000): number {
  const length = value.length
  if (length === 29 && value.charCodeAt(3) === 0x2c) {
    // IMF-fixdate: day-name "," SP date1 SP time-of-day SP GMT
    if (SHORT_DAYS.indexOf(value.slice(0, 3)) === -1 ||
      value.charCodeAt(4) !== 0x20 || value.charCodeAt(7) !== 0x20 || value.charCodeAt(11) !== 0x20 ||
      value.charCodeAt(16) !== 0x20 || value.charCodeAt(25) !== 0x20 || !value.endsWith('GMT')) return NaN
    const year = digits(value, 12, 4)
    return toSeconds(year, month(value, 8), digits(value, 5, 2), time(value, 17))
  }
  if (length === 24) {
    // asctime-date: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time-of-day SP year
    if (SHORT_DAYS.indexOf(value.slice(0, 3)) === -1 ||
      value.charCodeAt(3) !== 0x20 || value.charCodeAt(7) !== 0x20 || value.charCodeAt(10) !== 0x20 ||
      value.charCodeAt(19) !== 0x20) return NaN
    const day = value.charCodeAt(8) === 0x20 ? digits(value, 9, 1) : digits(value, 8, 2)
    return toSeconds(digits(value, 20, 4), month(value, 4), day, time(value, 11))
  }
  // rfc850-date: day-name-l "," SP date2 SP time-of-day SP GMT, date2 = 2DIGIT "-" month "-" 2DIGIT
  const comma = value.indexOf(',')
  if (comma < 6 || comma > 9 || length !== comma + 24) return NaN
  if (LONG_DAYS.indexOf(value.slice(0, comma)) === -1) return NaN
  const d = comma + 2
  if (value.charCodeAt(comma + 1) !== 0x20 || value.charCodeAt(d + 2) !== 0x2d ||
    value.charCodeAt(d + 6) !== 0x2d || value.charCodeAt(d + 9) !== 0x20 ||
    value.charCodeAt(d + 18) !== 0x20 || !value.endsWith('GMT')) return NaN
  const yy = digits(value, d + 7, 2)
  if (yy < 0) return NaN
  const mon = month(value, d + 3)
  const day = digits(value, d, 2)
  const seconds = time(value, d + 10)
  return toSeconds(twoDigitYear(yy, mon, day, seconds, nowSeconds), mon, day, seconds)
}

// The year of an rfc850-date: the latest year ending in `yy` whose timestamp is not "more than
// 50 years in the future" (§5.6.7), to the second. The limit is now plus 50 calendar years;
// comparing month, day and time of day against now's saves building a date that may not exist
// (29 February 50 years on).
function twoDigitYear (yy: number, mon: number, day: number, seconds: number, nowSeconds: number): number {
  const now = new Date(nowSeconds * 1000)
  const nowMonth = now.getUTCMonth()
  const nowDay = now.getUTCDate()
  const nowTime = now.getUTCHours() * 3600 + now.getUTCMinutes() * 60 + now.getUTCSeconds() + now.getUTCMilliseconds() / 1000
  const laterInYear = mon !== nowMonth ? mon > nowMonth : day !== nowDay ? day > nowDay : seconds > nowTime
  const limit = now.getUTCFullYear() + 50 - (laterInYear ? 1 : 0)
  return limit - (((limit - yy) % 100) + 100) % 100
}

/** Formats a time as IMF-fixdate, the form RFC 9110 requires senders to generate. */
export function formatHttpDate (date: Date | number): string {
  const seconds = Math.floor((typeof date === 'number' ? date : date.getTime()) / 1000)
  if (seconds === lastSeconds) return lastFormatted
  lastFormatted = new Date(seconds * 1000).toUTCString()
  lastSeconds = seconds
  return lastFormatted
}
