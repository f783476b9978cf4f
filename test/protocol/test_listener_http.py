"""HTTP/1.1 behaviour of the listener, mostly over raw sockets.

Keep-alive, pipelining, chunked bodies, Expect: 100-continue, requests that
arrive in tiny pieces, malformed requests (400, then the connection
closes), the header (431) and URL (414) limits, setstream.idle_timeout and
setstream.max_connections.
"""

import json
import socket
import time

import pytest

import listener_support as ls
from listener_support import build_request, jdump


@pytest.fixture
def stream(streams):
    return streams.create(signing_alg="ES256")


def auth(stream, content_type="application/json"):
    return [("Authorization", "Bearer " + stream.token), ("Content-Type", content_type)]


def poll_request(stream, body=None):
    return build_request("POST", "/streams/%s/poll" % stream.name, auth(stream),
                         jdump({"returnImmediately": True} if body is None else body))


def push_request(stream, token, extra=()):
    return build_request("POST", "/streams/%s/events" % stream.name,
                         auth(stream, ls.SET_TYPE) + list(extra), token)


def wait_connections(db, n, timeout=5.0):
    """Wait until the listener holds n client connections."""
    deadline = time.monotonic() + timeout
    while True:
        got = db.open_connections()
        if got == n:
            return
        assert time.monotonic() < deadline, "listener holds %d connections, not %d" % (got, n)
        time.sleep(0.02)


# ---------------------------------------------------------------------------
# keep-alive and pipelining
# ---------------------------------------------------------------------------

def test_keep_alive_with_requests_session(client, stream):
    r1 = client.get("/jwks.json")
    r2 = client.poll(stream)
    r3 = client.get("/nope")
    assert (r1.status_code, r2.status_code, r3.status_code) == (200, 200, 404)
    for r in (r1, r2, r3):
        assert r.headers.get("Connection") == "keep-alive", r.headers
    # every pool the session holds (requests 2.32 keys its pool by TLS
    # settings too, so connection_from_url would make another, empty one)
    pools = client.session.get_adapter(ls.URL).poolmanager.pools
    opened = sum(pools[key].num_connections for key in pools.keys())
    assert opened == 1  # one TCP connection for the three


def test_keep_alive_raw(raw, stream):
    c = raw()
    for _ in range(3):
        r = c.request("GET", "/jwks.json")
        assert r.status == 200 and r.header("Connection") == "keep-alive"
        r = c.request("POST", "/streams/%s/poll" % stream.name, auth(stream),
                      jdump({"returnImmediately": True}))
        assert r.status == 200, r
        assert r.json() == {"sets": {}, "moreAvailable": False}
    assert not c.closed_within(0.3)


def test_connection_close_is_honoured(raw):
    c = raw()
    r = c.request("GET", "/jwks.json", [("Connection", "close")])
    assert r.status == 200
    assert r.header("Connection") == "close"
    assert c.closed_within(3)


def test_http10_closes_after_response(raw):
    c = raw()
    r = c.request("GET", "/jwks.json", version="HTTP/1.0")
    assert r.status == 200
    assert r.header("Connection") == "close"
    assert c.closed_within(3)


def test_pipelining_answers_in_order(raw, db, stream):
    jti = db.emit(stream.name)
    c = raw()
    c.send(build_request("GET", "/jwks.json")
           + build_request("GET", "/nope")
           + poll_request(stream)
           + build_request("POST", "/streams/%s/poll" % stream.name, [],
                           jdump({"returnImmediately": True}))
           + poll_request(stream))
    r = [c.read_response() for _ in range(5)]
    assert [x.status for x in r] == [200, 404, 200, 401, 200]
    assert "keys" in r[0].json()
    assert list(r[2].json()["sets"]) == [jti]
    assert r[4].json()["sets"] == {}
    assert not c.closed_within(0.3)


def test_pipelined_pushes_all_stored(raw, db, stream):
    sets = [stream.set() for _ in range(4)]
    c = raw()
    c.send(b"".join(push_request(stream, tok) for _, tok in sets))
    for _ in sets:
        r = c.read_response()
        assert r.status == 202, r
        assert r.body == b""
    assert sorted(e["jti"] for e in db.events(stream.name)) == sorted(j for j, _ in sets)


def test_pipelined_request_behind_a_long_poll_waits_its_turn(raw, db, gucs, stream):
    gucs.set(poll_timeout="10000")
    c = raw()
    c.send(build_request("POST", "/streams/%s/poll" % stream.name, auth(stream), b"{}")
           + build_request("GET", "/jwks.json"))
    db.wait_parked(stream.name)
    jti = db.emit(stream.name)
    r1 = c.read_response()
    r2 = c.read_response()
    assert r1.status == 200 and list(r1.json()["sets"]) == [jti]
    assert r2.status == 200 and "keys" in r2.json()


