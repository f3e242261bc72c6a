// The request-path matrix (test/helpers/matrix.ts) on the embedded defaults: the memory lock and
// idempotency stores.
import { test } from 'tap'
import { runMatrix } from '../helpers/matrix.js'

test('every handler style × where the client leaves × HTTP/1.1 and HTTP/2 × the neighbours, on the memory stores', async (t) => {
  await runMatrix(t, () => ({}))
})
