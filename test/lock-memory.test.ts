// The in-memory lock store: first come first served, timeouts, close, and no growth.
import { getEventListeners } from 'node:events'
import Fastify from 'fastify'
import { test } from 'tap'
import fastifyPrecondition, { LockTimeoutError, LockUnavailableError, MemoryLockStore, ProblemCode, type Lease } from '../lib/index.js'

const hold = async (lease: Lease | Promise<Lease>): Promise<Lease> => await lease

test('a free key is taken at once, without a promise', async (t) => {
  const store = new MemoryLockStore()
  const lease = store.acquire('a', 100)
  t.notOk(lease instanceof Promise)
  t.equal(store.size, 1)
  ;(lease as Lease).release()
  t.equal(store.size, 0)
})

test('waiters get the key one at a time, in the order they asked', async (t) => {
  const store = new MemoryLockStore()
  const first = await hold(store.acquire('k', 1000))
  const order: number[] = []
  const waiting = [1, 2, 3, 4].map((n) => hold(store.acquire('k', 1000)).then((lease) => {
    order.push(n)
    return lease
  }))
  await new Promise((resolve) => setImmediate(resolve))
  t.same(order, [], 'nobody gets a held key')
  first.release()
  for (let n = 0; n < 4; n++) {
    const lease = await waiting[n]
    t.same(order, [1, 2, 3, 4].slice(0, n + 1), `waiter ${n + 1} is the only new holder`)
    lease.release()
  }
  t.equal(store.size, 0)
})

test('releasing twice hands the key over once', async (t) => {
  const store = new MemoryLockStore()
  const first = await hold(store.acquire('k', 1000))
  const second = hold(store.acquire('k', 1000))
  let thirdHeld = false
  const third = hold(store.acquire('k', 1000)).then((lease) => { thirdHeld = true; return lease })
  first.release()
  first.release()
  const lease2 = await second
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(thirdHeld, 'the second release did not let the third waiter in beside the second')
  lease2.release()
  ;(await third).release()
  t.equal(store.size, 0)
})

test('a waiter gives up after its timeout; the queue behind it moves on', async (t) => {
  const store = new MemoryLockStore()
  const first = await hold(store.acquire('k', 1000))
  const impatient = hold(store.acquire('k', 30))
  const patient = hold(store.acquire('k', 1000))
  const error = await impatient.then(() => null, (err: Error) => err)
  t.ok(error instanceof LockTimeoutError)
  t.equal((error as Error & { code: string }).code, ProblemCode.LOCK_TIMEOUT)
  t.equal((error as Error & { statusCode: number }).statusCode, 503)
  t.match(error?.message, /30 ms.*"k"/)
  first.release()
  ;(await patient).release()
  t.equal(store.size, 0)
})

test('close rejects the waiters and later acquisitions; holders still release', async (t) => {
  const store = new MemoryLockStore()
  const held = await hold(store.acquire('k', 1000))
  const alone = await hold(store.acquire('nobody waits', 1000))
  const waiters = [hold(store.acquire('k', 1000)), hold(store.acquire('k', 1000))]
  store.close()
  for (const waiter of waiters) {
    const error = await waiter.then(() => null, (err: Error) => err)
    t.ok(error instanceof LockUnavailableError)
    t.match(error?.message, /closing/)
  }
  t.ok(await hold(store.acquire('other', 1000)).then(() => false, (err: Error) => err instanceof LockUnavailableError))
  held.release()
  alone.release()
  t.equal(store.size, 0)
})

test('100,000 distinct keys, held, queued on and timed out: none left at the end', async (t) => {
  const store = new MemoryLockStore()
  const total = 100_000
  const leases: Array<Lease | Promise<Lease>> = []
  for (let id = 0; id < total; id++) leases.push(store.acquire(`/things/${id}`, 1000))
  t.equal(store.size, total)
  // Every tenth key also gets a waiter, every hundredth one that gives up first.
  const waiting: Array<Promise<Lease | null>> = []
  for (let id = 0; id < total; id += 10) {
    waiting.push(hold(store.acquire(`/things/${id}`, id % 100 === 0 ? 1 : 1000)).catch(() => null))
  }
  await new Promise((resolve) => setTimeout(resolve, 20))
  for (const lease of leases) (lease as Lease).release()
  let handedOver = 0
  for (const lease of await Promise.all(waiting)) {
    if (lease === null) continue
    handedOver++
    lease.release()
  }
  t.equal(handedOver, total / 10 - total / 100)
  t.equal(store.size, 0)
  t.equal(store.locks.size, 0)
})

test('10,000 distinct keys through the plugin, successes and 412s: none held at the end', async (t) => {
  const store = new MemoryLockStore()
  const app = Fastify()
  await app.register(fastifyPrecondition, { lockStore: store })
  let writes = 0
  let most = 0
  app.put('/things/:id', { concurrency: { validators: () => ({ etag: '"1"' }) } }, async () => {
    writes++
    most = Math.max(most, store.size)
    return 'ok'
  })
  await app.ready()
  const total = 10_000
  const batch = 500
  for (let start = 0; start < total; start += batch) {
    const pending = []
    for (let id = start; id < start + batch; id++) {
      // Every fifth write fails its precondition: 412s must release too.
      pending.push(app.inject({ method: 'PUT', url: `/things/${id}`, headers: { 'if-match': id % 5 === 0 ? '"0"' : '"1"' } }))
    }
    await Promise.all(pending)
  }
  t.ok(most > 1, `keys were held side by side while writes ran (up to ${most})`)
  t.equal(writes, total * 4 / 5)
  t.equal(store.size, 0)
  await app.close()
})

test('fencing tokens grow with every acquisition; the signal never aborts', async (t) => {
  const store = new MemoryLockStore()
  const other = new MemoryLockStore()
  const tokens: Record<string, number[]> = { a: [], b: [] }
  const all: number[] = []
  for (let round = 0; round < 3; round++) {
    // Held and queued leases on two keys, handed over in turn.
    const pending = ['a', 'b', 'a', 'b', 'a'].map((key) => hold(store.acquire(key, 1000)).then((lease) => ({ key, lease })))
    for (const entry of pending) {
      const { key, lease } = await entry
      tokens[key].push(lease.token)
      all.push(lease.token)
      t.ok(Number.isSafeInteger(lease.token), 'a safe integer')
      t.equal(lease.signal.aborted, false)
      lease.release()
    }
  }
  const increasing = (list: number[]) => list.every((token, index) => index === 0 || token > list[index - 1])
  t.ok(increasing(tokens.a) && increasing(tokens.b), 'strictly increasing per key')
  t.equal(new Set(all).size, all.length, 'never handed out twice by one store')
  t.equal((await hold(other.acquire('a', 1000))).token, 1, 'each store counts for itself')
  t.equal(store.size, 0)
  t.equal(store.locks.size, 0, 'nothing kept for idle keys')
})

test('the never-aborted signal keeps no listeners', async (t) => {
  const store = new MemoryLockStore()
  const first = await hold(store.acquire('a', 1000))
  const second = await hold(store.acquire('b', 1000))
  t.equal(first.signal, second.signal, 'one shared signal, no allocation per lease')
  for (let n = 0; n < 100; n++) first.signal.addEventListener('abort', () => {})
  t.equal(getEventListeners(first.signal, 'abort').length, 0, 'a listener per write does not pile up on it')
  t.notOk(first.signal.aborted)
  first.release()
  second.release()
})
