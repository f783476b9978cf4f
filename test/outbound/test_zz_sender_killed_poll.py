"""SIGKILL of the sender while it polls (set_source): the postmaster
restarts every process.  Nothing is lost (every SET emitted on A is acked
in the end) and nothing is stored twice on B: SETs stored before the kill
whose acks died with the sender are sent again by A, found stored by jti,
and acknowledged."""

import time

from test_poll_setstream_to_setstream import acked, check_polled_once, make_poll_pair
from test_setstream_to_setstream import emit_many
from test_zz_sender_killed import (connect, connect_after_restart, kill_on_purpose,
                                   sender_pid)
from conftest import wait_for, wait_for_listener_up

N = 1500


def test_sigkill_of_the_polling_sender_loses_nothing_and_stores_nothing_twice(listener):
    d = connect()
    created = []
    d.execute("ALTER SYSTEM SET setstream.outbound_allowed_networks = '127.0.0.0/8'")
    d.execute("ALTER SYSTEM SET setstream.redelivery_interval = '2s'")
    d.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        a, b = make_poll_pair(d, created)
        pid = wait_for("the sender", lambda: sender_pid(d))
        emit_many(d, a, N)
        stored = lambda: d.val("SELECT count(*) FROM setstream.events "   # noqa: E731
                               "WHERE stream = %s", (b,))
        wait_for("some SETs stored", lambda: stored() >= 100, timeout=30, interval=0.005)
        # Count before the kill: the kill makes the postmaster end every
        # backend, this connection's too, at a moment the test does not know.
        before_kill = acked(d, a)
        kill_on_purpose(pid)
        d.conn.close()
        assert before_kill < N, "everything was acked before the kill; nothing tested"

        d = connect_after_restart(killed=pid)
        wait_for_listener_up()
        new_pid = wait_for("a new sender", lambda: sender_pid(d), timeout=60)
        assert new_pid != pid
        wait_for("all acks", lambda: acked(d, a) == N, timeout=120)
        check_polled_once(d, a, b, N)
        # SETs B had stored, whose acks died with the sender, came again
        again = d.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s"
                      " AND attempts > 1", (a,))
        assert again > 0, "no SET was sent twice: the duplicate path was not exercised"
    finally:
        d = connect_after_restart()
        for name in created:
            d.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
        d.execute("ALTER SYSTEM RESET setstream.outbound_allowed_networks")
        d.execute("ALTER SYSTEM RESET setstream.redelivery_interval")
        d.execute("SELECT pg_reload_conf()")
        d.conn.close()
