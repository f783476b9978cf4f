"""pushpull as initiator over a WebSocket (set_delivery(stream,
'pushpull-ws', ...), issue 17) against a scripted WebSocket peer on
127.0.0.1 (python3-websockets, in a thread of its own), and setstream to
setstream: stream A initiates pushpull-ws to stream B's pushpull endpoint
on the listener.

WsPeer accepts the upgrade (echoing the "pushpull" subprotocol unless told
not to) and plays the pushpull responder's part on the session: it
acknowledges the SETs setstream sends, records the acks and setErrs
setstream sends for its own SETs (and whether each acknowledged SET was
committed in setstream's database at that moment), and sends its own SETs
not yet acknowledged on every new session.  Told to, it drops a session
(an RST) after receiving SETs without acknowledging them, or after sending
its own before their acks arrive.  It sends its SETs not yet acknowledged
on every session (again on a new one), as soon as they are queued.
"""

import asyncio
import json
import socket
import struct
import threading
import time

import pytest
import websockets

# The peer is written for the handler(ws, path) server API: that of
# websockets 10 (Debian 12), kept as websockets.legacy in later versions
# (websockets 15, Debian 13, made websockets.serve a different API that
# must be started inside a running event loop)
try:
    from websockets.legacy.server import serve as ws_serve
except ImportError:  # pragma: no cover - before websockets 10
    ws_serve = websockets.serve

from conftest import connect_db, wait_for
from test_pushpull_client import (Responder, pushpulls, outbox_states,  # noqa: F401
                                  SESSION_REVOKED)
from test_pushpull_setstream_to_setstream import acked, check_once
from test_setstream_to_setstream import emit_many


class WsPeer:
    def __init__(self, subprotocol=True, tls=None, client_ca=None):
        self.sessions = []          # request headers of each session (dict)
        self.messages = []          # every Communication Object received
        self.received = {}          # jti -> token of the SETs setstream sent
        self.received_count = {}    # jti -> times received
        self.acked = []             # jtis setstream acknowledged
        self.stored_when_acked = {}
        self.queue = {}             # our SETs, until acknowledged
        self.drop_after_sets = 0    # sessions to reset on receiving SETs
        self.drop_after_send = 0    # sessions to reset after sending ours
        self.hold_acks = 0          # acknowledge nothing until this many arrived (once)
        self.held = []              # jtis received, their acks held back
        self.stream = None
        self.lock = threading.Lock()
        self.conn = connect_db()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.subprotocol = subprotocol
        self.ssl = None
        if tls is not None:
            import ssl
            self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl.load_cert_chain(*tls)
            if client_ca is not None:
                self.ssl.verify_mode = ssl.CERT_REQUIRED
                self.ssl.load_verify_locations(client_ca)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(10)
        self.url = "%s://127.0.0.1:%d/pushpull" % ("https" if tls else "http", self.port)

    def committed(self, jti):
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM setstream.events WHERE stream = %s AND jti = %s",
                        (self.stream, jti))
            return cur.fetchone()[0] == 1

    def _run(self):
        asyncio.set_event_loop(self.loop)
        protos = ["pushpull"] if self.subprotocol else None
        self.server = self.loop.run_until_complete(
            ws_serve(self._session, "127.0.0.1", 0, subprotocols=protos,
                             ping_interval=None, ssl=self.ssl))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    @staticmethod
    def _reset(ws):
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.transport.abort()

    async def _pump(self, ws):
        """Send our SETs not yet sent on this session (every 100 ms); told
        to, drop the session once setstream had time to store them."""
        sent = set()
        while True:
            with self.lock:
                new = {j: t for j, t in self.queue.items() if j not in sent}
                drop = bool(new) and self.drop_after_send > 0
                if drop:
                    self.drop_after_send -= 1
            if new:
                sent |= set(new)
                await ws.send(json.dumps({"sets": new}))
                if drop:
                    ws.deaf = True                # their acks never arrive
                    await asyncio.sleep(0.5)      # long enough to store them
                    self._reset(ws)
                    return
            await asyncio.sleep(0.1)

    async def _session(self, ws, path):
        with self.lock:
            self.sessions.append({"path": path, "subprotocol": ws.subprotocol,
                                  **{k.lower(): v for k, v in ws.request_headers.items()}})
        pump = asyncio.ensure_future(self._pump(ws))
        try:
            async for text in ws:
                if getattr(ws, "deaf", False):
                    continue
                body = json.loads(text)
                with self.lock:
                    self.messages.append(body)
                    for j in body.get("ack", []):
                        self.acked.append(j)
                        if self.stream is not None:
                            self.stored_when_acked.setdefault(j, self.committed(j))
                        self.queue.pop(j, None)
                    for j in body.get("setErrs", {}):
                        self.queue.pop(j, None)
                    sets = body.get("sets", {})
                    drop = bool(sets) and self.drop_after_sets > 0
                    if drop:
                        self.drop_after_sets -= 1
                    for j, tok in sets.items():
                        self.received.setdefault(j, tok)
                        self.received_count[j] = self.received_count.get(j, 0) + 1
                if drop:
                    self._reset(ws)
                    return
                if sets:
                    with self.lock:
                        self.held += list(sets)
                        ack = self.held if len(self.held) >= self.hold_acks else []
                        if ack:
                            self.held = []
                            self.hold_acks = 0      # once
                    if ack:
                        await ws.send(json.dumps({"ack": ack}))
        except websockets.ConnectionClosed:
            pass
        finally:
            pump.cancel()

    def add(self, jti, token):
        with self.lock:
            self.queue[jti] = token

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.conn.close()


