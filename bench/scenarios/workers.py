#!/usr/bin/python3
"""Scenario workers: setstream.workers = 2 against 1 on a CPU-bound
scenario: the ES256 push of scenario push (wrk -t2 -c64, one SET per
request).  The cluster is restarted with each setting (ALTER SYSTEM +
pg_ctl restart) and restored to the default afterwards.  Target: 2 workers
>= 1.7 x 1 worker.  BENCH_WORKERS_ALG changes the algorithm."""
import os
import sys

sys.path.insert(0, os.environ.get("BENCH_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lib  # noqa: E402

ALG = os.environ.get("BENCH_WORKERS_ALG", "ES256")
CONNS = int(os.environ.get("BENCH_PUSH_CONNS", "64"))

speed = lib.openssl_speed(ALG)


def measure(workers):
    out = lib.push_measure(ALG, conns=CONNS, threads=2, insert_limit=False,
                           label="workers=%d: push %s, %d conns" % (workers, ALG, CONNS))
    out.update(limit="openssl %s verify, 2 processes" % speed["openssl"],
               limit_per_s=speed["verify_2"])
    lib.result(**out)
    return out


rates = lib.with_workers(measure)

w1, w2 = rates[1], rates[2]
lib.result(scenario="workers 2 vs 1: push %s (ratio = SETs/s with 2 / with 1)" % ALG,
           sets_per_s=w2["sets_per_s"], p50_ms=w2["p50_ms"], p99_ms=w2["p99_ms"],
           limit="the same push with setstream.workers = 1", limit_per_s=w1["sets_per_s"],
           target=">= 1.7x", cpu_pct=w2["cpu_pct"], rss_mb=w2["rss_mb"],
           ratio=round(w2["sets_per_s"] / w1["sets_per_s"], 3) if w1["sets_per_s"] else None,
           errors=(w1["errors"] or 0) + (w2["errors"] or 0),
           others_cpu_pct=max(w1["others_cpu_pct"], w2["others_cpu_pct"]),
           note="listener CPU %.0f%% with 1 worker, %.0f%% with 2 (100%% = one core);"
                " load generator CPU %.0f%% / %.0f%%"
                % (w1["cpu_pct"], w2["cpu_pct"], w1["client_cpu_pct"], w2["client_cpu_pct"]))
