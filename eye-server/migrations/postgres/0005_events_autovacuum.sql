-- Deep pages skip up to one 10 ms bucket of `events_time` entries; that skip is an
-- index-only scan only where the visibility map says the rows are all-visible, which
-- only a VACUUM sets. Events are insert-only between retention runs, so autovacuum
-- comes by default after 20% of the table in new rows: on a 100M-event table, the
-- newest 20M (the rows every listing reads) would cost a heap fetch each. After 1% (at
-- least 10,000 rows) it is a cheap pass (no dead rows to remove) that keeps the newest
-- rows visible-all and index-only (measured: page 10,000 of 1M freshly drained events,
-- its final `OFFSET` read 2.7 ms before a VACUUM, 0.5 ms after).
ALTER TABLE events SET (
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 10000
);
