"""Issue 11, item 6: requests and WebSocket frames that span TLS records.

The listener read a TLS connection until its input buffer was full and then
waited for the socket again; plaintext that OpenSSL had already decrypted
(SSL_pending) was never read, so a request whose headers came in one TLS
record and a 32-64 KiB body in others often got no answer at all (over
plain TCP: 200).  Each request and message here must be answered within a
few seconds.  The listener runs with TLS for this module (the fixtures of
test/protocol/test_listener_tls.py).
"""

import json
import os
import socket
import ssl
import sys
import time

import pytest

from conftest import protocol_module  # noqa: E402

_support = protocol_module("setstream_tls_support", "test_listener_tls.py")
cert_dir = _support.cert_dir
tls = _support.tls
tls_context = _support.tls_context

import listener_support as ls  # noqa: E402
import wsutil  # noqa: E402

# bodies whose TLS records (after a first one-byte record) are all full
SIZES = (16385, 32769, 49153, 65537, 20000, 40000, 58000)


class BatchedTls:
    """A TLS client that produces its records in memory (ssl.MemoryBIO) and
    writes all the records of one send() to the socket at once, so that
    they are all in the listener's socket buffer when it reads.  Quacks
    like a socket for RawConn and wsutil.RawWs."""

    def __init__(self, cert, timeout=5.0):
        self.sock = socket.create_connection((ls.HOST, ls.PORT), timeout=timeout)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = tls_context(cert).wrap_bio(self.incoming, self.outgoing,
                                              server_hostname=ls.HOST)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                self._pull()
        self._flush()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _pull(self):
        data = self.sock.recv(65536)
        if not data:
            self.incoming.write_eof()
        else:
            self.incoming.write(data)

    def send(self, *chunks):
        """Each chunk becomes TLS records of its own; all go out in one write."""
        for c in chunks:
            self.obj.write(c)
        self._flush()

    def sendall(self, data):
        self.send(data)

    def recv(self, n):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._pull()
            except ssl.SSLZeroReturnError:
                return b""

    def settimeout(self, t):
        self.sock.settimeout(t)

    def close(self):
        self.sock.close()


def padded_poll(size):
    """A poll request body of exactly size bytes (JSON padded with blanks)."""
    body = ls.jdump({"returnImmediately": True, "maxEvents": 0}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_bodies_across_records(tls, streams):
    s = streams.create()
    for size in SIZES:
        sock = BatchedTls(tls)
        c = ls.RawConn(timeout=5, sock=sock)
        try:
            body = padded_poll(size)
            head = ls.build_request(
                "POST", "/streams/%s/poll" % s.name,
                [("Authorization", "Bearer " + s.token),
                 ("Content-Type", "application/json"),
                 ("Content-Length", str(len(body)))])
            # the headers in one TLS record, a byte of the body in another,
            # the rest in 16 KiB records: read together, they do not line
            # up with the listener's 16 KiB input buffer
            sock.send(head, body[:1], body[1:])
            started = time.monotonic()
            resp = c.read_response()
            assert resp.status == 200, (size, resp)
            assert time.monotonic() - started < 5
            # and again on the same connection, in one write
            sock.send(head, body)
            assert c.read_response().status == 200, size
        except OSError as e:
            raise AssertionError("no answer to a %d-byte body over TLS: %r" % (size, e))
        finally:
            c.close()


@pytest.fixture
def ws_streams(listener):
    factory = wsutil.Streams(listener)
    yield factory
    factory.drop_all()


def test_websocket_frames_across_records(tls, ws_streams):
    s = ws_streams.create()
    ws = wsutil.RawWs(timeout=5)
    ws.sock.close()
    ws.sock = BatchedTls(tls)
    try:
        assert ws.handshake(s).status == 101
        for size in SIZES:
            jti, token = s.set()
            text = json.dumps({"sets": {jti: token}})
            text = text[:-1] + " " * (size - len(text)) + "}"
            frame = wsutil.frame_bytes(0x1, text)
            # the frame header in one record, the rest split at odd places
            ws.sock.send(frame[:7], frame[7:20001], frame[20001:])
            try:
                msg = ws.recv_json_message()
            except OSError as e:
                raise AssertionError("no answer to a %d-byte message over TLS: %r" % (size, e))
            assert msg.get("ack") == [jti], msg
        # more small frames in one record than the inbox holds
        pairs = [s.set() for _ in range(80)]
        ws.sock.sendall(b"".join(wsutil.frame_bytes(0x1, json.dumps({"sets": dict([p])}))
                                 for p in pairs))
        acked = []
        while len(acked) < len(pairs):
            acked += ws.recv_json_message().get("ack", [])
        assert sorted(acked) == sorted(j for j, _ in pairs)
    finally:
        ws.close()

