"""Client certificates (mTLS) bound to a stream, and TLS reloads.

A test PKI is made with python3-cryptography: a server certificate (and a
second one, for the reload test), a client CA (and a second CA), and
client certificates: "good" (bound to the stream under test), "other"
(issued by the same CA, bound to another stream), "selfsigned" (not issued
by the CA; its fingerprint is bound anyway), "expired" (issued by the CA,
validity over; bound by fingerprint directly in the table, since
bind_client_cert refuses expired certificates) and "otherca" (issued by a
CA that is not in setstream.tls_ca_file).

With setstream.tls_ca_file set, every stream route (push, poll, pushpull
over HTTP, the WebSocket upgrade) is tried for each client_auth policy
('bearer', 'cert', 'bearer+cert') with each kind of credential:

  * a missing or wrong bearer token where one is required: 401
    authentication_failed with WWW-Authenticate: Bearer;
  * no verified client certificate where one is required (none, self-signed,
    expired, unknown CA): 401 authentication_failed;
  * a verified certificate not bound to the stream: 403 access_denied;
  * otherwise the route answers as usual (202, 200, 200, 101).

Also: bind/unbind and client_auth changes take effect on the next request
(cache invalidation); without tls_ca_file a 'cert' stream answers 401;
replacing the server certificate files and reloading makes new connections
see the new certificate (by SHA-256) while an open connection keeps
working; a CA file reload changes which client certificates verify;
TLS 1.0 and 1.1 are refused by the server.
"""

import base64
import datetime
import hashlib
import os
import shutil
import socket
import ssl
import tempfile
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import hostile
import listener_support as ls

ROUTES = ("push", "poll", "pushpull", "websocket")
OK_STATUS = {"push": 202, "poll": 200, "pushpull": 200, "websocket": 101}


