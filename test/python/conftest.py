"""Shared fixtures and helpers for setstream's Python protocol tests.

These tests talk to a PostgreSQL server with the setstream extension through
psycopg2, and check setstream's JOSE against an independent implementation
(jwcrypto): SETs that setstream emits are verified by jwcrypto, and SETs that
jwcrypto signs are verified by setstream.

Connection: the libpq environment (PGHOST, PGPORT, PGUSER, PGDATABASE), as
scripts/test.sh exports it.  The database must allow CREATE EXTENSION
setstream (scripts/test.sh creates it beforehand).

Every test creates its own streams, with unique names, and drops them when
it ends, so tests are independent of one another and the suite can be run
again on the same database.
"""

import base64
import contextlib
import hashlib
import json
import time
import uuid

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest
from jwcrypto import jwk, jws
from jwcrypto.jwa import JWA

# RFC 8935 error code -> SQLSTATE (DESIGN: errors raised by receive/ingest/poll)
SQLSTATE = {
    "invalid_request": "SE001",
    "invalid_key": "SE002",
    "invalid_issuer": "SE003",
    "invalid_audience": "SE004",
    "authentication_failed": "SE005",
    "access_denied": "SE006",
    "invalid_state": "SE007",
}

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"

UUID4_RE = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

# Signing algorithms generate_key() supports (DESIGN / brief)
GENERATE_ALGS = ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512",
                 "PS256", "PS384", "PS512", "EdDSA"]
# Algorithms a peer may sign inbound SETs with
VERIFY_ALGS = ["HS256", "HS384", "HS512"] + GENERATE_ALGS

DROP = object()  # marker: leave this member out


# ---------------------------------------------------------------------------
# encoding helpers
# ---------------------------------------------------------------------------

