"""At setstream.max_connections the listener closes the connection stalled
longest to make room for a newcomer, but never a parked long poll or a
WebSocket session: with every slot held by those (stalled for well over the
1 s eviction age), a newcomer gets 503 and closes, and the long polls and
sessions are still there and still deliver.
"""

import os
import sys
import time

import listener_support as ls

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile  # noqa: E402
import wsutil  # noqa: E402

ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

MAX = 4  # two parked long polls and two WebSocket sessions
EVICT_AGE = 1.1  # s: the listener evicts a connection stalled 1 s


def test_newcomer_at_the_limit_spares_long_polls_and_websockets(gucs, db, ws_db, ws_streams):
    gucs.set(max_connections=MAX, poll_timeout="20000")
    a = ws_streams.create(peer_algs=())
    b = ws_streams.create(peer_algs=())
    polls, sessions = [], []
    # a connection an earlier test left open, not yet stalled for the
    # eviction age, would take a slot the second session needs (a CI run
    # answered its handshake 503 so): start from none, or from leftovers
    # stalled long enough for our newcomers to evict them
    if not db.wait_open_connections(0, timeout=2.0):
        time.sleep(EVICT_AGE)
    try:
        for _ in range(2):
            c = ls.RawConn(timeout=10)
            c.send(ls.build_request("POST", "/streams/%s/poll" % a.name,
                                    [("Authorization", "Bearer " + a.token)],
                                    b'{"returnImmediately":false}'))
            polls.append(c)
        db.wait_parked(a.name, n=2)
        for _ in range(2):
            w = wsutil.RawWs()
            assert w.handshake(b).status == 101
            sessions.append(w)
        time.sleep(1.5)  # every slot stalled past the eviction age (1 s)
        for _ in range(3):
            sock = hostile.connect_from(hostile.address(120))
            sock.sendall(ls.build_request("GET", "/jwks.json"))
            answer = hostile.read_status(sock)
            assert answer is not None and answer[0] == 503, \
                "a newcomer at the limit was served (%r): a long poll or a WebSocket " \
                "session was closed for it" % (answer,)
            assert hostile.closed_by_server(sock, 2)
            sock.close()
        # the long polls are parked still: an emit answers one of them
        assert db.long_polls(a.name) == 2
        jti = ws_db.emit(a.name)
        got = []
        for c in polls:
            c.sock.settimeout(0.5)
            try:
                r = c.read_response()
            except OSError:
                continue
            got.append((r.status, list(r.json()["sets"])))
        assert got == [(200, [jti])], got
        # both WebSocket sessions are open: each answers a ping
        for w in sessions:
            w.send_frame(0x9, b"still there?")
            opcode, payload = w.recv_frame()
            assert (opcode, payload) == (0xA, b"still there?")
    finally:
        for c in polls:
            c.close()
        for w in sessions:
            w.close()
