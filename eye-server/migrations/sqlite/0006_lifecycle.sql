-- Data lifecycle (docs/lifecycle.md): retention, erasure.

-- Entries of the errors log are deleted by retention and erasure; each delete
-- cascades to error_codes, whose key starts with the code: without this index every
-- cascade scanned the whole table.
CREATE INDEX error_codes_error ON error_codes (error_id);

-- Per-application retention of events, in days: NULL follows --retention-days, 0
-- keeps the application's events forever.
ALTER TABLE applications ADD COLUMN retention_days INTEGER;

-- Sessions erased on request. An event of one of them that reaches the store later (a
-- client's retry, a journal replay, a Redis redelivery) is dropped in the write
-- transaction. Rows are kept for 30 days after the erasure, then purged.
CREATE TABLE erased_sessions (
    session_id TEXT    NOT NULL PRIMARY KEY,
    erased_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX erased_sessions_time ON erased_sessions (erased_at);
