#!/usr/bin/python3
"""latency_longpoll: commit-to-delivery latency with RFC 8936 long polling.

An emitter (psycopg2, autocommit, one emit per transaction, 8 sessions on one
schedule paced at BENCH_LAT_RATE = 1000/s) records time.monotonic() right
after each commit returns, keyed by jti.  A receiver process loops long polls
(POST /streams/X/poll {"maxEvents": 1000, "ack": [what it got last time]})
on one keep-alive HTTP connection and records the arrival time of every SET.
Latency = arrival - commit (CLOCK_MONOTONIC is shared by the processes).

At the end a sentinel SET wakes the parked poll, and the receiver sends its
last acks with maxEvents 0.

Target: p99 <= 10 ms at 1,000 SETs/s.
"""
import json
import multiprocessing
import os
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402

SCENARIO = "latency_longpoll"
TARGET = "p99 <= 10 ms commit-to-delivery at 1000 SETs/s (long poll, keep-alive)"
RATE = float(os.environ.get("BENCH_LAT_RATE", "1000"))
THREADS = int(os.environ.get("BENCH_LAT_THREADS", "8"))


def receiver_main(stream, token, ready, stop, out, count):
    arrivals = {}
    info = {"polls": 0, "empty": 0, "error": None, "statuses": {}}
    path = "/streams/%s/poll" % stream
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    acks = []
    try:
        http = L.HttpConn(timeout=60)
        ready.set()
        while True:
            if stop.is_set():
                body = {"ack": acks, "maxEvents": 0, "returnImmediately": True}
            else:
                body = {"ack": acks, "maxEvents": 1000}
            status, _, resp = http.request("POST", path, json.dumps(body).encode(), headers)
            t = time.monotonic()
            info["statuses"][status] = info["statuses"].get(status, 0) + 1
            if status != 200:
                info["error"] = "poll answered %d: %s" % (status, resp[:200])
                break
            if body.get("maxEvents") == 0:
                break
            info["polls"] += 1
            sets = json.loads(resp).get("sets") or {}
            if not sets:
                info["empty"] += 1
            for jti in sets:
                arrivals.setdefault(jti, t)
            count.value = len(arrivals)
            acks = list(sets)
        http.close()
    except Exception as e:  # noqa: BLE001
        info["error"] = repr(e)
        ready.set()
    out.put((arrivals, info))


def main():
    dur = L.duration()
    conn = L.connect()
    pids = L.listener_pids(conn)
    if not pids:
        L.result(SCENARIO, TARGET, note="no setstream listener is running")
        return 1
    s = L.Stream(conn, "bench-latlp")
    try:
        L.q(conn, "SELECT setstream.generate_key(%s, 'ES256')", (s.name,))
        token = L.q1(conn, "SELECT setstream.issue_token(%s)", (s.name,))
        commit_rate, commit_p50 = L.commit_probe(1.0)
        stats_note = L.outbox_stats_note(conn)
        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        count = multiprocessing.Value('l', 0)
        out = multiprocessing.Queue()
        p = multiprocessing.Process(target=receiver_main, args=(s.name, token, ready, stop, out, count))
        p.start()
        ready.wait(10)
        time.sleep(0.3)         # the first poll is parked by now
        cpu = L.CpuMeter(pids)
        L.log("emitting at %.0f/s for %.0f s ..." % (RATE, dur))
        commits, errors, elapsed = L.paced_emitter(s.name, RATE, dur, THREADS)
        listener_cpu = cpu.pct()
        L.wait_for_count(count, len(commits), 10.0)
        stop.set()
        # wake the parked poll: one more SET, not counted
        sentinel = L.q1(conn, "SELECT setstream.emit(%s, %s, '{}')", (s.name, L.CAEP_SESSION_REVOKED))
        try:
            arrivals, info = out.get(timeout=15)
        except Exception:  # noqa: BLE001
            arrivals, info = {}, {"error": "the receiver did not report", "polls": 0, "empty": 0}
        p.join(5)
        if p.is_alive():
            p.terminate()
        arrivals.pop(sentinel, None)
        rss = L.rss_mb(pids)
        acked = L.wait_acked(conn, s.name, len(commits), exclude_jti=sentinel)
        extra = ("%d polls (%d empty); outbox acked %d; 1-session commit (WAL flush) p50 %.2f ms; %s"
                 % (info["polls"], info["empty"], acked, commit_p50 or 0, stats_note))
        fail = info["error"]
        if fail is None and acked != len(commits):
            extra += " (acked != emitted)"
        return L.latency_report(SCENARIO, TARGET, commits, arrivals, errors, elapsed,
                                listener_cpu, rss, extra, fail)
    finally:
        s.drop()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
