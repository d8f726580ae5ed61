"""Prints bench/run's table from its raw results.

Usage: table.py RESULTS.tsv < meta.tsv

RESULTS.tsv holds one `key<TAB>value` line per measurement (one per run); meta.tsv
holds `name<TAB>text` lines printed above the table. Each row of the table is the
median, min and max of one key over the runs, and the median over the runs of its
ratio to the baseline measured in the same run (marked `*` when the runs do not pair
up, e.g. a failed run: then it is the ratio of the medians).
"""

import statistics
import sys

# (label, key, unit, baseline key or None, target text)
ROWS = [
    ("Baseline: bare axum parse+201, req/s", "base_axum_rps", "req/s", None, ""),
    ("Baseline: bare axum p99", "base_axum_p99", "ms", None, ""),
    ("Baseline: bare axum + XADD, req/s", "base_xadd_rps", "req/s", None, ""),
    ("Baseline: bare axum + XADD p99", "base_xadd_p99", "ms", None, ""),
    ("Baseline: raw SQLite multi-row inserts", "base_sqlite_rows", "rows/s", None, ""),
    ("1. single-event ingest, embedded (ack after journal)", "emb_single_rps", "req/s", "base_axum_rps", ">= 0.60"),
    ("1. embedded p50", "emb_single_p50", "ms", None, ""),
    ("1. embedded p99", "emb_single_p99", "ms", None, "< 20 ms"),
    ("1. embedded ack path CPU per request (store threads apart)", "emb_single_ack_cpu_us", "µs", "base_axum_cpu_us", "<= 2.0"),
    ("1. embedded store threads CPU per request", "emb_single_store_cpu_us", "µs", None, ""),
    ("Baseline: bare axum CPU per request", "base_axum_cpu_us", "µs", None, ""),
    ("Baseline, static body: bare axum, req/s", "base_axum_static_rps", "req/s", None, ""),
    ("Baseline, static body: bare axum CPU per request", "base_axum_static_cpu_us", "µs", None, ""),
    ("1s. static body: single-event ingest, embedded", "emb_single_static_rps", "req/s", "base_axum_static_rps", ""),
    ("1s. static body: embedded p99", "emb_single_static_p99", "ms", None, "< 20 ms"),
    ("1s. static body: embedded ack path CPU per request", "emb_single_static_ack_cpu_us", "µs", "base_axum_static_cpu_us", "<= 2.0"),
    ("1s. static body: embedded store threads CPU per request", "emb_single_static_store_cpu_us", "µs", None, ""),
    ("1s. static body: embedded process CPU per request", "emb_single_static_cpu_us", "µs", "base_axum_static_cpu_us", ""),
    ("1. single-event ingest, embedded, --ack-after store", "emb_store_single_rps", "req/s", "base_axum_rps", ""),
    ("1. embedded, --ack-after store, p99", "emb_store_single_p99", "ms", None, ""),
    ("2. single-event ingest, Redis (API only)", "redis_single_rps", "req/s", "base_xadd_rps", ">= 0.70"),
    ("2. Redis p50", "redis_single_p50", "ms", None, ""),
    ("2. Redis p99", "redis_single_p99", "ms", None, "< 20 ms"),
    ("2. Redis API node CPU per request", "redis_single_cpu_us", "µs", "base_xadd_cpu_us", "<= 2.0"),
    ("2. redis-server CPU per request (The Eye)", "redis_single_redis_cpu_us", "µs", "base_xadd_redis_cpu_us", ""),
    ("Baseline: bare axum + XADD CPU per request", "base_xadd_cpu_us", "µs", None, ""),
    ("Baseline: redis-server CPU per request (axum + XADD)", "base_xadd_redis_cpu_us", "µs", None, ""),
    ("Baseline, static body: bare axum + XADD, req/s", "base_xadd_static_rps", "req/s", None, ""),
    ("Baseline, static body: bare axum + XADD CPU per request", "base_xadd_static_cpu_us", "µs", None, ""),
    ("Baseline, static body: redis-server CPU per request (axum + XADD)", "base_xadd_static_redis_cpu_us", "µs", None, ""),
    ("2s. static body: single-event ingest, Redis (API only)", "redis_single_static_rps", "req/s", "base_xadd_static_rps", ">= 0.50"),
    ("2s. static body: Redis p99", "redis_single_static_p99", "ms", None, "< 20 ms"),
    ("2s. static body: Redis API node CPU per request", "redis_single_static_cpu_us", "µs", "base_xadd_static_cpu_us", "<= 2.0"),
    ("2s. static body: redis-server CPU per request (The Eye)", "redis_single_static_redis_cpu_us", "µs", "base_xadd_static_redis_cpu_us", ""),
    ("3. batches of 100, embedded (accepted)", "emb_batch_eps", "events/s", "base_sqlite_rows", ""),
    ("3. batches of 100, p99 per request", "emb_batch_p99", "ms", None, ""),
    ("3. batches of 100, ack path CPU per accepted event (store threads apart)", "emb_batch_ack_cpu_us", "µs", None, ""),
    ("4. end-to-end, embedded (batches)", "emb_e2e_eps", "events/s", "base_sqlite_rows", ">= 0.80"),
    ("4. end-to-end, Redis (batches)", "redis_e2e_eps", "events/s", "base_sqlite_rows", ">= 0.80"),
    ("4. embedded process CPU per event", "emb_e2e_cpu_us", "µs", None, ""),
    ("4. Redis API+worker process CPU per event", "redis_e2e_cpu_us", "µs", None, ""),
    ("5. worker drain of a pre-filled stream", "drain_eps", "events/s", "base_sqlite_rows", ""),
    ("5. worker CPU per event", "drain_cpu_us", "µs", None, ""),
    ("6. query: session filter", "q_session_rps", "req/s", None, ""),
    ("6. query: session filter p99", "q_session_p99", "ms", None, "< 5 ms"),
    ("6. query: category filter", "q_category_rps", "req/s", None, ""),
    ("6. query: category filter p99", "q_category_p99", "ms", None, "< 5 ms"),
    ("6. query: time range (1% of the span)", "q_range_rps", "req/s", None, ""),
    ("6. query: time range p99", "q_range_p99", "ms", None, "< 5 ms"),
    ("6. query: page 1", "q_page1_rps", "req/s", None, ""),
    ("6. query: page 1 p99", "q_page1_p99", "ms", None, "< 5 ms"),
    ("6. query: page 10,000", "q_deep_rps", "req/s", None, ""),
    ("6. query: page 10,000 p99", "q_deep_p99", "ms", None, "< 5 ms"),
    ("6. query: page 10,000 of one category", "q_deep_category_rps", "req/s", None, ""),
    ("6. query: page 10,000 of one category p99", "q_deep_category_p99", "ms", None, "< 5 ms"),
    ("6. query: events since an instant (count over partial hours)", "q_since_rps", "req/s", None, ""),
    ("6. query: events since an instant p99", "q_since_p99", "ms", None, "< 5 ms"),
    ("6. query: /sessions/{id}/events", "q_session_events_rps", "req/s", None, ""),
    ("6. query: /sessions/{id}/events p99", "q_session_events_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: page 10,000 (of 10), by page number, p99", "d_identical_page_deep_page_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: page 10,000 (of 10), by page number, CPU per request", "d_identical_page_deep_page_cpu_us", "µs", None, ""),
    ("10. identical timestamps: page 10,000 (of 10), by cursor, same depth, p99", "d_identical_page_deep_cursor_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: page 10,000 (of 10), by cursor, same depth, CPU per request", "d_identical_page_deep_cursor_cpu_us", "µs", None, ""),
    ("10. identical timestamps: page 20,000, by page number, p99", "d_identical_page_deep2_page_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: page 20,000, by page number, CPU per request", "d_identical_page_deep2_page_cpu_us", "µs", None, ""),
    ("10. identical timestamps: page 20,000, by cursor, same depth, p99", "d_identical_page_deep2_cursor_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: page 20,000, by cursor, same depth, CPU per request", "d_identical_page_deep2_cursor_cpu_us", "µs", None, ""),
    ("10. identical timestamps: category, page 20,000, by page number, p99", "d_identical_category_deep2_page_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: category, page 20,000, by page number, CPU per request", "d_identical_category_deep2_page_cpu_us", "µs", None, ""),
    ("10. identical timestamps: category, page 20,000, by cursor, same depth, p99", "d_identical_category_deep2_cursor_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: category, page 20,000, by cursor, same depth, CPU per request", "d_identical_category_deep2_cursor_cpu_us", "µs", None, ""),
    ("10. identical timestamps: session `bot`, page 10,000, by page number, p99", "d_identical_session_deep_page_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: session `bot`, page 10,000, by page number, CPU per request", "d_identical_session_deep_page_cpu_us", "µs", None, ""),
    ("10. identical timestamps: session `bot`, page 10,000, by cursor, same depth, p99", "d_identical_session_deep_cursor_p99", "ms", None, "< 5 ms"),
    ("10. identical timestamps: session `bot`, page 10,000, by cursor, same depth, CPU per request", "d_identical_session_deep_cursor_cpu_us", "µs", None, ""),
    ("10. identical timestamps: whole walk by cursor, 100 a page", "walk_identical_100_rows_per_sec", "events/s", None, ""),
    ("10. identical timestamps: walk, 100 a page, p99 per page", "walk_identical_100_page_p99", "ms", None, ""),
    ("10. identical timestamps: walk, 100 a page, CPU per page", "walk_identical_100_cpu_us", "µs", None, ""),
    ("10. identical timestamps: whole walk by cursor, 1000 a page", "walk_identical_1000_rows_per_sec", "events/s", None, ""),
    ("10. identical timestamps: walk, 1000 a page, p99 per page", "walk_identical_1000_page_p99", "ms", None, ""),
    ("10. identical timestamps: walk, 1000 a page, CPU per page", "walk_identical_1000_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: page 10,000 (of 10), by page number, p99", "d_jittered_page_deep_page_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: page 10,000 (of 10), by page number, CPU per request", "d_jittered_page_deep_page_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: page 10,000 (of 10), by cursor, same depth, p99", "d_jittered_page_deep_cursor_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: page 10,000 (of 10), by cursor, same depth, CPU per request", "d_jittered_page_deep_cursor_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: page 20,000, by page number, p99", "d_jittered_page_deep2_page_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: page 20,000, by page number, CPU per request", "d_jittered_page_deep2_page_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: page 20,000, by cursor, same depth, p99", "d_jittered_page_deep2_cursor_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: page 20,000, by cursor, same depth, CPU per request", "d_jittered_page_deep2_cursor_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: category, page 20,000, by page number, p99", "d_jittered_category_deep2_page_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: category, page 20,000, by page number, CPU per request", "d_jittered_category_deep2_page_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: category, page 20,000, by cursor, same depth, p99", "d_jittered_category_deep2_cursor_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: category, page 20,000, by cursor, same depth, CPU per request", "d_jittered_category_deep2_cursor_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: session `bot`, page 10,000, by page number, p99", "d_jittered_session_deep_page_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: session `bot`, page 10,000, by page number, CPU per request", "d_jittered_session_deep_page_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: session `bot`, page 10,000, by cursor, same depth, p99", "d_jittered_session_deep_cursor_p99", "ms", None, "< 5 ms"),
    ("10. jittered timestamps: session `bot`, page 10,000, by cursor, same depth, CPU per request", "d_jittered_session_deep_cursor_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: whole walk by cursor, 100 a page", "walk_jittered_100_rows_per_sec", "events/s", None, ""),
    ("10. jittered timestamps: walk, 100 a page, p99 per page", "walk_jittered_100_page_p99", "ms", None, ""),
    ("10. jittered timestamps: walk, 100 a page, CPU per page", "walk_jittered_100_cpu_us", "µs", None, ""),
    ("10. jittered timestamps: whole walk by cursor, 1000 a page", "walk_jittered_1000_rows_per_sec", "events/s", None, ""),
    ("10. jittered timestamps: walk, 1000 a page, p99 per page", "walk_jittered_1000_page_p99", "ms", None, ""),
    ("10. jittered timestamps: walk, 1000 a page, CPU per page", "walk_jittered_1000_cpu_us", "µs", None, ""),
    ("11. export, NDJSON", "export_ndjson_eps", "events/s", None, ""),
    ("11. export, NDJSON, bytes/s", "export_ndjson_mib_s", "MiB/s", None, ""),
    ("11. export, NDJSON, size per event", "export_ndjson_bytes_per_event", "B", None, ""),
    ("11. export, NDJSON, server CPU per event", "export_ndjson_cpu_us", "µs", None, ""),
    ("11. export, CSV", "export_csv_eps", "events/s", None, ""),
    ("11. export, CSV, bytes/s", "export_csv_mib_s", "MiB/s", None, ""),
    ("11. export, CSV, size per event", "export_csv_bytes_per_event", "B", None, ""),
    ("11. export, CSV, server CPU per event", "export_csv_cpu_us", "µs", None, ""),
    ("11. export, NDJSON gzip", "export_gzip_eps", "events/s", None, ""),
    ("11. export, NDJSON gzip, bytes/s (compressed)", "export_gzip_mib_s", "MiB/s", None, ""),
    ("11. export, NDJSON gzip, size per event (compressed)", "export_gzip_bytes_per_event", "B", None, ""),
    ("11. export, NDJSON gzip, server CPU per event", "export_gzip_cpu_us", "µs", None, ""),
    ("11. export: server peak RSS idle, before any read", "export_rss_peak_idle_mib", "MiB", None, ""),
    ("11. export: server peak RSS after one GET /events page of 1,000", "export_rss_peak_before_mib", "MiB", None, ""),
    ("11. export: server peak RSS after NDJSON", "export_rss_peak_after_ndjson_mib", "MiB", None, "near one page"),
    ("11. export: server peak RSS after CSV", "export_rss_peak_after_csv_mib", "MiB", None, "near one page"),
    ("11. export: server peak RSS after NDJSON gzip", "export_rss_peak_after_gzip_mib", "MiB", None, "near one page"),
    ("7. RSS idle (embedded, fresh start)", "rss_idle_mib", "MiB", None, "< 64 MiB"),
    ("7. RSS idle after the fig 4 batch load", "rss_after_emb_e2e_mib", "MiB", None, "< 64 MiB"),
    ("7. peak RSS, single-event load", "rss_peak_single_mib", "MiB", None, "< 256 MiB"),
    ("7. peak RSS, batch load, embedded (fig 4)", "rss_peak_emb_e2e_mib", "MiB", None, "< 256 MiB"),
    ("7. peak RSS, Redis API node", "rss_peak_redis_mib", "MiB", None, "< 256 MiB"),
    ("7. peak RSS, Redis API+worker (fig 4)", "rss_peak_redis_e2e_mib", "MiB", None, "< 256 MiB"),
    ("7. peak RSS, worker draining (fig 5)", "rss_peak_worker_mib", "MiB", None, "< 256 MiB"),
    ("7. peak RSS, query load", "rss_peak_query_mib", "MiB", None, "< 256 MiB"),
    ("8. SDK track() cost", "sdk_track_ns", "ns/call", None, ""),
    ("8. SDK load example", "sdk_load_eps", "events/s", None, ""),
    ("Baseline: raw PostgreSQL COPY into the events table", "base_pg_copy_rows", "rows/s", None, ""),
    ("Baseline: PostgreSQL backend CPU per row, raw COPY", "base_pg_copy_cpu_us", "µs", None, ""),
    ("9. PostgreSQL: Redis drain by 1 worker", "pg_w1_eps", "events/s", "base_pg_copy_rows", ""),
    ("9. PostgreSQL: Redis drain by 2 workers", "pg_w2_eps", "events/s", "base_pg_copy_rows", ""),
    ("9. PostgreSQL: Redis drain by 4 workers", "pg_w4_eps", "events/s", "base_pg_copy_rows", ""),
    ("9. PostgreSQL: best worker count", "pg_best_eps", "events/s", "base_pg_copy_rows", ">= 0.80"),
    ("9. worker CPU per event, 1 worker", "pg_w1_worker_cpu_us", "µs", None, ""),
    ("9. worker CPU per event, 2 workers", "pg_w2_worker_cpu_us", "µs", None, ""),
    ("9. worker CPU per event, 4 workers", "pg_w4_worker_cpu_us", "µs", None, ""),
    ("9. PostgreSQL backends CPU per event, 1 worker", "pg_w1_pg_cpu_us", "µs", "base_pg_copy_cpu_us", ""),
    ("9. PostgreSQL backends CPU per event, 2 workers", "pg_w2_pg_cpu_us", "µs", "base_pg_copy_cpu_us", ""),
    ("9. PostgreSQL backends CPU per event, 4 workers", "pg_w4_pg_cpu_us", "µs", "base_pg_copy_cpu_us", ""),
    ("9. PostgreSQL query: session filter", "pgq_session_rps", "req/s", None, ""),
    ("9. PostgreSQL query: session filter p99", "pgq_session_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: category filter", "pgq_category_rps", "req/s", None, ""),
    ("9. PostgreSQL query: category filter p99", "pgq_category_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: time range (1% of the span)", "pgq_range_rps", "req/s", None, ""),
    ("9. PostgreSQL query: time range (1% of the span) p99", "pgq_range_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: page 1", "pgq_page1_rps", "req/s", None, ""),
    ("9. PostgreSQL query: page 1 p99", "pgq_page1_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: page 10,000", "pgq_deep_rps", "req/s", None, ""),
    ("9. PostgreSQL query: page 10,000 p99", "pgq_deep_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: page 10,000 of one category", "pgq_deep_category_rps", "req/s", None, ""),
    ("9. PostgreSQL query: page 10,000 of one category p99", "pgq_deep_category_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: events since an instant", "pgq_since_rps", "req/s", None, ""),
    ("9. PostgreSQL query: events since an instant p99", "pgq_since_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: /sessions/{id}/events", "pgq_session_events_rps", "req/s", None, ""),
    ("9. PostgreSQL query: /sessions/{id}/events p99", "pgq_session_events_p99", "ms", None, "< 5 ms"),
    ("9. PostgreSQL query: cursor at the depth of page 10,000", "pgq_cursor_deep_rps", "req/s", None, ""),
    ("9. PostgreSQL query: cursor at the depth of page 10,000 p99", "pgq_cursor_deep_p99", "ms", None, "< 5 ms"),
]



def fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main() -> None:
    values: dict[str, list[float]] = {}
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1]:
                continue
            try:
                values.setdefault(parts[0], []).append(float(parts[1]))
            except ValueError:
                continue
    for line in sys.stdin:
        name, _, text = line.rstrip("\n").partition("\t")
        print(f"{name}: {text}")
    print()
    print("| figure | median | min | max | unit | runs | ratio to baseline | target |")
    print("|---|---:|---:|---:|---|---:|---:|---|")
    for label, key, unit, base, target in ROWS:
        v = values.get(key)
        if not v:
            continue
        med = statistics.median(v)
        ratio = ""
        b = values.get(base) if base else None
        if b and len(b) == len(v) and all(x > 0 for x in b):
            # Each run's figure over the baseline measured in that same run.
            ratio = f"{statistics.median(x / y for x, y in zip(v, b)):.2f}"
        elif b and statistics.median(b) > 0:
            ratio = f"{med / statistics.median(b):.2f}*"
        print(
            f"| {label} | {fmt(med)} | {fmt(min(v))} | {fmt(max(v))} | {unit} "
            f"| {len(v)} | {ratio} | {target} |"
        )


if __name__ == "__main__":
    main()
