// Loaded into every test process (.taprc node-arg): an unhandled rejection anywhere in the suite
// is written down and fails its test file, and test/helpers/rejection-report.mjs counts them all
// once the suite is over. Plugin code must hand every error to Fastify or to a logger.
import { appendFileSync, mkdirSync } from 'node:fs'
import { dirname } from 'node:path'

export const REJECTIONS_FILE = '.tap/unhandled-rejections.log'

process.on('unhandledRejection', (reason) => {
  const text = reason instanceof Error ? reason.stack : String(reason)
  mkdirSync(dirname(REJECTIONS_FILE), { recursive: true })
  appendFileSync(REJECTIONS_FILE, `${process.argv[1]}: ${text}\n`)
  process.exitCode = 1
  console.error('unhandled rejection:', reason)
})
