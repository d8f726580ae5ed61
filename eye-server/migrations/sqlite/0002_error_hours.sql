-- Errors-log totals per hour of received time, by application and code, maintained in
-- the write transaction so the errors log's `count` never scans it. The row with
-- code '' counts every entry once; a row with a code counts the entries carrying it.
CREATE TABLE error_hours (
    hour        INTEGER NOT NULL,
    application TEXT    NOT NULL,
    code        TEXT    NOT NULL,
    errors      INTEGER NOT NULL,
    PRIMARY KEY (hour, application, code)
) WITHOUT ROWID;

-- Entries logged before this migration (received_at is never before 1970, so plain
-- integer division is the floor).
INSERT INTO error_hours (hour, application, code, errors)
SELECT received_at / 3600000000, application, '', count(*)
FROM errors
GROUP BY 1, 2;

INSERT INTO error_hours (hour, application, code, errors)
SELECT c.received_at / 3600000000, e.application, c.code, count(*)
FROM error_codes AS c JOIN errors AS e ON e.id = c.error_id
GROUP BY 1, 2, 3;
