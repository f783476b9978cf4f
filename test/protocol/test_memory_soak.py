"""The listener's private memory does not grow with the requests it serves.

A short version of bench/scenarios/soak.py (whose Traffic class drives the
same mix: valid, badly signed and unauthenticated pushes, emit + poll with
acks, pushpull HTTP with acks, WebSocket sessions opened and closed, new
connections for /jwks.json, 404s, malformed HTTP and oversized bodies).
After a warm-up of WARMUP_ROUNDS rounds (caches, memory contexts and malloc
arenas reach their working size), MEASURE_ROUNDS more rounds (several
thousand requests) may add at most GROWTH_BOUND_KB of private anonymous
memory ("Anonymous" in /proc/PID/smaps_rollup: heap, memory contexts) to
the listener: a leak of LEAK_BYTES (100) bytes a request would exceed it
over the requests between the start and the end medians, which the test
checks before it judges the growth.  (Not
Private_Dirty: it also counts shared buffers only the listener has touched
yet.)  Every answer must be the expected one.

Under the sanitizer mode (libasan in the listener) ASan's quarantine keeps
freed memory on purpose, so the bound does not apply and the test is
skipped; the traffic still runs there through the other protocol tests.
"""

import importlib.util
import os
import statistics

import pytest

import listener_support as ls

WARMUP_ROUNDS = 150         # ~1,400 requests
MEASURE_ROUNDS = 1000       # ~9,400 requests; ~8,800 between the medians
SAMPLE_EVERY = 25           # rounds
GROWTH_BOUND_KB = 512
LEAK_BYTES = 100            # a leak this size per request must fail the test


def _soak_module():
    repo = os.environ.get("SETSTREAM_REPO") or os.path.join(os.path.dirname(__file__), "..", "..")
    path = os.path.join(repo, "bench", "scenarios", "soak.py")
    spec = importlib.util.spec_from_file_location("setstream_soak", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _listener_pid(db):
    pids = [r[0] for r in db.rows("SELECT pid FROM pg_stat_activity"
                                  " WHERE backend_type = 'setstream listener'")]
    assert len(pids) == 1, "expected one listener process, found %r" % pids
    return pids[0]


def _sanitized(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def test_private_memory_flat_under_mixed_traffic(listener, db, gucs):
    # every round makes one push with a wrong token: ~1,150 failed
    # authentications from 127.0.0.1, over the cluster's per-minute limit
    # (1000) whenever the rounds take less than a minute.  The limiter is not
    # what this test measures: it is off while the traffic runs.
    gucs.set(auth_failure_limit=0)
    soak = _soak_module()
    pid = _listener_pid(db)
    assert soak.sample_kb(pid) is not None, "cannot read /proc/%d/smaps_rollup" % pid
    if _sanitized(pid):
        pytest.skip("the listener runs under ASan: its quarantine holds freed memory")
    traffic = soak.Traffic(db.conn, ls.HOST, ls.PORT, ws_every=5, prefix="pt-soak")
    try:
        for _ in range(WARMUP_ROUNDS):
            traffic.round()
        samples = []
        for i in range(MEASURE_ROUNDS + 1):
            if i % SAMPLE_EVERY == 0:
                samples.append((traffic.requests, soak.sample_kb(pid)["Anonymous"]))
            if i < MEASURE_ROUNDS:
                traffic.round()
    finally:
        traffic.drop()
    assert traffic.errors == 0, "unexpected answers: %s" % traffic.error_detail
    assert _listener_pid(db) == pid, "the listener restarted during the traffic"
    # the start and the end: medians of three samples each, so that one
    # momentary peak (a large answer being built) does not decide.  A
    # steady leak shows between the middle samples of the two triples.
    n = samples[-2][0] - samples[1][0]
    assert n * LEAK_BYTES / 1024.0 > GROWTH_BOUND_KB, \
        ("only %d requests between the start and end medians: a leak of %d bytes a request "
         "(%d kB) would stay under the %d kB bound"
         % (n, LEAK_BYTES, n * LEAK_BYTES // 1024, GROWTH_BOUND_KB))
    start = statistics.median(kb for _, kb in samples[:3])
    end = statistics.median(kb for _, kb in samples[-3:])
    series = [kb for _, kb in samples]
    assert end - start <= GROWTH_BOUND_KB, \
        ("listener private anonymous memory grew by %d kB over %d requests after the warm-up "
         "(bound %d kB); series (kB): %s" % (end - start, n, GROWTH_BOUND_KB, series))
