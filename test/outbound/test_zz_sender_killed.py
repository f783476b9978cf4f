"""SIGKILL of the sender while pushes are in flight (runs last: the
postmaster answers a killed worker with a restart of every process, so
this test uses connections of its own, opened after the restart).

Nothing is lost: every SET emitted is acknowledged in the end.  Nothing is
stored twice: the receiving stream holds each SET once, byte-identical, and
a SET whose 202 came back before the kill but whose ack was not committed
was pushed again with the same bytes."""

import os
import signal
import time

import psycopg2
import psycopg2.extras

from conftest import DATABASE, Db, wait_for, wait_for_listener_up
from test_setstream_to_setstream import check_stored_once, emit_many, make_pair

N = 600


def connect():
    conn = psycopg2.connect(dbname=DATABASE, application_name="setstream-outbound-test",
                            options="-c statement_timeout=30000")
    conn.autocommit = True
    return Db(conn)


def connect_after_restart(timeout=60, killed=None):
    """A connection to the cluster once it answers again.  killed: the pid
    of a worker just killed: the postmaster then ends every backend and
    starts again, at a moment of its own, so a connection made before that
    would be ended too; one that sees a sender other than the killed one
    was made after the restart."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            d = connect()
            d.val("SELECT 1")
            if killed is None:
                return d
            pid = sender_pid(d)
            if pid is not None and pid != killed:
                return d
            d.conn.close()
        except psycopg2.Error:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the cluster did not restart after the kill")
        time.sleep(0.2)


def kill_on_purpose(pid):
    """SIGKILL a process of the test cluster, and tell scripts/test.sh (which
    counts every process a signal ended as a crash) that it was meant."""
    path = os.environ.get("SETSTREAM_KILLED_PIDS")
    if path:
        with open(path, "a") as f:
            f.write("%d\n" % pid)
    os.kill(pid, signal.SIGKILL)


def sender_pid(d):
    rows = d.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream sender'")
    return rows[0][0] if len(rows) == 1 else None


def test_sigkill_of_the_sender_mid_flight_loses_nothing_and_stores_nothing_twice(listener):
    d = connect()
    created = []
    d.execute("ALTER SYSTEM SET setstream.outbound_allowed_networks = '127.0.0.0/8'")
    d.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        a, b = make_pair(d, created)
        pid = wait_for("the sender", lambda: sender_pid(d))
        emit_many(d, a, N)
        acked = lambda: d.val("SELECT count(*) FROM setstream.outbox "   # noqa: E731
                              "WHERE stream = %s AND state = 'acked'", (a,))
        wait_for("some acks", lambda: acked() >= 20, timeout=30, interval=0.005)
        # Count before the kill: the kill makes the postmaster end every
        # backend, this connection's too, at a moment the test does not know.
        before_kill = acked()
        kill_on_purpose(pid)
        d.conn.close()
        assert before_kill < N, "everything was delivered before the kill; nothing tested"

        d = connect_after_restart(killed=pid)
        wait_for_listener_up()
        new_pid = wait_for("a new sender", lambda: sender_pid(d), timeout=60)
        assert new_pid != pid
        wait_for("all acks", lambda: acked() == N, timeout=120)
        check_stored_once(d, a, b, N)
    finally:
        d = connect_after_restart()
        for name in created:
            d.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
        d.execute("ALTER SYSTEM RESET setstream.outbound_allowed_networks")
        d.execute("SELECT pg_reload_conf()")
        d.conn.close()


def test_a_202_whose_ack_was_not_committed_is_pushed_again_byte_for_byte(listener):
    """The receiver holds 4 pushes; the sender is killed before it could
    record their 202s: after the restart the same 4 tokens come again."""
    from conftest import Receiver
    from listener_support import StreamFactory

    receiver = Receiver()
    receiver.delay = 1.0
    d = connect()
    factory = StreamFactory(d)
    d.execute("ALTER SYSTEM SET setstream.outbound_allowed_networks = '127.0.0.0/8'")
    d.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        s = factory.create(peer_algs=(), signing_alg="ES256", token=False)
        d.execute("SELECT setstream.set_delivery(%s, 'push', %s, NULL, 4)", (s.name, receiver.url))
        pid = wait_for("the sender", lambda: sender_pid(d))
        emit_many(d, s.name, 12)
        wait_for("4 pushes in flight", lambda: receiver.count() == 4, timeout=10, interval=0.005)
        kill_on_purpose(pid)
        first = [r["body"] for r in receiver.requests[:4]]
        t = [r["t"] for r in receiver.requests[:4]]
        assert max(t) - min(t) < receiver.delay, "the 4 pushes were not in flight together"
        d.conn.close()

        d = connect_after_restart(killed=pid)
        factory.db = d
        wait_for("all acks", lambda: d.val(
            "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
            (s.name,)) == 12, timeout=60)
        bodies = [r["body"] for r in receiver.requests]
        for body in first:
            assert bodies.count(body) == 2, "a push answered 202 before the kill was not repeated"
        tokens = {t.encode() for (t,) in d.rows(
            "SELECT token FROM setstream.outbox WHERE stream = %s", (s.name,))}
        assert set(bodies) == tokens and len(tokens) == 12
        assert len(bodies) == 16
    finally:
        receiver.close()
        d = connect_after_restart()
        factory.db = d
        factory.drop_all()
        d.execute("ALTER SYSTEM RESET setstream.outbound_allowed_networks")
        d.execute("SELECT pg_reload_conf()")
        d.conn.close()
