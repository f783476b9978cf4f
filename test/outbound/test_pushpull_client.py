"""pushpull as initiator over HTTP (set_delivery(stream, 'pushpull', ...),
issue 17) against a scripted, sometimes misbehaving, pushpull responder on
127.0.0.1.

The Responder answers each Communication Object setstream POSTs as a
pushpull responder does: it acknowledges the SETs of the request (or
rejects them in setErrs when told to), takes the acks and setErrs of the
request for its own SETs, and hands out its own SETs not yet acknowledged
(up to maxResponseEvents).  It records every request (headers and JSON
body), and, when a request acknowledges one of its SETs, whether that SET
was already committed in setstream's database at that moment.  A script
of answers given first makes it misbehave: a status with a body, "hang" or
"reset".
"""

import json
import socket
import struct
import threading
import time

import http.server
import pytest

from conftest import answer, connect_db, wait_for

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


class Responder:
    def __init__(self):
        self.requests = []          # {"t", "headers", "body" (parsed or raw)}
        self.script = []            # answers before the default behaviour
        self.on_sets = []           # answers to the next requests carrying SETs
        self.on_ack = []            # answers to the next requests carrying acks
        self.queue = {}             # our SETs: jti -> token, until acknowledged
        self.received = {}          # jti -> token of the SETs setstream sent
        self.acked = []             # every jti setstream acknowledged, in order
        self.ack_request = {}       # jti -> index of the request that acked it
        self.set_errs = {}          # jti -> {"err", "description"} from setstream
        self.served_in = {}         # jti -> index of the request whose answer had it
        self.stored_when_acked = {}  # jti -> committed in setstream's database?
        self.reject = None          # (err, description): setErrs for every SET
        self.silent = False         # neither acknowledge nor reject SETs
        self.stream = None          # setstream's stream (for stored_when_acked)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.conn = connect_db()
        r = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with r.lock:
                    index = len(r.requests)
                    r.requests.append({"t": time.monotonic(), "body": body,
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                    action = r.script.pop(0) if r.script else None
                    if action is None and r.on_sets and body.get("sets"):
                        action = r.on_sets.pop(0)
                    if action is None and r.on_ack and body.get("ack"):
                        action = r.on_ack.pop(0)
                    if action is None:
                        action = r.serve(index, body)
                if action == "hang":
                    r.stop.wait(120)
                    self.close_connection = True
                    return
                if action == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                status, headers, payload = action
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d/pushpull" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def committed(self, jti):
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM setstream.events WHERE stream = %s AND jti = %s",
                        (self.stream, jti))
            return cur.fetchone()[0] == 1

    def serve(self, index, body):
        """The default answer (called under the lock)."""
        ack, errs = [], {}
        for j in body.get("ack", []):
            self.acked.append(j)
            self.ack_request.setdefault(j, index)
            if self.stream is not None:
                self.stored_when_acked.setdefault(j, self.committed(j))
            self.queue.pop(j, None)
        for j, e in body.get("setErrs", {}).items():
            self.set_errs[j] = e
            self.queue.pop(j, None)
        for j, tok in body.get("sets", {}).items():
            self.received.setdefault(j, tok)
            if self.silent:
                continue
            if self.reject:
                errs[j] = {"err": self.reject[0], "description": self.reject[1]}
            else:
                ack.append(j)
        limit = body.get("maxResponseEvents", 10)
        sets = {}
        for j in list(self.queue)[:limit]:
            sets[j] = self.queue[j]
            self.served_in.setdefault(j, index)
        out = {"ack": ack, "setErrs": errs}
        if sets:
            out["sets"] = sets
        return (200, {"Content-Type": "application/json"}, json.dumps(out).encode())

    def add(self, jti, token):
        with self.lock:
            self.queue[jti] = token

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.conn.close()


@pytest.fixture
def responder():
    r = Responder()
    yield r
    r.close()


@pytest.fixture
def fast(loopback):
    """A short poll interval, so that the tests need not wait long."""
    loopback.set(pushpull_poll_interval=300)
    return loopback


class PushpullStreams:
    def __init__(self, streams, db):
        self.streams = streams
        self.db = db

    def create(self, responder, authorization=None):
        s = self.streams.create(peer_algs=("ES256",), signing_alg="ES256", token=False)
        responder.stream = s.name
        self.db.execute("SELECT setstream.set_delivery(%s, 'pushpull', %s, %s)",
                        (s.name, responder.url, authorization))
        return s

    def delivery(self, s):
        rows = self.db.dicts("SELECT * FROM setstream.deliveries WHERE stream = %s", (s.name,))
        return rows[0] if rows else None

    def wait_delivery(self, s, pred, what, timeout=15.0):
        return wait_for(what, lambda: (lambda r: r if r and pred(r) else None)(self.delivery(s)),
                        timeout=timeout)

    def outbox(self, s):
        return self.db.dicts("SELECT * FROM setstream.outbox WHERE stream = %s ORDER BY seq",
                             (s.name,))

    def stored(self, s):
        return dict(self.db.rows("SELECT jti, token FROM setstream.events WHERE stream = %s",
                                 (s.name,)))

    def emit(self, s, n=1):
        return [self.db.emit(s.name) for _ in range(n)]


@pytest.fixture
def pushpulls(streams, db):
    return PushpullStreams(streams, db)


def outbox_states(pushpulls, s):
    return sorted(r["state"] for r in pushpulls.outbox(s))


def test_set_delivery_accepts_pushpull(pushpulls, streams, db):
    import psycopg2
    s = streams.create(token=False)
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.set_delivery(%s, 'pushpull')", (s.name,))
    assert e.value.pgcode == "22023"          # an endpoint_url is required
    db.execute("SELECT setstream.set_delivery(%s, 'pushpull', 'https://peer.example.com/pp',"
               " 'Bearer x')", (s.name,))
    r = db.dicts("SELECT method, endpoint_url FROM setstream.deliveries WHERE stream = %s",
                 (s.name,))[0]
    assert r == {"method": "pushpull", "endpoint_url": "https://peer.example.com/pp"}
    # pushpull-ws is built too: test_pushpull_ws.py
    db.execute("SELECT setstream.set_delivery(%s, 'poll')", (s.name,))


def test_sets_go_out_and_the_answers_acks_apply(fast, responder, pushpulls, db):
    auth = "Bearer pushpull-secret-" + str(time.time())
    s = pushpulls.create(responder, authorization=auth)
    jtis = [r[0] for r in db.rows("SELECT setstream.emit(%s, %s, '{}'::jsonb)"
                                  " FROM generate_series(1, 3)", (s.name, SESSION_REVOKED))]
    wait_for("3 acked rows", lambda: outbox_states(pushpulls, s) == ["acked"] * 3)
    tokens = {r["jti"]: r["token"] for r in pushpulls.outbox(s)}
    assert responder.received == tokens and set(tokens) == set(jtis)   # byte for byte
    first = next(q for q in responder.requests if q["body"].get("sets"))
    assert first["headers"]["authorization"] == auth
    assert first["headers"]["content-type"] == "application/json"
    assert first["body"]["maxResponseEvents"] == 100
    assert first["body"]["ack"] == [] and first["body"]["setErrs"] == {}
    # oldest first, each once
    order = [j for q in responder.requests for j in q["body"].get("sets", {})]
    assert order == [r["jti"] for r in pushpulls.outbox(s)]
    assert pushpulls.delivery(s)["state"] == "active"


def test_the_answers_seterrs_fail_the_rows(fast, responder, pushpulls, db):
    responder.reject = ("invalid_audience", "not for us")
    s = pushpulls.create(responder)
    jti = pushpulls.emit(s)[0]
    wait_for("the failed row", lambda: outbox_states(pushpulls, s) == ["failed"])
    r = pushpulls.outbox(s)[0]
    assert r["jti"] == jti and r["err"] == "invalid_audience"
    assert r["description"] == "not for us" and r["acked_at"] is None
    time.sleep(1.0)
    assert list(responder.received) == [jti]
    assert sum(1 for q in responder.requests if jti in q["body"].get("sets", {})) == 1, \
        "a SET failed by setErrs was sent again"


def test_past_max_delivery_age_the_set_fails_undeliverable(fast, responder, pushpulls, db):
    # The peer takes the SET but never acknowledges it: sent again after
    # each redelivery interval (1 s) until setstream.max_delivery_age (3 s)
    # has passed since the emit, then failed as undeliverable and never
    # sent again (as push does; before, it went out again forever).
    fast.set(max_delivery_age="3", redelivery_interval=1000)
    responder.silent = True
    s = pushpulls.create(responder)
    jti = pushpulls.emit(s)[0]
    wait_for("the row failed", lambda: outbox_states(pushpulls, s) == ["failed"], timeout=20)
    r = pushpulls.outbox(s)[0]
    assert r["err"] == "undeliverable", r
    assert r["description"] == "not acknowledged within setstream.max_delivery_age"
    assert r["acked_at"] is None
    sent = sum(1 for q in responder.requests if jti in q["body"].get("sets", {}))
    assert sent >= 2, "not redelivered before it expired: sent %d time(s)" % sent
    time.sleep(2.5)
    assert sum(1 for q in responder.requests if jti in q["body"].get("sets", {})) == sent, \
        "an undeliverable SET was sent again"


def test_the_answers_sets_are_stored_and_acked_in_the_next_request_after_commit(
        fast, responder, pushpulls, db):
    s = pushpulls.create(responder)
    good = dict(s.set() for _ in range(3))
    bad_jti, bad = s.set(aud="https://someone-else.example.com/")
    for j, t in good.items():
        responder.add(j, t)
    responder.add(bad_jti, bad)
    wait_for("3 acks and the setErr",
             lambda: set(responder.acked) >= set(good) and bad_jti in responder.set_errs)
    assert pushpulls.stored(s) == good                       # once, byte for byte
    assert responder.set_errs[bad_jti]["err"] == "invalid_audience"
    assert bad_jti not in responder.acked
    # the request that carries the setErr says its description's language
    with responder.lock:
        reqs = list(responder.requests)
    carrying = [r for r in reqs if isinstance(r["body"], dict) and r["body"].get("setErrs")]
    assert carrying and all(r["headers"].get("content-language") == "en" for r in carrying)
    for j in good:
        # acknowledged by the request after the one whose answer brought it
        assert responder.ack_request[j] == responder.served_in[j] + 1
        # and only once it was committed
        assert responder.stored_when_acked[j] is True
    assert db.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (s.name,)) == 3


