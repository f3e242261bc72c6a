// The README's first code block runs as printed: written to a file of its own in an application
// directory where `fastify-precondition` is this package (dist/: npm test builds first) and
// `fastify` is the one installed here, run with node, and asked over loopback. A GET gives the
// item with its validators, a stale PUT a 412, a PUT with the current tag the new version, and a
// PUT without If-Match a 428, as the README's table says.
import { test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** The first fenced block of JavaScript or TypeScript, and its language. */
function firstSnippet (markdown: string): { language: string, code: string } | null {
  const match = /^```(js|javascript|mjs|ts|typescript)[^\S\n]*\n([\s\S]*?)^```[^\S\n]*$/m.exec(markdown)
  return match === null ? null : { language: match[1], code: match[2] }
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

async function waitForServer (url: string, child: { exitCode: number | null }, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the snippet exited with ${child.exitCode}:\n${output()}`)
    try {
      await fetch(url)
      return
    } catch {
      if (Date.now() > deadline) throw new Error(`the snippet did not listen within 15 s:\n${output()}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

test('the README\'s first code block runs as printed', async (t) => {
  const snippet = firstSnippet(readFileSync(join(root, 'README.md'), 'utf8'))
  if (snippet === null) throw new Error('the README has no JavaScript block')
  t.match(snippet.language, /^(js|javascript|mjs)$/, 'it is JavaScript, which node runs as it is')
  t.match(snippet.code, /from 'fastify-precondition'/, 'it imports the package by its name')

  const app = mkdtempSync(join(tmpdir(), 'readme-snippet-'))
  t.teardown(() => rmSync(app, { recursive: true, force: true }))
  mkdirSync(join(app, 'node_modules'))
  symlinkSync(root, join(app, 'node_modules', 'fastify-precondition'), 'dir')
  symlinkSync(join(root, 'node_modules', 'fastify'), join(app, 'node_modules', 'fastify'), 'dir')
  const file = join(app, 'server.mjs')
  writeFileSync(file, snippet.code)

  const port = await freePort()
  const child = spawn(process.execPath, [file], { cwd: root, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGTERM') })
  const origin = `http://127.0.0.1:${port}`
  await waitForServer(`${origin}/items/1`, child, () => output)

  const read = await fetch(`${origin}/items/1`)
  t.equal(read.status, 200, 'GET /items/1: 200')
  const etag = read.headers.get('etag')
  t.equal(etag, '"v1"', 'with the ETag its validators give')
  t.ok(read.headers.get('last-modified'), 'and its Last-Modified')
  t.match(await read.json(), { name: 'first item', version: 1 })

  const notModified = await fetch(`${origin}/items/1`, { headers: { 'if-none-match': etag as string } })
  t.equal(notModified.status, 304, 'GET with If-None-Match of that tag: 304')

  const json = { 'content-type': 'application/json' }
  const body = JSON.stringify({ name: 'renamed' })
  const stale = await fetch(`${origin}/items/1`, { method: 'PUT', headers: { ...json, 'if-match': '"v0"' }, body })
  t.equal(stale.status, 412, 'PUT with a stale If-Match: 412')
  t.equal(stale.headers.get('content-type'), 'application/problem+json; charset=utf-8')
  t.match(await stale.json(), { status: 412, code: 'FST_PRECONDITION_FAILED', etag: '"v1"' }, 'a problem with the current tag')

  const missing = await fetch(`${origin}/items/1`, { method: 'PUT', headers: json, body })
  t.equal(missing.status, 428, 'PUT without If-Match: 428')

  const write = await fetch(`${origin}/items/1`, { method: 'PUT', headers: { ...json, 'if-match': etag as string }, body })
  t.equal(write.status, 200, 'PUT with the current tag: 200')
  t.equal(write.headers.get('etag'), '"v2"', 'with the new ETag')
  t.match(await write.json(), { name: 'renamed', version: 2 })

  const absent = await fetch(`${origin}/items/2`)
  t.equal(absent.status, 404, 'GET of an item that does not exist: its handler answers 404')
})

test('the snippet reader', async (t) => {
  t.same(firstSnippet('text\n```sh\nnpm i\n```\n```js\nrun()\n```\n```ts\nlater()\n```\n'), { language: 'js', code: 'run()\n' })
  t.equal(firstSnippet('```sh\nnpm i\n```\n'), null)
})
