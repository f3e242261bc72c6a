// The docs as the published package holds them: every relative link in README.md and docs/*.md
// points at a file that `npm pack` puts in the tarball (and, with a #fragment, at a heading of that
// file), every guide is linked from the README, the README lists every problem code, and it stays
// what a user reads to start and to look things up: 500 lines at most.
import { test } from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, posix, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ProblemCode } from 'fastify-precondition'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const README_LIMIT = 500

/**
 * Guides linked before they exist, because another branch writes them. A link to one is a todo
 * while the file is missing from the working tree, and checked like any other once it is there.
 */
const PENDING = new Set(['docs/postgresql.md'])

// `npm test` runs under npm, which hands its own npm_* settings (this project's prefix, dry-run
// flags of the outer command) to children; the pack here keeps only where npm's cache and config are.
const KEPT = /^npm_config_(cache|userconfig)$/i
const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name) || KEPT.test(name)))

function packedFiles (): Set<string> {
  const output = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '--no-update-notifier'], { cwd: root, env, encoding: 'utf8' })
  const [pack] = JSON.parse(output) as [{ files: Array<{ path: string }> }]
  return new Set(pack.files.map((file) => file.path))
}

interface Link { target: string, line: number }

/** The text outside fenced code blocks, with line numbers kept (code lines become empty). */
function prose (markdown: string): string[] {
  let fence: string | null = null
  return markdown.split('\n').map((line) => {
    const marker = /^\s*(`{3,}|~{3,})/.exec(line)?.[1]
    if (fence === null && marker !== undefined) {
      fence = marker[0].repeat(marker.length)
      return ''
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null
      return ''
    }
    return line
  })
}

/** Inline and reference links and images, outside code. */
function links (markdown: string): Link[] {
  const found: Link[] = []
  for (const [index, raw] of prose(markdown).entries()) {
    const line = raw.replace(/`[^`]*`/g, '')
    for (const match of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) found.push({ target: match[1], line: index + 1 })
    const definition = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/.exec(line)
    if (definition !== null) found.push({ target: definition[1], line: index + 1 })
  }
  return found
}

/** The anchors GitHub makes of a file's headings: lower case, punctuation dropped, spaces as hyphens, duplicates numbered. */
function anchors (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const result = new Set<string>()
  for (const line of prose(markdown)) {
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading === null) continue
    const text = heading[1].replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<[^>]*>/g, '')
    const base = text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc}\- ]/gu, '').replace(/ /g, '-')
    const count = seen.get(base) ?? 0
    seen.set(base, count + 1)
    result.add(count === 0 ? base : `${base}-${count}`)
  }
  return result
}

const read = (file: string): string => readFileSync(join(root, file), 'utf8')
const guides = readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`).sort()
const documents = ['README.md', ...guides]

test('every relative link in the README and the guides resolves in the published package', async (t) => {
  const packed = packedFiles()
  for (const file of documents) t.ok(packed.has(file), `${file} is in the package`)
  let checked = 0
  for (const file of documents) {
    for (const { target, line } of links(read(file))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // https:, mailto:
      const hash = target.indexOf('#')
      const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
      const fragment = hash === -1 ? '' : decodeURIComponent(target.slice(hash + 1))
      const resolved = path === '' ? file : posix.normalize(posix.join(posix.dirname(file), path))
      const where = `${file}:${line} → ${target}`
      checked++
      if (resolved.startsWith('../')) {
        t.fail(`${where}: points outside the package`)
        continue
      }
      const pending = PENDING.has(resolved) && !existsSync(join(root, resolved))
      const inPackage = packed.has(resolved) || [...packed].some((name) => name.startsWith(resolved.replace(/\/?$/, '/')))
      t.ok(inPackage, `${where}: ${resolved} is in the package`, pending ? { todo: `${resolved} is written on another branch` } : {})
      if (fragment !== '' && resolved.endsWith('.md') && !pending) {
        t.ok(anchors(read(resolved)).has(fragment), `${where}: ${resolved} has the heading #${fragment}`)
      }
    }
  }
  t.ok(checked > 20, `${checked} relative links checked`)
})

test('the README links to every guide, and to the PostgreSQL one', async (t) => {
  const targets = new Set(links(read('README.md')).map(({ target }) => target.replace(/#.*$/, '')))
  for (const guide of new Set([...guides, ...PENDING])) t.ok(targets.has(guide), `README links to ${guide}`)
})

test('the README lists every problem code, and stays within 500 lines', async (t) => {
  const readme = read('README.md')
  for (const code of Object.values(ProblemCode)) t.ok(readme.includes(`\`${code}\``), `README names ${code}`)
  const lines = readme.split('\n').length - (readme.endsWith('\n') ? 1 : 0)
  t.ok(lines <= README_LIMIT, `README.md has ${lines} lines (at most ${README_LIMIT})`)
})

test('the link and anchor readers', async (t) => {
  const sample = [
    '# Title', '## A `code` heading: with punctuation', '## Title', 'See [this](docs/a.md#x) and [`b`](b.md).',
    '```js', '[not a link](nowhere.md)', '# not a heading', '```', '[ref]: c.md', 'Inline `[code](d.md)` is not a link.'
  ].join('\n')
  t.same(links(sample).map(({ target }) => target), ['docs/a.md#x', 'b.md', 'c.md'])
  t.same([...anchors(sample)], ['title', 'a-code-heading-with-punctuation', 'title-1'])
})

test('the README\'s PostgreSQL recipe is the guide\'s, character for character (which test/faults/pg-recipes.test.ts runs as printed under a terminated backend and a restart)', async (t) => {
  const guide = read('docs/postgresql.md')
  const from = guide.indexOf('```js', guide.indexOf('## The transaction recipe'))
  const recipe = guide.slice(from, guide.indexOf('```\n', from + 5) + 3)
  t.match(recipe, /request\.idempotency\.transaction\(pool, async \(tx\) =>/)
  t.ok(read('README.md').includes(recipe), 'the README prints the guide\'s recipe')
})
