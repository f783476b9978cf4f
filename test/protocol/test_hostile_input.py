"""Hostile input: oversized headers, bodies and WebSocket frames, and
pipelined garbage, each sent over and over beside a good client whose push
rate must hold (hostile.py).

Documented answers (README "Limits", "The pushpull WebSocket binding"):
headers past 16 KiB get 431, a body past setstream.max_request_bytes 413
(answered before the body is read), a WebSocket message past it close code
1009, and malformed HTTP 400, each followed by the connection closing.
"""

import functools
import socket
import time

import pytest

import hostile

MAX_REQUEST_BYTES = 65536


@pytest.fixture
def good(streams, gucs):
    gucs.set(max_request_bytes=MAX_REQUEST_BYTES)
    s = streams.create(peer_algs=("HS256",))
    g = hostile.GoodClient(s)
    yield g
    g.close()


def answer_and_close(sock, timeout=5.0):
    """"status/Connection header/closed": the answer, what it announced, and
    whether the server then closed the connection."""
    answer = hostile.read_status(sock, timeout)
    if answer is None:
        return "none"
    status, headers, _ = answer
    closed = hostile.closed_by_server(sock, timeout)
    return "%s/%s/%s" % (status, headers.get("connection"), "closed" if closed else "open")


def repeat(stop, ready, once):
    """Run once() on fresh connections until stopped; count what it returns."""
    counts = {}
    n = 0
    while not stop.is_set():
        sock = hostile.connect_from(hostile.ATTACKER_ADDRESS)
        try:
            key = once(sock)
        except (ConnectionResetError, BrokenPipeError):
            key = "reset"
        finally:
            sock.close()
        counts[key] = counts.get(key, 0) + 1
        n += 1
        if n == 5:
            ready.set()
    return {"counts": counts}


def oversized_headers(stop, ready, stream_name):
    request = ("POST /streams/%s/events HTTP/1.1\r\nHost: x\r\n" % stream_name).encode()
    request += b"".join(b"X-Junk-%d: %s\r\n" % (i, b"j" * 1000) for i in range(20))
    request += b"Content-Length: 2\r\n\r\n{}"

    def once(sock):
        sock.sendall(request)
        return answer_and_close(sock)
    return repeat(stop, ready, once)


def oversized_body(stop, ready, stream_name, token):
    head = ("POST /streams/%s/events HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/secevent+jwt\r\n"
            "Content-Length: %d\r\n\r\n" % (stream_name, token, 100 * MAX_REQUEST_BYTES)).encode()

    def once(sock):
        sock.sendall(head + b"e" * 8192)
        return answer_and_close(sock)
    return repeat(stop, ready, once)


def oversized_chunked_body(stop, ready, stream_name, token):
    head = ("POST /streams/%s/events HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/secevent+jwt\r\n"
            "Transfer-Encoding: chunked\r\n\r\n" % (stream_name, token)).encode()
    chunk = b"4000\r\n" + b"c" * 0x4000 + b"\r\n"

    def once(sock):
        sock.sendall(head)
        try:
            for _ in range(MAX_REQUEST_BYTES // 0x4000 + 2):
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return answer_and_close(sock)
    return repeat(stop, ready, once)


def oversized_ws_frame(stop, ready, stream_name, token):
    path = "/streams/%s/pushpull" % stream_name

    def once(sock):
        sock.sendall(hostile.ws_upgrade_request(path, token))
        sock.sendall(hostile.oversized_frame_head(MAX_REQUEST_BYTES + 1) + b"x" * 4096)
        return hostile.close_code_of(sock)
    return repeat(stop, ready, once)


def pipelined_garbage(stop, ready):
    good_request = hostile.build_request("GET", "/jwks.json")
    garbage = good_request + b"\x16\x03\x01\x02\x00GET / HTTP/9.9\r\n\x00\xff\r\n\r\n" * 50

    def once(sock):
        sock.sendall(garbage)
        return ",".join(str(s) for s in hostile.statuses_until_close(sock))
    return repeat(stop, ready, once)


def check(good, db, attack, label, expected):
    """The attack got only the expected answers; nothing it sent is stored."""
    _, _, report = hostile.measure(good, attack, label=label)
    counts = report["counts"]
    assert set(counts) == {expected}, report
    assert counts[expected] >= 5, report
    hostile.assert_only_good_stored(db, good)


def test_oversized_headers(good, db):
    check(good, db, functools.partial(hostile.Attack, oversized_headers, good.stream.name),
          "oversized headers", "431/close/closed")


def test_oversized_body(good, db):
    check(good, db, functools.partial(hostile.Attack, oversized_body, good.stream.name,
                                      good.stream.token),
          "oversized body (Content-Length)", "413/close/closed")


def test_oversized_chunked_body(good, db):
    check(good, db, functools.partial(hostile.Attack, oversized_chunked_body,
                                      good.stream.name, good.stream.token),
          "oversized body (chunked)", "413/close/closed")


def test_oversized_websocket_frame(good, db):
    check(good, db, functools.partial(hostile.Attack, oversized_ws_frame, good.stream.name,
                                      good.stream.token),
          "oversized WebSocket frame", 1009)


def test_pipelined_garbage(good, db):
    check(good, db, functools.partial(hostile.Attack, pipelined_garbage),
          "pipelined garbage", "200,400,close")
