"""The RFC 8936 poll client (set_source, issue 17) against a scripted,
sometimes misbehaving, transmitter on 127.0.0.1.

The Transmitter serves a queue of SETs as an RFC 8936 endpoint: each poll
it answers with up to maxEvents of the SETs not yet acknowledged (waiting
up to `wait` seconds for one when returnImmediately is false), and records
every request (headers and JSON body: the acks and setErrs setstream
sends).  A script of answers given first makes it misbehave: a status with
a body, "hang" or "reset".
"""

import json
import threading
import time
import uuid

import psycopg2
import pytest

from conftest import QuietHandler, answer, send_answer, serve_http, wait_for
from test_secrets import role  # noqa: F401  (fixture)


class Transmitter:
    def __init__(self, tls=None):
        self.requests = []          # {"t", "headers", "body" (parsed or raw)}
        self.script = []            # answers before the queue is served
        self.queue = {}             # jti -> token, until acknowledged
        self.resend = set()         # jtis served again even when acked
        self.acked = []             # every jti acknowledged, in order
        self.set_errs = {}          # jti -> {"err", "description"}
        self.wait = 0.5
        self.lock = threading.Condition()
        self.stop = threading.Event()
        t = self

        class Handler(QuietHandler):
            def do_POST(self):
                raw = self.read_body()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw
                with t.lock:
                    t.requests.append({"t": time.monotonic(), "body": body,
                                       "headers": self.header_dict()})
                    action = t.script.pop(0) if t.script else None
                    if action is None and isinstance(body, dict):
                        for j in body.get("ack", []):
                            t.acked.append(j)
                            t.queue.pop(j, None)
                        for j, e in body.get("setErrs", {}).items():
                            t.set_errs[j] = e
                            t.queue.pop(j, None)
                if self.hang_or_reset(action, t.stop):
                    return
                if action is None:
                    action = t.serve(body)
                send_answer(self, action)

        self.server, self.port, self.url, self.thread = serve_http(Handler, "/poll", tls)

    def serve(self, body):
        limit = body.get("maxEvents", 10) if isinstance(body, dict) else 10
        deadline = time.monotonic() + (0 if body.get("returnImmediately") else self.wait)
        with self.lock:
            while not self.queue and time.monotonic() < deadline:
                self.lock.wait(deadline - time.monotonic())
            jtis = list(self.queue)[:limit]
            sets = {j: self.queue[j] for j in jtis}
            more = len(self.queue) > len(jtis)
        payload = json.dumps({"sets": sets, "moreAvailable": more}).encode()
        return (200, {"Content-Type": "application/json"}, payload)

    def add(self, jti, token):
        with self.lock:
            self.queue[jti] = token
            self.lock.notify_all()

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def transmitter():
    t = Transmitter()
    yield t
    t.close()


class Sources:
    def __init__(self, streams, db):
        self.streams = streams
        self.db = db

    def create(self, url, authorization=None):
        s = self.streams.create(peer_algs=("ES256",), token=False)
        self.db.execute("SELECT setstream.set_source(%s, 'poll', %s, %s)",
                        (s.name, url, authorization))
        return s

    def row(self, s):
        rows = self.db.dicts("SELECT * FROM setstream.sources WHERE stream = %s", (s.name,))
        return rows[0] if rows else None

    def wait_state(self, s, pred, what, timeout=15.0):
        return wait_for(what, lambda: (lambda r: r if r and pred(r) else None)(self.row(s)),
                        timeout=timeout)

    def stored(self, s):
        return dict(self.db.rows("SELECT jti, token FROM setstream.events WHERE stream = %s",
                                 (s.name,)))


@pytest.fixture
def sources(streams, db):
    return Sources(streams, db)


def test_sets_are_stored_once_and_acked_in_the_next_poll(loopback, transmitter, sources, db):
    auth = "Bearer poll-secret-" + str(time.time())
    s = sources.create(transmitter.url, authorization=auth)
    sent = dict(s.set() for _ in range(3))
    for j, tok in sent.items():
        transmitter.add(j, tok)
    wait_for("3 acks", lambda: set(transmitter.acked) == set(sent))
    assert sources.stored(s) == sent                     # byte for byte, once
    first = transmitter.requests[0]
    assert first["headers"]["authorization"] == auth
    assert first["headers"]["content-type"] == "application/json"
    assert first["body"]["returnImmediately"] is False
    assert first["body"]["maxEvents"] == 100
    assert first["body"]["ack"] == [] and first["body"]["setErrs"] == {}
    # the acks ride the poll after the one that brought the SETs
    carrying = [i for i, r in enumerate(transmitter.requests) if r["body"].get("ack")]
    assert carrying and all(i > 0 for i in carrying)
    r = sources.wait_state(s, lambda r: r["received"] == 3, "the received count")
    assert r["state"] == "active" and r["last_status"] == 200 and r["failures"] == 0
    assert r["polled_at"] is not None


