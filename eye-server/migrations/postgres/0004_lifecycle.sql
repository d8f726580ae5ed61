-- Data lifecycle (docs/lifecycle.md): retention, erasure. The same tables and
-- meanings as the SQLite schema (error_codes (error_id) is indexed since 0001 here).

-- Per-application retention of events, in days: NULL follows --retention-days, 0
-- keeps the application's events forever.
ALTER TABLE applications ADD COLUMN retention_days BIGINT;

-- Sessions erased on request. An event of one of them that reaches the store later (a
-- client's retry, a journal replay, a Redis redelivery) is dropped in the write
-- transaction. Rows are kept for 30 days after the erasure, then purged.
CREATE TABLE erased_sessions (
    session_id text   COLLATE "C" NOT NULL PRIMARY KEY,
    erased_at  bigint NOT NULL
);

CREATE INDEX erased_sessions_time ON erased_sessions (erased_at);
