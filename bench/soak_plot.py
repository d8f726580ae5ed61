#!/usr/bin/env python3
"""Plots a soak CSV (from `bench/soak`) as one PNG: server RSS and open fds, journal,
WAL and database size, queue backlog, and p99 latency of ingest and queries, with the
worker and Redis restarts marked.

    soak_plot.py bench/results/soak-embedded.csv [out.png]

Needs matplotlib (`bench/soak` installs it in a venv under ~/.cache/eye-bench).
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def col(rows, name):
    out = []
    for r in rows:
        v = r.get(name, "")
        out.append(float(v) if v not in ("", None) else float("nan"))
    return out


def main():
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else src.rsplit(".", 1)[0] + ".png"
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"{src}: no samples")
    t = [x / 60 for x in col(rows, "t_s")]
    redis_mode = any(float(r["worker_rss_mib"] or 0) > 0 for r in rows)

    fig, axes = plt.subplots(5, 1, figsize=(9, 11), sharex=True)
    ax = axes[0]
    ax.plot(t, col(rows, "server_rss_mib"), label="API node RSS" if redis_mode else "server RSS")
    if "server_anon_mib" in rows[0]:
        ax.plot(t, col(rows, "server_anon_mib"), label="of which anonymous (heap)", ls=":")
    if "server_heap_mib" in rows[0]:
        heap = col(rows, "server_heap_mib")
        sqlite = col(rows, "server_sqlite_mib")
        ax.plot(t, heap, label="heap in use", ls="-.")
        ax.plot(t, sqlite, label="of which SQLite (page caches, bounded)", ls="--")
        ax.plot(t, [h - s for h, s in zip(heap, sqlite)], label="heap in use less SQLite (judged)")
    elif "server_sqlite_mib" in rows[0]:
        ax.plot(t, col(rows, "server_sqlite_mib"), label="of which SQLite", ls="--")
    if redis_mode:
        ax.plot(t, col(rows, "worker_rss_mib"), label="worker RSS")
        ax.plot(t, col(rows, "redis_rss_mib"), label="redis-server RSS")
    ax.set_ylabel("MiB")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[1]
    ax.plot(t, col(rows, "server_fds"), label="API node fds" if redis_mode else "server fds")
    if redis_mode:
        ax.plot(t, col(rows, "worker_fds"), label="worker fds")
    ax.set_ylabel("open fds")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[2]
    ax.plot(t, col(rows, "db_mib"), label="database")
    ax.plot(t, col(rows, "wal_mib"), label="WAL")
    if not redis_mode:
        ax.plot(t, col(rows, "journal_mib"), label="journal")
    ax.set_ylabel("MiB")
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[3]
    ax.plot(t, col(rows, "backlog"), label="queue backlog (/readyz)")
    ax.set_ylabel("events")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8)

    ax = axes[4]
    ax.plot(t, col(rows, "ingest_p99_ms"), label="ingest p99 (raw HTTP)")
    ax.plot(t, col(rows, "query_p99_ms"), label="query p99 (JSON and pages)")
    ax.set_yscale("log")
    ax.set_ylabel("ms per 10 s window")
    ax.set_xlabel("minutes")
    ax.legend(loc="upper left", fontsize=8)

    for r, x in zip(rows, t):
        for note in (r.get("note") or "").split():
            for a in axes:
                a.axvline(x, color="red" if "redis" in note else "grey", lw=0.8, ls="--")
            axes[0].annotate(note, (x, 0), rotation=90, fontsize=7, va="bottom", ha="right")

    load = col(rows, "load1")
    title = src.rsplit("/", 1)[-1].replace(".csv", "")
    fig.suptitle(f"{title}: machine load {min(load):.1f}-{max(load):.1f} (2 cores, shared)")
    fig.tight_layout()
    fig.savefig(dst, dpi=70)
    print(dst)


if __name__ == "__main__":
    main()
