"""TLS on the listener (setstream.tls_cert_file / tls_key_file, reloadable).

A self-signed P-256 certificate is made with openssl for the module; the
settings are set with ALTER SYSTEM and reloaded.  Over TLS: requests
verified against that certificate work (push, poll, keep-alive); TLS 1.1
is refused while 1.2 and 1.3 are taken; plain HTTP to the TLS port gets no
HTTP answer.  When the settings are reset, plain HTTP works again.
"""

import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import listener_support as ls


@pytest.fixture(scope="module")
def cert_dir():
    """cert.pem / key.pem, readable by the server's OS user."""
    d = tempfile.mkdtemp(prefix="setstream-tls-")
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=30)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    if os.geteuid() == 0:
        # the server runs as postgres when the tests run as root
        pg = pwd.getpwnam("postgres")
        for f in (d, cert, key):
            os.chown(f, pg.pw_uid, pg.pw_gid)
    yield d, cert, key
    shutil.rmtree(d, ignore_errors=True)


def tls_context(cert, minimum=None, maximum=None, seclevel0=False):
    ctx = ssl.create_default_context(cafile=cert)
    if seclevel0:
        # let the client itself offer old protocols: the refusal we test
        # must come from the server
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
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


def wait_tls(cert, want, timeout=10.0):
    """Wait until the listener speaks TLS (want=True) or plain HTTP."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if want:
                c = tls_conn(tls_context(cert), timeout=2)
            else:
                c = ls.RawConn(timeout=2)
            try:
                if c.request("GET", "/jwks.json").status == 200:
                    return
            finally:
                c.close()
        except (OSError, ssl.SSLError, ConnectionError, AssertionError, ValueError):
            pass
        assert time.monotonic() < deadline, \
            "the listener did not switch TLS %s" % ("on" if want else "off")
        time.sleep(0.1)


def test_tls_on_then_reset_plain_http_again(listener, cert_dir):
    """Switch TLS on with a reload, then RESET and reload: plain HTTP works
    again.  (First in the module: it runs before the module's `tls`
    fixture switches TLS on for the tests below.)"""
    _, cert, key = cert_dir
    gucs = ls.Gucs(listener)
    try:
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        wait_tls(cert, True)
        with pytest.raises((ConnectionError, OSError, AssertionError, ValueError)):
            c = ls.RawConn(timeout=2)
            try:
                c.request("GET", "/jwks.json")
            finally:
                c.close()
    finally:
        gucs.restore()
    wait_tls(cert, False)
    c = ls.RawConn()
    try:
        assert c.request("GET", "/jwks.json").status == 200
    finally:
        c.close()


@pytest.fixture(scope="module")
def tls(listener, cert_dir):
    _, cert, key = cert_dir
    gucs = ls.Gucs(listener)
    try:
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        wait_tls(cert, True)
        yield cert
    finally:
        gucs.restore()
        wait_tls(cert, False)


@pytest.fixture
def https(tls):
    c = ls.Client(base="https://%s:%d" % (ls.HOST, ls.PORT), verify=tls)
    yield c
    c.close()


def test_https_verified_request(https):
    r = https.get("/jwks.json")
    assert r.status_code == 200, r.text
    assert "keys" in r.json()


def test_push_and_poll_over_tls(https, db, streams):
    s = streams.create(signing_alg="ES256")
    jti, token = s.set()
    r = https.push(s, token)
    assert r.status_code == 202, r.text
    assert [e["jti"] for e in db.events(s.name)] == [jti]
    out = db.emit(s.name)
    r = https.poll(s)
    assert list(r.json()["sets"]) == [out]
    r = https.post("/streams/%s/events" % s.name, "garbage", content_type=ls.SET_TYPE,
                   token=s.token)
    ls.assert_error(r, 400, "invalid_request")


def test_keep_alive_and_pipelining_over_tls(tls, streams):
    s = streams.create()
    c = tls_conn(tls_context(tls))
    try:
        for _ in range(2):
            assert c.request("GET", "/jwks.json").status == 200
        c.send(ls.build_request("GET", "/jwks.json") + ls.build_request("GET", "/nope")
               + ls.build_request("POST", "/streams/%s/poll" % s.name,
                                  [("Authorization", "Bearer " + s.token)],
                                  ls.jdump({"returnImmediately": True})))
        assert [c.read_response().status for _ in range(3)] == [200, 404, 200]
    finally:
        c.close()


def test_long_poll_over_tls(tls, db, streams):
    s = streams.create(signing_alg="ES256")
    c = tls_conn(tls_context(tls))
    try:
        c.send(ls.build_request("POST", "/streams/%s/poll" % s.name,
                                [("Authorization", "Bearer " + s.token)], b"{}"))
        db.wait_parked(s.name)
        jti = db.emit(s.name)
        r = c.read_response()
        assert r.status == 200 and list(r.json()["sets"]) == [jti]
    finally:
        c.close()


def test_large_body_over_tls(tls, streams, db):
    """A body of many TLS records (a pushpull of 300 SETs) is read whole."""
    s = streams.create()
    sets = dict(s.set() for _ in range(300))
    body = ls.jdump({"sets": sets}).encode()
    assert len(body) > 100000
    c = tls_conn(tls_context(tls))
    try:
        r = c.request("POST", "/streams/%s/pushpull" % s.name,
                      [("Authorization", "Bearer " + s.token),
                       ("Content-Type", "application/json")], body)
        assert r.status == 200, r
        assert sorted(r.json()["ack"]) == sorted(sets)
    finally:
        c.close()
    assert db.event_count(s.name) == 300


def test_tls_1_2_and_1_3_accepted(tls):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        c = tls_conn(tls_context(tls, minimum=version, maximum=version))
        try:
            assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                        ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            assert c.request("GET", "/jwks.json").status == 200
        finally:
            c.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1_1", "TLSv1"])
def test_old_tls_refused(tls, version):
    v = getattr(ssl.TLSVersion, version)
    ctx = tls_context(tls, minimum=v, maximum=v, seclevel0=True)
    with pytest.raises(ssl.SSLError) as info:
        c = tls_conn(ctx)
        c.close()
    # the server refused it (a protocol_version alert), not our own OpenSSL
    msg = str(info.value).upper()
    assert "NO_PROTOCOLS_AVAILABLE" not in msg, info.value
    assert any(s in msg for s in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL",
                                  "WRONG_VERSION_NUMBER")), info.value


def test_untrusted_certificate_fails_verification(tls):
    """Our client really verifies: without the CA the handshake fails."""
    ctx = ssl.create_default_context()  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_conn(ctx).close()


def test_plain_http_to_tls_port_fails(tls):
    c = ls.RawConn(timeout=3)
    try:
        c.send(ls.build_request("GET", "/jwks.json"))
        data = b""
        try:
            while len(data) < 64:
                chunk = c.sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        assert not data.startswith(b"HTTP/1.1 200"), data
        assert b"keys" not in data
    finally:
        c.close()
