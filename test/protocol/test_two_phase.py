"""Two-phase commit, and transactions that emit on many streams: what
commits through COMMIT PREPARED invalidates the listener's caches and wakes
long polls and WebSocket sessions exactly as a plain commit does, and a
transaction that emits on more streams than the commit callback tracks one
by one (64) still wakes every one of them.

  * a token revoked in a prepared transaction opens nothing once COMMIT
    PREPARED (from another session) has returned;
  * a SET emitted in a prepared transaction answers a parked long poll,
    and is pushed on an open WebSocket, within a moment of COMMIT PREPARED
    (and not at PREPARE TRANSACTION);
  * one transaction emits on 70 streams, each with a parked long poll:
    all 70 answer with their SET.

scripts/test.sh starts the cluster with max_prepared_transactions = 10.
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

WAKE_S = 0.5  # COMMIT PREPARED -> answer; without the wake-up: poll_timeout


@pytest.fixture(autouse=True)
def prepared_transactions(db):
    n = int(db.val("SHOW max_prepared_transactions"))
    assert n > 0, "these tests need max_prepared_transactions > 0 (scripts/test.sh sets 10)"


def prepare(sql_and_params):
    """Run statements in a transaction and PREPARE it; returns the gid."""
    gid = "setstream-test-" + uuid.uuid4().hex
    conn = ls.connect_db(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            out = []
            for sql, params in sql_and_params:
                cur.execute(sql, params)
                out.append(cur.fetchone()[0] if cur.description else None)
            cur.execute("PREPARE TRANSACTION %s", (gid,))
    finally:
        conn.close()
    return gid, out


def commit_prepared(gid):
    """COMMIT PREPARED from a session other than the one that prepared."""
    conn = ls.connect_db(autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("COMMIT PREPARED %s", (gid,))
    finally:
        conn.close()


class Poller(threading.Thread):
    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.response = self.error = self.answered_at = None
        self.start()

    def run(self):
        client = ls.Client()
        try:
            self.response = client.poll(self.stream, {"returnImmediately": False},
                                        timeout=ls.HTTP_TIMEOUT)
            self.answered_at = time.monotonic()
        except Exception as e:  # reported by result()
            self.error = e
        finally:
            client.close()

    def result(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), "the long poll did not answer within %.1fs" % timeout
        if self.error:
            raise self.error
        return self.response


def test_commit_prepared_revoke_closes_the_stream(db, client, streams):
    s = streams.create()
    # the listener has the stream and its token cached
    assert client.poll(s).status_code == 200
    gid, _ = prepare([("SELECT setstream.revoke_token(%s, %s)", (s.name, s.token))])
    assert client.poll(s).status_code == 200  # prepared is not committed
    commit_prepared(gid)
    r = client.poll(s)
    assert r.status_code == 401, "a token revoked through COMMIT PREPARED still opens " \
        "the stream: %d %s" % (r.status_code, r.text)


def test_commit_prepared_emit_wakes_a_long_poll(db, gucs, streams):
    s = streams.create(signing_alg="ES256")
    gucs.set(poll_timeout="8000")
    poller = Poller(s)
    db.wait_parked(s.name)
    gid, (jti,) = prepare([("SELECT setstream.emit(%s, %s, '{}'::jsonb)",
                            (s.name, ls.SESSION_REVOKED))])
    time.sleep(0.2)
    assert poller.is_alive(), "the long poll answered at PREPARE TRANSACTION"
    t0 = time.monotonic()
    commit_prepared(gid)
    r = poller.result(WAKE_S + 1)
    assert r.status_code == 200, r.text
    assert list(r.json()["sets"]) == [jti]
    assert poller.answered_at - t0 < WAKE_S, poller.answered_at - t0


def test_commit_prepared_emit_is_pushed_on_a_websocket(ws_db, ws_streams):
    s = ws_streams.create(peer_algs=())

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            assert await peer.quiet(0.3) == []
            gid, (jti,) = prepare([("SELECT setstream.emit(%s, %s, '{}'::jsonb, %s::jsonb)",
                                    (s.name, wsutil.SESSION_REVOKED,
                                     ls.jdump(wsutil.SUBJECT)))])
            assert await peer.quiet(0.3) == [], "pushed at PREPARE TRANSACTION"
            commit_prepared(gid)
            await peer.wait_sets([jti], timeout=WAKE_S + 1)
            return jti, peer

    jti, peer = run(go())
    assert list(peer.sets) == [jti]


def test_emit_on_more_streams_than_tracked_wakes_every_one(db, gucs, streams):
    n = 70  # the commit callback tracks 64 stream slots one by one
    ss = [streams.create(signing_alg="ES256") for _ in range(n)]
    gucs.set(poll_timeout="8000")
    pollers = [Poller(s) for s in ss]
    for s in ss:
        db.wait_parked(s.name)
    conn = ls.connect_db(autocommit=False)
    try:
        with conn.cursor() as cur:
            jtis = []
            for s in ss:
                cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb)",
                            (s.name, ls.SESSION_REVOKED))
                jtis.append(cur.fetchone()[0])
        t0 = time.monotonic()
        conn.commit()
    finally:
        conn.close()
    late = []
    for s, p, jti in zip(ss, pollers, jtis):
        r = p.result(WAKE_S + 3)
        assert r.status_code == 200, r.text
        if list(r.json()["sets"]) != [jti]:
            late.append((s.name, r.json()))
        elif p.answered_at - t0 >= WAKE_S + 2:
            late.append((s.name, p.answered_at - t0))
    assert late == [], "%d of %d long polls not woken: %r" % (len(late), n, late[:5])
