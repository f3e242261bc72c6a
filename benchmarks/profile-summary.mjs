// node benchmarks/profile-summary.mjs <file.cpuprofile> [top=25] [filter]
// Self time and total (inclusive) time per function from a `node --cpu-prof` profile, as a
// share of the non-idle samples. `npm run bench -- --cpu-prof --only=<id>` writes profiles of
// each scenario's server into benchmarks/profiles/.
import { readFileSync } from 'node:fs'

const [file, topArg = '25', filter] = process.argv.slice(2)
if (file === undefined) {
  console.error('usage: node benchmarks/profile-summary.mjs <file.cpuprofile> [top] [url filter]')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(file, 'utf8'))
const nodes = new Map(profile.nodes.map((node) => [node.id, node]))
const parent = new Map()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)

const hits = new Map()
for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1)

const label = (node) => {
  const { functionName, url, lineNumber } = node.callFrame
  const where = url ? url.replace(/^.*node_modules\//, '').replace(/^.*\/(dist|benchmarks)\//, '$1/') + ':' + (lineNumber + 1) : ''
  return `${functionName || '(anonymous)'} ${where}`.trim()
}
const idle = new Set(['(idle)', '(program)', '(garbage collector)'])
let busy = 0
const self = new Map()
const total = new Map()
for (const [id, count] of hits) {
  const node = nodes.get(id)
  const name = label(node)
  if (node.callFrame.functionName === '(idle)') continue
  busy += count
  self.set(name, (self.get(name) ?? 0) + count)
  // Inclusive time: count each function once per sample, however deep it recurses.
  const seen = new Set()
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const frame = label(nodes.get(at))
    if (seen.has(frame)) continue
    seen.add(frame)
    total.set(frame, (total.get(frame) ?? 0) + count)
  }
}
const top = Number(topArg)
const show = (title, map) => {
  console.log(`\n${title} (% of ${busy} non-idle samples)`)
  for (const [name, count] of [...map].filter(([name]) => filter === undefined || name.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, top)) {
    if (idle.has(name) && map === total) continue
    console.log(`${(100 * count / busy).toFixed(1).padStart(6)}%  ${name}`)
  }
}
show('self', self)
show('total', total)
