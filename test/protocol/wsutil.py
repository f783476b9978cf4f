"""Helpers and fixtures of the pushpull WebSocket protocol tests (test_ws_*.py).

Self-contained on purpose: nothing here comes from conftest.py.  The test
modules import this module as `wsutil` and pull the fixtures they use into
their own namespace (`from wsutil import ws_db, ws_streams`).

Environment (scripts/test.sh exports it):
  PGHOST, PGPORT, PGUSER   the cluster; PGUSER is a superuser (ALTER SYSTEM)
  SETSTREAM_DATABASE       the database the listener serves (default postgres)
  SETSTREAM_URL            http://127.0.0.1:<port> of the listener
  SETSTREAM_PORT           its port (used when SETSTREAM_URL is not set)

Everything that waits is bounded: asyncio.wait_for around every coroutine,
socket timeouts on raw sockets, and deadlines in every polling loop.
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import urllib.parse
import uuid
import warnings

import psycopg2
import psycopg2.extras
import pytest
import requests
import websockets
import websockets.exceptions
from jwcrypto import jwk, jws

# websockets 14 made a new client the default (additional_headers=,
# InvalidStatus, no .open); the legacy client, with the API these tests use,
# is there from 10.4 (Debian 12) to 15 (Debian 13), deprecated from 14 on.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from websockets.legacy.client import connect as ws_connect

URL = (os.environ.get("SETSTREAM_URL")
       or "http://127.0.0.1:%s" % os.environ.get("SETSTREAM_PORT", "8417")).rstrip("/")
HOST = urllib.parse.urlsplit(URL).hostname
PORT = urllib.parse.urlsplit(URL).port or 8417
WS_BASE = "ws://%s:%d" % (HOST, PORT)
DATABASE = os.environ.get("SETSTREAM_DATABASE", "postgres")

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
SUBJECT = {"format": "email", "email": "alice@example.com"}

IO_TIMEOUT = 10.0          # longest single network wait
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------------------
# JSON / JOSE
# ---------------------------------------------------------------------------

# the JOSE and database helpers are the HTTP suite's (conftest.py, loaded
# by pytest first)
import listener_support  # noqa: E402
from listener_support import b64u_decode, jdump, peer_key, sign, split_token  # noqa: E402,F401


def verify_token(token, public_jwk):
    """Verify a compact JWS with jwcrypto; returns (header, claims)."""
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(jwk.JWK(**public_jwk), alg=public_jwk.get("alg"))
    return obj.jose_header, json.loads(obj.payload)


# ---------------------------------------------------------------------------
# database
# ---------------------------------------------------------------------------

def connect_db(autocommit=True):
    conn = psycopg2.connect(
        dbname=DATABASE, application_name="setstream-ws-test",
        options="-c client_min_messages=warning -c statement_timeout=30000")
    conn.autocommit = autocommit
    return conn


class Db(listener_support.Db):
    """The HTTP suite's database wrapper, with what the WebSocket tests add:
    emit() defaults to a subject, events() is keyed by jti."""

    def emit(self, stream, event=None, event_type=SESSION_REVOKED, subject=SUBJECT):
        return self.val("SELECT setstream.emit(%s, %s, %s::jsonb, %s::jsonb)",
                        (stream, event_type, jdump(event or {}), jdump(subject)))

    def outbox_jtis(self, stream):
        return {r[0] for r in self.rows(
            "SELECT jti FROM setstream.outbox WHERE stream = %s", (stream,))}

    def events(self, stream):
        """jti -> row of setstream.events for the stream."""
        return {r["jti"]: r for r in self.dicts(
            "SELECT * FROM setstream.events WHERE stream = %s", (stream,))}

    def wait_outbox_state(self, stream, jti, state, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            row = self.outbox(stream, jti)
            if row["state"] == state:
                return row
            assert time.monotonic() < deadline, \
                "outbox %s stayed %r (wanted %r): attempts %d, delivered_at %s" % (
                    jti, row["state"], state, row["attempts"], row["delivered_at"])
            time.sleep(0.02)


def http_session():
    s = requests.Session()
    s.trust_env = False       # never a proxy
    return s


def wait_http(url=URL, verify=True, timeout=30.0):
    """Wait until GET url/jwks.json answers 200."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        s = http_session()
        try:
            r = s.get(url + "/jwks.json", timeout=2, verify=verify)
            if r.status_code == 200:
                return
            last = "%d %s" % (r.status_code, r.text[:200])
        except requests.RequestException as e:
            last = repr(e)
        finally:
            s.close()
        time.sleep(0.1)
    raise AssertionError("%s/jwks.json did not answer 200 within %.0fs: %s"
                         % (url, timeout, last))


