"""Hostile connections: slowloris (headers trickled a byte at a time) and
idle connections past setstream.max_connections, each beside a good client
whose push rate must hold (hostile.py).

Documented answers (README "Limits"): a request must arrive whole within
setstream.idle_timeout, however slowly its bytes trickle, or the connection
is closed; past setstream.max_connections a new connection gets 503 with
Retry-After and is closed.
"""

import functools
import socket
import time

import pytest

import hostile

IDLE_TIMEOUT_MS = 1500


@pytest.fixture
def good(streams):
    s = streams.create(peer_algs=("HS256",))
    g = hostile.GoodClient(s)
    yield g
    g.close()


def slowloris(stop, ready, n, stream_name):
    """n connections, each sending a request head one byte per round,
    round after round, until the server closes it; records how long each
    lived and whether it was ever answered."""
    head = ("POST /streams/%s/events HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/secevent+jwt\r\n" % stream_name).encode()
    head += b"X-Padding: " + b"a" * 4000
    conns = []
    for i in range(n):
        sock = hostile.connect_from(hostile.address(10 + i % 50))
        sock.setblocking(False)
        conns.append([sock, time.monotonic(), 0, None])  # sock, opened, sent, lived
    ready.set()
    answered = 0
    deadline = time.monotonic() + IDLE_TIMEOUT_MS / 1000 * 4
    while any(c[3] is None for c in conns) and time.monotonic() < deadline:
        for c in conns:
            sock, opened, sent, lived = c
            if lived is not None:
                continue
            try:
                data = sock.recv(4096)
                if data:
                    answered += 1
                else:
                    c[3] = time.monotonic() - opened
                    continue
            except BlockingIOError:
                pass
            except ConnectionResetError:
                c[3] = time.monotonic() - opened
                continue
            try:
                sock.send(head[sent % len(head):sent % len(head) + 1])
                c[2] += 1
            except (BrokenPipeError, ConnectionResetError):
                c[3] = time.monotonic() - opened
        time.sleep(0.1)
    lived = [c[3] for c in conns]
    for c in conns:
        c[0].close()
    return {"open": sum(1 for x in lived if x is None), "answered": answered,
            "longest": max((x for x in lived if x is not None), default=None),
            "bytes_each": min(c[2] for c in conns)}


def test_slowloris(gucs, good, db):
    gucs.set(idle_timeout=IDLE_TIMEOUT_MS)
    attack = functools.partial(hostile.Attack, slowloris, 300, good.stream.name)
    _, _, report = hostile.measure(good, attack, label="slowloris (300 connections)")
    # every trickling connection was closed, unanswered, within the timeout
    # (checked every 250 ms) plus scheduling slack; none got to send its head
    assert report["open"] == 0, report
    assert report["answered"] == 0, report
    assert report["longest"] < IDLE_TIMEOUT_MS / 1000 + 1.5, report
    assert report["bytes_each"] > 5, report  # it did keep trickling
    hostile.assert_only_good_stored(db, good)


MAX_CONNECTIONS = 40


def idle_flood(stop, ready, n):
    """Keep n idle connections open from its address, reopening those the
    server closes; counts the 503s and what else it was answered."""
    counts = {}
    retry_after = set()
    opened = 0
    closed_unanswered = 0
    conns = []
    while not stop.is_set():
        while len(conns) < n and not stop.is_set():
            sock = hostile.connect_from(hostile.address(7))
            opened += 1
            conns.append(sock)
        if not ready.is_set():
            ready.set()
        time.sleep(0.05)
        for sock in list(conns):
            sock.setblocking(False)
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                status = int(data.split(b" ", 2)[1])
                counts[status] = counts.get(status, 0) + 1
                if status == 503:
                    for line in data.split(b"\r\n"):
                        if line.lower().startswith(b"retry-after:"):
                            retry_after.add(line.split(b":")[1].strip().decode())
            else:
                closed_unanswered += 1
            conns.remove(sock)
            sock.close()
    for sock in conns:
        sock.close()
    return {"counts": counts, "opened": opened, "retry_after": sorted(retry_after),
            "closed_unanswered": closed_unanswered}


def test_idle_connections_past_max_connections(gucs, good, db):
    gucs.set(max_connections=MAX_CONNECTIONS, idle_timeout=IDLE_TIMEOUT_MS)
    good.run(0.1)  # its connection is open before the flood
    attack = functools.partial(hostile.Attack, idle_flood, 3 * MAX_CONNECTIONS)
    _, _, report = hostile.measure(good, attack,
                                   label="idle flood past max_connections=%d" % MAX_CONNECTIONS)
    counts = report["counts"]
    # connections past the limit are refused with 503 and Retry-After; the
    # accepted idle ones are closed unanswered after idle_timeout
    assert set(counts) == {503}, report
    assert counts[503] >= 2 * MAX_CONNECTIONS, report
    assert report["retry_after"] == ["1"], report
    assert report["closed_unanswered"] >= MAX_CONNECTIONS // 2, report
    # once the flood stops, new connections are served again
    deadline = time.monotonic() + 5
    while True:
        try:
            with socket.create_connection((hostile.HOST, hostile.PORT), timeout=5) as sock:
                sock.sendall(hostile.build_request("GET", "/jwks.json"))
                status = hostile.read_status(sock)[0]
        except OSError:
            status = None
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200
    hostile.assert_only_good_stored(db, good)
