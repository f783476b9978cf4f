"""Fixtures and helpers for the protocol tests of setstream's HTTP listener.

These tests talk to the real listener over real sockets (requests, raw
sockets, ssl) and look at the database it serves with psycopg2.  SETs are
signed and checked with jwcrypto, an implementation independent of ours.

Environment (scripts/test.sh exports it):
  PGHOST, PGPORT, PGUSER      the cluster (a superuser: the tests use
                              ALTER SYSTEM and pg_reload_conf())
  SETSTREAM_DATABASE          the database the listener serves (default
                              postgres); every query here goes there
  SETSTREAM_URL               http://127.0.0.1:<port> of the listener
  SETSTREAM_PORT, SETSTREAM_PGDATA, SETSTREAM_LOGFILE  (informational)

The test modules import the helpers below as `listener_support` (see the
end of this file), never as `conftest`: test/python has a conftest.py of
its own, and its modules do `from conftest import ...`.

Every test creates its own streams (unique names) and drops them; every
setting a test changes with ALTER SYSTEM is put back as it was (the value
of postgresql.auto.conf, or RESET) and reloaded when the test ends.
"""

import base64
import contextlib
import gc
import importlib.util
import json
import os
import socket
import ssl
import sys
import time
import urllib.parse
import uuid

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest
import requests
from jwcrypto import jwk, jws
from jwcrypto.jwa import JWA

URL = (os.environ.get("SETSTREAM_URL")
       or "http://127.0.0.1:%s" % os.environ.get("SETSTREAM_PORT", "8417")).rstrip("/")
HOST = urllib.parse.urlsplit(URL).hostname
PORT = urllib.parse.urlsplit(URL).port or 8417
DATABASE = os.environ.get("SETSTREAM_DATABASE", "postgres")

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
SET_TYPE = "application/secevent+jwt"

# Members a public JWK must never carry (private or secret key material)
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

HTTP_TIMEOUT = 10  # seconds: no request of these tests may hang longer


# ---------------------------------------------------------------------------
# encoding and signing (jwcrypto)
# ---------------------------------------------------------------------------

def b64u(data):
    """base64url without padding, of bytes or of a str (UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


def split_token(token):
    """(header, claims) of a compact JWS, decoded without any check."""
    h, p, _ = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p))


_KEYS = {}


def peer_key(alg, variant=0):
    """A jwcrypto private key for alg, cached for the whole session."""
    spec = {"ES256": dict(kty="EC", crv="P-256"),
            "RS256": dict(kty="RSA", size=2048),
            "HS256": dict(kty="oct", size=256)}[alg]
    if (alg, variant) not in _KEYS:
        _KEYS[(alg, variant)] = jwk.JWK.generate(**spec)
    return _KEYS[(alg, variant)]


def public_jwk(key):
    """The JWK add_key registers: the public half (or the oct secret)."""
    d = json.loads(key.export() if key.get("kty") == "oct" else key.export_public())
    d.pop("kid", None)
    return d


def sign_raw(key, alg, header_text, payload_text):
    """A compact JWS over exactly these header and payload texts.

    The texts are used byte for byte (they may hold duplicate members or
    anything else): jwcrypto's JWA engine only signs the signing input."""
    signing_input = "%s.%s" % (b64u(header_text), b64u(payload_text))
    sig = JWA.signing_alg(alg).sign(key, signing_input.encode("ascii"))
    return "%s.%s" % (signing_input, b64u(sig))


def sign(key, alg, claims, kid, header=None):
    """A SET: claims (dict, or raw JSON text) signed under alg with kid."""
    hdr = {"alg": alg, "typ": "secevent+jwt", "kid": kid}
    hdr.update(header or {})
    payload = claims if isinstance(claims, str) else jdump(claims)
    return sign_raw(key, alg, jdump(hdr), payload)


def verify_with_jwk(token, public, alg):
    """Verify a compact JWS with jwcrypto against a public JWK (dict).

    Returns (header, claims); raises when the signature does not verify."""
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(jwk.JWK(**public), alg=alg)
    return obj.jose_header, json.loads(obj.payload)


# ---------------------------------------------------------------------------
# the database the listener serves
# ---------------------------------------------------------------------------

def connect_db(autocommit=True):
    conn = psycopg2.connect(
        dbname=DATABASE, application_name="setstream-protocol-test",
        options="-c client_min_messages=warning -c statement_timeout=30000")
    conn.autocommit = autocommit
    return conn


