#!/usr/bin/python3
"""Scenario poll_drain: RFC 8936 poll drain of a pre-signed outbox.

An outbox of N SETs (BENCH_POLL_SETS, default 40,000 x BENCH_DURATION) is
filled before the clock starts: setstream.emit() signs N SETs (ES256) once
per session into a source stream, and each run copies them (INSERT ...
SELECT) into the outbox of a fresh stream.  BENCH_POLL_CLIENTS clients
(default 1; Python requests, one keep-alive connection each) then poll
POST /streams/{name}/poll with maxEvents 1000, each poll acknowledging the
previous batch, until the outbox is drained.  Afterwards every SET must be
acked, each delivered exactly once.  Target >= 30,000 SETs/s.

Limit: the same statements setstream runs for a poll (ack UPDATE, the
FOR UPDATE SKIP LOCKED take-due UPDATE ... RETURNING, the "more due"
EXISTS), run by one plain SQL client in batches of 1000, a transaction
each, on a copy of the same rows in an equivalent table.
"""
import json
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.environ.get("BENCH_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lib  # noqa: E402

N = int(os.environ.get("BENCH_POLL_SETS") or max(50000, int(lib.DURATION * 40000)))
CLIENTS = int(os.environ.get("BENCH_POLL_CLIENTS", "1"))
MAX_EVENTS = 1000
SRC = "bench_poll_src"
EVENT_TYPE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"


def master():
    """public.bench_poll_master: N signed outbox rows (emitted once per session)."""
    have = lib.sql1("SELECT count(*) FROM pg_class WHERE relname = 'bench_poll_master'"
                    " AND relnamespace = 'public'::regnamespace")
    if have and lib.sql1("SELECT count(*) FROM public.bench_poll_master") >= N:
        return
    lib.sql("DROP TABLE IF EXISTS public.bench_poll_master")
    lib.make_stream(SRC, peer=False, alg="ES256")
    lib.log("emitting %d ES256 SETs into the outbox (setstream.emit, 2 connections)" % N)
    t0 = time.monotonic()
    procs = []
    half = N // 2
    import threading
    errors = []

    def emit(lo, hi):
        try:
            c = lib.connect()
            for a in range(lo, hi + 1, 10000):
                b = min(hi, a + 9999)
                lib.sql("SELECT count(setstream.emit(%s, %s,"
                        " jsonb_build_object('change_type', 'update', 'credential_type', 'password',"
                        "   'event_timestamp', 1700000000 + g),"
                        " jsonb_build_object('format', 'email', 'email', 'user' || g || '@example.com')))"
                        " FROM generate_series(%s, %s) g", (SRC, EVENT_TYPE, a, b), conn=c)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    for lo, hi in ((1, half), (half + 1, N)):
        t = threading.Thread(target=emit, args=(lo, hi))
        t.start()
        procs.append(t)
    for t in procs:
        t.join()
    if errors:
        raise errors[0]
    lib.log("emitted %d SETs in %.1f s" % (N, time.monotonic() - t0))
    lib.sql("CREATE TABLE public.bench_poll_master AS SELECT jti, event_types, claims, token, seq"
            " FROM setstream.outbox WHERE stream = %s", (SRC,))
    lib.sql("TRUNCATE setstream.outbox")
    lib.drop_stream_if_exists(SRC)
    lib.sql("VACUUM ANALYZE public.bench_poll_master")


def client(args):
    """One polling client; returns (jtis received, latencies, errors)."""
    import requests
    url, token = args
    s = requests.Session()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    acks, jtis, lat, errors = [], [], [], []
    while True:
        body = json.dumps({"maxEvents": MAX_EVENTS, "returnImmediately": True, "ack": acks})
        t = time.perf_counter()
        r = s.post(url, data=body, headers=headers, timeout=60)
        lat.append(time.perf_counter() - t)
        if r.status_code != 200:
            errors.append("HTTP %d: %s" % (r.status_code, r.text[:200]))
            if len(errors) > 5:
                break
            continue
        d = r.json()
        sets = d.get("sets", {})
        acks = list(sets)
        jtis.extend(acks)
        if not sets and not d.get("moreAvailable"):
            break
    return jtis, lat, errors


def sql_limit(rows):
    """The plain-SQL drain of the same rows in an equivalent table."""
    c = lib.connect(autocommit=False)
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS public.bench_outbox_copy")
    cur.execute("CREATE TABLE public.bench_outbox_copy (LIKE setstream.outbox INCLUDING ALL)")
    # LIKE copies columns, CHECKs and indexes, not storage parameters (fillfactor)
    cur.execute("SELECT reloptions FROM pg_class WHERE oid = 'setstream.outbox'::regclass")
    reloptions = cur.fetchone()[0]
    if reloptions:
        cur.execute("ALTER TABLE public.bench_outbox_copy SET (%s)" % ", ".join(reloptions))
    cur.execute("ALTER TABLE public.bench_outbox_copy ADD FOREIGN KEY (stream)"
                " REFERENCES setstream.streams (name) ON DELETE CASCADE ON UPDATE CASCADE")
    cur.execute("INSERT INTO public.bench_outbox_copy (stream, jti, event_types, claims, token)"
                " SELECT %s, jti, event_types, claims, token FROM public.bench_poll_master"
                " ORDER BY seq LIMIT %s", (rows["stream"], N))
    c.commit()
    c.autocommit = True
    cur.execute("VACUUM ANALYZE public.bench_outbox_copy")
    cur.execute("CHECKPOINT")
    c.autocommit = False
    # src/store.c's DUE_CONDITION: the due index's predicate, then the due rule
    due = ("acked_at IS NULL AND failed_at IS NULL"
           " AND (state = 'pending' OR delivered_at <= now() - make_interval(secs => 60))")
    stream = rows["stream"]
    acks, n = [], 0
    t0 = time.monotonic()
    while True:
        cur.execute("UPDATE public.bench_outbox_copy SET state = 'acked', acked_at = now()"
                    " WHERE stream = %s AND jti = ANY (%s) AND state IN ('pending', 'delivered')",
                    (stream, acks))
        # src/store.c's stmt_take_due: lock the due rows, update them by ctid
        cur.execute("UPDATE public.bench_outbox_copy o SET state = 'delivered', attempts = o.attempts + 1,"
                    " delivered_at = now() WHERE o.ctid = ANY (ARRAY(SELECT ctid FROM public.bench_outbox_copy"
                    " WHERE stream = %s AND " + due + " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED))"
                    " RETURNING o.seq, o.jti, o.token", (stream, MAX_EVENTS))
        got = cur.fetchall()
        seqs = [g[0] for g in got]
        cur.execute("SELECT EXISTS (SELECT 1 FROM public.bench_outbox_copy WHERE stream = %s AND "
                    + due + " AND seq <> ALL (%s))", (stream, seqs or [0]))
        more = cur.fetchone()[0]
        c.commit()
        acks = [g[1] for g in got]
        n += len(got)
        if not got and not more:
            break
    wall = time.monotonic() - t0
    acked = lib.sql1("SELECT count(*) FROM public.bench_outbox_copy WHERE state = 'acked'")
    c.autocommit = True
    cur.execute("DROP TABLE public.bench_outbox_copy")
    c.close()
    if acked != N:
        raise RuntimeError("plain SQL drain acked %d of %d" % (acked, N))
    return n / wall


def main():
    master()
    name = "bench_poll_r%d" % lib.RUN
    lib.sql("TRUNCATE setstream.outbox")
    info = lib.make_stream(name, peer=False, alg="ES256")
    lib.sql("INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)"
            " SELECT %s, jti, event_types, claims, token FROM public.bench_poll_master"
            " ORDER BY seq LIMIT %s", (name, N))
    lib.sql("VACUUM ANALYZE setstream.outbox")
    lib.checkpoint()
    lib.wait_quiet()
    url = info["url"] + "/poll"
    lib.log("draining %d SETs with %d client(s), maxEvents %d" % (N, CLIENTS, MAX_EVENTS))
    sampler = lib.ProcSampler().start()
    t0 = time.monotonic()
    if CLIENTS == 1:
        outs = [client((url, info["token"]))]
    else:
        with multiprocessing.Pool(CLIENTS) as pool:
            outs = pool.map(client, [(url, info["token"])] * CLIENTS)
    wall = time.monotonic() - t0
    m = sampler.stop()
    jtis = [j for o in outs for j in o[0]]
    lat = sorted(x for o in outs for x in o[1])
    errors = [e for o in outs for e in o[2]]
    state = dict(lib.sql("SELECT state, count(*) FROM setstream.outbox WHERE stream = %s"
                         " GROUP BY state", (name,)))
    if len(jtis) != N:
        errors.append("received %d SETs for %d in the outbox" % (len(jtis), N))
    if len(set(jtis)) != len(jtis):
        errors.append("%d SETs were delivered twice" % (len(jtis) - len(set(jtis))))
    if state.get("acked", 0) != N:
        errors.append("outbox states after the drain: %s" % json.dumps(state))
    if CLIENTS == 1 and lib.sql1("SELECT max(attempts) FROM setstream.outbox WHERE stream = %s",
                                 (name,)) != 1:
        errors.append("some SETs were delivered more than once")
    limit = sql_limit({"stream": name})
    pct = lambda p: round(1000 * lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))], 2)  # noqa: E731
    lib.result(scenario="poll drain, maxEvents %d with acks, %d client%s"
               % (MAX_EVENTS, CLIENTS, "s" if CLIENTS > 1 else ""),
               sets_per_s=round(len(jtis) / wall, 1), p50_ms=pct(50), p99_ms=pct(99),
               limit="the same SQL statements from a plain client, same rows, equivalent table",
               limit_per_s=round(limit, 1), target=">= 30000 SETs/s",
               cpu_pct=m["cpu_pct"], rss_mb=m["rss_mb"], errors=len(errors),
               error_detail="; ".join(errors) or None,
               note="%d SETs (emitted with ES256, pre-signed) drained in %.2f s, %d polls; %s"
               % (N, wall, len(lat), lib.cpu_note(m)),
               pg_cpu_pct=m["pg_cpu_pct"], client_cpu_pct=m["client_cpu_pct"],
               rss_anon_mb=m["rss_anon_mb"], others_cpu_pct=m["others_cpu_pct"])
    lib.sql("TRUNCATE setstream.outbox")
    lib.drop_stream_if_exists(name)


if __name__ == "__main__":
    main()
