"""pushpull WebSocket binding, redelivery: a SET pushed on a connection that
closes without acknowledging it is pushed again, byte-identical, on the
next connection once setstream.redelivery_interval has passed (and not
before); two connections open on one stream never both receive the same
SET within the interval.
"""

import asyncio
import os
import socket
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Db, Peer, connect, connect_db, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_gucs = wsutil.ws_gucs
ws_streams = wsutil.ws_streams

INTERVAL = 1.0  # seconds: setstream.redelivery_interval for these tests


@pytest.fixture
def stream(ws_streams):
    return ws_streams.create(peer_algs=())


@pytest.fixture
def short_redelivery(ws_gucs):
    ws_gucs.set(redelivery_interval="%ds" % INTERVAL)
    yield


def test_unacked_set_redelivered_on_new_connection(ws_db, stream, short_redelivery):
    jti = ws_db.emit(stream.name, {"n": 1})

    async def first():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=5)
            return peer.sets[jti], peer.set_times[jti]
        # closed without an ack

    async def second():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=INTERVAL + 4)
            return peer

    token1, t1 = run(first())
    assert ws_db.outbox(stream.name, jti)["state"] == "delivered"
    peer = run(second())
    token2 = peer.sets[jti]
    assert token2 == token1  # byte-identical
    waited = peer.set_times[jti] - t1
    assert waited >= INTERVAL * 0.9, \
        "redelivered %.3fs after the first delivery, inside the %.1fs interval" % (waited, INTERVAL)
    row = ws_db.outbox(stream.name, jti)
    assert row["state"] == "delivered"
    assert row["attempts"] == 2
    assert row["token"] == token1


def test_redelivered_set_acked_then_never_again(ws_db, stream, short_redelivery):
    jti = ws_db.emit(stream.name)

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=5)
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=INTERVAL + 4)
            await peer.send({"ack": [jti]})
            ws_db.wait_outbox_state(stream.name, jti, "acked")
        async with connect(stream) as ws:
            peer = Peer(ws)
            return await peer.quiet(INTERVAL + 1.2)

    later = run(go())
    assert later == [], "an acked SET came again: %r" % later
    assert ws_db.outbox(stream.name, jti)["attempts"] == 2


def test_unacked_set_redelivered_on_same_open_connection(ws_db, stream, short_redelivery):
    """The receiver that stays connected but never acks gets the SET again
    after the interval, byte-identical."""
    jti = ws_db.emit(stream.name)

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=5)
            first = peer.sets[jti]
            await peer.until(lambda: sum(jti in m.get("sets", {}) for _, m in peer.messages) >= 2,
                             timeout=INTERVAL + 4, what="second delivery")
            return first, peer

    first, peer = run(go())
    again = [(t, m) for t, m in peer.messages if jti in m.get("sets", {})]
    assert again[1][1]["sets"][jti] == first
    assert again[1][0] - again[0][0] >= INTERVAL * 0.9


def test_two_connections_never_share_a_set(ws_db, stream):
    """Default interval (long): every SET goes to exactly one of the two
    connections."""
    conn = connect_db(autocommit=False)
    tx = Db(conn)

    async def go():
        async with connect(stream) as a, connect(stream) as b:
            pa, pb = Peer(a), Peer(b)
            jtis = []
            for round_ in range(5):
                jtis += [tx.emit(stream.name, {"r": round_, "n": i}) for i in range(8)]
                conn.commit()
                await asyncio.sleep(0.02)

            async def drain(p):
                await p.quiet(1.0)

            deadline = time.monotonic() + 8
            while not set(jtis) <= set(pa.sets) | set(pb.sets):
                assert time.monotonic() < deadline, (len(pa.sets), len(pb.sets))
                await asyncio.gather(drain(pa), drain(pb))
            await asyncio.gather(drain(pa), drain(pb))
            return jtis, pa, pb

    try:
        jtis, pa, pb = run(go())
    finally:
        conn.close()
    both = set(pa.sets) & set(pb.sets)
    assert both == set(), "SETs pushed on both connections: %r" % sorted(both)
    assert set(pa.sets) | set(pb.sets) == set(jtis)
    # every SET was delivered exactly once
    counts = {}
    for p in (pa, pb):
        for _, m in p.messages:
            for j in m.get("sets", {}):
                counts[j] = counts.get(j, 0) + 1
    assert set(counts.values()) == {1}, counts
    for j in jtis:
        assert ws_db.outbox(stream.name, j)["attempts"] == 1


def test_two_open_connections_redelivery_spaced_by_interval(ws_db, stream, short_redelivery):
    """Neither connection acks: the SET is pushed to one of them, and pushed
    again (to either) only after the interval, never twice inside it."""
    watch = INTERVAL * 2.6

    async def go():
        async with connect(stream) as a, connect(stream) as b:
            pa, pb = Peer(a), Peer(b)
            jti = ws_db.emit(stream.name)
            await asyncio.gather(pa.quiet(watch), pb.quiet(watch))
            return jti, pa, pb

    jti, pa, pb = run(go())
    deliveries = sorted((t, name, m["sets"][jti])
                        for name, p in (("a", pa), ("b", pb))
                        for t, m in p.messages if jti in m.get("sets", {}))
    assert len(deliveries) >= 2, deliveries  # first delivery and one redelivery
    first_token = deliveries[0][2]
    assert all(tok == first_token for _, _, tok in deliveries)
    gaps = [b[0] - a[0] for a, b in zip(deliveries, deliveries[1:])]
    assert min(gaps) >= INTERVAL * 0.9, \
        "the same SET was pushed twice within the interval: gaps %r" % gaps
    assert ws_db.outbox(stream.name, jti)["attempts"] == len(deliveries)


def test_abruptly_dropped_connection_set_redelivered(ws_db, stream, short_redelivery):
    """The TCP connection is reset (no close handshake) right after the SET
    arrived: the next connection gets it, byte-identical."""
    jti = ws_db.emit(stream.name)
    c = wsutil.RawWs()
    try:
        assert c.handshake(stream).status == 101
        msg = c.recv_json_message()
        token1 = msg["sets"][jti]
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        c.close()  # RST

    async def again():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.wait_sets([jti], timeout=INTERVAL + 4)
            await peer.send({"ack": [jti]})
            ws_db.wait_outbox_state(stream.name, jti, "acked")
            return peer

    peer = run(again())
    assert peer.sets[jti] == token1
    assert ws_db.outbox(stream.name, jti)["attempts"] == 2
