"""setstream to setstream by poll: stream B of this cluster polls (RFC 8936,
set_source) stream A of the same cluster through the listener, a real RFC
8936 transmitter: every SET emitted on A is stored once on B, byte for
byte, and A's outbox rows reach acked (B's acks, sent after its commits)."""

import os

from conftest import wait_for
from test_setstream_to_setstream import check_stored_once, emit_many, pair_streams

URL = os.environ.get("SETSTREAM_URL", "http://127.0.0.1:8417")


def make_poll_pair(db, created):
    """Stream A (delivered by poll) whose SETs are addressed to B; B polls A."""
    a, b = pair_streams(db, created, "p2p")
    token = db.val("SELECT setstream.issue_token(%s)", (a,))
    db.execute("SELECT setstream.set_source(%s, 'poll', %s, %s)",
               (b, "%s/streams/%s/poll" % (URL, a), "Bearer " + token))
    return a, b


def check_polled_once(db, a, b, n):
    check_stored_once(db, a, b, n, acked_where="")


def acked(db, a):
    return db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
                  (a,))


def test_poll_of_our_own_listener_stores_every_set_once(loopback, listener, db):
    created = []
    try:
        a, b = make_poll_pair(db, created)
        emit_many(db, a, 500)
        wait_for("500 acks", lambda: acked(db, a) == 500, timeout=90)
        check_polled_once(db, a, b, 500)
        r = db.dicts("SELECT * FROM setstream.sources WHERE stream = %s", (b,))[0]
        assert r["state"] == "active" and r["received"] == 500 and r["rejected"] == 0
        # a later emit arrives through the long poll, without waiting
        emit_many(db, a, 1)
        wait_for("the 501st ack", lambda: acked(db, a) == 501, timeout=10)
    finally:
        for name in created:
            db.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
