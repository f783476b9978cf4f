"""The failed-authentication limit over IPv6, on the listener's ::1 socket:
addresses count by /64 prefix.  Two addresses of one /64 share a bucket;
an address of another /64, and ::1, do not.

The client addresses come from a unique-local /48 routed to the loopback
device for the test (`ip -6 route add local ... dev lo`, removed after),
bound with IPV6_FREEBIND: that needs root, as CI runs the suite.  Run as
another user the test is skipped, except with CI=true, where it fails.
"""

import contextlib
import os
import random
import socket
import subprocess

import pytest

import listener_support as ls

IPV6_FREEBIND = 78  # linux/in6.h
LIMIT = 2


@pytest.fixture
def prefix():
    """A /48 of fd00:5e75::/32, local on lo while the test runs."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root to route a test prefix to lo (CI=true)")
        pytest.skip("needs root to route a test prefix to lo")
    p = "fd00:5e75:%x" % random.randrange(1, 0xffff)
    subprocess.run(["ip", "-6", "route", "add", "local", p + "::/48", "dev", "lo"],
                   check=True, capture_output=True, timeout=10)
    try:
        yield p
    finally:
        subprocess.run(["ip", "-6", "route", "del", "local", p + "::/48", "dev", "lo"],
                       capture_output=True, timeout=10)


def conn_from(source):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("::1", ls.PORT))
    return ls.RawConn(timeout=5, sock=sock)


def status_from(source, stream):
    with contextlib.closing(conn_from(source)) as c:
        return c.request("POST", "/streams/%s/poll" % stream.name,
                         [("Authorization", "Bearer sst_wrong")], b"{}").status


def test_ipv6_failures_count_by_64(gucs, streams, prefix):
    # the listener serves ::1 (scripts/test.sh: listen_addresses '127.0.0.1,::1')
    c = ls.RawConn(timeout=5, sock=socket.create_connection(("::1", ls.PORT), timeout=5))
    with contextlib.closing(c):
        assert c.request("GET", "/jwks.json").status == 200
    gucs.set(auth_failure_limit=LIMIT)
    s = streams.create()
    a1, a2 = prefix + ":1::a", prefix + ":1::b"     # one /64
    b = prefix + ":2::a"                           # another /64
    assert [status_from(a1, s) for _ in range(LIMIT)] == [401] * LIMIT
    assert status_from(a1, s) == 429
    assert status_from(a2, s) == 429, "another address of the same /64 is not limited"
    assert status_from(b, s) == 401, "an address of another /64 is limited too"
    assert status_from("::1", s) == 401
