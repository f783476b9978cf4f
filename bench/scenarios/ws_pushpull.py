#!/usr/bin/python3
"""ws_pushpull: inbound SETs over the pushpull WebSocket binding.

16 WebSocket connections (one asyncio loop, or BENCH_WS_PROCS processes)
push distinct RS256 SETs, 100 per Communication Object, with at most
BENCH_WS_WINDOW (4) unacknowledged messages per connection.  The rate is the
number of SETs the server acknowledged ({"ack": [...]}) per second while
every connection still had SETs to send (each has its own slice of the
pool); at the end the stored count in setstream.events must equal the
number acknowledged.

The SETs are signed once by setstream itself (a transmitter stream with an
RS256 key, `emit` over generate_series, read back from setstream.outbox) and
cached in BENCH_CACHE; every run pushes them to a receiving stream of its
own, so they are new to it.

Target: >= 33,000 SETs/s on 2 cores.  Limit: OpenSSL's RSA-2048 verify
rate on one core (the listener is one process).
"""
import asyncio
import json
import multiprocessing
import os
import sys
import threading
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402
import lib  # noqa: E402  (the openssl limits, shared with every other scenario)

import websockets  # noqa: E402

SCENARIO = "ws_pushpull"
TARGET = ">= 33000 SETs/s inbound (RS256, 16 WebSocket connections, 100 SETs per message)"
CONNS = int(os.environ.get("BENCH_WS_CONNS", "16"))
PER_MSG = int(os.environ.get("BENCH_WS_BATCH", "100"))
WINDOW = int(os.environ.get("BENCH_WS_WINDOW", "4"))
PROCS = int(os.environ.get("BENCH_WS_PROCS", "2"))
AUDIENCE = "https://bench-receiver.example/ws"
ISSUER = "https://bench-transmitter.example/ws"


# ---------------------------------------------------------------------------
# The pool of pre-signed SETs
# ---------------------------------------------------------------------------
def pool_size():
    """How many distinct SETs to push at most (BENCH_WS_SETS, 420,000:
    33,000/s for 10 s, and a quarter more).

    Signing them takes ~80 s once (then they are cached).  Each connection
    has its own slice of the pool.  A run that exhausts the pool before
    BENCH_DURATION ends early (acked / time to the last ack), and the note
    says so; but then the connections of the less loaded listener run out
    first and the other listener finishes alone, at half the machine: with
    150,000 SETs that tail was a third of the run.
    """
    return int(os.environ.get("BENCH_WS_SETS", "420000"))


def cache_paths():
    d = L.cache_dir()
    return os.path.join(d, "ws_rs256_sets.tsv"), os.path.join(d, "ws_rs256_meta.json")