def test_request_in_tiny_pieces(raw, db, stream):
    jti, tok = stream.set()
    data = push_request(stream, tok)
    c = raw()
    for i in range(0, len(data), 7):
        c.send(data[i:i + 7])
        if i % 140 == 0:
            time.sleep(0.002)
    r = c.read_response()
    assert r.status == 202, r
    assert [e["jti"] for e in db.events(stream.name)] == [jti]


# ---------------------------------------------------------------------------
# bodies
# ---------------------------------------------------------------------------

def test_chunked_body(raw, db, stream):
    jti, tok = stream.set()
    data = tok.encode()
    parts = [data[:10], data[10:200], data[200:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    c = raw()
    c.send(build_request("POST", "/streams/%s/events" % stream.name,
                         auth(stream, ls.SET_TYPE) + [("Transfer-Encoding", "chunked")],
                         body, content_length=False))
    r = c.read_response()
    assert r.status == 202, r
    rows = db.events(stream.name)
    assert [(e["jti"], e["token"]) for e in rows] == [(jti, tok)]
    # and the connection goes on
    assert c.request("GET", "/jwks.json").status == 200


def test_chunked_body_with_requests(client, db, stream):
    jti, tok = stream.set()
    data = tok.encode()
    r = client.request("POST", "/streams/%s/events" % stream.name, token=stream.token,
                       headers={"Content-Type": ls.SET_TYPE},
                       data=iter([data[:50], data[50:]]))
    assert r.status_code == 202, r.text
    assert [e["jti"] for e in db.events(stream.name)] == [jti]


def test_expect_100_continue(raw, db, stream):
    jti, tok = stream.set()
    c = raw()
    c.send(build_request("POST", "/streams/%s/events" % stream.name,
                         auth(stream, ls.SET_TYPE) + [("Expect", "100-continue"),
                                                      ("Content-Length", str(len(tok)))]))
    interim = c.read_response()
    assert interim.status == 100, interim
    c.send(tok.encode())
    r = c.read_response()
    assert r.status == 202, r
    assert [e["jti"] for e in db.events(stream.name)] == [jti]


def test_expect_100_continue_refused_when_too_large(raw, stream):
    """An over-size body is refused at once, without 100 Continue."""
    c = raw()
    c.send(build_request("POST", "/streams/%s/events" % stream.name,
                         auth(stream, ls.SET_TYPE) + [("Expect", "100-continue"),
                                                      ("Content-Length", str(1 << 30))]))
    r = c.read_response()
    assert r.status == 413, r


# ---------------------------------------------------------------------------
# malformed requests and limits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /jwks.json HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /jwks.json FTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /jwks.json HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /jwks.json HTTP/1.1\r\nHost: x\r\nX\x01Y: y\r\n\r\n",
    # RFC 9112 5.1: whitespace between field name and colon MUST get a 400
    # (the classic request smuggling vector "Transfer-Encoding : chunked")
    b"GET /jwks.json HTTP/1.1\r\nHost : x\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,  # a TLS ClientHello
    b"POST /jwks.json HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /jwks.json HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST /jwks.json HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["garbage", "no-target", "extra-token", "not-http", "header-no-colon",
        "ctl-in-name", "space-before-colon", "tls-hello", "bad-length", "two-lengths", "bad-chunk"])
def test_malformed_request_400_then_close(raw, data):
    c = raw()
    c.send(data)
    r = c.read_response()
    if r.status == 405 and b"chunked" in data:
        # refused on its headers, before its body is read (issue 11); the
        # body is then read past, and its malformed chunk ends the connection
        r = c.read_response()
    assert r.status == 400, r
    assert r.header("Connection") == "close"
    assert r.json().get("err") == "invalid_request"
    assert c.closed_within(3)


def test_malformed_request_after_a_good_one(raw):
    c = raw()
    c.send(build_request("GET", "/jwks.json") + b"GARBAGE\r\n\r\n")
    assert c.read_response().status == 200
    r = c.read_response()
    assert r.status == 400
    assert c.closed_within(3)


def test_http11_without_host_400(raw):
    """RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request
    without Host."""
    c = raw()
    c.send(b"GET /jwks.json HTTP/1.1\r\n\r\n")
    r = c.read_response()
    assert r.status == 400, r


def test_content_length_and_chunked_closes_after(raw, stream):
    """RFC 9112 6.1: with both Content-Length and Transfer-Encoding, the
    server may refuse (400) or go by the chunking, and MUST close after."""
    c = raw()
    c.send(b"POST /streams/%s/poll HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
           % (stream.name.encode(), stream.token.encode()))
    r = c.read_response()
    assert r.status in (400, 200), r
    assert c.closed_within(3)


def test_headers_over_16k_431(raw):
    c = raw()
    c.send(build_request("GET", "/jwks.json", [("X-Big", "a" * 17000)]))
    r = c.read_response()
    assert r.status == 431, r
    assert c.closed_within(3)


