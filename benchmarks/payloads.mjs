// Request and response bodies shared by the servers and the load generator, built once per
// process so no burst pays for making them.

/** The small JSON body every PUT sends. */
export const SMALL_BODY = JSON.stringify({ name: 'benchmark item', count: 1 })

/** A JSON document of just under 1 MB (Fastify's default bodyLimit is 1 MiB): many small objects, as a real document would be. */
export function largeBody (bytes = 1_000_000) {
  const rows = []
  let size = 2
  for (let i = 0; ; i++) {
    const row = JSON.stringify({ id: i, name: 'row ' + i, tags: ['a', 'b'], price: i * 1.25 })
    if (size + row.length + 1 > bytes - 30) break
    rows.push(row)
    size += row.length + 1
  }
  const body = '{"name":"large","rows":[' + rows.join(',') + ']}'
  return body + ' '.repeat(bytes - Buffer.byteLength(body))
}

/** A JSON representation of about `bytes` bytes, as a GET would serve it. */
export function representation (bytes) {
  const head = '{"id":"1","name":"benchmark item","notes":"'
  const tail = '"}'
  return Buffer.from(head + 'x'.repeat(Math.max(0, bytes - head.length - tail.length)) + tail)
}

export const BODIES = {
  small: () => SMALL_BODY,
  large: () => largeBody()
}
