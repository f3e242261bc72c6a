// The Zod block of docs/neighbours.md runs as printed: written to a file of its own in an
// application directory where `fastify-precondition` is this package (dist/: npm test builds first)
// and the other packages are the ones installed here, run with node, and asked over loopback. Its
// document at /documentation/json is valid and shows the policy; the requests are guarded.
import { test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import SwaggerParser from '@apidevtools/swagger-parser'

type Json = Record<string, any>

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const PACKAGES = ['fastify', '@fastify/swagger', '@fastify/swagger-ui', 'fastify-type-provider-zod', 'zod']

/** The first JavaScript block of a section of a guide. */
function sectionSnippet (markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n${heading}\n`)
  if (start === -1) throw new Error(`no section ${heading}`)
  const match = /^```js[^\S\n]*\n([\s\S]*?)^```[^\S\n]*$/m.exec(markdown.slice(start))
  if (match === null) throw new Error(`no JavaScript block in ${heading}`)
  return match[1]
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

test('the Zod block of docs/neighbours.md runs as printed, and its document shows the policy', async (t) => {
  const code = sectionSnippet(readFileSync(join(root, 'docs/neighbours.md'), 'utf8'), '## Zod')
  t.match(code, /from 'fastify-precondition'/, 'it imports the package by its name')
  t.match(code, /transform: jsonSchemaTransform/)

  const app = mkdtempSync(join(tmpdir(), 'zod-snippet-'))
  t.teardown(() => rmSync(app, { recursive: true, force: true }))
  mkdirSync(join(app, 'node_modules', '@fastify'), { recursive: true })
  symlinkSync(root, join(app, 'node_modules', 'fastify-precondition'), 'dir')
  for (const name of PACKAGES) symlinkSync(join(root, 'node_modules', name), join(app, 'node_modules', name), 'dir')
  const file = join(app, 'server.mjs')
  writeFileSync(file, code)

  const port = await freePort()
  const child = spawn(process.execPath, [file], { cwd: app, env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGTERM') })
  const origin = `http://127.0.0.1:${port}`
  await waitForServer(`${origin}/documentation/json`, child, () => output)

  const answer = await fetch(`${origin}/documentation/json`)
  t.equal(answer.status, 200, 'the document is served')
  const doc = await answer.json() as Json
  const put = doc.paths['/items/{id}'].put
  const post = doc.paths['/orders'].post
  const header = (op: Json, name: string) => op.parameters.find((p: Json) => p.in === 'header' && p.name === name)
  t.equal(header(put, 'If-Match')?.required, true, 'PUT: If-Match')
  t.equal(header(post, 'Idempotency-Key')?.required, true, 'POST: Idempotency-Key')
  for (const status of ['412', '428']) t.ok(put.responses[status]?.content['application/problem+json'], `PUT: ${status}`)
  for (const status of ['409', '422']) t.ok(post.responses[status]?.content['application/problem+json'], `POST: ${status}`)
  t.ok(put.requestBody.content['application/json'].schema.properties.name, 'the Zod body, documented by the transform')
  t.equal(await SwaggerParser.validate(doc as never).then(() => null, (error: Error) => error), null, 'a valid document')

  const json = { 'content-type': 'application/json' }
  const missing = await fetch(`${origin}/items/1`, { method: 'PUT', headers: json, body: JSON.stringify({ name: 'renamed' }) })
  t.equal(missing.status, 428, 'PUT without If-Match: 428')
  const invalid = await fetch(`${origin}/items/1`, { method: 'PUT', headers: { ...json, 'if-match': '"v1"' }, body: JSON.stringify({ name: 7 }) })
  t.equal(invalid.status, 400, 'a body Zod refuses: 400')
  const write = await fetch(`${origin}/items/1`, { method: 'PUT', headers: { ...json, 'if-match': '"v1"' }, body: JSON.stringify({ name: 'renamed' }) })
  t.equal(write.status, 200)
  t.same(await write.json(), { name: 'renamed', version: 2 })
  t.equal(write.headers.get('etag'), '"v2"')
  const order = { method: 'POST', headers: { ...json, 'idempotency-key': 'k1' }, body: JSON.stringify({ item: 'a' }) }
  const first = await fetch(`${origin}/orders`, order)
  const again = await fetch(`${origin}/orders`, order)
  t.equal(first.status, 201)
  t.equal(again.headers.get('idempotent-replayed'), 'true', 'a retry with the same key is replayed')
  t.same(await again.json(), await first.json())
})