def test_a_set_that_fails_verification_is_a_seterr_in_the_next_poll(
        loopback, transmitter, sources, db):
    s = sources.create(transmitter.url)
    good_jti, good = s.set()
    bad_jti, bad = s.set(aud="https://someone-else.example.com/")
    transmitter.add(good_jti, good)
    transmitter.add(bad_jti, bad)
    wait_for("the setErr", lambda: bad_jti in transmitter.set_errs)
    assert transmitter.set_errs[bad_jti]["err"] == "invalid_audience"
    # a request that carries setErrs says the language of their
    # descriptions (RFC 8936 2.4.2); one without setErrs does not need to
    with transmitter.lock:
        reqs = list(transmitter.requests)
    carrying = [r for r in reqs if isinstance(r["body"], dict) and r["body"].get("setErrs")]
    assert carrying and all(r["headers"].get("content-language") == "en" for r in carrying)
    assert all("content-language" not in r["headers"] for r in reqs
               if isinstance(r["body"], dict) and not r["body"].get("setErrs"))
    wait_for("the ack", lambda: good_jti in transmitter.acked)
    assert bad_jti not in transmitter.acked
    assert set(sources.stored(s)) == {good_jti}
    assert sources.wait_state(s, lambda r: r["rejected"] == 1, "the rejected count")


def test_a_set_sent_again_after_its_ack_is_stored_once_and_acked_again(
        loopback, transmitter, sources, db):
    """What a peer does when our acks were lost with a crash."""
    s = sources.create(transmitter.url)
    jti, tok = s.set()
    transmitter.add(jti, tok)
    wait_for("the ack", lambda: transmitter.acked.count(jti) == 1)
    transmitter.add(jti, tok)
    wait_for("the second ack", lambda: transmitter.acked.count(jti) == 2)
    assert db.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (s.name,)) == 1


def test_5xx_backs_off_and_the_sets_arrive_after(loopback, transmitter, sources, db):
    transmitter.script = [answer(503), answer(500)]
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["last_status"] in (500, 503), "a failure")
    assert r["state"] == "backoff" and r["failures"] >= 1
    jti, tok = s.set()
    transmitter.add(jti, tok)
    wait_for("the ack", lambda: jti in transmitter.acked, timeout=20)
    r = sources.wait_state(s, lambda r: r["state"] == "active" and r["failures"] == 0,
                           "recovery")
    t = [q["t"] for q in transmitter.requests]
    assert t[1] - t[0] >= 0.4, "no backoff after the 503"
    assert set(sources.stored(s)) == {jti}


def test_429_with_retry_after_waits(loopback, transmitter, sources, db):
    transmitter.script = [answer(429, headers={"Retry-After": "2"})]
    s = sources.create(transmitter.url)
    wait_for("the second poll", lambda: transmitter.count() >= 2, timeout=10)
    t = [q["t"] for q in transmitter.requests]
    assert t[1] - t[0] >= 1.9
    assert sources.row(s)["last_status"] in (200, 429)


@pytest.mark.parametrize("status", [403, 404])
def test_403_and_404_suspend_polling(loopback, transmitter, sources, db, status):
    transmitter.script = [answer(status, err="access_denied", description="go away")]
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["state"] == "suspended", "the suspension")
    assert r["last_status"] == status and "go away" in r["suspended_reason"]
    time.sleep(1.5)
    assert transmitter.count() == 1, "a suspended source was polled again"
    # set_source again resumes it
    db.execute("SELECT setstream.set_source(%s, 'poll', %s)", (s.name, transmitter.url))
    wait_for("a poll after set_source", lambda: transmitter.count() >= 2)


def test_401_suspends_after_auth_retries(loopback, transmitter, sources, db):
    transmitter.script = [answer(401)] * 3
    s = sources.create(transmitter.url, authorization="Bearer wrong")
    r = sources.wait_state(s, lambda r: r["state"] == "suspended", "the suspension",
                           timeout=20)
    assert r["auth_failures"] == 3 and "authentication_failed" in r["suspended_reason"]
    assert transmitter.count() == 3


