"""The pushpull WebSocket's flow control: at most 1,000 SETs per session
are in flight (sent, not acknowledged).  With 1,001 SETs due, the server
sends 1,000 and holds the 1,001st until the peer acknowledges one; then it
sends it without being asked.  (setstream.max_poll_events is raised above
the window, so that the window, not the size of one take, is what holds
the 1,001st back.)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, connect, jdump, run  # noqa: E402

ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams

WINDOW = 1000


def test_the_1001st_set_waits_for_an_ack(gucs, ws_db, ws_streams):
    # one take may hand out more than the window: only the window limits
    gucs.set(max_poll_events=5000)
    s = ws_streams.create(peer_algs=())
    jtis = [r[0] for r in ws_db.rows(
        "SELECT setstream.emit(%s, %s, '{}'::jsonb, %s::jsonb) FROM generate_series(1, %s)",
        (s.name, wsutil.SESSION_REVOKED, jdump(wsutil.SUBJECT), WINDOW + 1))]
    assert len(set(jtis)) == WINDOW + 1

    async def go():
        async with connect(s) as ws:
            peer = Peer(ws)
            await peer.until(lambda: len(peer.sets) >= WINDOW, timeout=20,
                             what="%d SETs pushed" % WINDOW)
            # the window is full: nothing more comes
            await peer.quiet(1.5)
            held = len(peer.sets)
            first = next(iter(peer.sets))
            await peer.send({"ack": [first]})
            await peer.until(lambda: len(peer.sets) == WINDOW + 1, timeout=5,
                             what="the 1,001st SET after an ack")
            return held, peer

    held, peer = run(go(), timeout=60)
    assert held == WINDOW, "%d SETs were in flight at once (window %d)" % (held, WINDOW)
    assert set(peer.sets) == set(jtis)
