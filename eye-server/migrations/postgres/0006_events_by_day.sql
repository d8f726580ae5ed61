-- Events partitioned by UTC day, so that retention drops whole days (a TRUNCATE and a
-- DROP TABLE) instead of deleting rows one by one (docs/postgres.md, "Partitions").
--
-- - `event_ids` is the once-forever guard that the primary key on `events.id` was:
--   PostgreSQL requires the partition key in every unique constraint of a partitioned
--   table, and `(timestamp, id)` alone would store an id twice under two timestamps.
--   The write path inserts the ids first (`ON CONFLICT (id) DO NOTHING RETURNING id`)
--   and only the returned ones into `events`.
-- - `events_p20261205` and so on: one partition per UTC day, created ahead by every
--   serve and worker process (`store::postgres::partitions`).
-- - `events_legacy`: the rows written before this migration, as one partition of
--   everything before the first day partition; retention deletes its old rows in
--   batches, as before.
-- - `events_default`: a day without a partition (an event older than the partitions
--   created ahead, or of a day retention already dropped) lands here, so no insert can
--   ever fail for want of a partition; retention deletes its rows one by one.

CREATE TABLE event_ids (
    id uuid NOT NULL PRIMARY KEY
);
INSERT INTO event_ids (id) SELECT id FROM events;

-- The old table keeps its rows and indexes; its key becomes the partitions' key.
ALTER TABLE events RENAME TO events_legacy;
ALTER TABLE events_legacy DROP CONSTRAINT events_pkey;
DROP INDEX events_time;
ALTER TABLE events_legacy ADD CONSTRAINT events_legacy_pkey PRIMARY KEY (timestamp, id);
ALTER INDEX events_session RENAME TO events_legacy_session;
ALTER INDEX events_category RENAME TO events_legacy_category;
ALTER INDEX events_name RENAME TO events_legacy_name;
ALTER INDEX events_application RENAME TO events_legacy_application;

CREATE TABLE events (
    id               uuid   NOT NULL,
    application      text   COLLATE "C" NOT NULL,
    session_id       text   COLLATE "C" NOT NULL,
    category         text   COLLATE "C" NOT NULL,
    name             text   COLLATE "C" NOT NULL,
    data             text   NOT NULL,
    timestamp        bigint NOT NULL,
    received_at      bigint NOT NULL,
    client_timestamp bigint,
    -- Also the index of the time-ordered pages (it was `events_time`).
    PRIMARY KEY (timestamp, id)
) PARTITION BY RANGE (timestamp);

CREATE INDEX events_session     ON events (session_id, timestamp, id);
CREATE INDEX events_category    ON events (category, timestamp, id);
CREATE INDEX events_name        ON events (name, timestamp, id);
CREATE INDEX events_application ON events (application, timestamp, id);

CREATE TABLE events_default PARTITION OF events DEFAULT WITH (
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 10000
);

-- The old rows: everything before today (UTC), or before the day after the newest
-- stored timestamp when that is today or later. Attaching checks every row against the
-- range once (one scan of the old table).
DO $$
DECLARE
    day    CONSTANT bigint := 86400000000;
    now_us CONSTANT bigint := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    today  CONSTANT bigint := now_us - now_us % day;
    newest bigint := (SELECT max(timestamp) FROM events_legacy);
    bound  bigint := today;
BEGIN
    IF newest >= today THEN
        bound := (newest / day + 1) * day;
    END IF;
    EXECUTE format(
        'ALTER TABLE events ATTACH PARTITION events_legacy FOR VALUES FROM (MINVALUE) TO (%s)',
        bound);
END
$$;
