// Coverage is measured on lib/ by the tests that load lib/ directly. Tests of the built package
// (dist/, the examples, the README and the guides) map back onto the same sources through source
// maps and would count compiled copies of each function twice, so they run without coverage; so do
// the tests whose plugin runs in processes they fork (postgres-exactly-once,
// postgres-transaction-claim, mysql-exactly-once), which coverage does not see; so do the fault matrix's PostgreSQL
// files (test/faults/pg-*), whose apps run in processes of their own. The client tests load
// lib/client.ts and lib/client/ from source and the plugin only through the example (dist/): they
// measure the client alone. The diagnostics channels and their OpenTelemetry metrics are measured
// by their own tests. The browser tests (browser-*) run the example's page, which loads the built
// client in Chromium, against the example API (dist/).
const BUILT = ['exports', 'docs', 'readme-snippet', 'zod-snippet', 'example', 'example-cas', 'redis-package', 'idempotency-postgres-package', 'otel-package', 'peer-install', 'types-consumers', 'redis-fencing', 'postgres-exactly-once', 'postgres-transaction-claim', 'postgres-layers', 'postgres-example',
  'pg-recipes', 'pg-isolation', 'pg-shared-pool', 'pg-answers', 'mysql-package', 'mysql-exactly-once', 'mysql-example']
const ONLY = { client: ['lib/client.ts', 'lib/client/**'], observe: 'lib/observe.ts', otel: 'lib/otel.ts' }
export default function coverageMap (testFile) {
  const name = testFile.replace(/^.*\//, '').replace(/\.test\.ts$/, '')
  if (BUILT.includes(name) || name.startsWith('browser-')) return null
  return ONLY[name] ?? 'lib/**'
}
