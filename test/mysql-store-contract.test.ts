// The contract every idempotency store keeps (test/helpers/idempotency-store-contract.ts), and its
// cases for a record that went missing, on the MySQL store against a real MariaDB started by the
// test: through mysql2's default connection flags (CLIENT_FOUND_ROWS: affected rows count rows
// matched) and without FOUND_ROWS (rows changed), since the store must not depend on which one the
// application's pool uses.
import { createPool } from 'mysql2/promise'
import { test } from 'tap'
import { mysqlIdempotencyStore } from '../lib/mysql/idempotency-store.js'
import { storeContract, storeContractMissingRecord } from './helpers/idempotency-store-contract.js'
import { mariadbMissing, startMariaDb } from './helpers/mariadb-server.js'

const skip = mariadbMissing()
if (skip !== false) console.log(`# ${skip}`)

test('mysql store', { skip }, async (t) => {
  const { server, pool } = await startMariaDb(t, createPool)
  const store = mysqlIdempotencyStore({ pool, createTable: true, maxAnswerBytes: 4096 })
  storeContract(t, () => store)
  t.test('a record that went missing', async (t) => {
    storeContractMissingRecord(t, () => store)
  })
  t.test('and with the default maxAnswerBytes', async (t) => {
    storeContract(t, () => mysqlIdempotencyStore({ pool }))
  })
  t.test('through a pool without CLIENT_FOUND_ROWS (affected rows count rows changed)', async (t) => {
    const changed = createPool({ ...server.connection, connectionLimit: 10, flags: ['-FOUND_ROWS'] })
    t.teardown(() => changed.end())
    const plain = mysqlIdempotencyStore({ pool: changed, maxAnswerBytes: 4096 })
    storeContract(t, () => plain)
    t.test('a record that went missing', async (t) => {
      storeContractMissingRecord(t, () => plain)
    })
  })
})
