"""pushpull WebSocket binding: the RFC 6455 opening handshake on
GET /streams/{name}/pushpull.

Accepted (101, Sec-WebSocket-Protocol: pushpull, a correct
Sec-WebSocket-Accept) only with the pushpull subprotocol offered and a
bearer token of that stream; refused without the subprotocol (400), without
or with a wrong token, or with a token of another stream (401 with
WWW-Authenticate, nothing about the stream), and a plain GET without
Upgrade gets 426; a disabled stream still upgrades.  POST on the same path is still the
HTTP binding.
"""

import os
import sys

import pytest
import websockets
import websockets.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import RawWs, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams


@pytest.fixture
def stream(ws_streams):
    return ws_streams.create()


@pytest.fixture
def raw():
    opened = []

    def factory():
        c = RawWs()
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


def assert_refused(resp, status):
    """An HTTP error instead of an upgrade: status, JSON body, no 101 headers."""
    assert resp.status == status, resp
    assert "sec-websocket-accept" not in resp.headers, resp
    assert resp.headers.get("upgrade", "").lower() != "websocket" or status == 426, resp
    assert resp.headers.get("content-type", "").split(";")[0] == "application/json", resp
    body = resp.json()
    assert isinstance(body.get("description"), str) and body["description"], body
    return body


def test_websockets_client_gets_pushpull_subprotocol(stream):
    async def go():
        async with wsutil.connect(stream) as ws:
            assert ws.subprotocol == "pushpull"
            # the session works: an empty Communication Object is fine and
            # a SET sent on it is acknowledged
            jti, token = stream.set()
            peer = wsutil.Peer(ws)
            await peer.send_sets((jti, token))
            await peer.wait_answered([jti])
            assert peer.acks == [jti] and peer.set_errs == {}
    run(go())


def test_raw_handshake_101_headers(stream, raw):
    c = raw()
    resp = c.handshake(stream)
    assert resp.status == 101, resp
    assert resp.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in resp.headers["connection"].lower()
    assert resp.headers["sec-websocket-accept"] == wsutil.ws_accept(resp.key)
    assert resp.headers["sec-websocket-protocol"] == "pushpull"
    assert "sec-websocket-extensions" not in resp.headers


def test_pushpull_among_several_offered_subprotocols(stream, raw):
    resp = raw().handshake(stream, protocol="chat, pushpull, other")
    assert resp.status == 101, resp
    assert resp.headers["sec-websocket-protocol"] == "pushpull"

    async def go():
        async with wsutil.connect(stream, subprotocols=("chat", "pushpull")) as ws:
            assert ws.subprotocol == "pushpull"
    run(go())


@pytest.mark.parametrize("protocol", [None, "chat", "pushpul", "pushpull-v2"])
def test_without_pushpull_subprotocol_400_no_upgrade(stream, raw, protocol):
    resp = raw().handshake(stream, protocol=protocol)
    assert_refused(resp, 400)


def test_websockets_client_without_subprotocol_refused(stream):
    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with wsutil.connect(stream, subprotocols=None):
                pass
        assert e.value.status_code == 400
    run(go())


@pytest.mark.parametrize("case", ["missing", "wrong", "malformed", "revoked"])
def test_bad_token_401(ws_db, stream, raw, case):
    extra = ()
    token = False
    if case == "wrong":
        token = "sst_" + "A" * 43
    elif case == "malformed":
        token = False
        extra = (("Authorization", "Basic dXNlcjpwYXNz"),)
    elif case == "revoked":
        token = stream.token
        ws_db.execute("SELECT setstream.revoke_token(%s, %s)", (stream.name, stream.token))
    resp = raw().handshake(stream, token=token, extra=extra)
    body = assert_refused(resp, 401)
    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp
    assert stream.name not in resp.body.decode("utf-8", "replace")
    assert body.get("err") in (None, "authentication_failed"), body


def test_token_of_another_stream_401(ws_streams, stream, raw):
    other = ws_streams.create(peer_algs=(), signing=False)
    resp = raw().handshake(stream, token=other.token)
    assert_refused(resp, 401)
    assert resp.headers.get("www-authenticate", "").startswith("Bearer"), resp
    text = resp.body.decode("utf-8", "replace")
    assert stream.name not in text and other.name not in text

    async def go():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            async with wsutil.connect(stream, token=other.token):
                pass
        assert e.value.status_code == 401
    run(go())


def test_unknown_stream_401_not_404(stream, raw):
    """A valid token names one stream; a path of a stream that does not
    exist says nothing more than a wrong token does."""
    fake = wsutil.Stream("ws-nosuch-" + stream.name[3:])
    resp = raw().handshake(fake, token=stream.token)
    assert_refused(resp, 401)


def test_plain_get_without_upgrade_426(stream, raw):
    resp = raw().handshake(stream, upgrade=False)
    body = assert_refused(resp, 426)
    assert resp.headers.get("upgrade", "").lower() == "websocket", resp
    assert body["description"]

    s = wsutil.http_session()
    try:
        r = s.get(wsutil.URL + stream.path, headers=wsutil.auth(stream.token), timeout=10)
    finally:
        s.close()
    assert r.status_code == 426, r.text
    assert r.headers.get("Upgrade", "").lower() == "websocket"


def test_wrong_websocket_version_refused(stream, raw):
    c = raw()
    resp = c.request(stream.path, [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", wsutil.ws_key()), ("Sec-WebSocket-Version", "8"),
        ("Sec-WebSocket-Protocol", "pushpull"),
        ("Authorization", "Bearer " + stream.token)])
    assert resp.status in (400, 426), resp
    assert "sec-websocket-accept" not in resp.headers
    if resp.status == 426:
        assert resp.headers.get("sec-websocket-version") == "13", resp


def test_disabled_stream_upgrades(ws_db, stream, raw):
    """Disabled stops what the stream transmits, not the session: the peer
    may still push (set_inbound decides) and acknowledge."""
    ws_db.execute("SELECT setstream.disable_stream(%s)", (stream.name,))
    resp = raw().handshake(stream)
    assert resp.status == 101, resp


def test_post_on_same_path_is_http_binding(ws_db, stream):
    jti, token = stream.set("RS256")
    s = wsutil.http_session()
    try:
        r = s.post(wsutil.URL + stream.path,
                   data=wsutil.jdump({"sets": {jti: token}}),
                   headers=dict(wsutil.auth(stream.token),
                                **{"Content-Type": "application/json"}),
                   timeout=10)
    finally:
        s.close()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == [jti]
    assert body["setErrs"] == {}
    assert jti in ws_db.events(stream.name)


def test_other_methods_405(stream):
    s = wsutil.http_session()
    try:
        r = s.put(wsutil.URL + stream.path, data=b"{}",
                  headers=wsutil.auth(stream.token), timeout=10)
    finally:
        s.close()
    assert r.status_code == 405, r.text
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert allow == {"GET", "POST"}, r.headers