class Db:
    """A thin wrapper over one psycopg2 connection."""

    def __init__(self, conn):
        self.conn = conn

    def rows(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def val(self, sql, params=None):
        rows = self.rows(sql, params)
        assert len(rows) == 1, "expected one row, got %d" % len(rows)
        return rows[0][0]

    def dicts(self, sql, params=None):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()]

    def execute(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    # -- setstream --------------------------------------------------------

    def emit(self, stream, event_type=SESSION_REVOKED, event=None, subject=None):
        return self.val("SELECT setstream.emit(%s, %s, %s::jsonb, %s::jsonb)",
                        (stream, event_type, jdump(event or {}),
                         None if subject is None else jdump(subject)))

    def outbox(self, stream, jti):
        rows = self.dicts("SELECT * FROM setstream.outbox WHERE stream = %s AND jti = %s",
                          (stream, jti))
        assert len(rows) == 1, "outbox rows for %s: %d" % (jti, len(rows))
        return rows[0]

    def events(self, stream, jti=None):
        if jti is None:
            return self.dicts("SELECT * FROM setstream.events WHERE stream = %s", (stream,))
        return self.dicts("SELECT * FROM setstream.events WHERE stream = %s AND jti = %s",
                          (stream, jti))

    def event_count(self, stream):
        return self.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (stream,))

    def long_polls(self, stream):
        return self.val("SELECT coalesce(sum(long_polls), 0)::int "
                        "FROM setstream.stream_counters() WHERE stream = %s", (stream,))

    def open_connections(self):
        """Client connections the listeners hold open now (metrics())."""
        return self.val("SELECT connections FROM setstream.listener_stats()")

    def wait_open_connections(self, n, timeout=5.0):
        """Wait until the listeners hold at most n client connections (a
        connection an earlier test dropped is closed by then).  Returns
        False if some are still open after timeout."""
        gc.collect()  # sockets of earlier tests' dropped objects
        deadline = time.monotonic() + timeout
        while self.open_connections() > n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def wait_parked(self, stream, n=1, timeout=5.0):
        """Wait until n long polls of stream are parked in the listener."""
        deadline = time.monotonic() + timeout
        while self.long_polls(stream) < n:
            assert time.monotonic() < deadline, \
                "no long poll of %s parked within %.1fs" % (stream, timeout)
            time.sleep(0.01)


def _guc_setting(name):
    """The setting (in its base unit) that a new backend sees: what the
    postmaster has loaded, and so has signalled to the listener."""
    conn = connect_db()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,))
            return cur.fetchone()[0]
    finally:
        conn.close()


class Gucs:
    """ALTER SYSTEM + reload of listener settings, put back by restore().

    Values are given in the GUC's base unit (ms, bytes) as pg_settings
    shows them, so that the reload can be awaited by comparing."""

    RELOAD_SETTLE = 0.3  # s for the listener to process its SIGHUP

    def __init__(self, db):
        self.db = db
        self.saved = {}  # name -> (auto.conf value or None, setting before)

    def _auto_conf_value(self, name):
        rows = self.db.rows(
            "SELECT setting FROM pg_file_settings WHERE name = %s "
            "AND sourcefile LIKE '%%postgresql.auto.conf' ORDER BY seqno DESC LIMIT 1",
            (name,))
        return rows[0][0] if rows else None

    def set(self, **settings):
        for key, value in settings.items():
            name = "setstream." + key
            if name not in self.saved:
                self.saved[name] = (self._auto_conf_value(name), _guc_setting(name))
            self.db.execute("ALTER SYSTEM SET %s = %%s" % name, (str(value),))
        self._reload({"setstream." + k: str(v) for k, v in settings.items()})

    def restore(self):
        if not self.saved:
            return
        for name, (auto, _) in self.saved.items():
            if auto is None:
                self.db.execute("ALTER SYSTEM RESET %s" % name)
            else:
                self.db.execute("ALTER SYSTEM SET %s = %%s" % name, (auto,))
        self._reload({name: before for name, (_, before) in self.saved.items()})
        self.saved = {}

    def _reload(self, expected):
        self.db.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        for name, value in expected.items():
            while _guc_setting(name) != value:
                assert time.monotonic() < deadline, \
                    "%s did not become %r after pg_reload_conf()" % (name, value)
                time.sleep(0.02)
        time.sleep(self.RELOAD_SETTLE)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

