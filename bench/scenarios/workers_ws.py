#!/usr/bin/python3
"""Scenario workers_ws: setstream.workers = 2 against 1 on inbound
pushpull over WebSocket, the way issue 14 states the target: the
measurement of scenario ws_pushpull (16 long-lived WebSocket connections,
RS256, 100 SETs per message, BENCH_WS_WINDOW messages unacknowledged), once
with each setting.  The cluster is restarted with each setting (ALTER
SYSTEM + pg_ctl restart) and restored to the default afterwards.  With one
listener all 16 sessions are its own; with two, the listeners hold 8 each
(server/handoff.c), whatever the kernel's SO_REUSEPORT hash would have
given.  Target: 2 workers >= 1.7 x 1 worker."""
import os
import sys

sys.dont_write_bytecode = True   # no __pycache__ in bench/
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import lib  # noqa: E402
import ws_pushpull  # noqa: E402



def measure(workers):
    stats = {}
    rc = ws_pushpull.main("workers=%d: pushpull WebSocket RS256, %d conns"
                          % (workers, ws_pushpull.CONNS), None, stats)
    if rc != 0 or not stats.get("sets_per_s"):
        raise RuntimeError("the measurement with %d worker(s) failed" % workers)
    return stats


rates = lib.with_workers(measure)

w1, w2 = rates[1], rates[2]
lib.result(scenario="workers 2 vs 1: pushpull WebSocket RS256, %d conns (ratio = SETs/s with 2 / with 1)"
           % ws_pushpull.CONNS,
           sets_per_s=w2["sets_per_s"],
           limit="the same measurement with setstream.workers = 1", limit_per_s=w1["sets_per_s"],
           target=">= 1.7x", cpu_pct=w2["cpu_pct"], rss_mb=w2["rss_mb"],
           ratio=round(w2["sets_per_s"] / w1["sets_per_s"], 3),
           errors=0,
           note="listener CPU %.0f%% with 1 worker, %.0f%% with 2 (100%% = one core);"
                " load generator CPU %.0f%% / %.0f%%"
                % (w1["cpu_pct"] or 0, w2["cpu_pct"] or 0, w1["client_cpu_pct"], w2["client_cpu_pct"]))