@pytest.mark.parametrize("bad,why", [
    (answer(200, body=b"{not json"), "invalid poll response"),
    (answer(200, body=b'{"sets": [1]}'), "invalid poll response"),
    (answer(200, body=b'{"sets": {}, "moreAvailable": "yes"}'), "moreAvailable"),
    ("reset", ""),
])
def test_a_bad_answer_backs_off(loopback, transmitter, sources, db, bad, why):
    transmitter.script = [bad]
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["state"] == "backoff", "the backoff")
    assert why in r["last_error"]
    jti, tok = s.set()
    transmitter.add(jti, tok)
    wait_for("the ack after the backoff", lambda: jti in transmitter.acked, timeout=20)


def test_a_poll_that_hangs_times_out(loopback, transmitter, sources, db):
    loopback.set(source_poll_timeout=1500)
    transmitter.script = ["hang"]
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["last_status"] == 0, "the timeout")
    assert "imeout" in r["last_error"] or "timed out" in r["last_error"]
    jti, tok = s.set()
    transmitter.add(jti, tok)
    wait_for("the ack after the timeout", lambda: jti in transmitter.acked, timeout=20)


def test_an_oversized_answer_is_refused(loopback, transmitter, sources, db):
    loopback.set(max_request_bytes=4096)
    s = sources.create(transmitter.url)
    jti, tok = s.set(padding="x" * 8000)
    transmitter.add(jti, tok)
    r = sources.wait_state(s, lambda r: r["state"] == "backoff", "the refusal")
    assert "larger than" in r["last_error"] or "size" in r["last_error"].lower()
    assert sources.stored(s) == {}
    assert jti not in transmitter.acked


def test_a_certificate_that_does_not_verify_is_refused(loopback, certificate, sources, db):
    t = Transmitter(tls=certificate)
    try:
        s = sources.create(t.url)
        r = sources.wait_state(s, lambda r: r["state"] == "backoff", "the refusal")
        assert r["last_status"] == 0
        assert "certificate" in r["last_error"].lower() or "SSL" in r["last_error"]
        assert t.count() == 0
    finally:
        t.close()


def test_a_trusted_certificate_polls_over_tls(loopback, certificate, sources, db):
    loopback.set(outbound_ca_file=certificate[0])
    t = Transmitter(tls=certificate)
    try:
        s = sources.create(t.url)
        jti, tok = s.set()
        t.add(jti, tok)
        wait_for("the ack", lambda: jti in t.acked)
    finally:
        t.close()


def test_loopback_is_refused_unless_allowed(gucs, transmitter, sources, db):
    gucs.set(outbound_allowed_networks="")
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["state"] == "backoff", "the refusal")
    assert "not allowed" in r["last_error"]
    assert transmitter.count() == 0


def test_no_redirect_is_followed(loopback, transmitter, sources, db):
    transmitter.script = [answer(302, headers={"Location": transmitter.url + "2"})]
    s = sources.create(transmitter.url)
    r = sources.wait_state(s, lambda r: r["state"] == "suspended", "the suspension")
    assert "redirect" in r["suspended_reason"]
    assert transmitter.count() == 1


def test_none_stops_polling(loopback, transmitter, sources, db):
    s = sources.create(transmitter.url, authorization="Bearer x")
    wait_for("a poll", lambda: transmitter.count() >= 1)
    db.execute("SELECT setstream.set_source(%s, 'none', NULL)", (s.name,))
    assert sources.row(s) is None
    assert db.val("SELECT count(*) FROM setstream.source_secrets WHERE stream = %s",
                  (s.name,)) == 0
    time.sleep(transmitter.wait + 0.3)       # the poll in flight ends
    n = transmitter.count()
    time.sleep(1.5)
    assert transmitter.count() == n


