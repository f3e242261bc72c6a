-- The Idempotency-Key records of fastify-precondition's pgIdempotencyStore, one row per key.
-- Running (token set): a request holds the key until expires_at, the end of its lease.
-- Done (token NULL): the answer, replayed until expires_at, the end of the route's ttl.
-- A row past expires_at is free: a claim takes it over, and the store deletes such rows.
CREATE TABLE IF NOT EXISTS "fastify_precondition_idempotency" (
  key          text COLLATE "C" PRIMARY KEY,
  fingerprint  text        NOT NULL,
  token        text,
  expires_at   timestamptz NOT NULL,
  status       smallint,
  headers      json,
  body         bytea,
  body_is_text boolean,
  replayable   boolean,
  CHECK ((token IS NULL) = (status IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS "fastify_precondition_idempotency_expires_at_idx" ON "fastify_precondition_idempotency" (expires_at);
