"""A loop turn whose COMMIT fails: a deferred constraint trigger on
setstream.events and setstream.outbox raises at commit for one stream.
Nothing of that turn may be answered as if it had been stored:

  * a push gets 503 (with Retry-After), not 202, and the SET is not stored;
  * a pushpull HTTP request carrying a SET and an ack gets 503: the SET is
    not stored, the ack is not applied;
  * a poll whose ack would commit gets 503 and the SET stays delivered;
  * a WebSocket session whose message fails at commit is closed with 1011,
    with no ack sent, and the SET is not stored;
  * once the trigger is gone the same requests succeed.
"""

import contextlib
import os
import sys

import pytest

import listener_support as ls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, close_code_after, connect, run  # noqa: E402

ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams


@contextlib.contextmanager
def failing_commits(db, stream_name):
    """Every transaction that stores an event or changes the outbox of
    stream_name fails at COMMIT (deferred constraint triggers)."""
    fn = "pg_temp_fail_at_commit"
    db.execute("""
        CREATE OR REPLACE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.stream = %s THEN
                RAISE EXCEPTION 'test: this commit fails' USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$""" % (fn, "'" + stream_name.replace("'", "''") + "'"))
    db.execute("GRANT EXECUTE ON FUNCTION public.%s() TO PUBLIC" % fn)
    for table, ev in (("events", "INSERT"), ("outbox", "UPDATE")):
        db.execute("""CREATE CONSTRAINT TRIGGER test_fail_at_commit
                      AFTER %s ON setstream.%s DEFERRABLE INITIALLY DEFERRED
                      FOR EACH ROW EXECUTE FUNCTION public.%s()""" % (ev, table, fn))
    try:
        yield
    finally:
        for table in ("events", "outbox"):
            db.execute("DROP TRIGGER IF EXISTS test_fail_at_commit ON setstream.%s" % table)
        db.execute("DROP FUNCTION IF EXISTS public.%s()" % fn)


def assert_503(r):
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers.get("Retry-After") == "1", r.headers
    assert "description" in r.json(), r.text


def test_failed_commit_answers_503_and_stores_nothing(db, client, streams):
    s = streams.create(signing_alg="ES256")
    out = db.emit(s.name)
    r = client.poll(s)
    assert list(r.json()["sets"]) == [out]
    assert db.outbox(s.name, out)["state"] == "delivered"
    jti, token = s.set()
    jti2, token2 = s.set()
    with failing_commits(db, s.name):
        assert_503(client.push(s, token))
        assert_503(client.pushpull(s, {"sets": {jti2: token2}, "ack": [out]}))
        assert_503(client.poll(s, {"ack": [out], "returnImmediately": True}))
        assert db.event_count(s.name) == 0
        assert db.outbox(s.name, out)["state"] == "delivered"
    # the trigger is gone: the same requests succeed
    assert client.push(s, token).status_code == 202
    r = client.pushpull(s, {"sets": {jti2: token2}, "ack": [out]})
    assert r.status_code == 200, r.text
    assert r.json().get("ack") == [jti2]
    assert sorted(e["jti"] for e in db.events(s.name)) == sorted([jti, jti2])
    assert db.outbox(s.name, out)["state"] == "acked"


def test_failed_commit_closes_websocket_with_1011(ws_db, ws_streams):
    s = ws_streams.create(peer_algs=("ES256",))
    jti, token = s.set()

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            await peer.send_sets((jti, token))
            code, _ = await close_code_after(ws)
            return code, peer

    db = ls.Db(ls.connect_db())
    try:
        with failing_commits(db, s.name):
            code, peer = run(go())
            assert code == 1011, code
            assert peer.acks == [] and peer.set_errs == {}, peer.messages
            assert ws_db.events(s.name) == {}
    finally:
        db.conn.close()
