-- The Eye's schema. Timestamps are integer microseconds since the Unix epoch (UTC),
-- ids are 16-byte UUID blobs, JSON is stored as text.

-- Events: one row per id (the idempotency key; a duplicate insert is a no-op).
-- WITHOUT ROWID makes the table itself the id index, and every secondary index ends
-- with the primary key, so an index on (x, timestamp) is ordered by (x, timestamp, id):
-- exactly the API's "newest first, ties broken by id" order, and covering for it.
CREATE TABLE events (
    id          BLOB    NOT NULL PRIMARY KEY,
    application TEXT    NOT NULL,
    session_id  TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    timestamp   INTEGER NOT NULL,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;

-- One index per leading filter; the time range is a range on the second column.
CREATE INDEX events_time        ON events (timestamp);
CREATE INDEX events_session     ON events (session_id, timestamp);
CREATE INDEX events_category    ON events (category, timestamp);
CREATE INDEX events_name        ON events (name, timestamp);
CREATE INDEX events_application ON events (application, timestamp);

-- Sessions: one row per session id, maintained in the write transaction from the
-- events that were newly inserted (never from duplicates).
CREATE TABLE sessions (
    session_id  TEXT    NOT NULL PRIMARY KEY,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    event_count INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX sessions_last_seen ON sessions (last_seen);

-- The applications that sent a session's events.
CREATE TABLE session_applications (
    session_id  TEXT NOT NULL,
    application TEXT NOT NULL,
    PRIMARY KEY (session_id, application)
) WITHOUT ROWID;

-- Counters maintained in the write transaction, so totals never scan events.
-- Totals by application and event type.
CREATE TABLE event_counts (
    application TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (application, category, name)
) WITHOUT ROWID;

-- The same per hour of event time (hour = timestamp div 3,600,000,000): counts of a
-- time range sum the whole hours here and count only the partial hours at its edges.
CREATE TABLE event_hours (
    hour        INTEGER NOT NULL,
    application TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (hour, application, category, name)
) WITHOUT ROWID;

-- The errors log: rejected events, once per key (a redelivered message is a no-op).
CREATE TABLE errors (
    id          INTEGER PRIMARY KEY,
    key         BLOB    NOT NULL UNIQUE,
    application TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    codes       TEXT    NOT NULL, -- JSON array of the distinct error codes
    errors      TEXT    NOT NULL, -- JSON array of eye_core::FieldError
    payload     TEXT    NOT NULL
);

-- Both end with the rowid, so they are ordered by (.., received_at, id).
CREATE INDEX errors_time        ON errors (received_at);
CREATE INDEX errors_application ON errors (application, received_at);

-- One row per (error, distinct code), for the code filter.
CREATE TABLE error_codes (
    code        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    error_id    INTEGER NOT NULL REFERENCES errors (id) ON DELETE CASCADE,
    PRIMARY KEY (code, received_at, error_id)
) WITHOUT ROWID;

-- Applications: trusted clients. Only the SHA-256 of a key is stored.
CREATE TABLE applications (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    key_hash   BLOB    NOT NULL UNIQUE,
    scopes     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
