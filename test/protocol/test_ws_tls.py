"""pushpull WebSocket binding over TLS (wss://): with setstream.tls_cert_file
and setstream.tls_key_file set to a self-signed P-256 certificate (and a
reload), a wss:// client that trusts that certificate does the handshake
and exchanges SETs both ways; the settings are reset afterwards and plain
HTTP answers again.
"""

import asyncio
import os
import shutil
import ssl
import sys

import pytest
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, connect, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

HTTPS = "https://%s:%d" % (wsutil.HOST, wsutil.PORT)
WSS = "wss://%s:%d" % (wsutil.HOST, wsutil.PORT)


@pytest.fixture(scope="module")
def tls(ws_db):
    d, cert, key = wsutil.make_self_signed_cert(wsutil.server_uid(ws_db))
    gucs = wsutil.Gucs(ws_db)
    try:
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        wsutil.wait_http(HTTPS, verify=cert, timeout=15)
        yield cert
    finally:
        gucs.restore()
        shutil.rmtree(d, ignore_errors=True)
        wsutil.wait_http(wsutil.URL, timeout=15)


@pytest.fixture
def stream(ws_streams):
    return ws_streams.create(peer_algs=("ES256", "RS256"))


def test_wss_exchanges_sets_both_ways(ws_db, stream, tls):
    ctx = wsutil.client_tls_context(tls)
    inbound = [stream.set("ES256"), stream.set("RS256")]

    async def go():
        async with connect(stream, base=WSS, ssl_context=ctx) as ws:
            assert ws.subprotocol == "pushpull"
            assert ws.transport.get_extra_info("ssl_object") is not None
            peer = Peer(ws)
            # inbound: SETs from the peer, acknowledged after the commit
            await peer.send({"sets": dict(inbound)})
            await peer.wait_answered([j for j, _ in inbound])
            # outbound: an emit committed now is pushed on the TLS session
            out = ws_db.emit(stream.name, {"over": "tls"})
            await peer.wait_sets([out], timeout=5)
            await peer.send({"ack": [out]})
            ws_db.wait_outbox_state(stream.name, out, "acked")
            # a burst larger than one TLS record each way
            burst = [ws_db.emit(stream.name, {"n": i, "pad": "x" * 2000}) for i in range(20)]
            await peer.wait_sets(burst, timeout=5)
            # inbound: one message of ~30 kB (several TLS records), then
            # several small messages written back to back
            big = [stream.set("RS256") for _ in range(40)]
            await peer.send({"sets": dict(big)})
            small = [stream.set("ES256") for _ in range(10)]
            await asyncio.gather(*(peer.send_sets(p) for p in small))
            await peer.wait_answered([j for j, _ in big + small])
            return peer, out, burst, big + small

    peer, out, burst, more = run(go())
    inbound += more
    assert sorted(peer.acks) == sorted(j for j, _ in inbound)
    assert peer.set_errs == {}
    stored = ws_db.events(stream.name)
    for jti, tok in inbound:
        assert stored[jti]["token"] == tok
    header, claims = wsutil.verify_token(peer.sets[out], stream.signing_jwk)
    assert claims["events"] == {wsutil.SESSION_REVOKED: {"over": "tls"}}
    assert set(burst) <= set(peer.sets)


def test_wss_refuses_without_subprotocol_and_bad_token(stream, tls):
    ctx = wsutil.client_tls_context(tls)

    async def go():
        codes = []
        for kw in ({"subprotocols": None}, {"token": "sst_" + "B" * 43}):
            try:
                async with connect(stream, base=WSS, ssl_context=ctx, **kw):
                    codes.append(101)
            except websockets.exceptions.InvalidStatusCode as e:
                codes.append(e.status_code)
        return codes

    assert run(go()) == [400, 401]


def test_plain_ws_refused_while_tls_is_on(stream, tls):
    async def go():
        with pytest.raises((websockets.exceptions.InvalidHandshake, OSError,
                            asyncio.TimeoutError, EOFError)):
            async with connect(stream, open_timeout=3):
                pass
    run(go())


def test_untrusted_certificate_rejected_by_client(stream, tls):
    ctx = ssl.create_default_context()  # system roots only

    async def go():
        with pytest.raises(ssl.SSLCertVerificationError):
            async with connect(stream, base=WSS, ssl_context=ctx):
                pass
    run(go())