def b64u(data):
    """base64url without padding, of bytes or of a str (UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def split_token(token):
    """(header dict, claims dict, signature bytes) of a compact JWS."""
    h, p, s = token.split(".")
    return json.loads(b64u_decode(h)), json.loads(b64u_decode(p)), b64u_decode(s)


def merge(base, overrides):
    """base updated with overrides; a value DROP removes the member."""
    out = dict(base)
    for k, v in overrides.items():
        if v is DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------------------
# keys and signing (jwcrypto)
# ---------------------------------------------------------------------------

_KEY_CACHE = {}


def key_for(alg, variant=0):
    """A jwcrypto private JWK fit for alg (cached per process).

    variant gives a second, different key of the same kind."""
    spec = {
        "HS256": dict(kty="oct", size=256), "HS384": dict(kty="oct", size=384),
        "HS512": dict(kty="oct", size=512),
        "RS256": dict(kty="RSA", size=2048), "RS384": dict(kty="RSA", size=2048),
        "RS512": dict(kty="RSA", size=2048), "PS256": dict(kty="RSA", size=2048),
        "PS384": dict(kty="RSA", size=2048), "PS512": dict(kty="RSA", size=2048),
        "ES256": dict(kty="EC", crv="P-256"), "ES384": dict(kty="EC", crv="P-384"),
        "ES512": dict(kty="EC", crv="P-521"), "EdDSA": dict(kty="OKP", crv="Ed25519"),
    }[alg]
    cache_key = (tuple(sorted(spec.items())), variant)
    if cache_key not in _KEY_CACHE:
        _KEY_CACHE[cache_key] = jwk.JWK.generate(**spec)
    return _KEY_CACHE[cache_key]


def public_jwk(key, **extra):
    """The JWK to register with add_key: public half, or the oct secret."""
    if key.get("kty") == "oct":
        d = json.loads(key.export())
    else:
        d = json.loads(key.export_public())
    d.pop("kid", None)
    d.update(extra)
    return d


def sign_raw(key, alg, header_text, payload):
    """Compact JWS over the exact header text and payload given.

    The header text is used byte for byte (it may be invalid JSON, hold
    duplicate members, whitespace, an "alg" other than alg...): jwcrypto's
    JWA engine computes the signature over the signing input, nothing else
    is checked."""
    signing_input = "%s.%s" % (b64u(header_text), b64u(payload))
    signature = JWA.signing_alg(alg).sign(key, signing_input.encode("ascii"))
    return "%s.%s" % (signing_input, b64u(signature))


def sign(key, alg, claims, header=None, kid=None):
    """A SET: claims (dict, or raw JSON text) signed with key under alg.

    The header is {"alg", "typ": "secevent+jwt", "kid"} updated with
    header (DROP removes a member); kid=None leaves "kid" out."""
    hdr = {"alg": alg, "typ": "secevent+jwt"}
    if kid is not None:
        hdr["kid"] = kid
    hdr = merge(hdr, header or {})
    payload = claims if isinstance(claims, (str, bytes)) else jdump(claims)
    return sign_raw(key, alg, jdump(hdr), payload)


def unsigned(claims, header=None):
    """An unsecured SET (alg none): header.payload. with the trailing dot."""
    hdr = merge({"alg": "none", "typ": "secevent+jwt"}, header or {})
    payload = claims if isinstance(claims, str) else jdump(claims)
    return "%s.%s." % (b64u(jdump(hdr)), b64u(payload))


def verify(token, public, alg):
    """Verify a compact JWS with jwcrypto; returns (header, claims).

    Raises when the signature does not verify."""
    key = jwk.JWK(**public) if isinstance(public, dict) else public
    obj = jws.JWS()
    obj.deserialize(token)
    obj.verify(key, alg=alg)
    header = obj.jose_header
    return header, json.loads(obj.payload)


def thumbprint(public):
    """RFC 7638 thumbprint computed by jwcrypto."""
    d = {k: v for k, v in public.items() if k not in ("kid", "alg", "use")}
    return jwk.JWK(**d).thumbprint()


# ---------------------------------------------------------------------------
# database access
# ---------------------------------------------------------------------------

def _connect():
    conn = psycopg2.connect(
        "", application_name="setstream-pytest",
        options="-c client_min_messages=warning -c statement_timeout=30000")
    conn.autocommit = True
    return conn


class Db:
    """A thin wrapper over one autocommit psycopg2 connection."""

    def __init__(self, conn):
        self.conn = conn

    def rows(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def row(self, sql, params=None):
        rows = self.rows(sql, params)
        assert len(rows) == 1, "expected one row, got %d" % len(rows)
        return rows[0]

    def val(self, sql, params=None):
        return self.row(sql, params)[0]

    def dicts(self, sql, params=None):
        with self.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(r) for r in cur.fetchall()]

    def execute(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def error(self, sql, params=None):
        """Run sql, which must fail; returns the psycopg2 error.

        When the connection is inside a transaction block, the statement
        runs in a savepoint so that the transaction stays usable."""
        in_tx = (self.conn.get_transaction_status()
                 != psycopg2.extensions.TRANSACTION_STATUS_IDLE)
        if in_tx:
            self.execute("SAVEPOINT pytest_error")
        with pytest.raises(psycopg2.Error) as info:
            self.execute(sql, params)
        if in_tx:
            self.execute("ROLLBACK TO SAVEPOINT pytest_error")
        return info.value

    def expect_error(self, sqlstate, sql, params=None, message=None):
        e = self.error(sql, params)
        assert e.pgcode == sqlstate, (e.pgcode, e.diag.message_primary)
        if message is not None:
            assert message in e.diag.message_primary, e.diag.message_primary
        return e

    # -- setstream API ---------------------------------------------------

    def add_key(self, stream, jwk_dict):
        return self.val("SELECT setstream.add_key(%s, %s::jsonb)",
                        (stream, jdump(jwk_dict)))

    def generate_key(self, stream, alg="ES256"):
        return self.val("SELECT setstream.generate_key(%s, %s)", (stream, alg))

    def emit(self, stream, event_type=SESSION_REVOKED, event=None,
             subject=None, txn=None):
        return self.val(
            "SELECT setstream.emit(%s, %s, %s::jsonb, %s::jsonb, %s)",
            (stream, event_type, jdump(event if event is not None else {}),
             None if subject is None else jdump(subject), txn))

    def receive(self, stream, token):
        return self.val("SELECT setstream.receive(%s, %s)", (stream, token))

    def ingest(self, stream, body):
        body = body if isinstance(body, str) else jdump(body)
        return self.val("SELECT setstream.ingest(%s, %s::jsonb)", (stream, body))

    def poll(self, stream, request=None):
        request = {} if request is None else request
        request = request if isinstance(request, str) else jdump(request)
        return self.val("SELECT setstream.poll(%s, %s::jsonb)", (stream, request))

    def outbox(self, stream, jti):
        rows = self.dicts("SELECT * FROM setstream.outbox WHERE stream = %s AND jti = %s",
                          (stream, jti))
        assert len(rows) == 1, "outbox rows for %s: %d" % (jti, len(rows))
        return rows[0]

    def outbox_token(self, stream, jti):
        return self.outbox(stream, jti)["token"]

    def event_rows(self, stream, jti=None):
        if jti is None:
            return self.dicts("SELECT * FROM setstream.events WHERE stream = %s", (stream,))
        return self.dicts("SELECT * FROM setstream.events WHERE stream = %s AND jti = %s",
                          (stream, jti))

    def set_error(self, code, stream, token):
        """receive() must refuse token with RFC 8935 error code; nothing stored."""
        before = self.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (stream,))
        e = self.error("SELECT setstream.receive(%s, %s)", (stream, token))
        msg = e.diag.message_primary
        assert (e.pgcode, msg.split(":")[0]) == (SQLSTATE[code], code), \
            "expected %s, got %s %s" % (code, e.pgcode, msg)
        assert msg.startswith(code + ": ") and len(msg) > len(code) + 2, msg
        after = self.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (stream,))
        assert after == before
        return msg


class Stream:
    def __init__(self, name, issuer, audience, peer_issuer, profile, allow_unsigned):
        self.name = name
        self.issuer = issuer
        self.audience = audience
        self.peer_issuer = peer_issuer
        self.profile = profile
        self.allow_unsigned = allow_unsigned

    def claims(self, **overrides):
        """Valid SSF claims for a SET the stream's peer sends to it."""
        base = {
            "iss": self.peer_issuer,
            "aud": self.issuer,
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "sub_id": {"format": "email", "email": "alice@example.com"},
            "events": {SESSION_REVOKED: {"initiating_entity": "policy"}},
        }
        return merge(base, overrides)

    def __repr__(self):
        return "Stream(%s)" % self.name


