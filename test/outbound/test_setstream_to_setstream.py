"""setstream to setstream: a stream of this cluster pushes (RFC 8935) to
another stream of the same cluster through the listener, which is a real
RFC 8935 receiver: it verifies each SET and stores it before its 202."""

import os
import uuid

from conftest import jdump, wait_for

URL = os.environ.get("SETSTREAM_URL", "http://127.0.0.1:8417")
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


def pair_streams(db, created, prefix):
    """Streams A and B: A signs (ES256) SETs addressed to B, B verifies
    them with A's public key (B's peer is A).  Both are appended to
    created; returns (a, b)."""
    a = prefix + "-a-" + uuid.uuid4().hex[:10]
    b = prefix + "-b-" + uuid.uuid4().hex[:10]
    a_iss, b_iss = "https://a.example.com/" + a, "https://b.example.com/" + b
    db.execute("SELECT setstream.create_stream(%s, %s, %s::text[])", (a, a_iss, [b_iss]))
    created.append(a)
    db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
               (b, b_iss, ["https://unused.example.com/"], a_iss))
    created.append(b)
    jwk = db.val("SELECT setstream.generate_key(%s, 'ES256')", (a,))
    db.execute("SELECT setstream.add_key(%s, %s::jsonb)", (b, jdump(jwk)))
    return a, b


def make_pair(db, created):
    """Stream A (push) whose SETs are addressed to, and verified by, B."""
    a, b = pair_streams(db, created, "s2s")
    token = db.val("SELECT setstream.issue_token(%s)", (b,))
    db.execute("SELECT setstream.set_delivery(%s, 'push', %s, %s)",
               (a, "%s/streams/%s/events" % (URL, b), "Bearer " + token))
    return a, b


def emit_many(db, stream, n):
    db.execute(
        "SELECT setstream.emit(%s, %s, '{}'::jsonb,"
        " jsonb_build_object('format', 'email', 'email', 'u' || i || '@example.com'))"
        " FROM generate_series(1, %s) AS i", (stream, SESSION_REVOKED, n))


def check_stored_once(db, a, b, n, acked_where="AND last_status = 202"):
    """Every SET of A (n of them) is stored once on B, byte for byte, and
    acked on A (for a push: with a 202; a poll has no status per SET)."""
    sent = dict(db.rows("SELECT jti, token FROM setstream.outbox WHERE stream = %s", (a,)))
    assert len(sent) == n
    got = db.rows("SELECT jti, token FROM setstream.events WHERE stream = %s", (b,))
    assert len(got) == n, "stored %d of %d" % (len(got), n)
    assert dict(got) == sent       # every SET once, byte for byte
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                  "AND state = 'acked' " + acked_where, (a,)) == n


def test_push_to_our_own_listener_stores_every_set_once(loopback, listener, db):
    created = []
    try:
        a, b = make_pair(db, created)
        emit_many(db, a, 200)
        wait_for("200 acks", lambda: db.val(
            "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
            (a,)) == 200, timeout=60)
        check_stored_once(db, a, b, 200)
        assert db.val("SELECT state FROM setstream.deliveries WHERE stream = %s", (a,)) == "active"
    finally:
        for name in created:
            db.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
