"""Failed authentications are rate-limited per address
(setstream.auth_failure_limit, README "The listener"), and an auth brute
force from one address does not starve a good client on another.

The limited addresses are loopback addresses other than 127.0.0.1 (the rest
of the suite's), each test its own (hostile.address), so that the tests do
not block each other or the suite.
"""

import math
import time

import pytest

import hostile
LIMIT = 30  # a failure drains every 2 s
NOW = b'{"returnImmediately":true}'  # a poll body that never waits


@pytest.fixture
def limited(gucs):
    gucs.set(auth_failure_limit=LIMIT)
    return gucs


@pytest.fixture
def good(streams):
    s = streams.create(peer_algs=("HS256",))
    g = hostile.GoodClient(s)
    yield g
    g.close()


def push_from(conn, stream, token):
    _, set_token = stream.set("HS256")
    return conn.request("POST", "/streams/%s/events" % stream.name,
                        [("Authorization", "Bearer " + token),
                         ("Content-Type", "application/secevent+jwt")], set_token)


def assert_429(resp):
    assert resp.status == 429, resp
    assert resp.header("Content-Type") == "application/json", resp.headers
    assert resp.header("Content-Language") == "en", resp.headers
    body = resp.json()
    # issue 13: a 429 body carries an "err" as well as a description
    assert body.get("err") == "rate_limited" and set(body) == {"err", "description"}, body
    assert "failed authentications" in body["description"], body
    retry = int(resp.header("Retry-After"))
    assert 1 <= retry <= math.ceil(60 / LIMIT), retry
    return retry


def test_failures_then_429_until_the_window_passes(limited, streams, db):
    s = streams.create(peer_algs=("HS256",))
    conn = hostile.raw_from(hostile.address(1))
    for i in range(LIMIT):
        assert_error_raw(push_from(conn, s, hostile.fake_token()), 401)
    resp = push_from(conn, s, hostile.fake_token())
    retry = assert_429(resp)
    # blocked: even the right token gets 429 (it is not even hashed)
    assert_429(push_from(conn, s, s.token))
    # and an unknown stream too: no lookup is made for a blocked address
    resp = conn.request("POST", "/streams/no-such-stream-x/poll",
                        [("Authorization", "Bearer " + s.token)], NOW)
    assert_429(resp)
    # jwks.json needs no authentication and stays open
    assert conn.request("GET", "/jwks.json").status == 200
    time.sleep(retry + 0.1)
    # one more attempt is allowed once the window has moved on
    assert push_from(conn, s, s.token).status == 202
    assert db.event_count(s.name) == 1


def test_successes_cost_nothing(limited, streams):
    s = streams.create(peer_algs=("HS256",))
    conn = hostile.raw_from(hostile.address(2))
    for _ in range(3 * LIMIT):
        assert push_from(conn, s, s.token).status == 202
    for _ in range(LIMIT):
        assert push_from(conn, s, hostile.fake_token()).status == 401
    assert_429(push_from(conn, s, hostile.fake_token()))


def test_other_addresses_unaffected(limited, streams):
    s = streams.create(peer_algs=("HS256",))
    bad = hostile.raw_from(hostile.address(3))
    for _ in range(LIMIT):
        bad.request("POST", "/streams/%s/poll" % s.name, [("Authorization", "Bearer x")], NOW)
    assert_429(bad.request("POST", "/streams/%s/poll" % s.name,
                           [("Authorization", "Bearer " + s.token)], NOW))
    other = hostile.raw_from(hostile.address(4))
    assert other.request("POST", "/streams/%s/poll" % s.name,
                         [("Authorization", "Bearer " + s.token)], NOW).status == 200


def test_websocket_upgrade_with_bad_auth_counts(limited, streams):
    s = streams.create(peer_algs=("HS256",))
    path = "/streams/%s/pushpull" % s.name
    for i in range(LIMIT):
        sock = hostile.connect_from(hostile.address(5))
        sock.sendall(hostile.ws_upgrade_request(path, hostile.fake_token()))
        status, headers, _ = hostile.read_status(sock)
        assert status == 401, (i, status)
        sock.close()
    sock = hostile.connect_from(hostile.address(5))
    sock.sendall(hostile.ws_upgrade_request(path, s.token))
    status, headers, _ = hostile.read_status(sock)
    assert status == 429 and int(headers["retry-after"]) >= 1, (status, headers)
    sock.close()


def test_missing_authorization_counts(limited, streams):
    s = streams.create(peer_algs=("HS256",))
    conn = hostile.raw_from(hostile.address(6))
    for _ in range(LIMIT):
        assert conn.request("POST", "/streams/%s/poll" % s.name, [], NOW).status == 401
    assert_429(conn.request("POST", "/streams/%s/poll" % s.name, [], NOW))