@pytest.fixture(scope="session")
def admin():
    """Session-wide connection for setup and teardown."""
    conn = _connect()
    db = Db(conn)
    db.execute("CREATE EXTENSION IF NOT EXISTS setstream")
    yield db
    conn.close()


@pytest.fixture
def connect(streams):
    """Factory of extra connections (Db), closed when the test ends.

    It depends on streams so that connections close (ending any open
    transaction) before the test's streams are dropped."""
    opened = []

    def factory():
        conn = _connect()
        opened.append(conn)
        return Db(conn)

    yield factory
    for conn in opened:
        with contextlib.suppress(Exception):
            conn.close()


@pytest.fixture
def db(connect):
    return connect()


@pytest.fixture
def streams(admin):
    """Factory: streams.create(...) makes a uniquely named stream."""
    created = []

    class Factory:
        @staticmethod
        def create(issuer=None, audience=None, peer_issuer=DROP, profile="ssf",
                   allow_unsigned=False, name=None):
            name = name or "py-" + uuid.uuid4().hex[:16]
            issuer = issuer or "https://db.example.com/" + name
            audience = audience or ["https://receiver.example.com/" + name]
            if peer_issuer is DROP:
                peer_issuer = "https://idp.example.com/" + name
            admin.execute(
                "SELECT setstream.create_stream(%s, %s, %s::text[], %s, %s, %s)",
                (name, issuer, audience, peer_issuer, profile, allow_unsigned))
            created.append(name)
            return Stream(name, issuer, audience, peer_issuer, profile, allow_unsigned)

    yield Factory
    for name in created:
        admin.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))


@pytest.fixture
def receiver(streams, admin):
    """Factory: a stream with a peer verification key for alg registered.

    Returns (stream, private jwcrypto key, kid).  Without kid, the key is
    registered under its RFC 7638 thumbprint (what add_key returns)."""

    def factory(alg="HS256", kid=None, **stream_args):
        stream = streams.create(**stream_args)
        key = key_for(alg)
        extra = {"kid": kid} if kid is not None else {}
        got = admin.add_key(stream.name, public_jwk(key, **extra))
        return stream, key, got

    return factory


def sha256(data):
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).digest()