# ---------------------------------------------------------------------------
# GUCs of the listener (ALTER SYSTEM + reload; put back afterwards)
# ---------------------------------------------------------------------------

GUC_NAMES = ("setstream.idle_timeout", "setstream.redelivery_interval",
             "setstream.max_request_bytes", "setstream.tls_cert_file",
             "setstream.tls_key_file")

LISTENER_SETTLE = 0.4  # seconds for the listener worker to process SIGHUP


def _show(name):
    conn = connect_db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting(%s)", (name,))
            return cur.fetchone()[0]
    finally:
        conn.close()


def _auto_conf_value(db, name):
    rows = db.rows("SELECT setting FROM pg_catalog.pg_file_settings"
                   " WHERE name = %s AND sourcefile LIKE '%%postgresql.auto.conf'"
                   " ORDER BY seqno DESC LIMIT 1", (name,))
    return rows[0][0] if rows else None


class Gucs:
    """Change listener settings with ALTER SYSTEM; restore() puts back the
    value postgresql.auto.conf had (or RESETs) and reloads."""

    def __init__(self, db):
        self.db = db
        self.saved = {}  # name -> (auto.conf value or None, SHOW before)

    def _reload_and_wait(self, expect):
        self.db.execute("SELECT pg_catalog.pg_reload_conf()")
        deadline = time.monotonic() + 10
        for name, value in expect.items():
            while _show(name) != value:
                assert time.monotonic() < deadline, \
                    "%s did not become %r after pg_reload_conf()" % (name, value)
                time.sleep(0.02)
        time.sleep(LISTENER_SETTLE)

    def set(self, **values):
        """set(idle_timeout='2s'): values in the form SHOW prints them."""
        expect = {}
        for short, value in values.items():
            name = "setstream." + short
            assert name in GUC_NAMES, name
            if name not in self.saved:
                self.saved[name] = (_auto_conf_value(self.db, name), _show(name))
            self.db.execute("ALTER SYSTEM SET %s = %%s" % name, (value,))
            expect[name] = value
        self._reload_and_wait(expect)

    def restore(self):
        if not self.saved:
            return
        expect = {}
        for name, (auto, shown) in self.saved.items():
            if auto is None:
                self.db.execute("ALTER SYSTEM RESET %s" % name)
            else:
                self.db.execute("ALTER SYSTEM SET %s = %%s" % name, (auto,))
            expect[name] = shown
        self.saved = {}
        self._reload_and_wait(expect)


# ---------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------

class Stream:
    """A stream with a token, peer keys (ES256, RS256) and our signing key."""

    def __init__(self, name):
        self.name = name
        self.issuer = "https://db.example.com/" + name
        self.audience = ["https://receiver.example.com/" + name]
        self.peer_issuer = "https://idp.example.com/" + name
        self.token = None
        self.peer_keys = {}        # alg -> (jwcrypto key, kid)
        self.signing_jwk = None    # public JWK from generate_key

    @property
    def path(self):
        return "/streams/%s/pushpull" % self.name

    def claims(self, **overrides):
        c = {"iss": self.peer_issuer, "aud": self.issuer, "iat": int(time.time()),
             "jti": str(uuid.uuid4()), "sub_id": SUBJECT,
             "events": {SESSION_REVOKED: {"initiating_entity": "policy"}}}
        for k, v in overrides.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def set(self, alg="ES256", key=None, kid=None, header=None, **overrides):
        """(jti, token) of a SET from this stream's peer."""
        k, default_kid = self.peer_keys[alg]
        claims = self.claims(**overrides)
        return claims.get("jti"), sign(key or k, alg, claims, kid or default_kid, header)

    def __repr__(self):
        return "Stream(%s)" % self.name


