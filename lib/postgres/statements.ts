// The statements of the PostgreSQL idempotency store, one table's worth, each with why it is as
// it is. Every time is the database's clock (clock_timestamp()), never a process's.

// $n::float8 * interval '1 millisecond': a lease or a ttl in ms, as an interval (float8 holds
// every whole number of ms a ttl may be, unlike int4).
const after = (param: string): string => `clock_timestamp() + ${param}::float8 * interval '1 millisecond'`

export function statements (table: string) {
  return {
    // Inserts the key; a row already there is left alone. DO NOTHING, not DO UPDATE … WHERE
    // expired: an ON CONFLICT DO UPDATE locks the row it meets even when its WHERE is false, which
    // cost every replay and every 409 a transaction ID and a WAL record (a flush, with
    // synchronous_commit on). DO NOTHING meets the row in the unique index and writes nothing.
    claim: `INSERT INTO ${table} (key, fingerprint, token, expires_at) VALUES ($1, $2, $3, ${after('$4')})
ON CONFLICT (key) DO NOTHING`,
    // Takes over a row whose lease or ttl ended: only a row that is still expired when locked.
    takeOver: `UPDATE ${table} SET fingerprint = $2, token = $3, expires_at = ${after('$4')},
  status = NULL, headers = NULL, body = NULL, body_is_text = NULL, replayable = NULL
WHERE key = $1 AND expires_at <= clock_timestamp()`,
    // The live row that kept the claim out; its answer only for the same fingerprint.
    read: `SELECT fingerprint = $2 AS same, token IS NULL AS done, token IS NOT DISTINCT FROM $3 AS mine,
  (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::float8 AS ms_left,
  status, headers, CASE WHEN fingerprint = $2 THEN body END AS body, body_is_text, replayable
FROM ${table} WHERE key = $1 AND expires_at > clock_timestamp()`,
    // The claimer's own row, its lease ended or not: a row nobody claimed again still has its
    // token.
    completeOwned: `UPDATE ${table} SET token = NULL, expires_at = ${after('$3')},
  status = $4, headers = $5::text::json, body = $6, body_is_text = $7, replayable = $8
WHERE key = $1 AND token = $2`,
    // The same through the handler's transaction, under READ COMMITTED only. Under REPEATABLE
    // READ or SERIALIZABLE, an UPDATE of a row renewed since the transaction's snapshot fails it
    // (40001), and one whose snapshot is older than the claim finds nothing; the isolation is
    // tested once, before any row (a one-time filter), so such a transaction is left as it was.
    completeIn: `UPDATE ${table} SET token = NULL, expires_at = ${after('$3')},
  status = $4, headers = $5::text::json, body = $6, body_is_text = $7, replayable = $8
WHERE key = $1 AND token = $2 AND current_setting('transaction_isolation') = 'read committed'`,
    // Through the store's pool, the same, or the row made again when it is gone (swept while the
    // database was out of reach): nobody else holds the key, and the request that ran is this one.
    complete: `INSERT INTO ${table} AS r (key, fingerprint, token, expires_at, status, headers, body, body_is_text, replayable)
VALUES ($1, $9, NULL, ${after('$3')}, $4, $5::text::json, $6, $7, $8)
ON CONFLICT (key) DO UPDATE SET token = NULL, expires_at = excluded.expires_at, status = excluded.status,
  headers = excluded.headers, body = excluded.body, body_is_text = excluded.body_is_text, replayable = excluded.replayable
WHERE r.token = $2`,
    // Which database a session is on, to tell a transaction on another one.
    where: `SELECT current_database() AS db, inet_server_port() AS port, pg_postmaster_start_time()::text AS started,
  current_setting('transaction_isolation') AS isolation`,
    release: `DELETE FROM ${table} WHERE key = $1 AND token = $2`,
    renew: `UPDATE ${table} SET expires_at = ${after('$3')} WHERE key = $1 AND token = $2`,
    // At most $1 expired rows, oldest first through the index; rows another statement holds are
    // left for the next sweep rather than waited for.
    sweep: `DELETE FROM ${table} WHERE key IN (
  SELECT key FROM ${table} WHERE expires_at < now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
) AND expires_at < now()`
  }
}
