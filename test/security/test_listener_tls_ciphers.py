"""Issue 11, item 8: the listener's TLS offers TLS 1.3 first and, on TLS 1.2,
only ECDHE key exchange with AEAD ciphers (Mozilla "intermediate"): a
client limited to CBC/SHA-1 suites or static RSA key exchange fails the
handshake.  The listener runs with TLS for this module (the fixtures of
test/protocol/test_listener_tls.py).
"""

import shutil
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


def handshake(ctx):
    sock = socket.create_connection((ls.HOST, ls.PORT), timeout=5)
    try:
        with ctx.wrap_socket(sock, server_hostname=ls.HOST) as t:
            return t.version(), t.cipher()[0]
    finally:
        sock.close()


def test_tls13_preferred(tls):
    version, _ = handshake(tls_context(tls))
    assert version == "TLSv1.3"


def test_tls12_ecdhe_aead(tls):
    ctx = tls_context(tls, maximum=ssl.TLSVersion.TLSv1_2)
    version, cipher = handshake(ctx)
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher


@pytest.mark.parametrize("ciphers", [
    "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384",
    "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA",
], ids=["cbc-sha1", "cbc-sha2", "static-rsa"])
def test_tls12_weak_suites_refused(tls, ciphers):
    ctx = tls_context(tls, maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(ciphers + ":@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        handshake(ctx)


@pytest.fixture
def rsa_tls(tls, gucs):
    """The listener with an RSA certificate (static RSA key exchange is
    possible with it at all) for one test; the module's ECDSA one after."""
    d, cert, key = _support.make_cert("setstream-rsa-", ["-newkey", "rsa:2048"])
    try:
        gucs.set(tls_cert_file=cert, tls_key_file=key)
        deadline = time.monotonic() + 10
        while True:
            try:
                handshake(tls_context(cert))
                break
            except (ssl.SSLError, OSError):
                assert time.monotonic() < deadline, "the listener did not load the RSA certificate"
                time.sleep(0.1)
        yield cert
    finally:
        gucs.restore()
        shutil.rmtree(d, ignore_errors=True)


def test_tls12_static_rsa_refused_with_an_rsa_certificate(rsa_tls):
    ctx = tls_context(rsa_tls, maximum=ssl.TLSVersion.TLSv1_2)
    version, cipher = handshake(ctx)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-RSA-") and "GCM" in cipher, cipher
    for weak in ("AES128-GCM-SHA256:AES256-GCM-SHA384", "AES128-SHA:AES256-SHA",
                 "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA"):
        ctx = tls_context(rsa_tls, maximum=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(weak + ":@SECLEVEL=0")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            handshake(ctx)
