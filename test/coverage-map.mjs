// Coverage is measured on lib/ by the tests that load lib/ directly. Tests of the built package
// (dist/, the examples) map back onto the same sources through source maps and would count
// compiled copies of each function twice, so they run without coverage.
const BUILT = ['exports', 'example', 'example-cas', 'redis-package', 'client', 'peer-install', 'types-consumers', 'redis-fencing']
export default function coverageMap (testFile) {
  const name = testFile.replace(/^.*\//, '').replace(/\.test\.ts$/, '')
  return BUILT.includes(name) ? null : 'lib/**'
}
