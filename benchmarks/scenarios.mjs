// The scenarios of the precondition path, each measured against its baseline (issue table).
// `a` is the server measured, `b` its baseline; ratios are a / b. A target names the metric,
// `min` for throughput (higher is better) and `max` for CPU per request (lower is better).
import { ITEM_10K, SMALL_ITEM } from './apps.mjs'

const json = { 'content-type': 'application/json' }
// Writes: each connection on its own resource, so the locks are never contended unless a
// scenario says so. Reads take no lock: all on one resource.
const put = (headers, body = 'small', keys = 'per-connection') => ({ method: 'PUT', path: '/items/{key}', keys, headers: { ...json, ...headers }, body })
const get = (headers) => ({ method: 'GET', path: '/items/{key}', keys: 1, headers })

// POSTs: all to one URL, each connection sending its own requests. `idempotencyKey` 'fresh' is a
// new key per request (the load generator makes it for both sides); 'per-connection' one key per
// connection, the same in every burst: after its first request every request is a replay.
const post = (idempotencyKey) => ({ method: 'POST', path: '/orders', keys: 'per-connection', headers: json, body: 'small', idempotencyKey })

const MATCHING = { 'if-match': '"v1"' }
const STALE = { 'if-match': '"v0"' }

export const scenarios = [
  {
    // Two identical servers: how far apart the harness puts equals on this machine.
    id: 'control',
    title: 'control: bare Fastify PUT against itself',
    a: 'bare-put',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'put-match',
    title: 'PUT, matching If-Match, memory lock, sync validators',
    a: 'plugin-put',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: [{ metric: 'rps', min: 0.93 }, { metric: 'cpu', max: 1.08 }]
  },
  {
    id: 'put-428',
    title: 'PUT without If-Match → 428',
    a: 'plugin-put',
    b: 'bare-put',
    spec: put({}),
    expect: { a: 428, b: 200 },
    targets: [{ metric: 'rps', min: 1.0 }]
  },
  {
    id: 'put-412',
    title: 'PUT, stale If-Match → 412',
    a: 'plugin-put',
    b: 'bare-put',
    spec: put(STALE),
    expect: { a: 412, b: 200 },
    targets: [{ metric: 'rps', min: 1.0 }]
  },
  {
    id: 'put-412-onrequest',
    title: 'PUT, stale If-Match → 412, stage onRequest',
    a: 'plugin-put-onrequest',
    b: 'bare-put',
    spec: put(STALE),
    expect: { a: 412, b: 200 },
    targets: []
  },
  {
    id: 'put-412-1mb-onrequest',
    title: 'PUT, stale If-Match, 1 MB body, stage onRequest',
    a: 'plugin-put-onrequest',
    b: 'plugin-put-prehandler',
    baseline: 'the same with stage preHandler',
    spec: put(STALE, 'large'),
    connections: 4,
    expect: { a: 412, b: 412 },
    targets: [{ metric: 'rps', min: 2.0 }]
  },
  {
    id: 'get-304-10k',
    title: 'GET 304 via validators, 10 KB representation',
    a: 'plugin-get-10k',
    b: 'etag-get-10k',
    baseline: '@fastify/etag answering the same 304',
    spec: get({ 'if-none-match': ITEM_10K.etag }),
    expect: { a: 304, b: 304 },
    targets: [{ metric: 'rps', min: 1.3 }]
  },
  {
    id: 'get-200',
    title: 'GET 200 via validators (ETag and Last-Modified set)',
    a: 'plugin-get',
    b: 'bare-get',
    baseline: 'bare Fastify GET',
    spec: get({}),
    expect: { a: 200, b: 200 },
    targets: [{ metric: 'rps', min: 0.95 }]
  },
  {
    id: 'get-200-hand',
    title: 'GET 200 via validators',
    a: 'plugin-get',
    b: 'bare-get-validators',
    baseline: 'bare Fastify GET setting ETag and Last-Modified by hand',
    spec: get({}),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'get-304',
    title: 'GET 304 via validators (If-None-Match current), 200 B representation',
    a: 'plugin-get',
    b: 'bare-get',
    baseline: 'bare Fastify GET answering 200',
    spec: get({ 'if-none-match': SMALL_ITEM.etag }),
    expect: { a: 304, b: 200 },
    targets: []
  },
  {
    id: 'get-200-floor',
    title: 'GET 200 via validators',
    a: 'plugin-get',
    b: 'floor-get',
    baseline: 'the floor: a hand-written If-None-Match check and validators in a hook',
    spec: get({}),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'get-304-floor',
    title: 'GET 304 via validators, 200 B representation',
    a: 'plugin-get',
    b: 'floor-get',
    baseline: 'the floor: a hand-written If-None-Match check and validators in a hook',
    spec: get({ 'if-none-match': SMALL_ITEM.etag }),
    expect: { a: 304, b: 304 },
    targets: []
  },
  {
    id: 'put-match-hand',
    title: 'PUT, matching If-Match, memory lock, sync validators',
    a: 'plugin-put',
    b: 'hand-put',
    baseline: 'hand-written If-Match checks in two hooks, no lock',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'put-match-floor',
    title: 'PUT, matching If-Match, memory lock, sync validators',
    a: 'plugin-put',
    b: 'floor-put',
    baseline: 'the floor: 428 and If-Match checks in hand-written hooks, a hand-written in-memory lock',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'put-412-floor',
    title: 'PUT, stale If-Match → 412',
    a: 'plugin-put',
    b: 'floor-put',
    baseline: 'the floor: the same 412 from a hand-written hook, under a hand-written lock',
    spec: put(STALE),
    expect: { a: 412, b: 412 },
    targets: []
  },
  {
    id: 'put-428-floor',
    title: 'PUT without If-Match → 428',
    a: 'plugin-put',
    b: 'floor-put',
    baseline: 'the floor: the same 428 from a hand-written preParsing hook',
    spec: put({}),
    expect: { a: 428, b: 428 },
    targets: []
  },
  {
    id: 'put-match-otel',
    title: 'PUT, matching If-Match, memory lock, preconditionMetrics() on an SDK MeterProvider that never exports',
    a: 'plugin-put-otel',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'put-match-otel-cost',
    title: 'PUT, matching If-Match: preconditionMetrics() subscribed against no subscriber (the default)',
    a: 'plugin-put-otel',
    b: 'plugin-put',
    baseline: 'the plugin with no subscriber',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'put-match-one-key',
    title: 'PUT, matching If-Match, all connections on one resource (lock contended)',
    a: 'plugin-put',
    b: 'bare-put',
    spec: put(MATCHING, 'small', 1),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'restify-200',
    title: 'restify conditionalRequest: PUT, matching If-Match → 200',
    a: 'restify-put',
    b: 'plugin-put',
    baseline: 'this plugin, same request',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    targets: []
  },
  {
    id: 'restify-428',
    title: 'restify: PUT without If-Match → 428 (hand-written check)',
    a: 'restify-put',
    b: 'plugin-put',
    baseline: 'this plugin, same request',
    spec: put({}),
    expect: { a: 428, b: 428 },
    targets: []
  },
  {
    id: 'restify-412',
    title: 'restify conditionalRequest: PUT, stale If-Match → 412',
    a: 'restify-put',
    b: 'plugin-put',
    baseline: 'this plugin, same request',
    spec: put(STALE),
    expect: { a: 412, b: 412 },
    targets: []
  },
  {
    id: 'post-idempotency-fresh',
    title: 'POST, a fresh Idempotency-Key per request, memory idempotency store (`idempotency: true`)',
    a: 'plugin-post-idempotent',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    targets: [{ metric: 'rps', min: 0.85 }]
  },
  {
    id: 'post-idempotency-replay',
    title: 'POST, Idempotency-Key replayed (the stored answer), memory idempotency store',
    a: 'plugin-post-idempotent',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    targets: [{ metric: 'rps', min: 1.0 }]
  },
  {
    id: 'post-idempotency-floor-fresh',
    title: 'POST, a fresh Idempotency-Key per request: the floor, a minimal hand-written path (benchmarks/apps.mjs)',
    a: 'floor-post-idempotent',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    targets: []
  },
  {
    id: 'post-idempotency-floor-replay',
    title: 'POST, Idempotency-Key replayed: the floor, a minimal hand-written path',
    a: 'floor-post-idempotent',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    targets: []
  },
  {
    id: 'put-match-redis',
    title: 'PUT, matching If-Match, Redis lock store',
    a: 'plugin-put-redis',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    needsRedis: true,
    targets: [{ metric: 'rps', min: 0.5 }]
  },
  {
    id: 'put-match-redis-floor',
    title: 'PUT, matching If-Match, a bare two-command Redis lock (SET NX PX, DEL: the floor, not a safe lock)',
    a: 'plugin-put-redis-floor',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    needsRedis: true,
    targets: []
  },
  {
    id: 'put-match-redis-hand',
    title: 'PUT, matching If-Match, a hand-written Redis lock (SET NX PX, delete-if-owner script) in the floor\'s hooks',
    a: 'floor-put-redis',
    b: 'bare-put',
    spec: put(MATCHING),
    expect: { a: 200, b: 200 },
    needsRedis: true,
    targets: []
  },
  {
    id: 'post-idempotency-fresh-redis',
    title: 'POST, a fresh Idempotency-Key per request, Redis idempotency store',
    a: 'plugin-post-idempotent-redis',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    needsRedis: true,
    targets: []
  },
  {
    id: 'post-idempotency-replay-redis',
    title: 'POST, Idempotency-Key replayed, Redis idempotency store',
    a: 'plugin-post-idempotent-redis',
    b: 'bare-post',
    baseline: 'bare Fastify POST (same requests, key ignored)',
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    needsRedis: true,
    targets: []
  }
]

