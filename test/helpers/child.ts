// Ending the server processes a test forked: ask them to close, and kill what does not exit.
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'

/** Sends `close` and waits for the exit; SIGKILL after 5 s. A stopped child is continued first. */
export async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGCONT') // in case a failed test left it stopped
  if (child.connected) child.send('close')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}
