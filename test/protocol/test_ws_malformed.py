"""pushpull WebSocket binding, malformed input: a message that is not a
Communication Object (not JSON, not an object, members of the wrong type,
invalid UTF-8) ends the session with close code 1007; a binary frame with
1003; a message larger than setstream.max_request_bytes with 1009 (the
close code the client sees is checked).  Nothing is acknowledged that was
not stored.
"""

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, RawWs, close_code_after, connect, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_gucs = wsutil.ws_gucs
ws_streams = wsutil.ws_streams

OP_TEXT, OP_BINARY, OP_CLOSE, OP_CONT = 0x1, 0x2, 0x8, 0x0


@pytest.fixture
def stream(ws_streams):
    return ws_streams.create(peer_algs=("ES256",), signing=False)


def close_of(frames):
    """(code, reason) of the server's close frame at the end of frames."""
    assert frames, "the server closed the TCP connection without a close frame"
    op, payload = frames[-1]
    assert op == OP_CLOSE, frames
    assert len(payload) >= 2, frames
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")


@pytest.mark.parametrize("text", [
    "not json",
    "[1, 2]",
    '"a string"',
    "42",
    "null",
    '{"sets": []}',
    '{"sets": {"x": 5}}',
    '{"ack": "jti"}',
    '{"ack": [1]}',
    '{"setErrs": []}',
    '{"setErrs": {"x": "invalid_key"}}',
    '{"maxResponseEvents": -1}',
    '{"sets": {}',
])
def test_not_a_communication_object_closes_1007(stream, text):
    async def go():
        async with connect(stream) as ws:
            await ws.send(text)
            return await close_code_after(ws)

    code, reason = run(go())
    assert code == 1007, (code, reason)


def test_invalid_utf8_text_closes_1007(stream):
    c = RawWs()
    try:
        assert c.handshake(stream).status == 101
        c.send_frame(OP_TEXT, b'{"ack": ["\xff\xfe"]}')
        code, _ = close_of(c.read_until_eof())
    finally:
        c.close()
    assert code == 1007


def test_binary_frame_closes_1003(stream):
    async def go():
        async with connect(stream) as ws:
            await ws.send(wsutil.jdump({"ack": []}).encode())
            return await close_code_after(ws)

    code, reason = run(go())
    assert code == 1003, (code, reason)


def test_good_message_then_garbage_acked_only_if_stored(ws_db, stream):
    """One write holds a good SET and a malformed message: the session ends
    with 1007, and whatever was acknowledged before is stored."""
    jti, tok = stream.set()
    c = RawWs()
    try:
        assert c.handshake(stream).status == 101
        c.send_frames((OP_TEXT, wsutil.jdump({"sets": {jti: tok}})), (OP_TEXT, "[]"))
        frames = c.read_until_eof()
    finally:
        c.close()
    code, _ = close_of(frames)
    assert code == 1007
    acked = [j for op, p in frames[:-1] if op == OP_TEXT
             for j in wsutil.json.loads(p).get("ack", [])]
    stored = ws_db.events(stream.name)
    assert set(acked) <= set(stored), (acked, list(stored))


@pytest.fixture
def small_messages(ws_gucs):
    ws_gucs.set(max_request_bytes="2kB")
    # the listener has it: an HTTP body over 2 kB is refused with 413
    s = wsutil.http_session()
    try:
        r = s.post(wsutil.URL + "/streams/nosuch/pushpull", data=b"{}" + b" " * 3000,
                   headers={"Content-Type": "application/json"}, timeout=10)
    finally:
        s.close()
    assert r.status_code == 413, r.status_code
    yield 2048


def test_message_over_max_request_bytes_closes_1009(ws_db, stream, small_messages):
    jti, tok = stream.set()
    padding = " " * (small_messages + 500 - len(tok))
    big = '{"sets": {"%s": "%s"}}%s' % (jti, tok, padding)
    assert len(big.encode()) > small_messages

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            # under the limit: fine
            ok_jti, ok_tok = stream.set()
            await peer.send_sets((ok_jti, ok_tok))
            await peer.wait_answered([ok_jti])
            await ws.send(big)
            code, reason = await close_code_after(ws)
            return peer, ok_jti, code, reason

    peer, ok_jti, code, reason = run(go())
    assert peer.acks == [ok_jti]
    assert code == 1009, (code, reason)
    assert jti not in ws_db.events(stream.name)


def test_fragmented_message_over_limit_closes_1009(ws_db, stream, small_messages):
    """The limit is on the message, not the frame: three 1 kB fragments."""
    c = RawWs()
    try:
        assert c.handshake(stream).status == 101
        part = '{"ack": [' + ",".join(['"%s"' % uuid.uuid4()] * 25)
        assert 900 < len(part) < 1100, len(part)
        c.send_frame(OP_TEXT, part, fin=False)
        c.send_frame(OP_CONT, "," + ",".join(['"%s"' % uuid.uuid4()] * 25), fin=False)
        c.send_frame(OP_CONT, "," + ",".join(['"%s"' % uuid.uuid4()] * 25) + "]}", fin=True)
        code, _ = close_of(c.read_until_eof())
    finally:
        c.close()
    assert code == 1009


def test_fragmented_message_under_limit_works(ws_db, stream):
    jti, tok = stream.set()
    text = wsutil.jdump({"sets": {jti: tok}})
    cut = len(text) // 3
    c = RawWs()
    try:
        assert c.handshake(stream).status == 101
        c.send_frame(OP_TEXT, text[:cut], fin=False)
        c.send_frame(OP_CONT, text[cut:2 * cut], fin=False)
        c.send_frame(OP_CONT, text[2 * cut:], fin=True)
        msg = c.recv_json_message()
    finally:
        c.close()
    assert msg.get("ack") == [jti], msg
    assert jti in ws_db.events(stream.name)