// The PostgreSQL scenarios (benchmarks/postgres.mjs, which starts a private cluster): a keyed POST
// whose order and answer commit in one transaction. The claims' run (`claims: true`, run by
// default, on a cluster with fsync on): the hand-written floor of the transactional claim's
// guarantee against the order transaction without the plugin, the transactional claim against
// that floor (fresh key) and against the bare transaction (replay), and the lease claim beside
// them. `pg-post-fresh` and `pg-post-replay` are the 2026-12-01 pairs (lease claim, `complete(tx)`
// in a hand-opened transaction, against the bare transaction), run with --only. A target's metric
// is the ratio's median: `rps` (higher is better), `pgCpu` (PostgreSQL CPU per request, lower).
const BARE = 'the same order transaction, no plugin (key ignored)'
const BARE_REPLAY = 'the same order transaction, no plugin (key ignored: it inserts every time)'
const FLOOR = 'the hand-written floor: key row, order and answer in one transaction, no plugin'
export const postgresScenarios = [
  {
    id: 'pg-floor-fresh',
    title: 'hand-written floor, a fresh Idempotency-Key per request',
    a: 'pg-post-key-floor',
    b: 'pg-post-bare',
    baseline: BARE,
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: []
  },
  {
    id: 'pg-floor-replay',
    title: 'hand-written floor, Idempotency-Key replayed (one indexed read)',
    a: 'pg-post-key-floor',
    b: 'pg-post-bare',
    baseline: BARE_REPLAY,
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: []
  },
  {
    id: 'pg-transaction-fresh',
    title: 'transactional claim, a fresh Idempotency-Key per request',
    a: 'pg-post-claim-transaction',
    b: 'pg-post-key-floor',
    baseline: FLOOR,
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: [{ metric: 'rps', min: 0.9 }, { metric: 'pgCpu', max: 1.1 }]
  },
  {
    id: 'pg-transaction-replay',
    title: 'transactional claim, Idempotency-Key replayed',
    a: 'pg-post-claim-transaction',
    b: 'pg-post-bare',
    baseline: BARE_REPLAY,
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: [{ metric: 'rps', min: 1.0 }]
  },
  {
    id: 'pg-lease-fresh',
    title: 'lease claim, a fresh Idempotency-Key per request',
    a: 'pg-post-claim-lease',
    b: 'pg-post-key-floor',
    baseline: FLOOR,
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: []
  },
  {
    id: 'pg-lease-replay',
    title: 'lease claim, Idempotency-Key replayed',
    a: 'pg-post-claim-lease',
    b: 'pg-post-bare',
    baseline: BARE_REPLAY,
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    claims: true,
    targets: []
  },
  {
    id: 'pg-post-fresh',
    title: 'POST on PostgreSQL, a fresh Idempotency-Key per request: claim, order and its recorded answer in one transaction',
    a: 'pg-post-idempotent',
    b: 'pg-post-bare',
    baseline: BARE,
    spec: post('fresh'),
    expect: { a: 201, b: 201 },
    targets: []
  },
  {
    id: 'pg-post-replay',
    title: 'POST on PostgreSQL, Idempotency-Key replayed (the answer read back from PostgreSQL)',
    a: 'pg-post-idempotent',
    b: 'pg-post-bare',
    baseline: BARE_REPLAY,
    spec: post('per-connection'),
    expect: { a: 201, b: 201 },
    targets: []
  }
]
