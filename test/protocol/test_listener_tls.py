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


def make_cert(prefix, newkey):
    """A self-signed certificate for localhost and 127.0.0.1 in a new
    directory, readable by the server's OS user: (dir, cert.pem, key.pem).
    newkey: openssl req's key arguments, e.g. ["-newkey", "rsa:2048"]."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509"] + newkey +
        ["-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    if os.geteuid() == 0:
        # the server runs as postgres when the tests run as root
        pg = pwd.getpwnam("postgres")
        for f in (d, cert, key):
            os.chown(f, pg.pw_uid, pg.pw_gid)
    return d, cert, key


@pytest.fixture(scope="module")
def cert_dir():
    """cert.pem / key.pem (P-256), readable by the server's OS user."""
    d, cert, key = make_cert("setstream-tls-",
                             ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
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


def plain_http_bytes(timeout=3.0):
    """Send GET /jwks.json in plain HTTP; every byte the server sends back
    before it closes the connection (b"" when it closes, or resets, at
    once).  A server that keeps the connection open fails the caller with
    a timeout."""
    sock = socket.create_connection((ls.HOST, ls.PORT), timeout=timeout)
    data = b""
    try:
        try:
            sock.sendall(ls.build_request("GET", "/jwks.json"))
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    finally:
        sock.close()
    return data


def assert_no_http_answer(data):
    """No HTTP came back: nothing, or a TLS alert record (content type 21)."""
    assert data == b"" or data[:1] == b"\x15", \
        "plain HTTP got an answer that is no TLS alert: %r" % data[:200]


def test_tls_on_then_reset_plain_http_again(listener, cert_dir):
    """Switch TLS on with a reload, then RESET and reload: plain HTTP works
    again.  (First in the module: it runs before the module's `tls`
    fixture switches TLS on for the tests below.)"""
    _, cert, key = cert_dir
    gucs = ls.Gucs(listener)
    try:
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        wait_tls(cert, True)
        # the server closes a plain HTTP connection with no HTTP answer
        assert_no_http_answer(plain_http_bytes())
    finally:
        gucs.restore()
    wait_tls(cert, False)
    c = ls.RawConn()
    try:
        assert c.request("GET", "/jwks.json").status == 200
    finally:
        c.close()


def assert_serves_nothing(cert):
    """Neither plain HTTP nor a TLS handshake gets anywhere."""
    for _ in range(3):
        assert_no_http_answer(plain_http_bytes())
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_conn(tls_context(cert), timeout=3).close()
        time.sleep(0.1)


@pytest.mark.parametrize("broken", ["missing cert", "garbage key", "no key"])
def test_tls_files_that_cannot_load_serve_nothing(listener, cert_dir, broken):
    """tls_cert_file / tls_key_file set to files that cannot be loaded: the
    listener serves nothing (never plain HTTP) and logs an ERROR with
    OpenSSL's reason; a reload with good files then switches TLS on.
    (Before the module's `tls` fixture: this starts from plain HTTP.)"""
    d, cert, key = cert_dir
    garbage = os.path.join(d, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    os.chmod(garbage, 0o644)
    settings, reason = {
        "missing cert": (dict(tls_cert_file=os.path.join(d, "no-such-cert.pem"),
                              tls_key_file=key),
                         r"could not load setstream\.tls_cert_file / setstream\.tls_key_file: "
                         r".*No such file or directory"),
        "garbage key": (dict(tls_cert_file=cert, tls_key_file=garbage),
                        r"could not load setstream\.tls_cert_file / setstream\.tls_key_file: "
                        r"error:[0-9A-F]+:"),
        "no key": (dict(tls_cert_file=cert, tls_key_file=""),
                   r"TLS needs both setstream\.tls_cert_file and setstream\.tls_key_file"),
    }[broken]
    log = ls.ServerLog()
    gucs = ls.Gucs(listener)
    try:
        gucs.set(**settings)
        text = log.wait_for(r"ERROR:\s+setstream: " + reason)
        assert "(null)" not in text
        log.wait_for(r"HINT:\s+The listener serves no connection \(never plain HTTP\)")
        assert_serves_nothing(cert)
        # good files and a reload: TLS, not plain HTTP
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        wait_tls(cert, True)
        assert_no_http_answer(plain_http_bytes())
    finally:
        gucs.restore()
    wait_tls(cert, False)


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


def test_reload_with_bad_files_keeps_the_working_context(listener, tls, cert_dir):
    """While TLS works, a reload with a certificate that cannot be loaded
    keeps the previous context (https still works, plain HTTP still gets
    nothing) and the log says so, with OpenSSL's reason."""
    d, cert, _ = cert_dir
    log = ls.ServerLog()
    gucs = ls.Gucs(listener)
    try:
        gucs.set(tls_cert_file=os.path.join(d, "no-such-cert.pem"))
        log.wait_for(r"ERROR:\s+setstream: could not load setstream\.tls_cert_file / "
                     r"setstream\.tls_key_file: .*No such file or directory")
        log.wait_for(r"HINT:\s+The listener keeps the previous TLS configuration")
        c = tls_conn(tls_context(tls))
        try:
            assert c.request("GET", "/jwks.json").status == 200
        finally:
            c.close()
        assert_no_http_answer(plain_http_bytes())
    finally:
        gucs.restore()
    wait_tls(tls, True)
