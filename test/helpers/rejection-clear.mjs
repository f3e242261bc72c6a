// tap's `before` script: forget the unhandled rejections of an earlier run (see rejection-guard.mjs).
import { rmSync } from 'node:fs'

rmSync('.tap/unhandled-rejections.log', { force: true })