class Client:
    """requests against the listener: one Session, closed by the fixture."""

    def __init__(self, base=URL, verify=True):
        self.base = base
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy, ever
        self.session.verify = verify

    def close(self):
        self.session.close()

    def request(self, method, path, token=None, headers=None, **kw):
        h = {}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        kw.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.base + path, headers=h, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, data=b"", content_type=None, **kw):
        headers = dict(kw.pop("headers", None) or {})
        if content_type is not None:
            headers["Content-Type"] = content_type
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.request("POST", path, data=data, headers=headers, **kw)

    def push(self, stream, set_token, token=None, content_type=SET_TYPE, **kw):
        return self.post("/streams/%s/events" % stream.name, set_token,
                         content_type=content_type,
                         token=stream.token if token is None else token, **kw)

    def poll(self, stream, body=None, token=None, **kw):
        body = {"returnImmediately": True} if body is None else body
        return self.post("/streams/%s/poll" % stream.name,
                         body if isinstance(body, (str, bytes)) else jdump(body),
                         content_type="application/json",
                         token=stream.token if token is None else token, **kw)

    def pushpull(self, stream, body, token=None, **kw):
        return self.post("/streams/%s/pushpull" % stream.name,
                         body if isinstance(body, (str, bytes)) else jdump(body),
                         content_type="application/json",
                         token=stream.token if token is None else token, **kw)


def assert_error(resp, status, err=None):
    """resp is an error answer: status, a JSON body {"err"?, "description"}
    with Content-Type application/json and Content-Language."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", \
        resp.headers
    assert resp.headers.get("Content-Language"), resp.headers
    body = resp.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("description"), str) and body["description"], body
    if err is None:
        # issue 13: answers no RFC 8935 code names carry an "err" too
        err = {429: "rate_limited", 500: "server_error",
               503: "temporarily_unavailable"}.get(status)
    if err is not None:
        assert set(body) == {"err", "description"}, body
        assert body["err"] == err, body
    return body


class Response:
    """An HTTP response read from a raw socket."""

    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "Response(%d %s, %r)" % (self.status, self.reason, self.body[:200])


def build_request(method, path, headers=(), body=b"", version="HTTP/1.1",
                  content_length=True):
    """Bytes of one request; headers is a list of (name, value)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = ["%s %s %s" % (method, path, version), "Host: %s:%d" % (HOST, PORT)]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if content_length and body and not any(k.lower() == "content-length" for k, _ in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawConn:
    """One TCP (or TLS) connection to the listener, read by hand."""

    def __init__(self, timeout=5.0, sock=None):
        self.sock = sock or socket.create_connection((HOST, PORT), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, what="a response"):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection while %s was expected"
                                  " (have %r)" % (what, self.buf[:300]))
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", lines[0]
        headers = []
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
        resp = Response(int(status), reason, headers, b"", head)
        if resp.status < 200:
            return resp
        length = int(resp.header("Content-Length") or 0)
        while len(self.buf) < length:
            self._fill("the rest of a %d body of Content-Length %d after %r"
                       % (resp.status, length, head[:300]))
        resp.body, self.buf = self.buf[:length], self.buf[length:]
        return resp

    def request(self, *args, **kw):
        self.send(build_request(*args, **kw))
        return self.read_response()

    def closed_within(self, seconds):
        """True if the server closes the connection (EOF or reset) within
        seconds, without sending anything more; False if it is still open."""
        assert self.buf == b"", self.buf
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
        assert data == b"", "unexpected bytes from the server: %r" % data[:200]
        return True


