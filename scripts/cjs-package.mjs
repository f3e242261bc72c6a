// dist/cjs holds CommonJS; the package itself is "type": "module", so mark the folder.
import { writeFileSync } from 'node:fs'
writeFileSync(new URL('../dist/cjs/package.json', import.meta.url), JSON.stringify({ type: 'commonjs' }) + '\n')