def test_many_headers_over_16k_431(raw):
    c = raw()
    c.send(build_request("GET", "/jwks.json",
                         [("X-H%03d" % i, "b" * 100) for i in range(200)]))
    r = c.read_response()
    assert r.status == 431, r
    assert c.closed_within(3)


def test_headers_under_16k_accepted(raw):
    c = raw()
    r = c.request("GET", "/jwks.json", [("X-H%02d" % i, "c" * 100) for i in range(100)])
    assert r.status == 200, r


def test_url_over_limit_414(raw):
    c = raw()
    c.send(build_request("GET", "/jwks.json?" + "q" * 3000))
    r = c.read_response()
    assert r.status == 414, r
    assert c.closed_within(3)


# ---------------------------------------------------------------------------
# idle_timeout
# ---------------------------------------------------------------------------

def _time_to_close(c, limit):
    t0 = time.monotonic()
    assert c.closed_within(limit), "still open after %.1fs" % limit
    return time.monotonic() - t0


def test_idle_timeout_closes_silent_connection(raw, gucs):
    gucs.set(idle_timeout="1000")
    c = raw()
    elapsed = _time_to_close(c, 4)
    assert 0.8 <= elapsed <= 2.0, elapsed


def test_idle_timeout_after_a_request(raw, gucs):
    gucs.set(idle_timeout="1000")
    c = raw()
    assert c.request("GET", "/jwks.json").status == 200
    elapsed = _time_to_close(c, 4)
    assert 0.8 <= elapsed <= 2.0, elapsed


def test_idle_timeout_closes_incomplete_request(raw, gucs, stream):
    gucs.set(idle_timeout="1000")
    c = raw()
    c.send(b"POST /streams/%s/poll HTTP/1.1\r\nHost: x\r\n" % stream.name.encode())
    elapsed = _time_to_close(c, 4)
    assert 0.8 <= elapsed <= 2.0, elapsed


def _closed_or_answered(c, seconds):
    """The server closed the connection (perhaps after an answer such as
    408) within seconds."""
    c.sock.settimeout(seconds)
    try:
        c.sock.recv(65536)
    except socket.timeout:
        return False
    except OSError:
        return True
    return True


def test_idle_timeout_closes_slow_sender(raw, gucs, stream):
    """A peer trickling a request a byte at a time (slowloris) must not hold
    a connection forever: a request not complete after idle_timeout is
    closed ("idle or slow client connections are closed after this long")."""
    gucs.set(idle_timeout="1000")
    c = raw()
    data = poll_request(stream)
    t0 = time.monotonic()
    closed = False
    for i in range(len(data) - 1):  # never the last byte
        try:
            c.sock.send(data[i:i + 1])
        except OSError:
            closed = True
            break
        if _closed_or_answered(c, 0.25):
            closed = True
            break
        if time.monotonic() - t0 > 4:
            break
    assert closed, "a slow sender kept its connection for %.1fs" % (time.monotonic() - t0)
    assert time.monotonic() - t0 <= 2.5


def test_idle_timeout_spares_parked_long_poll(gucs, db, stream):
    gucs.set(idle_timeout="1000", poll_timeout="2500")
    client = ls.Client()
    try:
        t0 = time.monotonic()
        r = client.poll(stream, {}, timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        client.close()
    assert r.status_code == 200, r.text
    assert r.json()["sets"] == {}
    assert 2.3 <= elapsed < 4.0, elapsed


# ---------------------------------------------------------------------------
# max_connections
# ---------------------------------------------------------------------------

def _read_until_close(c):
    data = b""
    while True:
        try:
            chunk = c.sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_max_connections(db, gucs):
    gucs.set(max_connections="5")
    wait_connections(db, 0)
    conns = []
    try:
        for _ in range(5):
            c = ls.RawConn()
            conns.append(c)
            assert c.request("GET", "/jwks.json").status == 200
        wait_connections(db, 5)

        # the sixth is answered 503 and closed
        extra = ls.RawConn()
        conns.append(extra)
        refused = _read_until_close(extra)
        head, _, body = refused.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 503 "), refused
        headers = {k.strip().lower(): v.strip()
                   for k, v in (line.split(":", 1) for line in lines[1:])}
        assert "retry-after" in headers, headers
        assert headers.get("connection") == "close", headers

        # the others still work
        for c in conns[:5]:
            assert c.request("GET", "/jwks.json").status == 200

        # one goes away: there is room for a new one
        conns[0].close()
        wait_connections(db, 4)
        again = ls.RawConn()
        conns.append(again)
        assert again.request("GET", "/jwks.json").status == 200

        # and the 503 was a well-formed response: its body is as long as
        # its Content-Length says, and carries an "err" (issue 13)
        assert int(headers["content-length"]) == len(body), (headers, body)
        assert json.loads(body) == {"err": "temporarily_unavailable",
                                    "description": "too many connections; try again shortly"}
    finally:
        for c in conns:
            c.close()
