// `npm start` as a user meets it: the example API starts, and each curl command it prints gives
// the status its comment promises, in the order printed.
import { test } from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const api = fileURLToPath(new URL('../examples/api.js', import.meta.url))

interface Step { expected: number, replayed: boolean, method: string, url: string, headers: Record<string, string>, body?: string }

// Reads the printed commands: a "# 304 …" comment, then `curl -i [-X M] URL [-H 'k: v'] [-d '…']`.
function parseSteps (output: string): Step[] {
  const steps: Step[] = []
  const lines = output.split('\n').map((line) => line.trim())
  for (let i = 0; i < lines.length; i++) {
    const comment = /^# (\d{3})\b/.exec(lines[i])
    if (comment === null || !lines[i + 1]?.startsWith('curl ')) continue
    const words = [...lines[i + 1].matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2])
    const step: Step = { expected: Number(comment[1]), replayed: lines[i].includes('Idempotent-Replayed: true'), method: 'GET', url: '', headers: {} }
    for (let w = 1; w < words.length; w++) {
      if (words[w] === '-X') step.method = words[++w]
      else if (words[w] === '-H') {
        const header = words[++w]
        const colon = header.indexOf(':')
        step.headers[header.slice(0, colon)] = header.slice(colon + 1).trim()
      } else if (words[w] === '-d') step.body = words[++w]
      else if (words[w].startsWith('http')) step.url = words[w]
    }
    steps.push(step)
  }
  return steps
}

test('npm start: the printed curl commands give the statuses they promise', async (t) => {
  const child = spawn(process.execPath, [api], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1' }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGTERM') })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the example API did not start within 30 s')), 30_000)
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('second is a 412')) { clearTimeout(timer); resolve() }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the example API exited with ${code}`)) })
  })
  const steps = parseSteps(output)
  const statuses = [200, 304, 428, 412, 400, 201, 201, 422, 201, 201, 200]
  t.same(steps.map((step) => step.expected), statuses, `the commands promise ${statuses.join(', ')}`)
  t.same(steps.map((step) => step.replayed), [false, false, false, false, false, false, true, false, false, true, false], 'two of them a replay')
  const answers: string[] = []
  for (const [index, step] of steps.entries()) {
    const res = await fetch(step.url, { method: step.method, headers: step.headers, body: step.body })
    const body = await res.text()
    answers.push(body)
    const name = `${step.method} ${step.url.replace(/^http:\/\/[^/]+/, '')} ${JSON.stringify(step.headers)}`
    t.equal(res.status, step.expected, name)
    t.equal(res.headers.get('idempotent-replayed'), step.replayed ? 'true' : null, `${name}: ${step.replayed ? 'a replay' : 'not a replay'}`)
    if (step.replayed) {
      const first = steps.findIndex((other) => other.url === step.url && other.body === step.body && JSON.stringify(other.headers) === JSON.stringify(step.headers))
      t.ok(first < index, 'the same request was sent before')
      t.equal(body, answers[first], 'and the replay is its answer, byte for byte')
    }
  }
  const orders = await (await fetch(steps[5].url.replace(/\/orders$/, '/orders/2'))).json()
  t.same(orders, { message: 'no such order' }, 'the replayed order was placed once')
  // The last command, run again, is a 412 now, as the comment says.
  const last = steps[steps.length - 1]
  const again = await fetch(last.url, { method: last.method, headers: last.headers, body: last.body })
  t.equal(again.status, 412)
  t.equal(again.headers.get('content-type'), 'application/problem+json; charset=utf-8')
})
