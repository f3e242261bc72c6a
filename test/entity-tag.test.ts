import { test } from 'tap'
import { parseEntityTags } from '../lib/entity-tag.js'

test('one tag', async (t) => {
  t.same(parseEntityTags('"a"'), ['"a"'])
})