class Streams:
    def __init__(self, db):
        self.db = db
        self.created = []

    def create(self, peer_algs=("ES256", "RS256"), signing=True, token=True):
        s = Stream("ws-" + uuid.uuid4().hex[:16])
        self.db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
                        (s.name, s.issuer, s.audience, s.peer_issuer))
        self.created.append(s.name)
        for alg in peer_algs:
            key = peer_key(alg)
            kid = "%s-%s" % (alg.lower(), uuid.uuid4().hex[:8])
            public = key.export_public(as_dict=True)
            public["kid"] = kid
            got = self.db.val("SELECT setstream.add_key(%s, %s::jsonb)",
                              (s.name, jdump(public)))
            assert got == kid
            s.peer_keys[alg] = (key, kid)
        if signing:
            s.signing_jwk = self.db.val("SELECT setstream.generate_key(%s, 'ES256')",
                                        (s.name,))
        if token:
            s.token = self.db.val("SELECT setstream.issue_token(%s)", (s.name,))
        return s

    def drop_all(self):
        for name in self.created:
            with contextlib.suppress(Exception):
                self.db.execute("SELECT setstream.drop_stream(%s)", (name,))
        self.created = []


# ---------------------------------------------------------------------------
# fixtures (import them into the test module)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ws_db():
    """An autocommit connection to the listener's database, with the
    extension created and the listener answering."""
    conn = connect_db()
    db = Db(conn)
    db.execute("CREATE EXTENSION IF NOT EXISTS setstream")
    wait_http()
    yield db
    conn.close()


@pytest.fixture
def ws_streams(ws_db):
    factory = Streams(ws_db)
    yield factory
    factory.drop_all()


@pytest.fixture
def ws_gucs(ws_db):
    g = Gucs(ws_db)
    yield g
    g.restore()


# ---------------------------------------------------------------------------
# websockets client
# ---------------------------------------------------------------------------

def run(coro, timeout=30.0):
    """Run a coroutine from a sync test, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def auth(token):
    return {"Authorization": "Bearer " + token}


def connect(stream, token=None, subprotocols=("pushpull",), base=WS_BASE,
            ssl_context=None, headers=None, **kw):
    """websockets' connect(...) to the stream's pushpull endpoint."""
    h = auth(stream.token if token is None else token) if (token is not False) else {}
    h.update(headers or {})
    kw.setdefault("open_timeout", IO_TIMEOUT)
    kw.setdefault("close_timeout", 3)
    if ssl_context is not None:
        kw["ssl"] = ssl_context
    return ws_connect(base + stream.path,
                      subprotocols=list(subprotocols) if subprotocols else None,
                      extra_headers=h, **kw)


class Peer:
    """The test's side of a pushpull WebSocket: sends Communication Objects
    and accumulates what the server sends (acks, setErrs, sets)."""

    def __init__(self, ws):
        self.ws = ws
        self.messages = []       # (monotonic time, parsed object)
        self.acks = []           # in arrival order
        self.set_errs = {}
        self.sets = {}           # jti -> token (latest)
        self.set_times = {}      # jti -> arrival time (first)

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, str) else jdump(obj))

    async def send_sets(self, *pairs, **extra):
        obj = {"sets": dict(pairs)}
        obj.update(extra)
        await self.send(obj)

    async def recv(self, timeout):
        """One message, parsed and accumulated; asserts it is a JSON object
        made of Communication Object members."""
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        now = time.monotonic()
        assert isinstance(text, str), "the server sent a binary frame: %r" % (text[:100],)
        obj = json.loads(text)
        assert isinstance(obj, dict), obj
        assert set(obj) <= {"sets", "ack", "setErrs", "moreAvailable"}, obj
        assert obj, "the server sent an empty Communication Object"
        self.messages.append((now, obj))
        for jti in obj.get("ack", []):
            self.acks.append(jti)
        self.set_errs.update(obj.get("setErrs", {}))
        for jti, token in obj.get("sets", {}).items():
            self.sets[jti] = token
            self.set_times.setdefault(jti, now)
        return obj

    async def until(self, cond, timeout=IO_TIMEOUT, what="condition"):
        """Receive until cond() holds; fail after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s not met within %.1fs; messages: %r"
                                     % (what, timeout, [m for _, m in self.messages]))
            try:
                await self.recv(left)
            except asyncio.TimeoutError:
                pass
        return True

    async def wait_answered(self, jtis, timeout=IO_TIMEOUT):
        want = set(jtis)
        await self.until(lambda: want <= set(self.acks) | set(self.set_errs),
                         timeout, "ack/setErrs for %s" % sorted(want))

    async def wait_sets(self, jtis, timeout=IO_TIMEOUT):
        want = set(jtis)
        await self.until(lambda: want <= set(self.sets), timeout,
                         "pushed SETs %s" % sorted(want))

    async def quiet(self, seconds):
        """Receive for `seconds`; returns the messages that arrived."""
        start = len(self.messages)
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await self.recv(left)
            except asyncio.TimeoutError:
                break
        return [m for _, m in self.messages[start:]]


