// A replay is what the first client got, decodable by the client that retries. With an encoder
// such as @fastify/compress before the plugin's hook, the stored answer is encoded (gzip, br…) and
// kept with its Content-Encoding: it is replayed as it is to a client that accepts that coding,
// and decoded for one that does not (the encoder may then encode it again for that client).
import type { FastifyReply } from 'fastify'
import * as zlib from 'node:zlib'

type Decode = (body: Buffer) => Buffer

const DECODERS: Record<string, Decode | undefined> = {
  gzip: (body) => zlib.gunzipSync(body),
  'x-gzip': (body) => zlib.gunzipSync(body),
  deflate: (body) => zlib.inflateSync(body),
  br: (body) => zlib.brotliDecompressSync(body)
}
// zstd where this Node has it (22.15+).
const zstd = (zlib as unknown as { zstdDecompressSync?: Decode }).zstdDecompressSync
/* c8 ignore next -- only on a Node with zstd */
if (typeof zstd === 'function') DECODERS.zstd = (body) => zstd(body)

/**
 * Whether `coding` is acceptable under an Accept-Encoding field value (RFC 9110 §12.5.3): listed,
 * or covered by `*`, with a q-value above 0. No field: RFC 9110 allows any coding, but a client
 * that sends none (curl without --compressed) cannot read one, and an encoder such as
 * @fastify/compress sends such a request identity: a replay does the same.
 */
export function acceptsCoding (accept: string | string[] | undefined, coding: string): boolean {
  if (accept === undefined) return false
  const field = Array.isArray(accept) ? accept.join(',') : accept
  let star = false
  for (const member of field.split(',')) {
    const [name, ...parameters] = member.split(';')
    const token = name.trim().toLowerCase()
    let q = 1
    for (const parameter of parameters) {
      const [key, value] = parameter.split('=')
      if (key.trim().toLowerCase() === 'q') q = Number(value)
    }
    const accepted = q > 0
    if (token === coding) return accepted
    if (token === '*') star = accepted
  }
  return star
}

/**
 * The stored body for this client: as it is where the client accepts its Content-Encoding (or the
 * coding is unknown here), else decoded, with Content-Encoding taken off the reply.
 */
export function decodeForClient (reply: FastifyReply, body: Buffer | string, accept: string | string[] | undefined): Buffer | string {
  const coding = String(reply.getHeader('content-encoding')).toLowerCase()
  const decode = DECODERS[coding]
  if (decode === undefined || acceptsCoding(accept, coding)) return body
  let decoded
  try {
    decoded = decode(Buffer.from(body))
  } catch {
    // Not what its header says: sent as it was.
    return body
  }
  reply.removeHeader('content-encoding')
  return decoded
}
