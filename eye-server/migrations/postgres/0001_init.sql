-- The Eye's schema on PostgreSQL: the same tables, columns and meanings as the SQLite
-- schema (eye-server/migrations/sqlite), so one read path serves both.
--
-- - Instants are bigint microseconds since the Unix epoch (UTC), as on SQLite: the
--   counter tree's bucket arithmetic and the API's microsecond output are identical
--   on both backends, with no time-zone conversion anywhere.
-- - Ids are `uuid` (16 bytes, ordered bytewise like SQLite's blobs, so "ties broken by
--   id" gives the same order).
-- - JSON is stored as text, not jsonb: jsonb would reorder keys, and the API returns
--   what was stored byte for byte.
-- - Text columns that are compared, grouped or sorted use the "C" collation: bytewise
--   order as on SQLite, whatever the database's locale, and cheaper comparisons.
--
-- Every counter is maintained in the write transaction with
-- `INSERT ... ON CONFLICT DO UPDATE SET n = t.n + excluded.n`, keys sorted, so any
-- number of concurrent writers keep them exact (see store/postgres/write.rs).
-- Not partitioned yet: docs/postgres.md has the partition plan.

-- Events: one row per id, forever (the primary key is the idempotency guard).
CREATE TABLE events (
    id          uuid   NOT NULL PRIMARY KEY,
    application text   COLLATE "C" NOT NULL,
    session_id  text   COLLATE "C" NOT NULL,
    category    text   COLLATE "C" NOT NULL,
    name        text   COLLATE "C" NOT NULL,
    data        text   NOT NULL,
    timestamp   bigint NOT NULL,
    received_at bigint NOT NULL
);

-- One index per leading filter, each ending with (timestamp, id): the API's "newest
-- first, ties by id" order is a backward scan of the index, with no sort step.
CREATE INDEX events_time        ON events (timestamp, id);
CREATE INDEX events_session     ON events (session_id, timestamp, id);
CREATE INDEX events_category    ON events (category, timestamp, id);
CREATE INDEX events_name        ON events (name, timestamp, id);
CREATE INDEX events_application ON events (application, timestamp, id);

-- Sessions, maintained from newly inserted events only.
CREATE TABLE sessions (
    session_id  text   COLLATE "C" NOT NULL PRIMARY KEY,
    first_seen  bigint NOT NULL,
    last_seen   bigint NOT NULL,
    event_count bigint NOT NULL
);

CREATE INDEX sessions_last_seen ON sessions (last_seen, session_id);

CREATE TABLE session_applications (
    session_id  text COLLATE "C" NOT NULL,
    application text COLLATE "C" NOT NULL,
    PRIMARY KEY (session_id, application)
);

-- Totals by application and event type.
CREATE TABLE event_counts (
    application text   COLLATE "C" NOT NULL,
    category    text   COLLATE "C" NOT NULL,
    name        text   COLLATE "C" NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (application, category, name)
);

-- The counter tree's top level: events per hour of event time.
CREATE TABLE event_hours (
    hour        bigint NOT NULL,
    application text   COLLATE "C" NOT NULL,
    category    text   COLLATE "C" NOT NULL,
    name        text   COLLATE "C" NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (hour, application, category, name)
);

-- The counter tree below the hour: `width` in microseconds (minute, second, 10 ms).
CREATE TABLE event_buckets (
    width       bigint NOT NULL,
    bucket      bigint NOT NULL,
    application text   COLLATE "C" NOT NULL,
    category    text   COLLATE "C" NOT NULL,
    name        text   COLLATE "C" NOT NULL,
    events      bigint NOT NULL,
    PRIMARY KEY (width, bucket, application, category, name)
);

-- The errors log: rejected events, once per key.
CREATE TABLE errors (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key         uuid   NOT NULL UNIQUE,
    application text   COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    codes       text   NOT NULL, -- JSON array of the distinct error codes
    errors      text   NOT NULL, -- JSON array of eye_core::FieldError
    payload     text   NOT NULL
);

CREATE INDEX errors_time        ON errors (received_at, id);
CREATE INDEX errors_application ON errors (application, received_at, id);

CREATE TABLE error_codes (
    code        text   COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    error_id    bigint NOT NULL REFERENCES errors (id) ON DELETE CASCADE,
    PRIMARY KEY (code, received_at, error_id)
);

CREATE INDEX error_codes_error ON error_codes (error_id);

-- Errors-log totals per hour of received time; code '' counts every entry once.
CREATE TABLE error_hours (
    hour        bigint NOT NULL,
    application text   COLLATE "C" NOT NULL,
    code        text   COLLATE "C" NOT NULL,
    errors      bigint NOT NULL,
    PRIMARY KEY (hour, application, code)
);

-- Applications: trusted clients. Only the SHA-256 of a key is stored.
CREATE TABLE applications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text   COLLATE "C" NOT NULL UNIQUE,
    key_hash   bytea  NOT NULL UNIQUE,
    scopes     text   NOT NULL,
    created_at bigint NOT NULL,
    revoked_at bigint
);
