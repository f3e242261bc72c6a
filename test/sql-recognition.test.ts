// lib/sql without a database: what `executorOf` and `inTransaction` refuse (with a TypeError that
// names every accepted kind, before any SQL runs), the function form, the MySQL side of each
// layer (by each layer's own marks, on stand-ins: the MySQL engine is tested by its store), and
// PostgreSQL's `$n` turned into Knex's `?` as a table.
import { EventEmitter } from 'node:events'
import t from 'tap'
import { executorOf, inTransaction } from '../lib/sql/executor.js'
import { isDrizzle } from '../lib/sql/layers/drizzle.js'
import { mysqlResult } from '../lib/sql/layers/mysql2.js'
import { pgResult } from '../lib/sql/layers/node-postgres.js'
import { positional } from '../lib/sql/placeholders.js'
import { describe } from '../lib/sql/shape.js'

const EVERY_KIND = [/node-postgres Client or PoolClient/, /postgres\.js' sql\.begin/, /Kysely's db\.transaction\(\)\.execute/, /Drizzle's db\.transaction/, /knex\.transaction/, /TypeORM's dataSource\.transaction/, /mysql2 promise PoolConnection/, /a function \(text, values\)/]

t.test('anything not a transaction is refused at once, naming every kind accepted', async (t) => {
  for (const [what, value] of [['{}', {}], ['null', null], ['undefined', undefined], ['a number', 42], ['a string', 'BEGIN'], ['an object of a class', new Date(0)], ['an object without query', { execute: 'no' }]] as const) {
    let error: unknown
    try {
      executorOf(value, 'postgres')
    } catch (caught) {
      error = caught
    }
    t.type(error, TypeError, what)
    const message = (error as Error).message
    t.match(message, /^fastify-precondition: the transaction is none it knows for PostgreSQL \(got /, what)
    for (const kind of EVERY_KIND) t.match(message, kind, `${what}: names ${String(kind)}`)
  }
  t.throws(() => executorOf({}, 'mysql'), { message: /for MySQL/ })
  await t.rejects(inTransaction({}, 'postgres', async () => 1), { name: 'TypeError', message: /the database is none it knows for PostgreSQL \(got an object\); it takes a node-postgres Pool; a postgres\.js sql; a Kysely instance; a Drizzle database; a Knex instance; a TypeORM DataSource; a mysql2 promise Pool$/ })
})

t.test('describe: what the refusal says it got', async (t) => {
  t.equal(describe(null), 'null')
  t.equal(describe(42), 'number 42')
  t.equal(describe({}), 'an object')
  t.equal(describe(Object.create(null)), 'an object')
  t.equal(describe({ a: 1, b: 2 }), 'an object with a, b')
  t.equal(describe([[], 1]), 'a Array with 0, 1')
  t.equal(describe(new Map()), 'a Map')
  t.equal(describe(function run (_a: unknown, _b: unknown) {}), 'a function run of 2 parameters')
  t.equal(describe(() => {}), 'a function of 0 parameters')
})

t.test('the function form: runs the text with the values, and must say how many rows', async (t) => {
  const calls: unknown[] = []
  const run = executorOf(async (text: string, values: unknown[]) => {
    calls.push([text, values])
    return { rowCount: 1 }
  }, 'postgres')
  t.same(await run.query('UPDATE t SET a = $1', [1]), { rows: [], rowCount: 1 })
  t.same(calls, [['UPDATE t SET a = $1', [1]]], 'the text and values as they are')
  const rows = executorOf(async () => ({ rowCount: 2, rows: [{ a: 1 }, { a: 2 }] }), 'mysql')
  t.same(await rows.query('SELECT a FROM t', []), { rows: [{ a: 1 }, { a: 2 }], rowCount: 2 })
  await t.rejects(executorOf(async () => 1, 'postgres').query('x', []), { name: 'TypeError', message: /the function given as a transaction resolved to 1; it must resolve to \{ rowCount: number, rows\? \}/ })
  await t.rejects(executorOf(async () => undefined, 'postgres').query('x', []), { message: /resolved to undefined/ })
})

t.test('a result without a row count is not taken for "no row changed"', async (t) => {
  // TypeORM's manager.query answers an UPDATE with [rows, count]: no rowCount.
  await t.rejects(executorOf({ query: async () => [[], 1] }, 'postgres').query('UPDATE t SET a = $1', [1]), { name: 'TypeError', message: /resolved to no row count \(got a Array with 0, 1\)/ })
  t.throws(() => pgResult(undefined, 'q'), { message: /got undefined/ })
  t.same(pgResult({ rows: [], rowCount: null }, 'q'), { rows: [], rowCount: 0 }, 'a DDL statement: null, no rows')
  const several = executorOf({ query: async () => [{ rowCount: null }, { rows: [{ a: 1 }], rowCount: 1 }] }, 'postgres')
  t.same(await several.query('CREATE TABLE t (a int); SELECT 1 AS a', []), { rows: [{ a: 1 }], rowCount: 1 }, 'several statements without values: the last one')
  t.same(pgResult({ rowCount: 3 }, 'q'), { rows: [], rowCount: 3 })
})

t.test('mysql2, on MySQL', async (t) => {
  const statements: unknown[] = []
  class Connection extends EventEmitter {
    failNext: Error | null = null
    released = 0
    destroyed = 0
    async query (text: string, values: unknown[]) {
      statements.push([text, values])
      if (this.failNext !== null) {
        const error = this.failNext
        this.failNext = null
        throw error
      }
      return text.startsWith('SELECT') ? [[{ a: 1 }], []] : [{ affectedRows: 2 }, undefined]
    }

    async beginTransaction () { statements.push('BEGIN') }
    async commit () { statements.push('COMMIT') }
    async rollback () {
      statements.push('ROLLBACK')
      if (this.failNext !== null) throw this.failNext
    }

    release () { this.released++ }
    destroy () { this.destroyed++ }
  }
  const connection = new Connection()
  const pool = { getConnection: async () => connection, query: async () => [[], []] }

  const run = executorOf(connection, 'mysql')
  t.same(await run.query('SELECT a FROM t WHERE b = ?', [1]), { rows: [{ a: 1 }], rowCount: 1 })
  t.same(await run.query('UPDATE t SET a = ?', [1]), { rows: [], rowCount: 2 }, 'a write: its affectedRows')
  t.same(await executorOf(pool, 'mysql').query('SELECT 1', []), { rows: [], rowCount: 0 }, 'a pool, for a store')
  await t.rejects(executorOf({ query: () => ({ on () {} }) }, 'mysql').query('SELECT 1', []), { name: 'TypeError', message: /mysql2's promise API/ }, 'the callback API is refused')
  t.throws(() => mysqlResult({ fieldCount: 0 }, 'q'), { message: /neither rows nor a header with affectedRows/ })
  t.throws(() => executorOf(connection, 'postgres'), { name: 'TypeError', message: /a mysql2 connection is MySQL's, and this store is PostgreSQL's/ })
  t.throws(() => executorOf({ query () {}, escapeLiteral () {}, escapeIdentifier () {} }, 'mysql'), { message: /a node-postgres client is PostgreSQL's, and this store is MySQL's/ })

  statements.length = 0
  t.equal(await inTransaction(pool, 'mysql', async (tx) => {
    t.equal(tx, connection, 'fn gets the connection')
    await executorOf(tx, 'mysql').query('UPDATE t SET a = ?', [1])
    return 'done'
  }), 'done')
  t.same(statements, ['BEGIN', ['UPDATE t SET a = ?', [1]], 'COMMIT'])
  t.equal(connection.released, 1, 'released')
  t.equal(connection.listenerCount('error'), 0, 'its error listener removed')

  statements.length = 0
  await t.rejects(inTransaction(pool, 'mysql', async () => { throw new Error('failed') }), { message: 'failed' })
  t.same(statements, ['BEGIN', 'ROLLBACK'], 'a throw rolls back')
  t.equal(connection.released, 2, 'and releases')

  await t.rejects(inTransaction(pool, 'mysql', async () => {
    connection.emit('error', new Error('the server went away'))
    throw new Error('failed')
  }), { message: 'failed' }, "an 'error' event does not throw")
  t.equal(connection.destroyed, 1, 'a connection that emitted error is destroyed, not rolled back nor released')
  await t.rejects(inTransaction(pool, 'mysql', async () => {
    connection.failNext = new Error('rollback failed')
    throw new Error('failed')
  }), { message: 'failed' })
  t.equal(connection.destroyed, 2, 'so is one whose ROLLBACK failed')
})

/** A class chain marked as drizzle-orm marks its own (a static under Symbol.for('drizzle:entityKind')). */
function drizzleClasses (database: string, transaction: string) {
  const kind = Symbol.for('drizzle:entityKind')
  class Database {
    static [kind] = database
    results: unknown[] = []
    async execute (query: { getSQL (): { toQuery (config: unknown): unknown } }) {
      this.results.push(query.getSQL().toQuery({}))
      return this.results.length === 1 ? [{ affectedRows: 1 }, []] : [[{ a: 1 }], []]
    }

    async transaction (fn: (tx: Transaction) => Promise<unknown>) { return await fn(new Transaction()) }
  }
  class Transaction extends Database {
    static [kind] = transaction
  }
  return { Database, Transaction }
}

t.test('Drizzle: recognized as drizzle-orm\'s is() does, on either engine', async (t) => {
  const mysql = drizzleClasses('MySqlDatabase', 'MySqlTransaction')
  const tx = new mysql.Transaction()
  t.ok(isDrizzle(tx, 'MySqlDatabase'), 'a transaction is a database of its kind')
  t.notOk(isDrizzle(Object.create(null), 'MySqlDatabase'))
  t.notOk(isDrizzle(null, 'MySqlDatabase'))
  const run = executorOf(tx, 'mysql')
  t.same(await run.query('UPDATE t SET a = ?', [1]), { rows: [], rowCount: 1 })
  t.same(await run.query('SELECT a FROM t', []), { rows: [{ a: 1 }], rowCount: 1 })
  t.same(tx.results, [{ sql: 'UPDATE t SET a = ?', params: [1] }, { sql: 'SELECT a FROM t', params: [] }], 'the text and values reach the driver as they are')
  t.throws(() => executorOf(tx, 'postgres'), { name: 'TypeError', message: /a Drizzle MySQL database is not PostgreSQL's/ })
  t.throws(() => executorOf(new mysql.Database(), 'mysql'), { message: /a Drizzle database is not a transaction/ })
  t.equal(await inTransaction(new mysql.Database(), 'mysql', async (inner) => inner instanceof mysql.Transaction), true, 'inTransaction: db.transaction')
})

t.test('Knex on MySQL: its raw, with the text\'s own ?', async (t) => {
  const calls: unknown[] = []
  const knex = (client: string, isTransaction: boolean) => Object.assign(function table () {}, {
    client: { dialect: client },
    isTransaction,
    async raw (text: string, values: unknown[]) {
      calls.push([text, values])
      return [{ affectedRows: 1 }, undefined]
    },
    async transaction (fn: (trx: unknown) => Promise<unknown>) { return await fn(knex(client, true)) }
  })
  const trx = knex('mysql2', true)
  t.same(await executorOf(trx, 'mysql').query('UPDATE t SET a = ? WHERE b = ?', [1, 2]), { rows: [], rowCount: 1 })
  t.same(calls, [['UPDATE t SET a = ? WHERE b = ?', [1, 2]]])
  t.throws(() => executorOf(trx, 'postgres'), { message: /a Knex instance on MySQL is not PostgreSQL's/ })
  t.throws(() => executorOf(knex('postgresql', true), 'mysql'), { message: /a Knex instance on PostgreSQL is not MySQL's/ })
  t.ok(executorOf(knex('oracledb', true), 'mysql'), 'an engine it cannot tell is taken at its word')
  t.equal(await inTransaction(knex('mysql', false), 'mysql', async (inner) => (inner as { isTransaction: boolean }).isTransaction), true)
})

t.test('TypeORM on MySQL: the structured result of its QueryRunner', async (t) => {
  const manager = (type: string | undefined, queryRunner?: unknown) => ({
    '@instanceof': Symbol.for('EntityManager'),
    connection: { options: { type } },
    queryRunner
  })
  const results = [{ records: [{ a: 1 }, { a: 2 }], affected: undefined }, { records: undefined, affected: 1 }]
  const runner = { query: async () => results.shift() }
  const run = executorOf(manager('mariadb', runner), 'mysql')
  t.same(await run.query('SELECT a FROM t', []), { rows: [{ a: 1 }, { a: 2 }], rowCount: 2 }, 'a SELECT: its records')
  t.same(await run.query('UPDATE t SET a = ?', [1]), { rows: [], rowCount: 1 }, 'a write: affected')
  t.throws(() => executorOf(manager('mysql', runner), 'postgres'), { message: /a TypeORM DataSource on MySQL is not PostgreSQL's/ })
  t.ok(executorOf(manager(undefined, runner), 'mysql'), 'an engine it cannot tell is taken at its word')
})

t.test('postgres.js and node-postgres are PostgreSQL\'s', async (t) => {
  const sql = Object.assign(() => {}, { unsafe () {}, begin () {} })
  t.throws(() => executorOf(sql, 'mysql'), { message: /a postgres\.js sql is PostgreSQL's, and this store is MySQL's/ })
})

t.test('$n as Knex\'s ?: values in the order they appear, text left as it is', async (t) => {
  const cases: Array<[string, unknown[], string, unknown[]]> = [
    ['SELECT $1, $2', [1, 2], 'SELECT ?, ?', [1, 2]],
    ['SELECT $2, $1, $2', ['a', 'b'], 'SELECT ?, ?, ?', ['b', 'a', 'b']],
    ['SELECT $10', Array.from({ length: 10 }, (_, i) => i + 1), 'SELECT ?', [10]],
    ['SELECT \'$1 ?\' || $1', ['x'], 'SELECT \'$1 \\?\' || ?', ['x']],
    ['SELECT \'it\'\'s $1\', $1', ['x'], 'SELECT \'it\'\'s $1\', ?', ['x']],
    ['SELECT E\'\\\' $1\', $1', ['x'], 'SELECT E\'\\\' $1\', ?', ['x']],
    ['SELECT "col$1?", $1', ['x'], 'SELECT "col$1\\?", ?', ['x']],
    ['SELECT $$ $1 ? $$, $1', ['x'], 'SELECT $$ $1 \\? $$, ?', ['x']],
    ['SELECT $tag$ $1 $tag$, $1', ['x'], 'SELECT $tag$ $1 $tag$, ?', ['x']],
    ['SELECT $1 -- $2 ?\n, $2', ['x', 'y'], 'SELECT ? -- $2 \\?\n, ?', ['x', 'y']],
    ['SELECT $1 -- $2', ['x', 'y'], 'SELECT ? -- $2', ['x']],
    ['SELECT /* $2 ? */ $1', ['x', 'y'], 'SELECT /* $2 \\? */ ?', ['x']],
    ['SELECT data ? \'key\', a$1, $1', ['x'], 'SELECT data \\? \'key\', a$1, ?', ['x']],
    ['SELECT \'open', [], 'SELECT \'open', []],
    ['SELECT /* open', [], 'SELECT /* open', []],
    ['SELECT $$ open', [], 'SELECT $$ open', []],
    ['SELECT $x', [], 'SELECT $x', []],
    ['e\'$1\'', [], 'e\'$1\'', []],
    ['SELECT note\'$1\'', ['x'], 'SELECT note\'$1\'', []]
  ]
  for (const [text, values, expected, ordered] of cases) {
    t.same(positional(text, values), { text: expected, values: ordered }, JSON.stringify(text))
  }
  t.throws(() => positional('SELECT $3', [1, 2]), { name: 'RangeError', message: /\$3 in the statement has no value \(2 given\)/ })
  t.throws(() => positional('SELECT $0', [1]), RangeError)
})

t.test('node-postgres inTransaction: a client that failed is released with its error, so the pool destroys it', async (t) => {
  class Client extends EventEmitter {
    statements: string[] = []
    released: unknown[] = []
    failRollback = false
    async query (text: string) {
      this.statements.push(text)
      if (text === 'ROLLBACK' && this.failRollback) throw new Error('Connection terminated')
      return { rows: [], rowCount: null }
    }

    release (error?: unknown) { this.released.push(error) }
  }
  const client = new Client()
  const pool = { connect: async () => client, query () {}, totalCount: 1 }
  client.failRollback = true
  await t.rejects(inTransaction(pool, 'postgres', async () => { throw new Error('failed') }), { message: 'failed' }, 'the handler\'s error, not the ROLLBACK\'s')
  t.same(client.statements, ['BEGIN', 'ROLLBACK'])
  t.match(client.released, [{ message: 'Connection terminated' }], 'released with the ROLLBACK\'s error')
  const gone = new Error('terminating connection due to administrator command')
  t.equal(await inTransaction(pool, 'postgres', async () => {
    client.emit('error', gone)
    return 'committed'
  }), 'committed', "an 'error' event does not throw")
  t.equal(client.released[1], gone, 'and the client that emitted it is released with it')
  t.equal(client.listenerCount('error'), 0, 'its listener removed')
})

t.test('mysql2 inTransaction: a connection that emitted error is destroyed even when the transaction committed', async (t) => {
  const connection = Object.assign(new EventEmitter(), {
    destroyed: 0,
    async beginTransaction () {},
    async commit () {},
    async rollback () {},
    async query () { return [[], []] },
    release () {},
    destroy () { this.destroyed++ }
  })
  await inTransaction({ getConnection: async () => connection, query () {} }, 'mysql', async () => { connection.emit('error', new Error('gone')) })
  t.equal(connection.destroyed, 1)
})

t.test('results without a count of their own: the rows', async (t) => {
  const sql = Object.assign(() => {}, { unsafe: async () => [{ a: 1 }] })
  t.same(await executorOf(sql, 'postgres').query('SELECT 1 AS a', []), { rows: [{ a: 1 }], rowCount: 0 }, 'postgres.js without count: 0')
  const pg = drizzleClasses('PgDatabase', 'PgTransaction')
  const tx = new pg.Transaction()
  tx.execute = async () => [{ a: 1 }, { a: 2 }] as any
  t.same(await executorOf(tx, 'postgres').query('SELECT a FROM t', []), { rows: [{ a: 1 }, { a: 2 }], rowCount: 2 }, 'Drizzle, rows without count: their number')
  tx.execute = async () => ({ rows: [], rowCount: 3 }) as any
  t.same(await executorOf(tx, 'postgres').query('UPDATE t SET a = 1', []), { rows: [], rowCount: 3 }, 'Drizzle on node-postgres: its rowCount')
  const my = new (drizzleClasses('MySqlDatabase', 'MySqlTransaction').Transaction)()
  my.execute = async () => ({ affectedRows: 4 }) as any
  t.same(await executorOf(my, 'mysql').query('UPDATE t SET a = 1', []), { rows: [], rowCount: 4 }, 'Drizzle on a MySQL driver that gives the header alone')
})
