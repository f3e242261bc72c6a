// The OpenTelemetry metrics ship as the subpath `fastify-precondition/otel`, and only there: an
// application without OpenTelemetry installs and loads none of it. The channels are found by
// name, so the metrics of one build count the writes of the other. Checked against the build (npm
// test builds first).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { MeterProvider, MetricReader, type Histogram } from '@opentelemetry/sdk-metrics'
import Fastify from 'fastify'
import { test } from 'tap'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)

/** Every bare specifier reachable from a built file through relative imports and requires. */
function externalImports (entry: string): Set<string> {
  const seen = new Set<string>()
  const external = new Set<string>()
  const visit = (file: string): void => {
    if (seen.has(file)) return
    seen.add(file)
    const source = readFileSync(file, 'utf8')
    for (const match of source.matchAll(/(?:from\s+|import\s*\(\s*|require\(\s*)['"]([^'"]+)['"]/g)) {
      const specifier = match[1]
      if (specifier.startsWith('.')) visit(join(dirname(file), specifier))
      else external.add(specifier)
    }
  }
  visit(join(root, entry))
  return external
}

class TestReader extends MetricReader {
  protected async onShutdown (): Promise<void> {}
  protected async onForceFlush (): Promise<void> {}
}

test('only the subpath loads @opentelemetry/api', async (t) => {
  for (const entry of ['dist/esm/index.js', 'dist/cjs/index.js', 'dist/esm/redis.js', 'dist/cjs/redis.js']) {
    const external = [...externalImports(entry)]
    t.ok(external.includes('@fastify/error'), `${entry}: the walk sees the entry's imports`)
    t.same(external.filter((name) => name.startsWith('@opentelemetry/')), [], entry)
  }
  for (const entry of ['dist/esm/otel.js', 'dist/cjs/otel.js']) {
    // (The walk also reads the usage examples in comments: the package's own name.)
    const external = [...externalImports(entry)].filter((name) => !name.startsWith('node:') && !name.startsWith('fastify-precondition'))
    t.same(external, ['@opentelemetry/api'], `${entry}: the API alone`)
  }
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  t.ok(pkg.peerDependencies?.['@opentelemetry/api'], '@opentelemetry/api is a peer dependency')
  t.equal(pkg.peerDependenciesMeta?.['@opentelemetry/api']?.optional, true, 'an optional one')
  t.notOk(pkg.dependencies?.['@opentelemetry/api'], 'not a dependency')
})

test('import and require give the same metrics, which count the writes of either build', async (t) => {
  const esm = await import('fastify-precondition/otel')
  const cjs = require('fastify-precondition/otel')
  for (const [name, module] of [['import', esm], ['require', cjs]] as const) {
    t.equal(typeof module.preconditionMetrics, 'function', `${name}: preconditionMetrics`)
    t.equal(module.default, module.preconditionMetrics, `${name}: default export`)
    t.equal(module.METRICS.lockWait, 'fastify_precondition.lock.wait.duration', `${name}: METRICS`)
  }
  const reader = new TestReader()
  const stop = esm.preconditionMetrics({ meterProvider: new MeterProvider({ readers: [reader] }) })
  t.teardown(stop)
  for (const plugin of [(await import('fastify-precondition')).default, require('fastify-precondition').default]) {
    const app = Fastify()
    await app.register(plugin)
    app.put('/items/:id', { concurrency: { require: 'if-match', validators: () => ({ etag: '"1"' }) } }, async () => 'ok')
    t.equal((await app.inject({ method: 'PUT', url: '/items/1', headers: { 'if-match': '"1"' } })).statusCode, 200)
    await app.close()
  }
  const { resourceMetrics } = await reader.collect()
  const wait = resourceMetrics.scopeMetrics[0].metrics.find((metric) => metric.descriptor.name === 'fastify_precondition.lock.wait.duration')
  t.equal((wait?.dataPoints[0].value as Histogram).count, 2, 'both writes, one from each build')
})