class ServerLog:
    """What the test cluster's server log (SETSTREAM_LOGFILE, exported by
    scripts/test.sh) gained since this object was made.  A missing log is
    a failure, not a reason to skip the check."""

    def __init__(self):
        self.path = os.environ.get("SETSTREAM_LOGFILE")
        assert self.path and os.path.exists(self.path), \
            "SETSTREAM_LOGFILE (%r) names no server log" % self.path
        self.offset = os.path.getsize(self.path)

    def text(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            return f.read()

    def wait_for(self, pattern, timeout=5.0):
        """The new text once it matches the regex pattern; fails after
        timeout seconds."""
        import re
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if re.search(pattern, text):
                return text
            assert time.monotonic() < deadline, \
                "no %r in the server log within %.0fs; it gained:\n%s" \
                % (pattern, timeout, text[-3000:])
            time.sleep(0.05)


def wait_for_listener(timeout=30.0):
    """Wait until GET /jwks.json answers 200 (the worker polls every 2 s
    for the extension)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            s = requests.Session()
            s.trust_env = False
            try:
                r = s.get(URL + "/jwks.json", timeout=2)
            finally:
                s.close()
            if r.status_code == 200:
                return
            last = "%d %s" % (r.status_code, r.text[:200])
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.1)
    raise AssertionError("the listener at %s did not answer GET /jwks.json within %.0fs: %s"
                         % (URL, timeout, last))


# ---------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------

class Stream:
    """A stream of the listener's database, with a bearer token, a peer key
    per algorithm in peer_algs, and optionally our own signing key."""

    def __init__(self, name, issuer, audience, peer_issuer):
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.peer_issuer = peer_issuer
        self.token = None
        self.peer_keys = {}  # alg -> (jwcrypto key, kid)
        self.signing_jwk = None  # public JWK of generate_key

    def claims(self, **overrides):
        """Valid SSF claims of a SET the stream's peer sends to it."""
        c = {
            "iss": self.peer_issuer,
            "aud": self.issuer,
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "sub_id": {"format": "email", "email": "alice@example.com"},
            "events": {SESSION_REVOKED: {"initiating_entity": "policy"}},
        }
        for k, v in overrides.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def set(self, alg="ES256", header=None, **overrides):
        """(jti, token) of a SET from the peer, signed with its alg key."""
        key, kid = self.peer_keys[alg]
        claims = self.claims(**overrides)
        return claims.get("jti"), sign(key, alg, claims, kid, header)

    def __repr__(self):
        return "Stream(%s)" % self.name


class StreamFactory:
    def __init__(self, db):
        self.db = db
        self.created = []

    def create(self, peer_algs=("ES256",), signing_alg=None, token=True, status=None):
        name = "pt-" + uuid.uuid4().hex[:16]
        s = Stream(name, "https://db.example.com/" + name,
                   ["https://receiver.example.com/" + name],
                   "https://idp.example.com/" + name)
        self.db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
                        (s.name, s.issuer, s.audience, s.peer_issuer))
        self.created.append(name)
        for alg in peer_algs:
            key = peer_key(alg)
            # registered without "kid": its kid is the RFC 7638 thumbprint
            kid = self.db.val("SELECT setstream.add_key(%s, %s::jsonb)",
                              (name, jdump(public_jwk(key))))
            assert kid == key.thumbprint()
            s.peer_keys[alg] = (key, kid)
        if signing_alg:
            s.signing_jwk = self.db.val("SELECT setstream.generate_key(%s, %s)",
                                        (name, signing_alg))
        if token:
            s.token = self.db.val("SELECT setstream.issue_token(%s)", (name,))
        if status:
            self.db.execute("SELECT setstream.set_stream_status(%s, %s)", (name, status))
        return s

    def drop_all(self):
        for name in self.created:
            self.db.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
        self.created = []


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def listener():
    """The listener's database, with the extension, and the listener up."""
    conn = connect_db()
    db = Db(conn)
    db.execute("CREATE EXTENSION IF NOT EXISTS setstream")
    wait_for_listener()
    yield db
    conn.close()


@pytest.fixture
def db(listener):
    """An autocommit connection to the listener's database, for one test."""
    conn = connect_db()
    yield Db(conn)
    with contextlib.suppress(Exception):
        conn.close()


@pytest.fixture
def streams(listener):
    factory = StreamFactory(listener)
    yield factory
    factory.drop_all()


@pytest.fixture
def client(listener):
    c = Client()
    yield c
    c.close()


@pytest.fixture
def raw(listener):
    """Factory of RawConn, closed when the test ends."""
    opened = []

    def factory(timeout=5.0):
        c = RawConn(timeout=timeout)
        opened.append(c)
        return c

    yield factory
    for c in opened:
        c.close()


@pytest.fixture
def gucs(listener):
    g = Gucs(listener)
    yield g
    g.restore()


def protocol_module(name, filename):
    """A test module of test/protocol, loaded once as `name`, so that its
    fixtures (TLS and mTLS listeners, certificates) serve the tests of
    another suite (test/security, test/ssf)."""
    if name not in sys.modules:
        protocol = os.path.dirname(os.path.abspath(__file__))
        if protocol not in sys.path:
            sys.path.insert(0, protocol)
        spec = importlib.util.spec_from_file_location(name, os.path.join(protocol, filename))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


# The test modules import this module by a name of its own (see the module
# docstring).  "conftest" in sys.modules belongs to whichever conftest.py
# pytest imported last, and test/python's modules import theirs with
# `from conftest import ...`: once pytest has loaded us, give that name back.
sys.modules["listener_support"] = sys.modules[__name__]


def pytest_configure(config):
    me = sys.modules["listener_support"]
    if sys.modules.get("conftest") is not me:
        return
    others = [p for p in config.pluginmanager.get_plugins()
              if getattr(p, "__name__", None) == "conftest" and p is not me]
    if len(others) == 1:
        sys.modules["conftest"] = others[0]
    else:
        del sys.modules["conftest"]
