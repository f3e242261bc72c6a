// Where a request's instructions go, by function, JavaScript included: the self cost of each
// function in a count's two callgrind runs (instructions.mjs --annotate=DIR), the shorter
// subtracted from the longer and divided by the requests between them. callgrind knows V8's
// compiled code only by address; V8's perf map (--perf-basic-prof, which --annotate turns on)
// names it, and interpreted frames are the interpreter's (--interpreted-frames-native-stack).
//
//   node benchmarks/instructions.mjs --annotate=/tmp/annotate --scenarios=put-match --servers=plugin-put
//   node benchmarks/callgrind-js.mjs /tmp/annotate/put-match-plugin-put [top=40] [filter]
//
// Each row: instructions per request, then the function (JavaScript: its name and where it is;
// C++: its symbol). Several compiled copies of one JavaScript function (baseline, optimized)
// add up into its row. `filter`: only rows whose name contains it.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** Self cost per function name of one callgrind output, JIT addresses named from `map`. */
export function selfCosts (callgrindText, perfMap) {
  const names = new Map() // compressed "(id)" → name, per kind
  const costs = new Map()
  let current = null
  let inCall = false
  const expand = (kind, spec) => {
    const match = /^\((\d+)\)(?: (.*))?$/.exec(spec)
    if (match === null) return spec
    const key = `${kind}${match[1]}`
    if (match[2] !== undefined) names.set(key, match[2])
    return names.get(key)
  }
  for (const line of callgrindText.split('\n')) {
    if (line.startsWith('fn=')) {
      current = name(expand('fn', line.slice(3)), perfMap)
      inCall = false
    } else if (line.startsWith('cfn=') || line.startsWith('cfi=') || line.startsWith('cfl=') || line.startsWith('cob=')) {
      // A call's target: named, so that later references to its id resolve.
      const kind = line.startsWith('cfn=') ? 'fn' : line.startsWith('cob=') ? 'ob' : 'fl'
      expand(kind, line.slice(4))
    } else if (line.startsWith('fl=') || line.startsWith('fi=') || line.startsWith('fe=') || line.startsWith('ob=')) {
      expand(line.startsWith('ob=') ? 'ob' : 'fl', line.slice(3))
    } else if (line.startsWith('calls=')) {
      inCall = true
    } else if (current !== null && /^[+\-*\d]/.test(line)) {
      const fields = line.split(' ')
      const ir = Number(fields[1] ?? 0)
      // The cost line after calls= is the call's inclusive cost, not the caller's own.
      if (!inCall) costs.set(current, (costs.get(current) ?? 0) + ir)
      inCall = false
    }
  }
  return costs
}

/** A perf map: sorted [start, end, name] of V8's code objects. */
export function readPerfMap (text) {
  const entries = []
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line)
    if (match === null) continue
    const start = parseInt(match[1], 16)
    entries.push([start, start + parseInt(match[2], 16), match[3]])
  }
  // Later entries win where code was moved or its space reused: sorted by start, stable.
  return entries.map((entry, order) => [...entry, order]).sort((a, b) => a[0] - b[0] || b[3] - a[3])
}

function name (fn, perfMap) {
  const match = /^0x([0-9a-f]+)$/.exec(fn)
  if (match === null || perfMap === null) return fn
  const address = parseInt(match[1], 16)
  let low = 0
  let high = perfMap.length - 1
  let found = -1
  while (low <= high) {
    const middle = (low + high) >> 1
    if (perfMap[middle][0] <= address) {
      found = middle
      low = middle + 1
    } else {
      high = middle - 1
    }
  }
  // Of the code objects that cover the address, the one V8 logged last: an address is reused
  // once the code that was there is collected.
  let best = null
  for (let i = found; i >= 0 && i > found - 256; i--) {
    const entry = perfMap[i]
    if (entry[0] <= address && address < entry[1] && (best === null || entry[3] > best[3])) best = entry
  }
  if (best === null) return 'JIT code (unnamed)'
  return best[2].replace(/^(JS|LazyCompile|Function):[*~^+]?/, '').replace(/(file:\/\/)?\/[^ ]*node_modules\//, '').replace(/(file:\/\/)?\/[^ ]*\/(dist|benchmarks)\//, '$2/')
}

export const COMPILING = 'compiling (TurboFan, Maglev)'

/** What a function is: V8's optimizing compiler, the garbage collector, a builtin, JavaScript, or C++. */
export function kindOf (fn) {
  if (/compiler::|Turbofan|maglev|Maglev|OptimizedCompilationJob|Pipeline/.test(fn)) return COMPILING
  if (/Heap|Sweeper|Scavenge|MarkCompact|Marking|Evacuat|GCTracer|ConcurrentMarking|MemoryAllocator|Heap::|::Sweep|RememberedSet|SlotSet/.test(fn)) return 'garbage collection'
  if (/^Builtins_|^Builtin:|^BytecodeHandler:/.test(fn)) return 'builtins and the interpreter'
  if (/^(Eval|Script|Function|JS|LazyCompile)?:?[~*^+]?\S* .*:\d+|\.m?js:\d+|node:/.test(fn)) return 'JavaScript'
  return 'C++ (V8, Node, libc)'
}

function costsOf (dir) {
  let map = null
  try {
    map = readPerfMap(readFileSync(join(dir, 'perf.map'), 'utf8'))
  } catch {}
  return selfCosts(readFileSync(join(dir, 'callgrind.out'), 'utf8'), map)
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ''))) {
  const [dir, topArg = '40', filter] = process.argv.slice(2)
  if (dir === undefined) {
    console.error('usage: node benchmarks/callgrind-js.mjs <annotate dir of one count> [top] [filter]')
    process.exit(2)
  }
  const { requests } = JSON.parse(readFileSync(join(dir, 'count.json'), 'utf8'))
  const short = costsOf(join(dir, 'short'))
  const long = costsOf(join(dir, 'long'))
  const rows = []
  let total = 0
  for (const [fn, cost] of long) {
    const per = (cost - (short.get(fn) ?? 0)) / requests
    total += per
    if (filter === undefined || fn.includes(filter)) rows.push([per, fn])
  }
  rows.sort((a, b) => b[0] - a[0])
  console.log(`${Math.round(total).toLocaleString('en-US')} instructions per request in all`)
  const kinds = new Map()
  for (const [fn, cost] of long) {
    const kind = kindOf(fn)
    kinds.set(kind, (kinds.get(kind) ?? 0) + (cost - (short.get(fn) ?? 0)) / requests)
  }
  for (const [kind, per] of [...kinds].sort((a, b) => b[1] - a[1])) console.log(`${Math.round(per).toLocaleString('en-US').padStart(9)}  ${kind}`)
  console.log('')
  for (const [per, fn] of rows.slice(0, Number(topArg))) console.log(`${Math.round(per).toLocaleString('en-US').padStart(9)}  ${fn}`)
}
