-- Events per bucket of event time finer than the hour, by application and type: the
-- lower levels of a counter tree whose top level is event_hours. `width` is the
-- bucket's width in microseconds (60,000,000: minute; 1,000,000: second; 10,000:
-- 10 ms) and `bucket` the timestamp floor-divided by it. Maintained in the write
-- transaction. Deep pages seek through it to the 10 ms the page starts in, and counts
-- of a time range read whole buckets here instead of walking an index over the
-- partial hours at its edges.
CREATE TABLE event_buckets (
    width       INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    application TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (width, bucket, application, category, name)
) WITHOUT ROWID;

-- Events stored before this migration. SQLite's `/` truncates toward zero; the
-- subtraction makes it a floor division for timestamps before 1970 too.
INSERT INTO event_buckets (width, bucket, application, category, name, events)
SELECT w.width, (e.timestamp - ((e.timestamp % w.width) + w.width) % w.width) / w.width,
       e.application, e.category, e.name, count(*)
FROM events AS e, (SELECT 60000000 AS width UNION ALL SELECT 1000000 UNION ALL SELECT 10000) AS w
GROUP BY 1, 2, 3, 4, 5;
