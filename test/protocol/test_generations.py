"""What commits by a path that no commit callback of this node sees still
reaches the listener within setstream.generation_check_interval (issue 18:
on Citus, another node's commit, plain or two-phase, writes this node's
placements; an emit on another node writes the shard this node reads):

  * a write of setstream.generations alone (the configuration tables'
    triggers disabled, so neither config_changed nor the generation
    trigger saw the revocation) makes the listener drop its cache: the
    revoked token opens nothing within a second;
  * a token revoked through PREPARE TRANSACTION / COMMIT PREPARED in
    another session moves its stream's generation row with the commit, and
    is refused within a second;
  * a SET inserted into the outbox without emit() (no wake-up noted: an
    emit made on another node) answers a parked long poll, and is pushed
    on an open WebSocket, within a second rather than at the poll's
    timeout;
  * errors of the database rather than of the request that a distributed
    database raises (lost connection to a node 08006, object in use 55006,
    node shutting down 57P01) answer 503 with Retry-After, not 500.
"""

import os
import sys
import threading
import time
import uuid

import pytest

import listener_support as ls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, connect, run  # noqa: E402

ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

SEEN_S = 1.0  # setstream.generation_check_interval is 250 ms by default


def wait_status(client, s, status, timeout=SEEN_S):
    t0 = time.monotonic()
    while True:
        r = client.poll(s, {"returnImmediately": True})
        if r.status_code == status:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, \
            "still %d %s after %.1fs" % (r.status_code, r.text, timeout)
        time.sleep(0.05)


def revoke_without_triggers(db, stream):
    db.execute("ALTER TABLE setstream.tokens DISABLE TRIGGER config_changed")
    db.execute("ALTER TABLE setstream.tokens DISABLE TRIGGER bump_generation")
    try:
        db.execute("UPDATE setstream.tokens SET revoked_at = now() WHERE stream = %s",
                   (stream,))
    finally:
        db.execute("ALTER TABLE setstream.tokens ENABLE ALWAYS TRIGGER config_changed")
        db.execute("ALTER TABLE setstream.tokens ENABLE ALWAYS TRIGGER bump_generation")


def test_generation_row_write_drops_caches(db, client, streams):
    s = streams.create()
    assert client.poll(s).status_code == 200
    # creating the stream moved the generations: let the listener see that
    # (it drops its cache), then cache the stream and its token again
    time.sleep(0.6)
    assert client.poll(s).status_code == 200
    revoke_without_triggers(db, s.name)
    time.sleep(0.6)
    # nothing told the listener: the premise of the test
    assert client.poll(s).status_code == 200
    db.execute("INSERT INTO setstream.generations AS g (stream) VALUES (%s)"
               " ON CONFLICT (stream) DO UPDATE SET generation = g.generation + 1",
               (s.name,))
    wait_status(client, s, 401)


def test_commit_prepared_revoke_seen_through_the_generation_row(db, client, streams):
    n = int(db.val("SHOW max_prepared_transactions"))
    assert n > 0, "needs max_prepared_transactions > 0 (scripts/test.sh sets 10)"
    s = streams.create()
    assert client.poll(s).status_code == 200
    before = db.val("SELECT generation FROM setstream.generations WHERE stream = %s",
                    (s.name,))
    gid = "setstream-test-" + uuid.uuid4().hex
    conn = ls.connect_db(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT setstream.revoke_token(%s, %s)", (s.name, s.token))
            cur.execute("PREPARE TRANSACTION %s", (gid,))
    finally:
        conn.close()
    try:
        assert client.poll(s).status_code == 200  # prepared is not committed
    finally:
        conn = ls.connect_db(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("COMMIT PREPARED %s", (gid,))
        finally:
            conn.close()
    # the generation row moved with the prepared transaction's commit
    assert db.val("SELECT generation FROM setstream.generations WHERE stream = %s",
                  (s.name,)) > before
    wait_status(client, s, 401)


def insert_outbox_row(db, stream):
    """A due SET written as another node's emit reaches this one: no wake-up."""
    jti = "remote-" + uuid.uuid4().hex
    db.execute("INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)"
               " VALUES (%s, %s, ARRAY[%s], '{}', %s)",
               (stream, jti, ls.SESSION_REVOKED, "e30.e30.c2ln"))
    return jti


def test_outbox_row_without_emit_wakes_a_long_poll(db, gucs, streams):
    s = streams.create(signing_alg="ES256")
    gucs.set(poll_timeout="8000")
    box = {}

    def poll():
        c = ls.Client()
        try:
            box["r"] = c.poll(s, {"returnImmediately": False}, timeout=ls.HTTP_TIMEOUT)
            box["at"] = time.monotonic()
        finally:
            c.close()

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    db.wait_parked(s.name)
    time.sleep(0.6)  # the stream has been looked at: its fingerprint is known
    t0 = time.monotonic()
    jti = insert_outbox_row(db, s.name)
    t.join(SEEN_S + 1)
    assert not t.is_alive(), "the long poll was not woken (poll_timeout is 8 s)"
    r = box["r"]
    assert r.status_code == 200, r.text
    assert list(r.json()["sets"]) == [jti]
    assert box["at"] - t0 < SEEN_S, box["at"] - t0


def test_outbox_row_without_emit_is_pushed_on_a_websocket(ws_db, ws_streams):
    s = ws_streams.create(peer_algs=())

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            assert await peer.quiet(0.6) == []
            jti = insert_outbox_row(ws_db, s.name)
            await peer.wait_sets([jti], timeout=SEEN_S)

    run(go())


@pytest.mark.parametrize("sqlstate", ["08006", "55006", "57P01"])
def test_transient_sqlstate_answers_503(db, client, streams, sqlstate):
    s = streams.create()
    fn = "pg_temp_fail_%s" % sqlstate.lower()
    db.execute("CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS "
               "$$BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '%s'; END$$"
               % (fn, sqlstate))
    db.execute("CREATE TRIGGER fail_%s BEFORE INSERT ON setstream.events FOR EACH ROW "
               "WHEN (NEW.stream = '%s') EXECUTE FUNCTION public.%s()"
               % (sqlstate.lower(), s.name, fn))
    try:
        _, token = s.set()
        r = client.push(s, token)
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.headers.get("Retry-After") == "1", r.headers
        assert db.event_count(s.name) == 0
    finally:
        db.execute("DROP TRIGGER fail_%s ON setstream.events" % sqlstate.lower())
        db.execute("DROP FUNCTION public.%s()" % fn)
