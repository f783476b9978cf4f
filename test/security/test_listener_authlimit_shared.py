"""Issue 11, item 8: the limit of failed authentications is kept in shared
memory, not in each listener process.

With setstream.workers = N, each worker used to keep its own table, so an
address could fail N times the limit (the kernel spreads its connections
over the workers).  The table is now one for all of them.  The suite's
cluster runs one worker; what shows the table is shared is that a listener
that is restarted (a crash, pg_terminate_backend) still knows the address
that used up its failures: a process-local table started empty.
"""

import os
import random
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "protocol"))
import hostile  # noqa: E402

from listener_support import build_request, wait_for_listener  # noqa: E402

LIMIT = 2


def poll_from(address, stream, token):
    conn = hostile.raw_from(address)
    try:
        return conn.request("POST", "/streams/%s/poll" % stream.name,
                            [("Authorization", "Bearer " + token),
                             ("Content-Type", "application/json")],
                            '{"returnImmediately": true}')
    finally:
        conn.close()


def listener_pid(db):
    rows = db.rows("SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream listener'")
    return rows[0][0] if rows else None


def test_failures_survive_a_listener_restart(listener, streams, gucs):
    gucs.set(auth_failure_limit=LIMIT)
    s = streams.create()
    address = "127.%d.%d.%d" % (random.randrange(2, 250), random.randrange(0, 250),
                                random.randrange(1, 250))
    for _ in range(LIMIT):
        assert poll_from(address, s, "wrong").status == 401
    assert poll_from(address, s, s.token).status == 429

    old = listener_pid(listener)
    listener.execute("SELECT pg_terminate_backend(%s)", (old,))
    deadline = time.monotonic() + 30
    while listener_pid(listener) in (None, old):
        assert time.monotonic() < deadline, "the listener was not restarted"
        time.sleep(0.2)
    wait_for_listener()

    # the new process knows the address used up its failures
    r = poll_from(address, s, s.token)
    assert r.status == 429, r
    # and another address is not blocked
    other = "127.%d.%d.%d" % (random.randrange(2, 250), random.randrange(0, 250),
                              random.randrange(1, 250))
    assert poll_from(other, s, s.token).status == 200