# ---------------------------------------------------------------------------
# the test PKI
# ---------------------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_cert(cn, issuer=None, ca=False, server=False, expired=False):
    """(cert, key): a P-256 certificate for cn, signed by issuer (cert, key),
    or self-signed when issuer is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    b = (x509.CertificateBuilder()
         .subject_name(_name(cn))
         .issuer_name(issuer_cert.subject if issuer_cert else _name(cn))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before)
         .not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
    elif server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([x509.OID_CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256()), key


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def sha256_hex(cert):
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Pki:
    """Files of the test PKI in one directory, readable by the server."""

    def __init__(self, owner_uid):
        self.dir = tempfile.mkdtemp(prefix="setstream-mtls-")
        self.owner_uid = owner_uid
        os.chmod(self.dir, 0o755)
        self.certs = {}
        self.ca = _make_cert("setstream test client CA", ca=True)
        self.ca2 = _make_cert("setstream second client CA", ca=True)
        # distinct subjects: the client trusts both, looked up by subject
        for name in ("server", "server2"):
            self.certs[name] = _make_cert("setstream test " + name, server=True)
        self.certs["good"] = _make_cert("good client", issuer=self.ca)
        self.certs["other"] = _make_cert("other client", issuer=self.ca)
        self.certs["expired"] = _make_cert("expired client", issuer=self.ca, expired=True)
        self.certs["selfsigned"] = _make_cert("self-signed client")
        self.certs["otherca"] = _make_cert("client of another CA", issuer=self.ca2)
        self.write("ca.pem", _pem(self.ca[0]))
        self.write("ca2.pem", _pem(self.ca2[0]))
        # the server's files; the reload test rewrites them in place
        self.write_server("server")
        # what the test clients trust: either server certificate
        self.write("trust.pem", _pem(self.certs["server"][0]) + _pem(self.certs["server2"][0]))
        for name in ("good", "other", "expired", "selfsigned", "otherca"):
            cert, key = self.certs[name]
            self.write(name + ".pem", _pem(cert))
            self.write(name + ".key", _key_pem(key), mode=0o600)

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text, mode=0o644):
        p = self.path(name)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        if self.owner_uid is not None and os.geteuid() == 0:
            os.chown(tmp, self.owner_uid, -1)
        os.replace(tmp, p)

    def write_server(self, which):
        cert, key = self.certs[which]
        self.write("server.pem", _pem(cert))
        self.write("server.key", _key_pem(key), mode=0o600)

    def pem(self, name):
        return _pem(self.certs[name][0])

    def fingerprint(self, name):
        return sha256_hex(self.certs[name][0])

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def server_uid(db):
    return os.stat(db.val("SELECT current_setting('data_directory')")).st_uid


@pytest.fixture(scope="module")
def pki(listener):
    p = Pki(server_uid(listener))
    yield p
    p.close()


def client_context(pki, client=None, maximum=None, seclevel0=False):
    ctx = ssl.create_default_context(cafile=pki.path("trust.pem"))
    if client:
        ctx.load_cert_chain(pki.path(client + ".pem"), pki.path(client + ".key"))
    if seclevel0:
        # let the client itself offer old protocols: the refusal we test
        # must come from the server
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if maximum:
        ctx.minimum_version = maximum
        ctx.maximum_version = maximum
    return ctx


def tls_conn(ctx, timeout=5.0):
    sock = socket.create_connection((ls.HOST, ls.PORT), timeout=timeout)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=ls.HOST)
    except BaseException:
        sock.close()
        raise
    return ls.RawConn(timeout=timeout, sock=tls)


def wait_tls(pki, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = tls_conn(client_context(pki), timeout=2)
            try:
                if c.request("GET", "/jwks.json").status == 200:
                    return
            finally:
                c.close()
        except (OSError, ssl.SSLError, ConnectionError, AssertionError, ValueError):
            pass
        assert time.monotonic() < deadline, "the listener did not switch TLS on"
        time.sleep(0.1)


def wait_plain(timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            c = ls.RawConn(timeout=2)
            try:
                if c.request("GET", "/jwks.json").status == 200:
                    return
            finally:
                c.close()
        except (OSError, ConnectionError, AssertionError, ValueError):
            pass
        assert time.monotonic() < deadline, "the listener did not switch TLS off"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def mtls(listener, pki):
    gucs = ls.Gucs(listener)
    try:
        gucs.set(tls_cert_file=pki.path("server.pem"), tls_key_file=pki.path("server.key"),
                 tls_ca_file=pki.path("ca.pem"))
        wait_tls(pki)
        yield gucs
    finally:
        gucs.restore()
        wait_plain()


# ---------------------------------------------------------------------------
# requests on every route kind
# ---------------------------------------------------------------------------

def route_request(route, stream, token):
    """(method, path, headers, body) of a valid request on the route."""
    headers = []
    if token is not None:
        headers.append(("Authorization", "Bearer " + token))
    path = "/streams/%s/%s" % (stream.name, {"push": "events", "poll": "poll",
                                              "pushpull": "pushpull",
                                              "websocket": "pushpull"}[route])
    if route == "push":
        _, set_token = stream.set()
        return "POST", path, headers + [("Content-Type", ls.SET_TYPE)], set_token
    if route == "poll":
        return "POST", path, headers + [("Content-Type", "application/json")], \
            ls.jdump({"returnImmediately": True})
    if route == "pushpull":
        return "POST", path, headers + [("Content-Type", "application/json")], \
            ls.jdump({"maxResponseEvents": 0})
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    return "GET", path, headers + [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                   ("Sec-WebSocket-Key", key),
                                   ("Sec-WebSocket-Version", "13"),
                                   ("Sec-WebSocket-Protocol", "pushpull")], b""


def call(pki, route, stream, token, client):
    """The response of one request on a fresh TLS connection presenting the
    client certificate `client` (or none)."""
    c = tls_conn(client_context(pki, client))
    try:
        method, path, headers, body = route_request(route, stream, token)
        return c.request(method, path, headers, body)
    finally:
        c.close()


def assert_refused(resp, status, err, bearer_challenge):
    assert resp.status == status, resp
    assert (resp.header("Content-Type") or "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body["err"] == err, body
    assert isinstance(body.get("description"), str) and body["description"], body
    challenge = resp.header("WWW-Authenticate")
    if bearer_challenge:
        assert challenge and challenge.startswith("Bearer"), resp.headers
    else:
        assert challenge is None, resp.headers


@pytest.fixture
def bound(db, streams, pki, mtls):
    """make(client_auth) -> a stream with that policy, "good" bound to it,
    and a second stream with "other", "selfsigned" and "expired" bound."""
    other = streams.create()
    assert db.val("SELECT setstream.bind_client_cert(%s, %s)",
                  (other.name, pki.pem("other"))) == pki.fingerprint("other")

    def make(client_auth):
        s = streams.create()
        db.execute("SELECT setstream.alter_stream(%s, client_auth => %s)",
                   (s.name, client_auth))
        assert db.val("SELECT setstream.bind_client_cert(%s, %s)",
                      (s.name, pki.pem("good"))) == pki.fingerprint("good")
        # fingerprints of certificates that never verify, bound all the same:
        # the refusal must come from the verification, not the binding
        assert db.val("SELECT setstream.bind_client_cert(%s, %s)",
                      (s.name, pki.pem("selfsigned"))) == pki.fingerprint("selfsigned")
        assert db.val("SELECT setstream.bind_client_cert(%s, %s)",
                      (s.name, pki.pem("otherca"))) == pki.fingerprint("otherca")
        db.execute("INSERT INTO setstream.client_certs (stream, sha256) "
                   "VALUES (%s, decode(%s, 'hex'))", (s.name, pki.fingerprint("expired")))
        s.other = other
        return s

    return make


# (token kind, client cert) -> expected (status, err, bearer challenge) or None for OK
CASES = {
    "bearer": {
        ("own", None): None,
        ("own", "good"): None,
        ("own", "other"): None,           # a certificate is not looked at
        (None, "good"): (401, "authentication_failed", True),
        ("other", "good"): (401, "authentication_failed", True),
    },
    "cert": {
        (None, "good"): None,
        ("own", "good"): None,
        ("other", "good"): None,          # the token is not looked at
        # not authenticated at all: answered as for a stream that does not
        # exist (issue 11), with the bearer challenge
        (None, None): (401, "authentication_failed", True),
        ("own", None): (401, "authentication_failed", True),
        (None, "selfsigned"): (401, "authentication_failed", True),
        (None, "expired"): (401, "authentication_failed", True),
        (None, "otherca"): (401, "authentication_failed", True),
        (None, "other"): (403, "access_denied", False),
    },
    "bearer+cert": {
        ("own", "good"): None,
        ("own", None): (401, "authentication_failed", False),
        (None, "good"): (401, "authentication_failed", True),
        ("other", "good"): (401, "authentication_failed", True),
        ("own", "selfsigned"): (401, "authentication_failed", False),
        ("own", "expired"): (401, "authentication_failed", False),
        ("own", "other"): (403, "access_denied", False),
    },
}


@pytest.mark.parametrize("policy", sorted(CASES))
@pytest.mark.parametrize("route", ROUTES)
def test_policy_on_every_route(bound, pki, db, policy, route):
    s = bound(policy)
    stored = 0
    for (token_kind, client), expected in sorted(CASES[policy].items(),
                                                 key=lambda kv: repr(kv[0])):
        token = {"own": s.token, "other": s.other.token, None: None}[token_kind]
        r = call(pki, route, s, token, client)
        what = (policy, route, token_kind, client, r)
        if expected is None:
            assert r.status == OK_STATUS[route], what
            if route == "websocket":
                assert (r.header("Sec-WebSocket-Protocol") or "") == "pushpull", what
            stored += route == "push"
        else:
            status, err, challenge = expected
            assert_refused(r, status, err, challenge)
    # refused requests stored nothing; accepted pushes were stored
    assert db.event_count(s.name) == stored


def test_bind_unbind_and_policy_changes_apply_at_once(db, streams, pki, mtls):
    s = streams.create()
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    assert call(pki, "poll", s, None, "good").status == 403
    # one connection across the changes: its fingerprint was taken at the
    # handshake, the bindings are read again after each change
    c = tls_conn(client_context(pki, "good"))
    try:
        def poll():
            return c.request(*route_request("poll", s, None))
        assert poll().status == 403
        fp = db.val("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
        assert poll().status == 200
        db.execute("SELECT setstream.unbind_client_cert(%s, %s)",
                   (s.name, ":".join(fp[i:i + 2].upper() for i in range(0, 64, 2))))
        assert poll().status == 403
        db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
        assert poll().status == 200
        db.execute("SELECT setstream.alter_stream(%s, client_auth => 'bearer+cert')", (s.name,))
        assert poll().status == 401
        db.execute("SELECT setstream.alter_stream(%s, client_auth => 'bearer')", (s.name,))
        assert poll().status == 401
        r = c.request(*route_request("poll", s, s.token))
        assert r.status == 200, r
    finally:
        c.close()


def test_client_certs_row(db, streams, pki, mtls):
    s = streams.create()
    fp = db.val("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
    row = db.dicts("SELECT encode(sha256, 'hex') AS fp, subject, not_after "
                   "FROM setstream.client_certs WHERE stream = %s", (s.name,))
    cert = pki.certs["good"][0]
    not_after = getattr(cert, "not_valid_after_utc", None) or \
        cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    assert row == [{"fp": fp, "subject": "CN=good client", "not_after": not_after}]


def test_ca_file_reload(db, streams, pki, mtls):
    """setstream.tls_ca_file is reloaded on SIGHUP: with the second CA in
    it, "good" no longer verifies and "otherca" does."""
    s = streams.create()
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    for name in ("good", "otherca"):
        db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem(name)))
    assert call(pki, "poll", s, None, "good").status == 200
    assert call(pki, "poll", s, None, "otherca").status == 401
    gucs = ls.Gucs(db)
    try:
        gucs.set(tls_ca_file=pki.path("ca2.pem"))
        assert call(pki, "poll", s, None, "good").status == 401
        assert call(pki, "poll", s, None, "otherca").status == 200
    finally:
        gucs.restore()
    assert call(pki, "poll", s, None, "good").status == 200


def test_unreadable_ca_file_keeps_the_running_context(db, streams, pki, mtls):
    """A reload with a CA file that cannot be loaded changes nothing: the
    listener keeps its TLS context (and its client CAs) and says so in the
    server log."""
    s = streams.create()
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
    log = ls.ServerLog()  # a missing server log fails the test
    gucs = ls.Gucs(db)
    try:
        gucs.set(tls_ca_file=pki.path("no-such-ca.pem"))
        assert call(pki, "poll", s, None, "good").status == 200
        assert call(pki, "poll", s, None, "otherca").status == 401
        log.wait_for(r"ERROR:\s+setstream: could not load setstream\.tls_ca_file: "
                     r".*No such file or directory")
        log.wait_for(r"HINT:\s+The listener keeps the previous TLS configuration")
    finally:
        gucs.restore()


def test_without_ca_file_cert_streams_refuse(db, streams, pki, mtls):
    """With no tls_ca_file the server asks for no certificate: a 'cert'
    stream answers 401 even to a client that has a bound certificate, and
    a 'bearer' stream works as before."""
    s = streams.create()
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
    b = streams.create()
    gucs = ls.Gucs(db)
    try:
        gucs.set(tls_ca_file="")
        c = tls_conn(client_context(pki, "good"))
        try:
            assert c.sock.getpeercert() is not None
            assert_refused(c.request(*route_request("poll", s, None)), 401,
                           "authentication_failed", True)
            assert c.request(*route_request("poll", b, b.token)).status == 200
        finally:
            c.close()
    finally:
        gucs.restore()
    assert call(pki, "poll", s, None, "good").status == 200


def _served_fingerprint(pki):
    c = tls_conn(client_context(pki), timeout=3)
    try:
        der = c.sock.getpeercert(binary_form=True)
        assert c.request("GET", "/jwks.json").status == 200
        return hashlib.sha256(der).hexdigest()
    finally:
        c.close()


def test_server_certificate_reload(db, streams, pki, mtls):
    """Replace the certificate and key files, reload: new connections get
    the new certificate, an open connection keeps being served."""
    s = streams.create()
    assert _served_fingerprint(pki) == pki.fingerprint("server")
    old = tls_conn(client_context(pki))
    try:
        assert old.request(*route_request("poll", s, s.token)).status == 200
        pki.write_server("server2")
        try:
            db.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while _served_fingerprint(pki) != pki.fingerprint("server2"):
                assert time.monotonic() < deadline, "the new certificate was not served"
                time.sleep(0.1)
            # the connection made before the reload still works, on the
            # certificate it was made with
            r = old.request(*route_request("poll", s, s.token))
            assert r.status == 200, r
            assert hashlib.sha256(old.sock.getpeercert(binary_form=True)).hexdigest() \
                == pki.fingerprint("server")
        finally:
            pki.write_server("server")
            db.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + 10
            while _served_fingerprint(pki) != pki.fingerprint("server"):
                assert time.monotonic() < deadline, "the first certificate did not come back"
                time.sleep(0.1)
    finally:
        old.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1_1", "TLSv1"])
def test_old_tls_refused_by_the_server(pki, mtls, version):
    ctx = client_context(pki, "good", maximum=getattr(ssl.TLSVersion, version),
                         seclevel0=True)
    with pytest.raises(ssl.SSLError) as info:
        tls_conn(ctx).close()
    msg = str(info.value).upper()
    # a protocol_version alert from the server, not our own OpenSSL refusing
    assert "NO_PROTOCOLS_AVAILABLE" not in msg, info.value
    assert any(s in msg for s in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL",
                                  "WRONG_VERSION_NUMBER")), info.value


def test_websocket_session_with_a_client_certificate_only(db, streams, pki, mtls):
    """A 'cert' stream: a wss:// session authenticated by its certificate
    alone receives an emitted SET and its ack settles the outbox row."""
    import asyncio
    import json

    from wsutil import ws_connect

    s = streams.create(signing_alg="ES256")
    db.execute("SELECT setstream.alter_stream(%s, client_auth => 'cert')", (s.name,))
    db.execute("SELECT setstream.bind_client_cert(%s, %s)", (s.name, pki.pem("good")))
    url = "wss://%s:%d/streams/%s/pushpull" % (ls.HOST, ls.PORT, s.name)

    async def go():
        async with ws_connect(url, subprotocols=["pushpull"], open_timeout=5,
                              ssl=client_context(pki, "good")) as ws:
            assert ws.subprotocol == "pushpull"
            jti = db.emit(s.name)
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert list(msg.get("sets", {})) == [jti], msg
            await ws.send(json.dumps({"ack": [jti]}))
            return jti

    jti = asyncio.run(asyncio.wait_for(go(), 20))
    deadline = time.monotonic() + 5
    while db.outbox(s.name, jti)["state"] != "acked":
        assert time.monotonic() < deadline, db.outbox(s.name, jti)
        time.sleep(0.05)

    # the same session refused with another CA's certificate
    async def refused():
        with pytest.raises(Exception) as info:
            async with ws_connect(url, subprotocols=["pushpull"], open_timeout=5,
                                  ssl=client_context(pki, "otherca")):
                pass
        return info.value

    err = asyncio.run(asyncio.wait_for(refused(), 20))
    assert "401" in str(err), err


def test_certificate_failures_count_against_the_address(bound, pki, gucs):
    """A missing or unbound client certificate is a failed authentication
    like a wrong token (setstream.auth_failure_limit): past the limit, the
    address gets 429 even with the right certificate, before it is checked."""
    limit = 4
    gucs.set(auth_failure_limit=limit)
    s = bound("cert")
    source = hostile.address(300)

    def call_from(client):
        tls = client_context(pki, client).wrap_socket(hostile.connect_from(source),
                                                      server_hostname=ls.HOST)
        c = ls.RawConn(sock=tls)
        try:
            return c.request(*route_request("poll", s, None))
        finally:
            c.close()

    assert call_from("good").status == 200          # successes cost nothing
    for client in ("other", None) * (limit // 2):
        assert call_from(client).status in (401, 403)
    r = call_from("good")
    assert r.status == 429 and int(r.header("Retry-After")) >= 1, r
