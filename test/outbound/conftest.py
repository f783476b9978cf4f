"""Fixtures of the outbound suite: RFC 8935 push from setstream (issue 17).

A scriptable RFC 8935 receiver (Receiver: a threaded http.server on
127.0.0.1) records every request it gets (time, headers, body, client
port) and answers from a script: a status with headers and body, "hang"
(answer nothing until the test ends), or "reset" (close the connection with
an RST).  The test servers of the other files (the poll transmitter, the
JWKS server) start with serve_http and answer with send_answer as it does.
The listener-facing helpers (Db, streams, Gucs) are those of
test/protocol, loaded from its conftest.py as the module `listener_support`.
"""

import contextlib
import http.server
import importlib.util
import json
import os
import socket
import struct
import sys
import threading
import time

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTOCOL = os.path.join(os.path.dirname(_HERE), "protocol", "conftest.py")

if "listener_support" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("listener_support", _PROTOCOL)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["listener_support"] = _mod
    _spec.loader.exec_module(_mod)

from listener_support import (  # noqa: E402,F401  (fixtures re-exported)
    DATABASE, Db, connect_db, listener, db, streams, client, gucs, jdump,
    wait_for_listener)


def wait_for(what, predicate, timeout=15.0, interval=0.05):
    """Poll predicate() until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """The test servers' request handler base: HTTP/1.1, no log lines."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def header_dict(self):
        return {k.lower(): v for k, v in self.headers.items()}

    def hang_or_reset(self, action, stop):
        """Carry out a scripted "hang" (answer nothing until stop is set, at
        most 120 s) or "reset" (close with an RST); False for any other."""
        if action == "hang":
            stop.wait(120)
        elif action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        else:
            return False
        self.close_connection = True
        return True


def serve_http(handler, path, tls=None, client_ca=None):
    """Serve handler (a BaseHTTPRequestHandler class) on 127.0.0.1 from a
    daemon thread, over TLS with tls = (certfile, keyfile), requiring a
    client certificate from client_ca when given; returns the server, its
    port, the URL of path on it, and the thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    port = server.server_address[1]
    url = "http://127.0.0.1:%d%s" % (port, path)
    if tls is not None:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        if client_ca is not None:
            # mutual TLS: a client without a certificate from client_ca
            # does not get through the handshake
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        url = "https://127.0.0.1:%d%s" % (port, path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, port, url, thread


def send_answer(handler, action):
    """Write one answer (status, headers, body bytes) as handler's response."""
    status, headers, payload = action
    handler.send_response(status)
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if payload:
        handler.wfile.write(payload)


def answer(status, err=None, description=None, headers=None, body=None):
    """One scripted answer: (status, headers, body bytes)."""
    h = dict(headers or {})
    if err is not None:
        body = json.dumps({"err": err, "description": description or err}).encode()
        h.setdefault("Content-Type", "application/json")
        h.setdefault("Content-Language", "en")
    return (status, h, body or b"")


def client_cn(conn):
    """The commonName of the client certificate a TLS connection presented."""
    getpeercert = getattr(conn, "getpeercert", None)
    cert = getpeercert() if getpeercert else None
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


class Receiver:
    """A scriptable RFC 8935 push receiver on 127.0.0.1."""

    def __init__(self, tls=None, client_ca=None):
        self.requests = []       # dicts: t, path, headers, body, port, client_cn
        self.script = []         # answers given in order, then default
        self.default = answer(202)
        self.delay = 0.0         # seconds before each answer
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.active = 0
        self.max_active = 0
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.read_body()
                with receiver.lock:
                    receiver.requests.append({
                        "t": time.monotonic(), "path": self.path,
                        "headers": self.header_dict(),
                        "body": body, "port": self.client_address[1],
                        "client_cn": client_cn(self.connection)})
                    action = receiver.script.pop(0) if receiver.script else receiver.default
                    receiver.active += 1
                    receiver.max_active = max(receiver.max_active, receiver.active)
                try:
                    if receiver.delay:
                        time.sleep(receiver.delay)
                    if not self.hang_or_reset(action, receiver.stop):
                        send_answer(self, action)
                finally:
                    with receiver.lock:
                        receiver.active -= 1

        self.server, self.port, self.url, self.thread = serve_http(Handler, "/events", tls,
                                                                   client_ca)

    def bodies(self):
        with self.lock:
            return [r["body"].decode() for r in self.requests]

    def count(self):
        with self.lock:
            return len(self.requests)

    def for_token(self, token):
        with self.lock:
            return [r for r in self.requests if r["body"] == token.encode()]

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def loopback(gucs):
    """Outbound requests may reach 127.0.0.0/8 (and use plain http there)."""
    gucs.set(outbound_allowed_networks="127.0.0.0/8")
    return gucs


class PushStreams:
    """Streams whose emitted SETs are pushed (set_delivery ... 'push')."""

    def __init__(self, streams, db):
        self.streams = streams
        self.db = db

    def create(self, url, authorization=None, concurrency=4):
        s = self.streams.create(peer_algs=(), signing_alg="ES256", token=False)
        self.db.execute("SELECT setstream.set_delivery(%s, 'push', %s, %s, %s)",
                        (s.name, url, authorization, concurrency))
        return s

    def row(self, stream, jti):
        return self.db.outbox(stream.name, jti)

    def delivery(self, stream):
        rows = self.db.dicts("SELECT * FROM setstream.deliveries WHERE stream = %s",
                             (stream.name,))
        assert len(rows) == 1
        return rows[0]

    def wait_row(self, stream, jti, pred, what, timeout=15.0):
        return wait_for("%s of %s" % (what, jti),
                        lambda: (lambda r: r if pred(r) else None)(self.row(stream, jti)),
                        timeout=timeout)


@pytest.fixture
def pushes(streams, db):
    return PushStreams(streams, db)


def wait_for_listener_up(timeout=60.0):
    """The listener answers again (after a crash restart of the cluster)."""
    sys.modules["listener_support"].wait_for_listener(timeout)


@pytest.fixture(scope="session")
def client_certificate():
    """A self-signed client certificate (CN setstream-test-client) and its
    key, both readable by the server: (cert file, key file)."""
    import shutil
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="setstream-outbound-client-")
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "client.pem"), os.path.join(d, "client.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=setstream-test-client",
                    "-addext", "extendedKeyUsage=clientAuth",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o644)  # a throwaway key; the server runs as another user
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def certificate():
    """A self-signed certificate for 127.0.0.1: (cert file, key file), in a
    directory the server can read (it is the CA file of the test that
    trusts it; pytest's own temporary directories are private)."""
    import shutil
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="setstream-outbound-tls-")
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    os.chmod(cert, 0o644)
    yield cert, key
    shutil.rmtree(d, ignore_errors=True)