def test_it_polls_at_the_interval_when_idle(fast, responder, pushpulls, db):
    s = pushpulls.create(responder)
    wait_for("4 requests", lambda: responder.count() >= 4, timeout=10)
    t = [q["t"] for q in responder.requests]
    gaps = [b - a for a, b in zip(t, t[1:4])]
    assert all(g >= 0.25 for g in gaps), gaps          # pushpull_poll_interval = 300 ms
    assert all(not q["body"].get("sets") for q in responder.requests)
    # a SET of the peer added later arrives with a poll
    jti, tok = s.set()
    responder.add(jti, tok)
    wait_for("the ack", lambda: jti in responder.acked, timeout=10)
    # an emit goes out at once (the sender is woken), not at the next poll
    loopback_interval_s = 5.0
    fast.set(pushpull_poll_interval=int(loopback_interval_s * 1000))
    time.sleep(0.5)
    t0 = time.monotonic()
    out = pushpulls.emit(s)[0]
    wait_for("the emitted SET", lambda: out in responder.received, timeout=10)
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize("bad,why", [
    (answer(200, body=b"{not json"), "json"),
    (answer(200, body=b'{"sets": [1]}'), "sets"),
    (answer(200, body=b'{"ack": "x"}'), "ack"),
    (answer(500), "500"),
])
def test_a_bad_answer_backs_off_and_the_sets_go_out_again_at_once(
        fast, responder, pushpulls, db, bad, why):
    s = pushpulls.create(responder)
    wait_for("a first poll", lambda: responder.count() >= 1)
    responder.on_sets = [bad]
    jti = pushpulls.emit(s)[0]
    r = pushpulls.wait_delivery(s, lambda r: r["failures"] >= 1, "the backoff")
    assert r["state"] in ("backoff", "active")
    # sent again after the backoff, well before setstream.redelivery_interval
    wait_for("the ack after the backoff",
             lambda: outbox_states(pushpulls, s) == ["acked"], timeout=20)
    carrying = [q for q in responder.requests if jti in (q["body"].get("sets") or {})]
    assert len(carrying) == 2
    r = pushpulls.wait_delivery(s, lambda r: r["state"] == "active" and r["failures"] == 0,
                                "recovery")