def test_zero_disables_the_limit(gucs, streams):
    gucs.set(auth_failure_limit=0)
    s = streams.create(peer_algs=("HS256",))
    conn = hostile.raw_from(hostile.address(7))
    for _ in range(60):
        assert push_from(conn, s, hostile.fake_token()).status == 401


def test_table_is_bounded_and_forgets_the_oldest(gucs, streams):
    """With a limit of 1, addresses A then B are blocked; failures from
    8191 other addresses fill the table (8192) and push out A, the least
    recently failed, but not B: A may try again while B is still blocked.
    (B shows that A was forgotten, not drained: with a limit of 1 a bucket
    drains in 60 s, and had the loop taken that long B would be free too.)"""
    gucs.set(auth_failure_limit=1)
    s = streams.create(peer_algs=("HS256",))
    path = "/streams/%s/poll" % s.name
    a = hostile.raw_from(hostile.address(100))
    b = hostile.raw_from(hostile.address(101))
    assert a.request("POST", path, [], NOW).status == 401
    assert a.request("POST", path, [], NOW).status == 429
    assert b.request("POST", path, [], NOW).status == 401
    assert b.request("POST", path, [], NOW).status == 429
    req = hostile.build_request("POST", path, [("Connection", "close")], NOW)
    # 8191 distinct addresses (with A and B: one more than the table
    # holds), 64 connections at a time
    addresses = hostile.other_net_addresses(8191)
    for i in range(0, len(addresses), 64):
        socks = [hostile.connect_from(addr) for addr in addresses[i:i + 64]]
        for sock in socks:
            sock.sendall(req)
        for sock in socks:
            status, _, _ = hostile.read_status(sock)
            assert status == 401, status
            sock.close()
    # B first: A's next failure makes room by forgetting B
    assert b.request("POST", path, [], NOW).status == 429, \
        "B is no longer blocked: the table forgot more than the oldest, or the loop " \
        "took 60 s and the buckets drained"
    assert a.request("POST", path, [], NOW).status == 401
    assert a.request("POST", path, [], NOW).status == 429


def assert_error_raw(resp, status):
    assert resp.status == status, resp
    assert resp.json().get("err") == "authentication_failed", resp


# ---------------------------------------------------------------------------
# the brute force, with a good client alongside
# ---------------------------------------------------------------------------

def brute_force(stop, ready, source, stream_name, set_token):
    """Wrong tokens as fast as the server answers, on keep-alive connections
    (reconnecting when closed), some as WebSocket upgrades."""
    counts = {}
    retry_after = set()
    first_429_after = None
    n = 0
    conn = hostile.connect_from(source)
    push = "/streams/%s/events" % stream_name
    while not stop.is_set():
        if n % 10 == 9:
            req = hostile.ws_upgrade_request("/streams/%s/pushpull" % stream_name,
                                             hostile.fake_token())
        else:
            req = hostile.build_request(
                "POST", push, [("Authorization", "Bearer " + hostile.fake_token()),
                               ("Content-Type", "application/secevent+jwt")], set_token)
        conn.sendall(req)
        answer = hostile.read_status(conn)
        if answer is None:
            conn.close()
            conn = hostile.connect_from(source)
            continue
        status, headers, _ = answer
        counts[status] = counts.get(status, 0) + 1
        if status == 429:
            retry_after.add(headers.get("retry-after"))
            if first_429_after is None:
                first_429_after = n
        if headers.get("connection") == "close":
            conn.close()
            conn = hostile.connect_from(source)
        n += 1
        if n == 50:
            ready.set()
    conn.close()
    return {"counts": counts, "retry_after": sorted(retry_after, key=str),
            "first_429_after": first_429_after}


def test_auth_brute_force(limited, good, db):
    s = good.stream
    _, set_token = s.set("HS256")
    started = time.monotonic()
    sources = iter(range(200, 210))  # a fresh address for each try

    def attack():
        return hostile.Attack(brute_force, hostile.address(next(sources)), s.name, set_token)
    _, _, report = hostile.measure(good, attack, label="auth brute force")
    elapsed = time.monotonic() - started
    counts = report["counts"]
    # the first LIMIT failures are 401s, then everything is 429 but for the
    # one attempt per 60/LIMIT s that the draining bucket allows
    allowed = LIMIT + elapsed * LIMIT / 60 + 1
    assert LIMIT <= report["first_429_after"] <= allowed, report
    assert counts.get(401, 0) <= allowed, report
    assert counts.get(429, 0) > 10 * counts.get(401, 0), report
    assert set(counts) <= {401, 429}, report
    assert report["retry_after"], report
    assert all(1 <= int(r) <= 60 // LIMIT for r in report["retry_after"]), report
    hostile.assert_only_good_stored(db, good)
