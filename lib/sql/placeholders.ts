// PostgreSQL's numbered placeholders ($1, $2, …) as the positional `?` of a layer that only knows
// those (Knex): each `$n` becomes `?` with its value at its place (a `$n` used twice, twice), and
// every `?` already in the text is escaped as `\?`, so the layer takes none of them for a binding
// (Knex reads `\?` as a plain `?`, in literals and comments too). A `$n` inside a quoted string, a
// quoted name, a dollar-quoted string or a comment is text, and stays.

const DIGITS = /^\$(\d+)/
const DOLLAR_TAG = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/
const WORD = /[A-Za-z0-9_$]/

/** Where the quoted text starting at `start` (a `'` or a `"`) ends: after its closing quote. */
function quoteEnd (text: string, start: number): number {
  const quote = text[start]
  // E'…': a backslash escapes the next character.
  const escapes = quote === '\'' && start > 0 && (text[start - 1] === 'E' || text[start - 1] === 'e') && (start === 1 || !WORD.test(text[start - 2]))
  for (let i = start + 1; i < text.length; i++) {
    if (escapes && text[i] === '\\') i++
    else if (text[i] === quote) {
      if (text[i + 1] !== quote) return i + 1
      i++ // a doubled quote is one quote of the text
    }
  }
  return text.length
}

/** The end of what starts at `i` and is text, not SQL (a literal, a quoted name, a comment), or -1. */
function textEnd (text: string, i: number): number {
  const c = text[i]
  if (c === '\'' || c === '"') return quoteEnd(text, i)
  if (c === '-' && text[i + 1] === '-') {
    const end = text.indexOf('\n', i)
    return end === -1 ? text.length : end
  }
  if (c === '/' && text[i + 1] === '*') {
    const end = text.indexOf('*/', i + 2)
    return end === -1 ? text.length : end + 2
  }
  if (c === '$' && (i === 0 || !WORD.test(text[i - 1]))) {
    const tag = DOLLAR_TAG.exec(text.slice(i, i + 64))
    if (tag !== null) {
      const end = text.indexOf(tag[0], i + tag[0].length)
      return end === -1 ? text.length : end + tag[0].length
    }
  }
  return -1
}

/** `text` with `$n` as `?` and its values in that order; throws a RangeError for a `$n` with no value. */
export function positional (text: string, values: readonly unknown[]): { text: string, values: unknown[] } {
  let out = ''
  const ordered: unknown[] = []
  let i = 0
  while (i < text.length) {
    const end = textEnd(text, i)
    if (end !== -1) {
      out += text.slice(i, end).replaceAll('?', '\\?')
      i = end
      continue
    }
    const c = text[i]
    const param = c === '$' && (i === 0 || !WORD.test(text[i - 1])) ? DIGITS.exec(text.slice(i, i + 12)) : null
    if (param !== null) {
      const n = Number(param[1])
      if (n < 1 || n > values.length) throw new RangeError(`fastify-precondition: ${param[0]} in the statement has no value (${values.length} given)`)
      ordered.push(values[n - 1])
      out += '?'
      i += param[0].length
      continue
    }
    out += c === '?' ? '\\?' : c
    i++
  }
  return { text: out, values: ordered }
}