def generate_pool(n):
    """Sign n distinct RS256 SETs with setstream and cache them.

    The signing runs in a scratch database of its own (created and dropped
    here), so that its outbox rows leave no dead tuples or skewed planner
    statistics in the database the listener serves.
    """
    tsv, meta_path = cache_paths()
    scratch = "setstream_bench_gen_%d" % os.getpid()
    admin = L.connect()
    L.q(admin, 'CREATE DATABASE "%s"' % scratch)
    t0 = time.monotonic()
    try:
        conn = L.connect(dbname=scratch)
        L.q(conn, "CREATE EXTENSION setstream")
        a = L.Stream(conn, "bench-gen", issuer=ISSUER, audience=[AUDIENCE])
        jwk = L.q1(conn, "SELECT setstream.generate_key(%s, 'RS256')", (a.name,))
        chunk = 10000
        todo = list(range(0, n, chunk))
        lock = threading.Lock()
        errors = []

        def worker():
            c = L.connect(dbname=scratch)
            try:
                while True:
                    with lock:
                        if not todo or errors:
                            return
                        start = todo.pop(0)
                    cnt = min(chunk, n - start)
                    L.q(c, "SELECT count(setstream.emit(%s, %s, '{}', "
                           "jsonb_build_object('format', 'email', 'email', 'user' || g || '@bench.example'))) "
                           "FROM generate_series(%s, %s) g",
                        (a.name, L.CAEP_SESSION_REVOKED, start + 1, start + cnt))
                    L.log("  signed %d..%d (%.0f s)" % (start + 1, start + cnt, time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001
                errors.append(e)
            finally:
                c.close()

        L.log("signing %d RS256 SETs with setstream.emit (2 sessions, database %s) ..." % (n, scratch))
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        tmp = tsv + ".tmp.%d" % os.getpid()
        with open(tmp, "w") as f, conn.cursor() as cur:
            cur.copy_expert("COPY (SELECT jti, token FROM setstream.outbox WHERE stream = '%s' "
                            "ORDER BY seq) TO STDOUT" % a.name, f)
        conn.close()
        os.rename(tmp, tsv)
        meta = {"issuer": ISSUER, "audience": AUDIENCE, "jwk": jwk, "count": n}
        with open(meta_path + ".tmp", "w") as f:
            json.dump(meta, f)
        os.rename(meta_path + ".tmp", meta_path)
        L.log("signed and cached %d SETs in %.1f s" % (n, time.monotonic() - t0))
    finally:
        try:
            L.q(admin, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % scratch)
        finally:
            admin.close()


def load_pool(n):
    tsv, meta_path = cache_paths()
    meta = None
    if os.path.exists(meta_path) and os.path.exists(tsv):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("count", 0) < n:
            meta = None
    if meta is None:
        generate_pool(n)
        with open(meta_path) as f:
            meta = json.load(f)
    sets = []
    with open(tsv) as f:
        for line in f:
            jti, tok = line.rstrip("\n").split("\t")
            sets.append((jti, tok))
            if len(sets) >= n:
                break
    return meta, sets


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------
def build_messages(sets):
    msgs = []
    for i in range(0, len(sets), PER_MSG):
        part = sets[i:i + PER_MSG]
        body = ",".join('"%s":"%s"' % (j, t) for j, t in part)
        msgs.append(('{"sets":{%s}}' % body, len(part)))
    return msgs


async def one_connection(url, token, msgs, deadline, stats):
    """Send msgs with at most WINDOW messages unacknowledged; count acks."""
    async with websockets.connect(url, subprotocols=["pushpull"],
                                  extra_headers={"Authorization": "Bearer " + token},
                                  max_size=None, compression=None,
                                  ping_interval=None, close_timeout=5) as ws:
        sent = 0          # SETs sent
        done = 0          # SETs acked or rejected
        cond = asyncio.Condition()
        finished_sending = False

        async def reader():
            nonlocal done
            async for raw in ws:
                m = json.loads(raw)
                acks = m.get("ack") or []
                errs = m.get("setErrs") or {}
                stats["acked"] += len(acks)
                stats["errs"] += len(errs)
                if acks:
                    stats["acks"].append((time.time(), len(acks)))
                if errs and not stats["err_sample"]:
                    stats["err_sample"] = json.dumps(errs)[:300]
                if acks or errs:
                    stats["last_ack"] = time.monotonic()
                async with cond:
                    done += len(acks) + len(errs)
                    cond.notify_all()
                if finished_sending and done >= sent:
                    return

        rtask = asyncio.ensure_future(reader())

        def closed_note():
            if ws.close_code not in (None, 1000):
                stats["note"].append("closed by the server: %s %s" % (ws.close_code, ws.close_reason))
        try:
            for text, n in msgs:
                if time.monotonic() >= deadline:
                    break
                async with cond:
                    while sent - done > (WINDOW - 1) * PER_MSG and not rtask.done():
                        await cond.wait()
                if rtask.done():
                    break
                await ws.send(text)
                sent += n
                stats["sent"] += n
            else:
                # this connection's slice is used up before the deadline
                stats["ran_out"].append(time.time())
            finished_sending = True
            # wait (bounded) for the last acks
            async with cond:
                try:
                    await asyncio.wait_for(cond.wait_for(lambda: done >= sent or rtask.done()), 30)
                except asyncio.TimeoutError:
                    stats["note"].append("timed out waiting for the last acks")
        finally:
            closed_note()
            rtask.cancel()
            try:
                await rtask
            except (asyncio.CancelledError, websockets.ConnectionClosed):
                pass
            except Exception as e:  # noqa: BLE001
                stats["note"].append("reader: %r" % e)


async def run_client(url, token, per_conn_msgs, duration):
    stats = {"sent": 0, "acked": 0, "errs": 0, "err_sample": "", "note": [],
             "first_send": time.monotonic(), "last_ack": None, "acks": [], "ran_out": []}
    deadline = time.monotonic() + duration
    res = await asyncio.gather(*(one_connection(url, token, m, deadline, stats)
                                 for m in per_conn_msgs), return_exceptions=True)
    for r in res:
        if isinstance(r, Exception):
            stats["note"].append("connection failed: %r" % r)
    return stats


def client_process(url, token, per_conn_msgs, duration, start_at, q):
    while time.time() < start_at:
        time.sleep(max(0.0, min(0.05, start_at - time.time())))
    cpu0 = time.process_time()
    t0 = time.monotonic()
    stats = asyncio.run(run_client(url, token, per_conn_msgs, duration))
    stats["cpu_s"] = time.process_time() - cpu0
    stats["wall_s"] = time.monotonic() - t0
    stats["first_send"] -= t0
    stats["last_ack"] = None if stats["last_ack"] is None else stats["last_ack"] - t0
    stats["t0_wall"] = start_at
    q.put(stats)


def main(scenario=SCENARIO, target=TARGET, stats=None):
    """One measurement; its result line under SCENARIO.  STATS, a dict,
    gets the rate and the listener CPU (scenario workers_ws)."""
    dur = L.duration()
    n = pool_size()
    meta, sets = load_pool(n)
    conn = L.connect()
    pids = L.listener_pids(conn)
    if not pids:
        L.result(scenario, target, note="no setstream listener is running")
        return 1
    b = L.Stream(conn, "bench-wspp", issuer=meta["audience"], audience=["https://unused.example"],
                 peer_issuer=meta["issuer"], vacuum=True)
    try:
        L.q(conn, "SELECT setstream.add_key(%s, %s::jsonb)", (b.name, json.dumps(meta["jwk"])))
        token = L.q1(conn, "SELECT setstream.issue_token(%s)", (b.name,))
        msgs = build_messages(sets)
        del sets
        per_conn = [msgs[i::CONNS] for i in range(CONNS)]
        procs_n = max(1, min(PROCS, CONNS))
        groups = [per_conn[i::procs_n] for i in range(procs_n)]
        url = L.ws_url(b.name)
        L.log("pushing %d SETs max over %d connections in %d process(es) for %.0f s ..."
              % (sum(c for _, c in msgs), CONNS, procs_n, dur))
        mq = multiprocessing.Queue()
        start_at = time.time() + 1.0
        ctx_procs = [multiprocessing.Process(target=client_process,
                                             args=(url, token, g, dur, start_at, mq))
                     for g in groups]
        for p in ctx_procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.01)
        cpu = L.CpuMeter(pids)
        rss_before = L.rss_mb(pids)
        results = []
        for _ in ctx_procs:
            try:
                results.append(mq.get(timeout=dur + 90))
            except Exception:  # noqa: BLE001
                break
        listener_cpu = cpu.pct()
        rss = L.rss_mb(pids)
        for p in ctx_procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        if len(results) != len(ctx_procs):
            L.result(scenario, target, note="a client process did not report", cpu_pct=listener_cpu)
            return 1
        acked = sum(r["acked"] for r in results)
        sent = sum(r["sent"] for r in results)
        errs = sum(r["errs"] for r in results)
        last = max((r["last_ack"] for r in results if r["last_ack"] is not None), default=None)
        client_cpu = sum(r["cpu_s"] for r in results)
        wall = max(r["wall_s"] for r in results)
        notes = sum((r["note"] for r in results), [])
        stored = L.q1(conn, "SELECT count(*) FROM setstream.events WHERE stream = %s", (b.name,))
        # the same limit as every other row: RS256 verify, 2 processes
        speed = lib.openssl_speed("RS256")
        # The rate while every connection still had SETs to send: each has
        # its own slice, and once the connections of one listener have used
        # theirs the other listener would finish alone, at half the machine.
        t_start = start_at
        t_end = t_start + dur
        ran_out = [t for r in results for t in r["ran_out"]]
        if ran_out:
            t_end = min(t_end, min(ran_out))
        if last:
            t_end = min(t_end, t_start + last)
        acked_by_end = sum(n for r in results for t, n in r["acks"] if t <= t_end)
        rate = acked_by_end / (t_end - t_start) if t_end > t_start else None
        note = ("rate over the first %.1f s (%s): %d acked; "
                % (t_end - t_start, "until a connection had sent all its SETs" if ran_out
                   else "the whole run", acked_by_end))
        note += ("acked %d of %d sent, stored %d, setErrs %d; listener RSS %.1f MB before; "
                "client CPU %.0f%% of one core (%d process(es), %d conns, window %d x %d SETs); "
                "%s" % (acked, sent, stored, errs, rss_before or 0,
                        client_cpu / wall * 100 if wall else 0, procs_n, CONNS, WINDOW, PER_MSG,
                        "pool exhausted before the deadline; " if sent >= sum(c for _, c in msgs) else ""))
        if errs:
            note += "setErrs sample: %s; " % next((r["err_sample"] for r in results if r["err_sample"]), "")
        if notes:
            note += "; ".join(sorted(set(notes)))
        ok = acked > 0 and stored == acked and errs == 0
        if not ok:
            note = "CHECK FAILED: " + note
        if stats is not None:
            stats.update(sets_per_s=rate if ok else None, cpu_pct=listener_cpu, rss_mb=rss,
                         client_cpu_pct=client_cpu / wall * 100 if wall else 0)
        L.result(scenario, target, sets_per_s=rate if ok else None,
                 limit="openssl %s verify, 2 processes" % speed["openssl"],
                 limit_per_s=speed["verify_2"],
                 cpu_pct=listener_cpu, rss_mb=rss, note=note)
        return 0 if ok else 1
    finally:
        b.drop()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
