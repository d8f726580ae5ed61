"""Schemathesis hooks for .ci/schemathesis: the API rules no schema can express.

Everything else the server checks, /openapi.json says, so schemathesis runs with every
check on. Two rules compare a value with something outside it, and a JSON Schema
cannot: a generated case that breaks one of them is moved back inside the rule, not
reported as a mismatch.

- An event `timestamp` later than the server's clock plus its skew is refused
  (`timestamp_in_future`, docs/http-api.md). Years from this one on become 2000 (and
  0000, which an offset can move before year 0).
- `start_time` later than `end_time` is refused (`invalid_time_range`). The two are
  swapped, which always gives a range in order.
"""
import datetime
import re

import schemathesis

THIS_YEAR = datetime.datetime.now(datetime.timezone.utc).year
STAMP = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
)


def _past(event):
    ts = event.get("timestamp") if isinstance(event, dict) else None
    # Year 0000 too: an offset may move it before year 0, the one other rule the
    # timestamp pattern leaves to the parser (eye_core::RULES_OUTSIDE_SCHEMA).
    if isinstance(ts, str) and STAMP.match(ts) and (int(ts[:4]) >= THIS_YEAR or ts[:4] == "0000"):
        event["timestamp"] = "2000" + ts[4:]


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, list):
        for event in body:
            _past(event)
    else:
        _past(body)
    return body


def _days(y, m, d):
    """Days since 0000-03-01 in the proleptic Gregorian calendar (year 0 included)."""
    y -= m <= 2
    era, yoe = divmod(y, 400)
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy


def _instant(value, end):
    """Microseconds of a bound as the server reads it, or None when it is not one."""
    m = STAMP.match(value)
    if not m:
        return None
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    if m[4] is None:  # a date: its first microsecond, or as end_time its last
        return (_days(y, mo, d) * 86400 + (86400 if end else 0)) * 10**6 - (1 if end else 0)
    secs = _days(y, mo, d) * 86400 + int(m[4]) * 3600 + int(m[5]) * 60 + int(m[6])
    off = m[8] or "Z"
    if off not in "Zz":
        sign = -1 if off[0] == "-" else 1
        secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    frac = (m[7] or ".")[1:7].ljust(6, "0")
    return secs * 10**6 + int(frac)


@schemathesis.hook
def map_query(ctx, query):
    if not isinstance(query, dict):
        return query
    start, end = query.get("start_time"), query.get("end_time")
    if isinstance(start, str) and isinstance(end, str) and start and end:
        s, e = _instant(start, False), _instant(end, True)
        if s is not None and e is not None and s > e:
            query["start_time"], query["end_time"] = end, start
    return query
