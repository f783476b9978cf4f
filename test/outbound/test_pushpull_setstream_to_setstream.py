"""setstream to setstream by pushpull over HTTP: stream A of this cluster
initiates the pushpull HTTP binding (set_delivery ... 'pushpull') to stream
B's pushpull endpoint on the listener, a real pushpull responder.  SETs
travel both ways on that one exchange at once: every SET emitted on A is
stored once on B, every SET emitted on B (delivered by the listener) is
stored once on A, byte for byte, and both outboxes reach acked."""

import os
import threading
import uuid

from conftest import connect_db, jdump, wait_for
from test_setstream_to_setstream import emit_many

URL = os.environ.get("SETSTREAM_URL", "http://127.0.0.1:8417")


def make_pushpull_pair(db, created, method="pushpull"):
    """A and B, each the other's peer (issuer, audience, key); A initiates
    (by method: pushpull or pushpull-ws)."""
    a = "pp2p-a-" + uuid.uuid4().hex[:10]
    b = "pp2p-b-" + uuid.uuid4().hex[:10]
    a_iss, b_iss = "https://a.example.com/" + a, "https://b.example.com/" + b
    db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
               (a, a_iss, [b_iss], b_iss))
    created.append(a)
    db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
               (b, b_iss, [a_iss], a_iss))
    created.append(b)
    a_jwk = db.val("SELECT setstream.generate_key(%s, 'ES256')", (a,))
    db.execute("SELECT setstream.add_key(%s, %s::jsonb)", (b, jdump(a_jwk)))
    b_jwk = db.val("SELECT setstream.generate_key(%s, 'ES256')", (b,))
    db.execute("SELECT setstream.add_key(%s, %s::jsonb)", (a, jdump(b_jwk)))
    token = db.val("SELECT setstream.issue_token(%s)", (b,))
    db.execute("SELECT setstream.set_delivery(%s, %s, %s, %s)",
               (a, method, "%s/streams/%s/pushpull" % (URL, b), "Bearer " + token))
    return a, b


def acked(db, stream):
    return db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
                  (stream,))


def check_once(db, src, dst, n):
    sent = dict(db.rows("SELECT jti, token FROM setstream.outbox WHERE stream = %s", (src,)))
    assert len(sent) == n
    got = db.rows("SELECT jti, token FROM setstream.events WHERE stream = %s", (dst,))
    assert len(got) == n, "stored %d of %d" % (len(got), n)
    assert dict(got) == sent       # every SET once, byte for byte
    assert acked(db, src) == n


def test_pushpull_both_directions_at_once(loopback, listener, db):
    loopback.set(pushpull_poll_interval=200)
    created = []
    try:
        a, b = make_pushpull_pair(db, created)

        # emit on both sides at the same time, from two connections
        def emit_b():
            conn = connect_db()
            try:
                with conn.cursor() as cur:
                    for _ in range(4):
                        cur.execute(
                            "SELECT setstream.emit(%s, 'https://schemas.openid.net/secevent/"
                            "caep/event-type/session-revoked', '{}'::jsonb,"
                            " jsonb_build_object('format', 'email', 'email',"
                            " 'b' || i || '@example.com')) FROM generate_series(1, 75) AS i",
                            (b,))
            finally:
                conn.close()

        t = threading.Thread(target=emit_b)
        t.start()
        for _ in range(5):
            emit_many(db, a, 100)
        t.join()
        wait_for("500 acks on A", lambda: acked(db, a) == 500, timeout=90)
        wait_for("300 acks on B", lambda: acked(db, b) == 300, timeout=90)
        check_once(db, a, b, 500)
        check_once(db, b, a, 300)
        r = db.dicts("SELECT * FROM setstream.deliveries WHERE stream = %s", (a,))[0]
        assert r["state"] == "active" and r["failures"] == 0
        # later SETs on either side arrive without anything else happening
        emit_many(db, a, 1)
        emit_many(db, b, 1)
        wait_for("the 501st ack on A", lambda: acked(db, a) == 501, timeout=10)
        wait_for("the 301st ack on B", lambda: acked(db, b) == 301, timeout=10)
        check_once(db, a, b, 501)
        check_once(db, b, a, 301)
    finally:
        for name in created:
            db.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
