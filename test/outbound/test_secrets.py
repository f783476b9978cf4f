"""Outbound credentials (the Authorization header of pushes) are stored
where only the extension owner reads them: never returned, never shown by
any table or view a non-owner can read, never in the server log (issue 17,
Privileges)."""

import base64
import contextlib
import os
import uuid

import psycopg
import psycopg2
import pytest

from conftest import DATABASE, answer, wait_for

LOGFILE = os.environ.get("SETSTREAM_LOGFILE")


def log_text():
    with open(LOGFILE, "rb") as f:
        return f.read().decode("utf-8", "replace")


def new_secret():
    return "Bearer sst_" + base64.urlsafe_b64encode(os.urandom(24)).rstrip(b"=").decode()


@pytest.fixture
def role(listener):
    name = "outsec_" + uuid.uuid4().hex[:10]
    listener.execute("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB" % name)
    listener.execute("SELECT setstream.allow_stream_creation(%s::regrole)", (name,))
    conn = psycopg2.connect(dbname=DATABASE, user=name,
                            options="-c client_min_messages=warning")
    conn.autocommit = True
    yield name, conn
    conn.close()
    with contextlib.suppress(Exception):
        listener.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE usename = %s", (name,))
    listener.execute("DELETE FROM setstream.streams WHERE owner = %s::regrole", (name,))
    listener.execute("DROP OWNED BY %s CASCADE" % name)
    listener.execute("DROP ROLE %s" % name)


def readable_relations(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'setstream' AND c.relkind IN ('r', 'v', 'm') "
                    "AND has_table_privilege(c.oid, 'SELECT')")
        return [r[0] for r in cur.fetchall()]


def test_the_header_is_in_no_relation_a_non_owner_reads(loopback, receiver, role):
    name, conn = role
    secret = new_secret()
    stream = "outsec-" + uuid.uuid4().hex[:10]
    with conn.cursor() as cur:
        cur.execute("SELECT setstream.create_stream(%s, 'https://a.example/', ARRAY['https://b.example/'])",
                    (stream,))
        cur.execute("SELECT setstream.generate_key(%s)", (stream,))
        cur.execute("SELECT setstream.set_delivery(%s, 'push', %s, %s)::text",
                    (stream, receiver.url, secret))
        returned = cur.fetchone()[0]
        assert secret not in returned
        cur.execute("SELECT setstream.emit(%s, 'https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}')",
                    (stream,))
    # the receiver gets it: it was stored
    wait_for("the push", lambda: receiver.count() == 1)
    assert receiver.requests[0]["headers"]["authorization"] == secret
    relations = readable_relations(conn)
    assert "deliveries" in relations and "outbox" in relations
    assert "delivery_secrets" not in relations
    for rel in relations:
        with conn.cursor() as cur:
            cur.execute("SELECT t::text FROM setstream.%s t" % rel)
            for (text,) in cur.fetchall():
                assert secret not in text, "the header shows in setstream.%s" % rel
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM setstream.delivery_secrets")


@pytest.mark.skipif(not LOGFILE, reason="SETSTREAM_LOGFILE is not set (scripts/test.sh sets it)")
def test_the_header_is_never_logged(loopback, receiver, pushes, db):
    secret = new_secret()
    before = len(log_text())
    bound = psycopg.connect(dbname=DATABASE, autocommit=True,
                            options="-c log_min_error_statement=error")
    try:
        s = pushes.streams.create(peer_algs=(), signing_alg="ES256", token=False)
        # errors of statements that carry it (bound, server-side)
        for args in [("no-such-" + s.name, "push", receiver.url, secret),
                     (s.name, "push", "ftp://x.example/", secret),
                     (s.name, "push", receiver.url, secret + "\r\nX: y")]:
            with pytest.raises(psycopg.Error):
                bound.execute("SELECT setstream.set_delivery(%s, %s, %s, %s)", args)
        bound.execute("SELECT setstream.set_delivery(%s, %s, %s, %s)",
                      (s.name, "push", receiver.url, secret))
    finally:
        bound.close()
    # the sender's own reports: failures, then suspension
    receiver.default = answer(401, headers={"WWW-Authenticate": "Bearer"})
    db.emit(s.name)
    wait_for("suspension", lambda: db.val(
        "SELECT state FROM setstream.deliveries WHERE stream = %s", (s.name,)) == "suspended",
        timeout=20)
    logged = log_text()[before:]
    assert "set_delivery" in logged, "the failing statements were not logged at all"
    assert "suspended" in logged, "the suspension was not logged"
    assert secret not in logged
    assert secret[7:] not in logged


@pytest.mark.skipif(not LOGFILE, reason="SETSTREAM_LOGFILE is not set (scripts/test.sh sets it)")
def test_the_pushpull_header_is_never_logged(loopback, receiver, pushes, db):
    """pushpull as initiator sends the same header: its failures and its
    suspension are logged without it."""
    secret = new_secret()
    before = len(log_text())
    s = pushes.streams.create(peer_algs=(), signing_alg="ES256", token=False)
    receiver.default = answer(401, headers={"WWW-Authenticate": "Bearer"})
    db.execute("SELECT setstream.set_delivery(%s, 'pushpull', %s, %s)",
               (s.name, receiver.url, secret))
    db.emit(s.name)
    wait_for("suspension", lambda: db.val(
        "SELECT state FROM setstream.deliveries WHERE stream = %s", (s.name,)) == "suspended",
        timeout=20)
    assert receiver.requests[0]["headers"]["authorization"] == secret
    logged = log_text()[before:]
    assert "pushpull delivery" in logged and "suspended" in logged
    assert secret not in logged
    assert secret[7:] not in logged
    assert secret not in db.val("SELECT d::text FROM setstream.deliveries d WHERE stream = %s",
                                (s.name,))