@pytest.fixture
def wspeer():
    p = WsPeer()
    yield p
    p.close()


def create(pushpulls, url, authorization=None, peer=None):
    s = pushpulls.streams.create(peer_algs=("ES256",), signing_alg="ES256", token=False)
    if peer is not None:
        peer.stream = s.name
    pushpulls.db.execute("SELECT setstream.set_delivery(%s, 'pushpull-ws', %s, %s)",
                         (s.name, url, authorization))
    return s


def test_set_delivery_accepts_pushpull_ws(pushpulls, streams, db):
    import psycopg2
    s = streams.create(token=False)
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.set_delivery(%s, 'pushpull-ws')", (s.name,))
    assert e.value.pgcode == "22023"          # an endpoint_url is required
    db.execute("SELECT setstream.set_delivery(%s, 'pushpull-ws', 'https://p.example.com/pp',"
               " 'Bearer x')", (s.name,))
    r = db.dicts("SELECT method, endpoint_url FROM setstream.deliveries WHERE stream = %s",
                 (s.name,))[0]
    assert r == {"method": "pushpull-ws", "endpoint_url": "https://p.example.com/pp"}
    db.execute("SELECT setstream.set_delivery(%s, 'poll')", (s.name,))


def test_sets_flow_both_ways_over_the_websocket(loopback, wspeer, pushpulls, db):
    auth = "Bearer ws-secret-" + str(time.time())
    s = create(pushpulls, wspeer.url, auth, wspeer)
    theirs = dict(s.set() for _ in range(3))
    bad_jti, bad = s.set(aud="https://someone-else.example.com/")
    for j, t in theirs.items():
        wspeer.add(j, t)
    wspeer.add(bad_jti, bad)
    jtis = pushpulls.emit(s, 3)
    wait_for("3 acked rows", lambda: outbox_states(pushpulls, s) == ["acked"] * 3)
    tokens = {r["jti"]: r["token"] for r in pushpulls.outbox(s)}
    assert wspeer.received == tokens and set(tokens) == set(jtis)   # byte for byte
    wait_for("their 3 SETs acknowledged", lambda: set(wspeer.acked) >= set(theirs))
    assert pushpulls.stored(s) == theirs
    assert all(wspeer.stored_when_acked[j] for j in theirs)      # only after the commit
    assert bad_jti not in wspeer.acked
    errs = [m["setErrs"] for m in wspeer.messages if bad_jti in m.get("setErrs", {})]
    assert errs and errs[0][bad_jti]["err"] == "invalid_audience"
    h = wspeer.sessions[0]
    assert h["authorization"] == auth
    assert h["subprotocol"] == "pushpull" and h["sec-websocket-version"] == "13"
    assert h["path"] == "/pushpull"
    assert len(wspeer.sessions) == 1                              # one session throughout
    # later emits go out on the same session without anything else happening
    more = pushpulls.emit(s, 2)
    wait_for("5 acked rows", lambda: outbox_states(pushpulls, s) == ["acked"] * 5)
    assert set(more) <= set(wspeer.received)
    assert len(wspeer.sessions) == 1
    assert pushpulls.delivery(s)["state"] == "active"


