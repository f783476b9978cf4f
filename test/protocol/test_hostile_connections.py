"""Hostile connections: slowloris (headers trickled a byte at a time) and
idle connections past setstream.max_connections, each beside a good client
whose push rate must hold (hostile.py).

Documented answers (README "Limits"): a request must arrive whole within
setstream.idle_timeout, however slowly its bytes trickle, or the connection
is closed; at setstream.max_connections, the connection that has made no
progress for longest (at least 1 s) is closed for a new one, and when none
has, the new one gets 503 with Retry-After and is closed.
"""

import functools
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
    """Open n idle connections from its addresses and hold them; counts the
    503s and the connections closed unanswered."""
    counts = {}
    retry_after = set()
    conns = [hostile.connect_from(hostile.address(20 + i % 50)) for i in range(n)]
    for sock in conns:
        sock.setblocking(False)
    started = time.monotonic()
    while not stop.is_set():
        # in full swing once the held connections are past their first second
        if not ready.is_set() and time.monotonic() - started > 1.2:
            ready.set()
        time.sleep(0.05)
        for sock in list(conns):
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
                counts["closed"] = counts.get("closed", 0) + 1
            conns.remove(sock)
            sock.close()
    for sock in conns:
        sock.close()
    return {"counts": counts, "retry_after": sorted(retry_after)}


def test_idle_connections_past_max_connections(gucs, streams, db):
    """An idle flood takes every connection slot and holds it, yet a good
    client that opens a new connection for every push gets in: at the
    limit, the connection stalled longest (at least 1 s) makes room."""
    gucs.set(max_connections=MAX_CONNECTIONS)
    good = hostile.GoodClient(streams.create(peer_algs=("HS256",)), fresh=True)
    attack = functools.partial(hostile.Attack, idle_flood, 3 * MAX_CONNECTIONS)
    _, _, report = hostile.measure(good, attack,
                                   label="idle flood past max_connections=%d" % MAX_CONNECTIONS)
    counts = report["counts"]
    print("good client's connections refused with 503: %d" % good.refused)
    # the flood's connections past the limit got 503 with Retry-After; the
    # ones it held were closed unanswered, one for each newcomer
    assert set(counts) == {503, "closed"}, report
    assert counts[503] >= MAX_CONNECTIONS, report
    assert counts["closed"] >= 1, report
    assert report["retry_after"] == ["1"], report
    hostile.assert_only_good_stored(db, good)


def test_refused_with_503_when_nothing_is_stalled(gucs, streams, db):
    """Past the limit with every connection busy or fresh: 503 and close."""
    gucs.set(max_connections=MAX_CONNECTIONS)
    # a connection an earlier test left, stalled past 1 s, would make room
    assert db.wait_open_connections(0), "connections left open by earlier tests"
    held = [hostile.connect_from(hostile.address(90)) for _ in range(MAX_CONNECTIONS)]
    try:
        sock = hostile.connect_from(hostile.address(91))
        status, headers, body = hostile.read_status(sock)
        assert status == 503 and headers["retry-after"] == "1", (status, headers, body)
        assert hostile.closed_by_server(sock, 2)
        sock.close()
        time.sleep(1.2)
        # now the oldest has stalled for over a second: it makes room
        sock = hostile.connect_from(hostile.address(91))
        sock.sendall(hostile.build_request("GET", "/jwks.json"))
        assert hostile.read_status(sock)[0] == 200
        assert hostile.closed_by_server(held[0], 2)
        sock.close()
    finally:
        for s in held:
            s.close()
