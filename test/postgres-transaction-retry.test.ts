// A handler that tries its transaction again after a serialization failure at COMMIT (SQLSTATE
// 40001), as PostgreSQL asks of SERIALIZABLE transactions: the first attempt recorded the answer
// with request.idempotency.complete(tx, …) and rolled back, so the second attempt must be able to
// record it again. A deferred constraint trigger stands for the failure: it raises 40001 at
// COMMIT for as many commits as the test asks (counted by a sequence, which no rollback undoes).
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { test } from 'tap'
import fastifyPrecondition from '../lib/index.js'
import { idempotencyTableSql, pgIdempotencyStore } from '../lib/postgres.js'
import { postgresMissing, startPostgres } from './helpers/postgres-server.js'

const skip = postgresMissing()
if (skip !== false) console.log(`# ${skip}`)

test('a transaction tried again after a serialization failure at COMMIT', { skip }, async (t) => {
  const { pool } = await startPostgres(t, pg.Pool)
  await pool.query(idempotencyTableSql())
  await pool.query(`
CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL);
CREATE TABLE commit_faults (failures int NOT NULL);
INSERT INTO commit_faults VALUES (0);
CREATE SEQUENCE commit_fault_seq;
CREATE FUNCTION fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('commit_fault_seq') <= (SELECT failures FROM commit_faults) THEN
    RAISE EXCEPTION 'could not serialize access due to read/write dependencies among transactions (test fault)' USING ERRCODE = '40001';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER orders_commit_fault AFTER INSERT ON orders DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION fail_at_commit();`)

  const attempts: string[] = []
  const app: FastifyInstance = Fastify()
  await app.register(fastifyPrecondition, { idempotencyStore: pgIdempotencyStore({ pool }) })
  app.post<{ Body: { item: string } }>('/orders', { concurrency: { idempotency: { required: true } } }, async (request, reply) => {
    for (let attempt = 1; ; attempt++) {
      const tx = await pool.connect()
      try {
        await tx.query('BEGIN ISOLATION LEVEL SERIALIZABLE')
        const { rows: [order] } = await tx.query('INSERT INTO orders (item) VALUES ($1) RETURNING id, item', [request.body.item])
        reply.code(201)
        await request.idempotency!.complete(tx, order)
        await tx.query('COMMIT')
        attempts.push('committed')
        return order
      } catch (error) {
        await tx.query('ROLLBACK')
        const code = (error as { code?: string }).code as string
        attempts.push(code)
        // The retry PostgreSQL asks for; anything else fails the request.
        if (code !== '40001' || attempt === 3) throw error
      } finally {
        tx.release()
      }
    }
  })
  t.teardown(() => app.close())
  const post = (key: string) => app.inject({ method: 'POST', url: '/orders', headers: { 'idempotency-key': `"${key}"` }, payload: { item: 'tea' } })
  const orders = async () => (await pool.query('SELECT count(*)::int AS n FROM orders')).rows[0].n as number

  t.test('without a failure, one attempt', async (t) => {
    const answer = await post('plain')
    t.equal(answer.statusCode, 201)
    t.same(attempts.splice(0), ['committed'])
    t.equal(await orders(), 1)
  })

  t.test('one failure at COMMIT, then the second attempt records the answer and commits', async (t) => {
    await pool.query('UPDATE commit_faults SET failures = 1; ALTER SEQUENCE commit_fault_seq RESTART')
    const before = await orders()
    const answer = await post('serialization-failure')
    const tried = attempts.splice(0)
    t.equal(tried[0], '40001', 'the first attempt failed at COMMIT and rolled back')
    t.ok(await orders() - before <= 1, 'never two orders')
    t.same(tried, ['40001', 'committed'], `the second attempt commits (attempts: ${tried.join(', ')})`)
    t.equal(answer.statusCode, 201, `answered 201 (got ${answer.statusCode}: ${answer.json().message as string})`)
    t.equal(await orders() - before, 1, 'one order')
    const retry = await post('serialization-failure')
    t.equal(retry.headers['idempotent-replayed'], 'true', `a resend replays it (got ${retry.statusCode})`)
  })
})