def test_past_max_delivery_age_the_set_fails_undeliverable(loopback, wspeer, pushpulls, db):
    # The peer never acknowledges: the SET goes out again after each
    # redelivery interval (1 s) until setstream.max_delivery_age (3 s) has
    # passed since the emit, then fails as undeliverable and is not sent
    # again (before, it went out again forever).
    loopback.set(max_delivery_age="3", redelivery_interval=1000)
    wspeer.hold_acks = 10 ** 9
    s = create(pushpulls, wspeer.url, None, wspeer)
    jti = pushpulls.emit(s)[0]
    wait_for("the row failed", lambda: outbox_states(pushpulls, s) == ["failed"], timeout=20)
    r = pushpulls.outbox(s)[0]
    assert r["err"] == "undeliverable", r
    assert r["description"] == "not acknowledged within setstream.max_delivery_age"
    sent = wspeer.received_count.get(jti, 0)
    assert sent >= 2, "not redelivered before it expired: sent %d time(s)" % sent
    time.sleep(2.5)
    assert wspeer.received_count.get(jti, 0) == sent, "an undeliverable SET was sent again"
    assert len(wspeer.sessions) == 1


def test_a_backlog_past_the_window_goes_out_as_acks_open_it(loopback, wspeer, pushpulls, db):
    # 1,500 SETs emitted at once: more than the session's window of 1,000
    # unacknowledged ones.  The peer (a slow verifier) acknowledges the
    # first 1,000 only once all of them arrived, then each message as it
    # arrives: the other 500 go out as soon as those acks open the window,
    # not a setstream.redelivery_interval (60 s) later (issue 17: a backlog
    # drained at 1,000 SETs a minute; the old code fails this).
    wspeer.hold_acks = 1000
    s = create(pushpulls, wspeer.url, None, wspeer)
    emit_many(db, s.name, 1500)

    def acked_count():
        return db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s"
                      " AND state = 'acked'", (s.name,))
    wait_for("1,000 SETs received, none acknowledged", lambda: len(wspeer.received) >= 1000,
             timeout=30)
    wait_for("1,500 acked rows well within the redelivery interval",
             lambda: acked_count() == 1500, timeout=20)
    assert len(wspeer.received) == 1500
    assert all(n == 1 for n in wspeer.received_count.values())   # none sent twice
    assert len(wspeer.sessions) == 1


def test_a_host_name_is_resolved_in_the_background(loopback, wspeer, pushpulls, db):
    # "localhost": resolved with getaddrinfo_a, then the allowed address
    s = create(pushpulls, wspeer.url.replace("127.0.0.1", "localhost"), None, wspeer)
    jtis = pushpulls.emit(s, 2)
    wait_for("2 acked rows", lambda: outbox_states(pushpulls, s) == ["acked"] * 2)
    assert set(wspeer.received) == set(jtis)
    assert wspeer.sessions[0]["host"] == "localhost:%d" % wspeer.port


def test_refused_upgrade_falls_back_to_http(loopback, pushpulls, db):
    # the HTTP responder answers GET (the upgrade) with 501: no WebSocket
    r = Responder()
    try:
        s = create(pushpulls, r.url, "Bearer fallback", r)
        r.stream = s.name
        jtis = pushpulls.emit(s, 2)
        wait_for("2 acked rows over HTTP",
                 lambda: outbox_states(pushpulls, s) == ["acked"] * 2)
        assert set(r.received) == set(jtis)
        posts = [q for q in r.requests if q["body"].get("sets")]
        assert posts and posts[0]["headers"]["authorization"] == "Bearer fallback"
    finally:
        r.close()


def test_101_without_the_subprotocol_is_refused(loopback, pushpulls, db):
    p = WsPeer(subprotocol=False)
    try:
        s = create(pushpulls, p.url, None, p)
        pushpulls.emit(s, 1)
        wait_for("the upgrade", lambda: len(p.sessions) >= 1)
        time.sleep(2.0)
        # the session was not used: no message, and no second attempt yet
        assert p.messages == [] and p.received == {}
        assert len(p.sessions) == 1
        assert p.sessions[0]["subprotocol"] is None
        assert outbox_states(pushpulls, s) != ["acked"]
    finally:
        p.close()


