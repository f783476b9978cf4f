"""Answers after the WAL flush, without waiting idle for it
(setstream.pipelined_flush, shmem/walflush.c).

A listener's turn commits without waiting for its WAL flush and holds the
turn's answers until its flusher (the listener's supervisor) has flushed
the WAL past the turn.  What must hold:

  * a stored SET is never answered before the WAL that stores it is
    flushed: with every flusher and the WAL writer stopped, the SET is
    committed (visible) but its 202 does not come; it comes once the
    listener, after FLUSHER_PATIENCE_MS without a flush, flushes itself;
  * with the flushers running, answers come at once (the flusher, not that
    fallback, releases them);
  * with setstream.pipelined_flush off, a commit waits for its own flush:
    the answer comes at once even with every flusher stopped.

The stopped processes are stopped with SIGSTOP and always continued.
"""

import contextlib
import os
import signal
import threading
import time

import pytest

import listener_support as ls

PATIENCE = 0.5  # FLUSHER_PATIENCE_MS in conn.c


@pytest.fixture
def stream(streams):
    return streams.create(peer_algs=("ES256",))


def pids(db, backend_type):
    return [r[0] for r in db.rows(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (backend_type,))]


@contextlib.contextmanager
def stopped(db, backend_types):
    """SIGSTOP every process of these backend types; SIGCONT at the end."""
    stop = [p for t in backend_types for p in pids(db, t)]
    assert stop, backend_types
    for p in stop:
        os.kill(p, signal.SIGSTOP)
    try:
        yield stop
    finally:
        for p in stop:
            os.kill(p, signal.SIGCONT)


@contextlib.contextmanager
def slow_wal_writer(db):
    """The WAL writer flushes asynchronous commits only every 10 s."""
    db.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
    db.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    try:
        yield
    finally:
        db.execute("ALTER SYSTEM RESET wal_writer_delay")
        db.execute("SELECT pg_reload_conf()")


class Push(threading.Thread):
    """One push in the background: its answer and when it came."""

    def __init__(self, client, stream, token):
        super().__init__(daemon=True)
        self.args = (client, stream, token)
        self.response = None
        self.answered_at = None

    def run(self):
        client, stream, token = self.args
        self.response = client.push(stream, token, timeout=10)
        self.answered_at = time.monotonic()


def wait_stored(db, stream, jti, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not db.events(stream.name, jti):
        assert time.monotonic() < deadline, "the SET was not committed"
        time.sleep(0.005)
    return time.monotonic()


def test_a_stored_set_is_answered_only_after_its_wal_is_flushed(db, client, stream, gucs):
    gucs.set(pipelined_flush="on")
    jti, token = stream.set()
    with slow_wal_writer(db), stopped(db, ["setstream supervisor", "walwriter"]):
        flush_before = db.val("SELECT pg_current_wal_flush_lsn()::text")
        push = Push(client, stream, token)
        push.start()
        committed = wait_stored(db, stream, jti)
        # from its commit on: answered only once the WAL is flushed past it
        while time.monotonic() < committed + 3:
            answered = push.response is not None
            flushed = db.val("SELECT pg_current_wal_flush_lsn() > %s::pg_lsn",
                             (flush_before,))
            if answered:
                assert flushed, "answered %.3f s after the commit, before any flush" % (
                    push.answered_at - committed)
                break
            time.sleep(0.01)
        # no flusher moves: the listener flushes itself after its patience
        push.join(1)
        assert push.response is not None, "no answer in 3 s"
        assert push.response.status_code == 202, push.response.text
        assert push.answered_at - committed >= PATIENCE - 0.25
    assert [e["jti"] for e in db.events(stream.name)] == [jti]


def test_the_flusher_releases_answers_at_once(db, client, stream, gucs):
    gucs.set(pipelined_flush="on")
    took = []
    for _ in range(9):
        jti, token = stream.set()
        start = time.monotonic()
        r = client.push(stream, token, timeout=10)
        took.append(time.monotonic() - start)
        assert r.status_code == 202, r.text
    took.sort()
    # the listener's own fallback would take PATIENCE for each
    assert took[len(took) // 2] < PATIENCE / 2, took
    assert db.event_count(stream.name) == 9


def test_without_pipelining_a_commit_waits_for_its_own_flush(db, client, stream, gucs):
    gucs.set(pipelined_flush="off")
    jti, token = stream.set()
    with slow_wal_writer(db), stopped(db, ["setstream supervisor", "walwriter"]):
        start = time.monotonic()
        r = client.push(stream, token, timeout=10)
        took = time.monotonic() - start
    assert r.status_code == 202, r.text
    assert took < PATIENCE - 0.1, took
    assert [e["jti"] for e in db.events(stream.name)] == [jti]