def test_acks_of_a_failed_request_are_sent_again(fast, responder, pushpulls, db):
    s = pushpulls.create(responder)
    jti, tok = s.set()
    # the request carrying the ack is answered 500: the ack is sent again
    responder.on_ack = [answer(500)]
    responder.add(jti, tok)
    wait_for("the ack", lambda: jti in responder.acked, timeout=20)
    carrying = [q for q in responder.requests if jti in q["body"].get("ack", [])]
    assert len(carrying) == 2          # the one answered 500, and the next
    assert pushpulls.stored(s) == {jti: tok}


def test_503_with_retry_after_waits(fast, responder, pushpulls, db):
    responder.script = [answer(503, headers={"Retry-After": "2"})]
    s = pushpulls.create(responder)
    wait_for("the second request", lambda: responder.count() >= 2, timeout=10)
    t = [q["t"] for q in responder.requests]
    assert t[1] - t[0] >= 1.9
    r = pushpulls.delivery(s)
    assert r["failures"] == 0      # a wait is not a failure


def test_5xx_backs_off(fast, responder, pushpulls, db):
    responder.script = [answer(500), answer(502)]
    s = pushpulls.create(responder)
    pushpulls.wait_delivery(s, lambda r: r["failures"] >= 1, "a failure")
    wait_for("the third request", lambda: responder.count() >= 3, timeout=20)
    t = [q["t"] for q in responder.requests]
    assert t[1] - t[0] >= 0.4, "no backoff after the 500"
    pushpulls.wait_delivery(s, lambda r: r["state"] == "active" and r["failures"] == 0,
                            "recovery")


def test_401_suspends_after_auth_retries(fast, responder, pushpulls, db):
    responder.script = [answer(401)] * 3
    s = pushpulls.create(responder, authorization="Bearer wrong")
    r = pushpulls.wait_delivery(s, lambda r: r["state"] == "suspended", "the suspension",
                                timeout=20)
    assert r["auth_failures"] == 3 and "authentication_failed" in r["suspended_reason"]
    time.sleep(1.0)
    assert responder.count() == 3, "a suspended stream was sent to again"
    # resume_delivery lifts it
    db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
    wait_for("a request after resume_delivery", lambda: responder.count() >= 4)


@pytest.mark.parametrize("status", [403, 404])
def test_403_and_404_suspend(fast, responder, pushpulls, db, status):
    responder.script = [answer(status, err="access_denied", description="go away")]
    s = pushpulls.create(responder)
    r = pushpulls.wait_delivery(s, lambda r: r["state"] == "suspended", "the suspension")
    assert "go away" in r["suspended_reason"]
    jti = pushpulls.emit(s)[0]
    time.sleep(1.0)
    assert responder.count() == 1, "a suspended stream was sent to again"
    assert jti not in responder.received
