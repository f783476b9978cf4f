"""Issue 11, item 4: revoking a token ends the sessions already open on it;
issue 13: disabling a stream stops what it transmits, and refusing its
inbound SETs stops what it stores, on open sessions too.

An open pushpull WebSocket used to keep receiving every emitted SET, and to
have its inbound SETs stored and acknowledged, after revoke_token; a parked
long poll was answered as if nothing had happened.  Now every open session
and parked poll is authorized again when the configuration moves: the
WebSocket is closed with 1008 and the parked poll answered 401.  A stream
disabled meanwhile (SSF: a disabled stream transmits and holds nothing)
keeps its sessions but sends nothing more, and its parked polls are
answered at once with no SETs; a stream that refuses inbound SETs answers
each with a setErr access_denied and stores none.  (Unbinding a client
certificate: test_listener_revocation_mtls.py.)
"""

import asyncio
import concurrent.futures
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "protocol"))
import wsutil  # noqa: E402
from wsutil import Peer, close_code_after, connect, run  # noqa: E402

from listener_support import Client, jdump  # noqa: E402

ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

CHANGES = {
    "revoke": ("SELECT setstream.revoke_token(%s, %s)", 401),
    "disable": ("SELECT setstream.disable_stream(%s)", 200),
}


def change(db, stream, what):
    sql, _ = CHANGES[what]
    if what == "revoke":
        db.execute(sql, (stream.name, stream.token))
    else:
        db.execute(sql, (stream.name,))


@pytest.mark.parametrize("what", ["revoke"])
def test_websocket_closed_1008(ws_db, ws_streams, what):
    s = ws_streams.create()
    # a second stream's session is not disturbed
    other = ws_streams.create()

    async def go():
        async with connect(s) as ws, connect(other) as ws2:
            peer, peer2 = Peer(ws), Peer(ws2)
            first = ws_db.emit(s.name)
            await peer.wait_sets([first])
            change(ws_db, s, what)
            code, reason = await close_code_after(ws, timeout=5)
            late = ws_db.emit(s.name)
            # the other session lives on
            ok = ws_db.emit(other.name)
            await peer2.wait_sets([ok])
            return code, reason, late, peer

    code, reason, late, peer = run(go())
    assert code == 1008, (code, reason)
    assert late not in peer.sets


@pytest.mark.parametrize("what", ["revoke"])
def test_websocket_inbound_not_stored_after_change(ws_db, ws_streams, what):
    """SETs the peer sends on a session whose token was revoked are not
    stored: the session closes with 1008 first."""
    s = ws_streams.create()

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            jti, token = s.set()
            await peer.send_sets((jti, token))
            await peer.wait_answered([jti])
            change(ws_db, s, what)
            late = s.set()
            try:
                await peer.send_sets(late)
            except Exception:
                pass  # already closed
            code, _ = await close_code_after(ws, timeout=5)
            return code

    assert run(go()) == 1008
    # after the close, nothing the peer could still send is stored
    assert ws_db.val("SELECT count(*) FROM setstream.events WHERE stream = %s",
                     (s.name,)) == 1


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_parked_poll_answered(ws_db, ws_streams, gucs, what):
    gucs.set(poll_timeout=8000)
    s = ws_streams.create()
    want = CHANGES[what][1]
    client = Client()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            fut = pool.submit(
                client.post, "/streams/%s/poll" % s.name,
                jdump({"returnImmediately": False, "maxEvents": 10}),
                content_type="application/json", token=s.token, timeout=20)
            ws_db.wait_parked(s.name)
            change(ws_db, s, what)
            late = ws_db.emit(s.name)
            resp = fut.result()
            took = time.monotonic() - started
    finally:
        client.close()
    assert resp.status_code == want, (resp.status_code, resp.text)
    assert late is None or late not in resp.text
    assert took < 5, "answered only after %.1fs" % took
    if want == 200:
        assert resp.json() == {"sets": {}, "moreAvailable": False}, resp.text
    if want == 401:
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer"), resp.headers


def test_websocket_disabled_sends_nothing_more(ws_db, ws_streams):
    """Disabled: the session stays open (the peer may still push and ack),
    a SET queued before is settled and not sent, emit queues nothing."""
    s = ws_streams.create()

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            first = ws_db.emit(s.name)
            await peer.wait_sets([first])
            ws_db.execute("SELECT setstream.disable_stream(%s)", (s.name,))
            late = ws_db.emit(s.name)
            jti, token = s.set()
            await peer.send_sets((jti, token), ack=[first])
            await peer.wait_answered([jti])
            await peer.quiet(1.0)
            return first, late, jti, peer

    first, late, jti, peer = run(go())
    assert late is None
    assert list(peer.sets) == [first], peer.sets
    assert jti in peer.acks
    assert ws_db.val("SELECT count(*) FROM setstream.events WHERE stream = %s",
                     (s.name,)) == 1


def test_websocket_refused_inbound_is_set_err(ws_db, ws_streams):
    s = ws_streams.create()

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            ws_db.execute("SELECT setstream.set_inbound(%s, 'refuse')", (s.name,))
            jti, token = s.set()
            await peer.send_sets((jti, token))
            await peer.wait_answered([jti])
            out = ws_db.emit(s.name)
            await peer.wait_sets([out])
            return jti, peer

    jti, peer = run(go())
    assert peer.set_errs.get(jti, {}).get("err") == "access_denied", peer.set_errs
    assert jti not in peer.acks
    assert ws_db.val("SELECT count(*) FROM setstream.events WHERE stream = %s",
                     (s.name,)) == 0
