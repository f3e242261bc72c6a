// tap's `after` script: counts the unhandled rejections of the whole suite (see rejection-guard.mjs)
// and fails the run when there was one.
import { existsSync, readFileSync } from 'node:fs'

const FILE = '.tap/unhandled-rejections.log'
const text = existsSync(FILE) ? readFileSync(FILE, 'utf8') : ''
const count = text.split('\n').filter((line) => /^\/\S+: /.test(line)).length
console.log(`# unhandled rejections across the suite: ${count}`)
if (count > 0) {
  console.log(text)
  process.exitCode = 1
}
