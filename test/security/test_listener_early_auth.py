"""Issue 11, item 5: a request is authorized on its headers, before its
body is read or buffered, and the bytes a listener buffers are bounded.

An unauthenticated client used to get `100 Continue` and have its whole
body (up to setstream.max_request_bytes, 1 MiB) buffered before any check:
a few thousand such connections held about a gigabyte per worker.  Now:

* 401 (missing or wrong token, unknown stream), 404 (no such route), 405
  and 429 (too many failures) are answered as soon as the headers are in,
  before `100 Continue` and without waiting for the body;
* a refused request's body is read past without being kept (the
  connection stays usable), or, when the client waits for `100 Continue`,
  the connection closes;
* setstream.max_buffered_bytes bounds the request bytes buffered across all
  connections of a worker: past it, 503 with Retry-After.
"""

import time

import pytest

from listener_support import RawConn, build_request, jdump

BIG = 1024 * 1024 - 1000


def padded_poll(size):
    """A poll body (returnImmediately) of exactly size bytes."""
    body = jdump({"returnImmediately": True}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def head_only(path, length, token=None, expect=False, content_type="application/json"):
    headers = [("Content-Type", content_type), ("Content-Length", str(length))]
    if token:
        headers.append(("Authorization", "Bearer " + token))
    if expect:
        headers.append(("Expect", "100-continue"))
    return build_request("POST", path, headers)


@pytest.mark.parametrize("case", ["no-token", "wrong-token", "unknown-stream", "no-route"])
def test_refused_before_100_continue(raw, streams, case):
    s = streams.create()
    path, token, status = {
        "no-token": ("/streams/%s/events" % s.name, None, 401),
        "wrong-token": ("/streams/%s/poll" % s.name, "x" * 40, 401),
        "unknown-stream": ("/streams/nx-%s/pushpull" % s.name, s.token, 401),
        "no-route": ("/nothing/here", s.token, 404),
    }[case]
    c = raw(timeout=3)
    c.send(head_only(path, BIG, token, expect=True))
    r = c.read_response()
    assert r.status == status, r          # not 100 Continue
    assert r.header("Connection") == "close", r.headers
    if status == 401:
        assert (r.header("WWW-Authenticate") or "").startswith("Bearer"), r.headers


def test_refused_without_waiting_for_the_body(raw, streams):
    """No Expect header: the 401 comes while the body is still unsent, and
    after the body (read past, not kept) the connection serves the next
    request."""
    s = streams.create()
    c = raw(timeout=3)
    c.send(head_only("/streams/%s/poll" % s.name, BIG, None))
    started = time.monotonic()
    r = c.read_response()
    assert r.status == 401, r
    assert time.monotonic() - started < 2
    c.send(padded_poll(BIG))
    r = c.request("POST", "/streams/%s/poll" % s.name,
                  [("Authorization", "Bearer " + s.token),
                   ("Content-Type", "application/json")],
                  jdump({"returnImmediately": True}))
    assert r.status == 200, r


def test_429_before_the_body(raw, streams, gucs):
    gucs.set(auth_failure_limit=2)
    s = streams.create()
    # from an address of its own, so that other tests' failures do not count
    import socket
    from listener_support import HOST, PORT
    addr = "127.0.%d.%d" % (int(time.time()) % 200 + 20, int(time.time() * 7) % 250 + 2)

    def conn():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((addr, 0))
        sock.settimeout(3)
        sock.connect((HOST, PORT))
        return RawConn(timeout=3, sock=sock)

    for _ in range(2):
        c = conn()
        c.send(head_only("/streams/%s/events" % s.name, BIG, "bad", expect=True,
                         content_type="application/secevent+jwt"))
        assert c.read_response().status == 401
        c.close()
    c = conn()
    c.send(head_only("/streams/%s/events" % s.name, BIG, s.token, expect=True,
                     content_type="application/secevent+jwt"))
    r = c.read_response()
    c.close()
    assert r.status == 429, r
    assert r.header("Retry-After"), r.headers


def test_authorized_request_gets_100_continue(raw, streams):
    s = streams.create()
    c = raw(timeout=3)
    body = jdump({"returnImmediately": True})
    c.send(head_only("/streams/%s/poll" % s.name, len(body), s.token, expect=True))
    r = c.read_response()
    assert r.status == 100, r
    c.send(body.encode())
    assert c.read_response().status == 200


def test_buffered_bytes_bounded_across_connections(raw, streams, gucs):
    gucs.set(max_buffered_bytes=256 * 1024)
    s = streams.create()
    path = "/streams/%s/poll" % s.name
    first = raw(timeout=3)
    first.send(head_only(path, 200000, s.token))
    body = padded_poll(200000)
    first.send(body[:150000])               # held by the listener
    time.sleep(0.3)
    second = raw(timeout=3)
    second.send(head_only(path, 200000, s.token))
    r = second.read_response()
    assert r.status == 503, r
    assert r.header("Retry-After"), r.headers
    # the first one completes; then there is room again
    first.send(body[150000:])
    assert first.read_response().status == 200
    third = raw(timeout=3)
    r = third.request("POST", path, [("Authorization", "Bearer " + s.token),
                                     ("Content-Type", "application/json")],
                      padded_poll(200000))
    assert r.status == 200, r
