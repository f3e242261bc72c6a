// Instructions per request of a POST /orders server, counted by valgrind's callgrind. Unlike req/s
// on a shared machine, they do not move with what else runs: the server runs as
// `node --single-threaded` (compilation and GC on its main thread), and repeated counts of the
// same code agree within about 0.3%.
//
//   npm run build
//   node benchmarks/instructions.mjs [--servers=bare-post,floor-post-idempotent,plugin-post-idempotent]
//                                    [--modes=fresh,replay] [--requests=10000]
//
// One count: a server under callgrind, loaded over 10 connections (a fresh Idempotency-Key per
// request, or one key per connection: replays), once with 1,000 requests and once with
// 1,000 + `requests`; the difference divided by `requests`, so start-up, warm-up and most of the
// compiling cancel out. The two runs of a count go side by side (two CPUs). Needs valgrind
// (`apt-get install -y valgrind`); each count takes 2–3 minutes.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const WARM = 100 // requests per connection in the shorter run
const CONNECTIONS = 10
const body = JSON.stringify({ name: 'widget', count: 3 })

if (process.argv[2] === 'serve') {
  const { builders } = await import('./apps.mjs')
  const server = await builders[process.argv[3]]()
  const port = await server.listen()
  console.log(`PORT ${port}`)
  process.on('SIGINT', () => process.exit(0))
} else {
  const option = (name, fallback) => process.argv.find((arg) => arg.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
  const servers = option('servers', 'bare-post,floor-post-idempotent,plugin-post-idempotent').split(',')
  const modes = option('modes', 'fresh,replay').split(',')
  const perConnection = Math.round(Number(option('requests', '10000')) / CONNECTIONS)
  const rows = []
  for (const mode of modes) {
    for (const name of servers) {
      const [short, long] = await Promise.all([count(name, mode, WARM), count(name, mode, WARM + perConnection)])
      const perRequest = Math.round((long - short) / (perConnection * CONNECTIONS))
      rows.push({ mode, name, perRequest })
      console.log(`${mode} ${name}: ${perRequest.toLocaleString('en-US')} instructions per request`)
    }
  }
  console.log('\n| server | mode | instructions per request | ratio to bare-post |\n|---|---|---|---|')
  for (const { mode, name, perRequest } of rows) {
    const bare = rows.find((row) => row.mode === mode && row.name === 'bare-post')
    console.log(`| ${name} | ${mode} | ${perRequest.toLocaleString('en-US')} | ${bare ? (perRequest / bare.perRequest).toFixed(2) + 'x' : '-'} |`)
  }
}

/** Total instructions of one server run under callgrind that answered `amount` requests a connection. */
async function count (name, mode, amount) {
  const dir = mkdtempSync(join(tmpdir(), 'instructions-'))
  try {
    const child = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${join(dir, 'cg.%p')}`,
      process.execPath, '--single-threaded', fileURLToPath(import.meta.url), 'serve', name], { stdio: ['ignore', 'pipe', 'ignore'] })
    const port = await new Promise((resolve, reject) => {
      let out = ''
      child.stdout.on('data', (chunk) => {
        out += chunk
        const match = /PORT (\d+)/.exec(out)
        if (match) resolve(Number(match[1]))
      })
      child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before listening; is valgrind installed?`)))
    })
    await load(port, mode, amount)
    child.kill('SIGINT')
    await once(child, 'exit')
    let total = 0
    for (const file of readdirSync(dir)) {
      const summary = /^summary: (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'))
      if (summary) total += Number(summary[1])
    }
    return total
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** `amount` POSTs on each of 10 connections, one after another on each. */
async function load (port, mode, amount) {
  const prefix = `${process.pid}-${amount}-`
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, connection) => {
    const requests = mode === 'replay'
      ? [{ method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': `replay-${connection}` }, body }]
      : Array.from({ length: amount }, (_, i) => ({ method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': `${prefix}${connection}-${i}` }, body }))
    return new Promise((resolve, reject) => {
      autocannon({ url: `http://127.0.0.1:${port}/orders`, connections: 1, amount, requests }, (error, result) => {
        if (error) reject(error)
        else if (result.non2xx > 0 || result.errors > 0) reject(new Error(`${result.non2xx} answers not 2xx, ${result.errors} errors`))
        else resolve(result)
      })
    })
  }))
}
