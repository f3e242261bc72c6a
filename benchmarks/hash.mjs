// Runs hash-worker.mjs pinned to the CPU the servers use, and returns its rows.
import { Child } from './processes.mjs'

export async function runHashBenchmark ({ quick, log }) {
  const worker = new Child({ script: 'hash-worker.mjs', args: quick ? ['--quick'] : [], cpu: 1 })
  try {
    const { rows } = await worker.waitFor('hash', 300_000)
    for (const row of rows) log(`  ${row.label}: ${row.ratio.median.toFixed(3)}x`)
    return { rows }
  } catch (error) {
    log(`  failed: ${error.message}`)
    return { failed: error.message, rows: [] }
  } finally {
    await worker.stop()
  }
}