def test_reset_sessions_reconnect_and_lose_nothing(loopback, wspeer, pushpulls, db):
    s = create(pushpulls, wspeer.url, None, wspeer)
    # the first session drops when our SETs arrive (none acknowledged)
    wspeer.drop_after_sets = 1
    jtis = pushpulls.emit(s, 3)
    wait_for("3 acked rows after a reconnect",
             lambda: outbox_states(pushpulls, s) == ["acked"] * 3, timeout=30)
    assert len(wspeer.sessions) >= 2
    assert set(wspeer.received) == set(jtis)
    # their SETs: the session drops after setstream stored them, before
    # their acks arrive; the next session sends them again
    theirs = dict(s.set() for _ in range(3))
    n = len(wspeer.sessions)
    with wspeer.lock:
        wspeer.drop_after_send = 1
        for j, t in theirs.items():
            wspeer.queue[j] = t
    wait_for("their acks", lambda: set(wspeer.acked) >= set(theirs), timeout=30)
    assert len(wspeer.sessions) >= n + 1
    assert wspeer.drop_after_send == 0                     # it did drop one
    assert pushpulls.stored(s) == theirs                    # each stored once
    assert db.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (s.name,)) == 3


def test_tls_verified_with_the_ca_file_and_a_client_certificate(
        loopback, pushpulls, db, certificate, client_certificate):
    cert, _ = certificate
    p = WsPeer(tls=certificate, client_ca=client_certificate[0])
    try:
        loopback.set(outbound_ca_file=cert,
                     outbound_client_cert_file=client_certificate[0],
                     outbound_client_key_file=client_certificate[1])
        s = create(pushpulls, p.url, "Bearer tls", p)
        jtis = pushpulls.emit(s, 2)
        wait_for("2 acked rows over wss",
                 lambda: outbox_states(pushpulls, s) == ["acked"] * 2)
        assert set(p.received) == set(jtis)
        assert p.sessions[0]["authorization"] == "Bearer tls"
    finally:
        p.close()


def test_tls_unverified_peer_gets_nothing(loopback, pushpulls, db, certificate):
    # the system bundle does not vouch for the self-signed certificate
    p = WsPeer(tls=certificate)
    try:
        s = create(pushpulls, p.url, "Bearer secret", p)
        pushpulls.emit(s, 1)
        time.sleep(2.5)
        assert p.sessions == [] and p.received == {}
        assert outbox_states(pushpulls, s) != ["acked"]
    finally:
        p.close()


def test_setstream_to_setstream_over_the_websocket(loopback, listener, db):
    from test_pushpull_setstream_to_setstream import make_pushpull_pair
    created = []
    try:
        a, b = make_pushpull_pair(db, created, method="pushpull-ws")

        def emit_b():
            conn = connect_db()
            try:
                with conn.cursor() as cur:
                    for _ in range(4):
                        cur.execute(
                            "SELECT setstream.emit(%s, %s, '{}'::jsonb,"
                            " jsonb_build_object('format', 'email', 'email',"
                            " 'b' || i || '@example.com')) FROM generate_series(1, 75) AS i",
                            (b, SESSION_REVOKED))
            finally:
                conn.close()

        t = threading.Thread(target=emit_b)
        t.start()
        for _ in range(5):
            emit_many(db, a, 100)
        t.join()
        wait_for("500 acks on A", lambda: acked(db, a) == 500, timeout=90)
        wait_for("300 acks on B", lambda: acked(db, b) == 300, timeout=90)
        check_once(db, a, b, 500)
        check_once(db, b, a, 300)
        emit_many(db, a, 1)
        emit_many(db, b, 1)
        wait_for("the 501st ack on A", lambda: acked(db, a) == 501, timeout=10)
        wait_for("the 301st ack on B", lambda: acked(db, b) == 301, timeout=10)
        check_once(db, a, b, 501)
        check_once(db, b, a, 301)
    finally:
        for name in created:
            db.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))