async def close_code_after(ws, timeout=IO_TIMEOUT):
    """Read until the server closes; returns (close code, reason)."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the server did not close the connection within %.1fs" % timeout
            await asyncio.wait_for(ws.recv(), left)
    await asyncio.wait_for(ws.wait_closed(), IO_TIMEOUT)
    return ws.close_code, ws.close_reason


# ---------------------------------------------------------------------------
# raw WebSocket over a socket: handshake by hand, frames by hand
# ---------------------------------------------------------------------------

class HandshakeResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers   # lower-case name -> value (last one wins)
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "HandshakeResponse(%d, %r, %r)" % (self.status, self.headers, self.body[:200])


def ws_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode()


class RawWs:
    """A TCP connection on which the test does the RFC 6455 handshake and
    the framing itself (so it can misbehave: stay silent, ignore pings)."""

    def __init__(self, timeout=IO_TIMEOUT, host=HOST, port=PORT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def request(self, path, headers):
        """Send a GET with these headers (list of pairs); read the response
        head (and its Content-Length body)."""
        lines = ["GET %s HTTP/1.1" % path, "Host: %s:%d" % (HOST, PORT)]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        assert version == "HTTP/1.1", lines[0]
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        body = b""
        if int(status) != 101:
            length = int(hdrs.get("content-length", "0"))
            while len(self.buf) < length:
                self._fill()
            body, self.buf = self.buf[:length], self.buf[length:]
        return HandshakeResponse(int(status), hdrs, body)

    def handshake(self, stream, token=None, protocol="pushpull", key=None,
                  extra=(), upgrade=True):
        key = key or ws_key()
        headers = []
        if upgrade:
            headers += [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                        ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
        if protocol is not None:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        if token is not False:
            headers.append(("Authorization", "Bearer " + (token or stream.token)))
        headers += list(extra)
        resp = self.request(stream.path, headers)
        resp.key = key
        return resp

    # -- frames ------------------------------------------------------------

    def send_frame(self, opcode, payload=b"", fin=True):
        self.sock.sendall(frame_bytes(opcode, payload, fin))

    def send_frames(self, *frames):
        """Several (opcode, payload) frames in one write."""
        self.sock.sendall(b"".join(frame_bytes(op, p) for op, p in frames))

    def recv_frame(self):
        """(opcode, payload) of the next frame; server frames are unmasked."""
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "a server frame is masked"
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n = struct.unpack("!H", self.buf[2:4])[0]
            pos = 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n = struct.unpack("!Q", self.buf[2:10])[0]
            pos = 10
        while len(self.buf) < pos + n:
            self._fill()
        payload = self.buf[pos:pos + n]
        self.buf = self.buf[pos + n:]
        return b0 & 0x0F, payload

    def recv_json_message(self):
        """The next text message (skipping pings, which are answered)."""
        while True:
            op, payload = self.recv_frame()
            if op == 0x9:
                self.send_frame(0xA, payload)
                continue
            assert op == 0x1, (op, payload[:200])
            return json.loads(payload)

    def read_until_eof(self):
        """All frames up to the server closing the TCP connection; a close
        frame of the server is answered (echoing its code), as RFC 6455
        asks of a client."""
        frames = []
        closed = False
        while True:
            try:
                op, payload = self.recv_frame()
            except (EOFError, ConnectionResetError):
                return frames
            frames.append((op, payload))
            if op == 0x8 and not closed:
                closed = True
                with contextlib.suppress(OSError):
                    self.send_frame(0x8, payload[:2])


def frame_bytes(opcode, payload=b"", fin=True):
    """One masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------

def server_uid(db):
    """The OS user that owns the data directory (the server's user)."""
    datadir = db.val("SELECT current_setting('data_directory')")
    return os.stat(datadir).st_uid


def make_self_signed_cert(owner_uid=None):
    """(directory, cert path, key path): a P-256 self-signed certificate
    for CN=localhost, IP:127.0.0.1, readable by owner_uid."""
    d = tempfile.mkdtemp(prefix="setstream-ws-tls-")
    cert = os.path.join(d, "server.crt")
    key = os.path.join(d, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=30)
    os.chmod(d, 0o755)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    if owner_uid is not None and os.geteuid() == 0:
        for p in (d, cert, key):
            os.chown(p, owner_uid, -1)
    return d, cert, key


def client_tls_context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