def test_a_stream_refusing_inbound_is_not_polled(loopback, transmitter, sources, db):
    """set_inbound(stream, 'refuse') stops the polls (they would only
    bring SETs to refuse); 'accept' starts them again; a disabled stream
    is polled (disabled stops what a stream sends, not what it takes)."""
    s = sources.create(transmitter.url)
    wait_for("a poll", lambda: transmitter.count() >= 1)
    db.execute("SELECT setstream.set_inbound(%s, 'refuse')", (s.name,))
    time.sleep(transmitter.wait + 1.5)       # the poll in flight ends
    n = transmitter.count()
    time.sleep(2.0)
    assert transmitter.count() == n, "a stream refusing inbound SETs was polled"
    db.execute("SELECT setstream.set_inbound(%s, 'accept')", (s.name,))
    db.execute("SELECT setstream.disable_stream(%s)", (s.name,))
    jti, tok = s.set()
    transmitter.add(jti, tok)
    wait_for("the ack", lambda: jti in transmitter.acked)
    assert sources.stored(s) == {jti: tok}


def test_set_source_checks_its_arguments(loopback, sources, streams, db):
    s = streams.create(token=False)
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.set_source(%s, 'push', 'https://x.example.com/')",
                   (s.name,))
    assert e.value.pgcode == "22023"
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.set_source(%s, 'poll', 'ftp://x.example.com/')",
                   (s.name,))
    assert e.value.pgcode == "22023"
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.set_source(%s, 'poll', 'https://x/', 'a\r\nb: c')",
                   (s.name,))
    assert e.value.pgcode == "22023" and "a\r\nb" not in str(e.value)
    db.execute("SELECT setstream.set_source(%s, 'urn:ietf:rfc:8936', 'https://x.example.com/')",
               (s.name,))
    assert sources.row(s)["method"] == "poll"


# ---------------------------------------------------------------------------
# the credential: in no relation a non-owner reads, never logged
# ---------------------------------------------------------------------------

def test_the_source_header_is_in_no_relation_a_non_owner_reads(loopback, transmitter, role):
    from test_secrets import new_secret, readable_relations
    name, conn = role
    secret = new_secret()
    stream = "pollsec-" + uuid.uuid4().hex[:10]
    with conn.cursor() as cur:
        cur.execute("SELECT setstream.create_stream(%s, 'https://a.example/', ARRAY['https://b.example/'])",
                    (stream,))
        cur.execute("SELECT setstream.set_source(%s, 'poll', %s, %s)::text",
                    (stream, transmitter.url, secret))
        assert secret not in cur.fetchone()[0]
    wait_for("a poll", lambda: transmitter.count() >= 1)
    assert transmitter.requests[0]["headers"]["authorization"] == secret
    relations = readable_relations(conn)
    assert "sources" in relations and "source_secrets" not in relations
    for rel in relations:
        with conn.cursor() as cur:
            cur.execute("SELECT t::text FROM setstream.%s t" % rel)
            for (text,) in cur.fetchall():
                assert secret not in text, "the header shows in setstream.%s" % rel
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM setstream.sources WHERE stream = %s", (stream,))
        assert cur.fetchone()[0] == 1          # its owner sees the source
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM setstream.source_secrets")


def test_the_source_header_is_never_logged(loopback, transmitter, sources, db):
    from test_secrets import LOGFILE, log_text, new_secret
    import psycopg
    if not LOGFILE:
        pytest.skip("SETSTREAM_LOGFILE is not set (scripts/test.sh sets it)")
    secret = new_secret()
    before = len(log_text())
    s = sources.streams.create(peer_algs=("ES256",), token=False)
    bound = psycopg.connect(dbname=db.val("SELECT current_database()"), autocommit=True,
                            options="-c log_min_error_statement=error")
    try:
        for args in [("no-such-" + s.name, "poll", transmitter.url, secret),
                     (s.name, "poll", "ftp://x.example/", secret),
                     (s.name, "poll", transmitter.url, secret + "\r\nX: y")]:
            with pytest.raises(psycopg.Error):
                bound.execute("SELECT setstream.set_source(%s, %s, %s, %s)", args)
        transmitter.script = [answer(401, headers={"WWW-Authenticate": "Bearer"})] * 3
        bound.execute("SELECT setstream.set_source(%s, %s, %s, %s)",
                      (s.name, "poll", transmitter.url, secret))
    finally:
        bound.close()
    sources.wait_state(s, lambda r: r["state"] == "suspended", "the suspension", timeout=20)
    # logged just after the commit that recorded it
    wait_for("the suspension's log line", lambda: "suspended" in log_text()[before:])
    logged = log_text()[before:]
    assert "set_source" in logged, "the failing statements were not logged at all"
    assert "suspended" in logged, "the suspension was not logged"
    assert secret not in logged and secret[7:] not in logged
