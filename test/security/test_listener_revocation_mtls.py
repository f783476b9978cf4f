"""Issue 11, item 4 (certificates): unbinding a client certificate ends the
sessions it opened.

A 'cert' stream's pushpull WebSocket over TLS, opened with a bound client
certificate, is closed with 1008 when unbind_client_cert removes that
certificate; a long poll parked with it is answered 403.  The listener runs
with TLS and setstream.tls_ca_file for this module (the PKI and fixtures of
test/protocol/test_listener_mtls.py).
"""

import asyncio
import concurrent.futures
import json
import os
import sys
import time

import pytest
import websockets

from conftest import protocol_module  # noqa: E402

_support = protocol_module("setstream_mtls_support", "test_listener_mtls.py")
client_context = _support.client_context
mtls = _support.mtls
pki = _support.pki
tls_conn = _support.tls_conn

import listener_support as ls  # noqa: E402


@pytest.fixture
def cert_stream(db, streams, pki, mtls):
    s = streams.create(signing_alg="ES256")
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
    return s


def unbind(db, s, pki):
    db.execute("SELECT setstream.unbind_client_cert(%s, %s)", (s.name, pki.fingerprint("good")))


def test_websocket_closed_1008_on_unbind(db, cert_stream, pki):
    s = cert_stream
    url = "wss://%s:%d/streams/%s/pushpull" % (ls.HOST, ls.PORT, s.name)

    async def go():
        async with websockets.connect(url, subprotocols=["pushpull"], open_timeout=5,
                                      close_timeout=3,
                                      ssl=client_context(pki, "good")) as ws:
            jti = db.emit(s.name)
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert list(msg.get("sets", {})) == [jti], msg
            unbind(db, s, pki)
            got = []
            try:
                while True:
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            except websockets.exceptions.ConnectionClosed:
                pass
            except asyncio.TimeoutError:
                pass
            late = db.emit(s.name)
            return ws.close_code, got, late

    code, got, late = asyncio.run(asyncio.wait_for(go(), 30))
    assert code == 1008, (code, got)
    assert all(late not in m.get("sets", {}) for m in got)


def test_parked_poll_answered_403_on_unbind(db, cert_stream, pki, gucs):
    gucs.set(poll_timeout=8000)
    s = cert_stream
    c = tls_conn(client_context(pki, "good"), timeout=20)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            fut = pool.submit(c.request, "POST", "/streams/%s/poll" % s.name,
                              [("Content-Type", "application/json")],
                              ls.jdump({"returnImmediately": False, "maxEvents": 5}))
            db.wait_parked(s.name)
            unbind(db, s, pki)
            late = db.emit(s.name)
            resp = fut.result()
            took = time.monotonic() - started
    finally:
        c.close()
    assert resp.status == 403, resp
    assert late.encode() not in resp.body
    assert took < 5, "answered only after %.1fs" % took


# ---------------------------------------------------------------------------
# issue 11, item 8: a 'cert' stream answers a client without credentials
# exactly as a stream that does not exist does
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "not-a-token-of-anything"])
@pytest.mark.parametrize("route", ["events", "poll", "pushpull"])
def test_cert_stream_and_missing_stream_answer_alike(db, cert_stream, pki, token, route):
    """Without a certificate (or with a bogus token), a request on a 'cert'
    stream and on a name that does not exist get the same status, headers
    and body: an unauthenticated client cannot tell the stream exists."""
    headers = [("Content-Type", "application/json" if route != "events" else ls.SET_TYPE)]
    if token:
        headers.append(("Authorization", "Bearer " + token))
    answers = []
    for name in (cert_stream.name, "nx-" + cert_stream.name[3:]):
        c = tls_conn(client_context(pki, None))
        try:
            r = c.request("POST", "/streams/%s/%s" % (name, route), headers, b"{}")
        finally:
            c.close()
        answers.append((r.status, sorted(r.headers), r.body))
    assert answers[0] == answers[1], answers
    assert answers[0][0] == 401
