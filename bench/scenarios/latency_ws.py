#!/usr/bin/python3
"""latency_ws: commit-to-delivery latency over the pushpull WebSocket.

An emitter (psycopg2, autocommit, one emit per transaction, 8 sessions on one
schedule paced at BENCH_LAT_RATE = 1000/s) records time.monotonic() right
after each commit returns, keyed by jti.  A receiver process holds a
WebSocket on /streams/X/pushpull, records the arrival time of every SET and
acknowledges it.  Latency = arrival - commit (CLOCK_MONOTONIC is shared by
the processes; a SET may arrive before the emitter's commit() returns, so a
few latencies can be slightly negative; they are reported as measured).

Target: p99 <= 5 ms at 1,000 SETs/s.
"""
import asyncio
import json
import multiprocessing
import os
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402

import websockets  # noqa: E402

SCENARIO = "latency_ws"
TARGET = "p99 <= 5 ms commit-to-delivery at 1000 SETs/s (WebSocket push)"
RATE = float(os.environ.get("BENCH_LAT_RATE", "1000"))
THREADS = int(os.environ.get("BENCH_LAT_THREADS", "8"))


async def receive(url, token, ready, stop, out, count):
    arrivals = {}
    info = {"messages": 0, "error": None}
    try:
        async with websockets.connect(url, subprotocols=["pushpull"],
                                      extra_headers={"Authorization": "Bearer " + token},
                                      max_size=None, compression=None, ping_interval=None,
                                      close_timeout=2) as ws:
            ready.set()

            async def stopper():
                while not stop.is_set():
                    await asyncio.sleep(0.05)
                await ws.close()

            st = asyncio.ensure_future(stopper())
            try:
                async for raw in ws:
                    t = time.monotonic()
                    m = json.loads(raw)
                    sets = m.get("sets") or {}
                    if sets:
                        info["messages"] += 1
                        for jti in sets:
                            arrivals.setdefault(jti, t)
                        count.value = len(arrivals)
                        await ws.send(json.dumps({"ack": list(sets)}))
            except websockets.ConnectionClosed:
                pass
            finally:
                st.cancel()
    except Exception as e:  # noqa: BLE001
        info["error"] = repr(e)
        ready.set()
    out.put((arrivals, info))


def receiver_main(url, token, ready, stop, out, count):
    asyncio.run(receive(url, token, ready, stop, out, count))


def main():
    dur = L.duration()
    conn = L.connect()
    pids = L.listener_pids(conn)
    if not pids:
        L.result(SCENARIO, TARGET, note="no setstream listener is running")
        return 1
    s = L.Stream(conn, "bench-latws")
    try:
        L.q(conn, "SELECT setstream.generate_key(%s, 'ES256')", (s.name,))
        token = L.q1(conn, "SELECT setstream.issue_token(%s)", (s.name,))
        commit_rate, commit_p50 = L.commit_probe(1.0)
        stats_note = L.outbox_stats_note(conn)
        ready, stop = multiprocessing.Event(), multiprocessing.Event()
        count = multiprocessing.Value('l', 0)
        out = multiprocessing.Queue()
        p = multiprocessing.Process(target=receiver_main,
                                    args=(L.ws_url(s.name), token, ready, stop, out, count))
        p.start()
        ready.wait(10)
        time.sleep(0.3)
        cpu = L.CpuMeter(pids)
        L.log("emitting at %.0f/s for %.0f s ..." % (RATE, dur))
        commits, errors, elapsed = L.paced_emitter(s.name, RATE, dur, THREADS)
        listener_cpu = cpu.pct()
        # wait (bounded) for the last SETs
        L.wait_for_count(count, len(commits), 10.0)
        stop.set()
        try:
            arrivals, info = out.get(timeout=15)
        except Exception:  # noqa: BLE001
            arrivals, info = {}, {"error": "the receiver did not report", "messages": 0}
        p.join(5)
        if p.is_alive():
            p.terminate()
        rss = L.rss_mb(pids)
        acked = L.wait_acked(conn, s.name, len(commits))
        extra = ("%d WebSocket messages with SETs; outbox acked %d; 1-session commit "
                 "(WAL flush) p50 %.2f ms; %s" % (info["messages"], acked, commit_p50 or 0, stats_note))
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
