-- The Idempotency-Key records of fastify-precondition's mysqlIdempotencyStore, one row per key.
-- Running (token set): a request holds the key until expires_at, the end of its lease.
-- Done (token NULL): the answer, replayed until expires_at, the end of the route's ttl.
-- A row past expires_at is free: a claim takes it over, and the store deletes such rows.
-- Times are UTC_TIMESTAMP(6), the database's clock. Keys and tokens are compared byte for byte.
CREATE TABLE IF NOT EXISTS `fastify_precondition_idempotency` (
  `key`        VARBINARY(3072) NOT NULL,
  fingerprint  VARBINARY(255)  NOT NULL,
  token        VARBINARY(64),
  expires_at   DATETIME(6)     NOT NULL,
  status       SMALLINT,
  headers      TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
  body         LONGBLOB,
  body_is_text BOOLEAN,
  replayable   BOOLEAN,
  PRIMARY KEY (`key`),
  KEY expires_at_idx (expires_at),
  CHECK ((token IS NULL) = (status IS NOT NULL))
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
