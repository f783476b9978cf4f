"""pushpull WebSocket binding, zombie detection: with
setstream.idle_timeout = 2s the server pings a peer that has been silent
for half of it and drops one silent for all of it.  A peer that does the
handshake and then never answers (a raw socket) is disconnected within
about 2-4 s, after a ping; a websockets client, which answers pings on its
own, stays connected well past that, and a raw peer that answers the pings
by hand does too.  A SET the zombie held is pushed to the next receiver
after setstream.redelivery_interval.
"""

import asyncio
import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, RawWs, connect, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

IDLE = 2.0          # setstream.idle_timeout for these tests
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def idle_2s(ws_db):
    g = wsutil.Gucs(ws_db)
    g.set(idle_timeout="%ds" % IDLE, redelivery_interval="1s")
    yield
    g.restore()


@pytest.fixture
def stream(ws_streams, idle_2s):
    return ws_streams.create(peer_algs=("ES256",))


def silent_peer_frames(c, limit):
    """Read (never answer) until the server closes the TCP connection;
    returns [(seconds since start, opcode, payload)] and the EOF time."""
    start = time.monotonic()
    frames = []
    c.sock.settimeout(0.25)
    while True:
        elapsed = time.monotonic() - start
        assert elapsed < limit, \
            "a silent peer was still connected after %.1fs (frames: %r)" % (elapsed, frames)
        try:
            op, payload = c.recv_frame()
        except socket.timeout:
            continue
        except (EOFError, ConnectionResetError):
            return frames, time.monotonic() - start
        frames.append((time.monotonic() - start, op, payload))


def test_silent_peer_is_pinged_then_dropped(ws_db, stream):
    jti = ws_db.emit(stream.name, {"zombie": True})
    c = RawWs()
    try:
        resp = c.handshake(stream)
        assert resp.status == 101, resp
        frames, eof_at = silent_peer_frames(c, limit=IDLE * 2 + 1.5)
    finally:
        c.close()
    ops = [op for _, op, _ in frames]
    # it received the pushed SET, then a ping it never answered
    assert OP_TEXT in ops and OP_PING in ops, frames
    ping_at = next(t for t, op, _ in frames if op == OP_PING)
    assert IDLE * 0.4 <= ping_at <= IDLE * 0.5 + 1.0, (ping_at, frames)
    assert eof_at >= IDLE * 0.9, "dropped after %.2fs, before the idle timeout" % eof_at
    assert eof_at <= IDLE * 2, "dropped only after %.2fs" % eof_at

    # the SET the zombie held goes to the next receiver
    async def next_receiver():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=5)
            return peer
    peer = run(next_receiver())
    assert jti in peer.sets


def test_peer_silent_after_sending_is_dropped_too(ws_db, stream):
    """Traffic resets the clock; silence afterwards still ends the session."""
    c = RawWs()
    try:
        assert c.handshake(stream).status == 101
        jti, tok = stream.set()
        c.send_frame(OP_TEXT, wsutil.jdump({"sets": {jti: tok}}))
        msg = c.recv_json_message()
        assert msg.get("ack") == [jti], msg
        frames, eof_at = silent_peer_frames(c, limit=IDLE * 2 + 1.5)
    finally:
        c.close()
    assert any(op == OP_PING for _, op, _ in frames), frames
    assert IDLE * 0.8 <= eof_at <= IDLE * 2, eof_at


def test_peer_answering_pings_stays_connected(ws_db, stream):
    """Two peers idle for 2.5 idle timeouts: the websockets client (it
    answers pings itself) and a raw socket that answers pings by hand;
    both are still served afterwards."""
    stay = IDLE * 2.5

    def raw_peer():
        c = RawWs()
        pings = 0
        try:
            assert c.handshake(stream).status == 101
            c.sock.settimeout(0.25)
            end = time.monotonic() + stay
            while time.monotonic() < end:
                try:
                    op, payload = c.recv_frame()
                except socket.timeout:
                    continue
                assert op == OP_PING, (op, payload[:100])
                pings += 1
                c.send_frame(OP_PONG, payload)
            c.sock.settimeout(5)
            jti, tok = stream.set()
            c.send_frame(OP_TEXT, wsutil.jdump({"sets": {jti: tok}}))
            msg = c.recv_json_message()
            assert msg.get("ack") == [jti], msg
        finally:
            c.close()
        return pings

    async def ws_peer():
        async with connect(stream, ping_interval=None) as ws:
            peer = Peer(ws)
            idle = await peer.quiet(stay)
            assert idle == [], idle
            assert ws.open, "the server closed a client that answers pings"
            jti, tok = stream.set()
            await peer.send_sets((jti, tok))
            await peer.wait_answered([jti], timeout=5)
            assert peer.acks == [jti]
            return True

    async def both():
        loop = asyncio.get_running_loop()
        raw = loop.run_in_executor(None, raw_peer)
        ok = await ws_peer()
        return ok, await raw

    ok, pings = run(both(), timeout=stay + 20)
    assert ok
    assert pings >= 2, "expected a ping per half idle timeout, got %d" % pings
