"""RFC 8936 poll over the listener: POST /streams/{name}/poll.

Short polls, SETs verified with jwcrypto against /jwks.json and compared
byte for byte with setstream.outbox, ack / setErrs / maxEvents /
moreAvailable, malformed requests, and the long poll: woken by the commit
of an emit in another session (latency measured), timing out at
setstream.poll_timeout, holding no transaction while it waits, not woken
by other streams, and not losing a SET when its client goes away.
"""

import statistics
import threading
import time

import pytest

import listener_support as ls
from listener_support import assert_error, jdump


@pytest.fixture
def stream(streams):
    return streams.create(signing_alg="ES256")


def test_short_poll_nothing(client, stream):
    r = client.poll(stream, {"returnImmediately": True})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    assert r.json() == {"sets": {}, "moreAvailable": False}


def test_emit_then_poll_returns_verifiable_set(client, db, stream):
    jti = db.emit(stream.name, event={"initiating_entity": "admin"})
    r = client.poll(stream)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["moreAvailable"] is False
    assert list(body["sets"]) == [jti]
    token = body["sets"][jti]
    row = db.outbox(stream.name, jti)
    assert token == row["token"]  # byte-identical to what was signed at emit
    assert row["state"] == "delivered"
    assert row["attempts"] == 1
    assert row["delivered_at"] is not None

    # an independent JOSE implementation verifies it with the published key
    header, _ = ls.split_token(token)
    keys = {k["kid"]: k for k in client.get("/jwks.json").json()["keys"]}
    assert header["kid"] == stream.signing_jwk["kid"]
    header, claims = ls.verify_with_jwk(token, keys[header["kid"]], "ES256")
    assert header["typ"] == "secevent+jwt"
    assert claims["jti"] == jti
    assert claims["iss"] == stream.issuer
    assert claims["aud"] == stream.audience[0]
    assert claims["events"] == {ls.SESSION_REVOKED: {"initiating_entity": "admin"}}
    assert claims["sub_id"] == {"format": "opaque", "id": stream.name}
    assert isinstance(claims["iat"], int)
    assert "sub" not in claims and "exp" not in claims

    # delivered and unacknowledged: not handed out again inside the
    # redelivery interval
    assert client.poll(stream).json() == {"sets": {}, "moreAvailable": False}


def test_ack_marks_acked(client, db, stream):
    jti = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [jti]
    r = client.poll(stream, {"ack": [jti], "maxEvents": 0, "returnImmediately": True})
    assert r.status_code == 200, r.text
    assert r.json()["sets"] == {}
    row = db.outbox(stream.name, jti)
    assert row["state"] == "acked"
    assert row["acked_at"] is not None


def test_ack_and_poll_in_one_request(client, db, stream):
    first = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [first]
    second = db.emit(stream.name)
    r = client.poll(stream, {"ack": [first], "returnImmediately": True})
    assert list(r.json()["sets"]) == [second]
    assert db.outbox(stream.name, first)["state"] == "acked"
    assert db.outbox(stream.name, second)["state"] == "delivered"


def test_set_errs_marks_failed(client, db, stream):
    jti = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [jti]
    r = client.poll(stream, {
        "setErrs": {jti: {"err": "invalid_key", "description": "kid unknown here"}},
        "returnImmediately": True,
    }, headers={"Content-Language": "en"})
    assert r.status_code == 200, r.text
    row = db.outbox(stream.name, jti)
    assert row["state"] == "failed"
    assert row["err"] == "invalid_key"
    assert row["description"] == "kid unknown here"
    # a failed SET is never delivered again
    db.execute("UPDATE setstream.outbox SET delivered_at = now() - interval '1 day' "
               "WHERE stream = %s", (stream.name,))
    assert client.poll(stream).json()["sets"] == {}


def test_acks_of_another_stream_ignored(client, db, streams, stream):
    other = streams.create(signing_alg="ES256")
    theirs = db.emit(other.name)
    assert list(client.poll(other).json()["sets"]) == [theirs]
    r = client.poll(stream, {"ack": [theirs, "no-such-jti"],
                             "setErrs": {theirs: {"err": "invalid_request"}},
                             "returnImmediately": True})
    assert r.status_code == 200, r.text
    assert db.outbox(other.name, theirs)["state"] == "delivered"


def test_max_events_and_more_available(client, db, stream):
    jtis = [db.emit(stream.name, event={"n": i}) for i in range(5)]
    r = client.poll(stream, {"maxEvents": 2, "returnImmediately": True})
    body = r.json()
    assert sorted(body["sets"]) == sorted(jtis[:2])  # oldest first
    assert body["moreAvailable"] is True
    body = client.poll(stream, {"maxEvents": 2, "returnImmediately": True}).json()
    assert sorted(body["sets"]) == sorted(jtis[2:4])
    assert body["moreAvailable"] is True
    body = client.poll(stream, {"maxEvents": 2, "returnImmediately": True}).json()
    assert list(body["sets"]) == [jtis[4]]
    assert body["moreAvailable"] is False


def test_max_events_zero_is_ack_only_and_answers_at_once(client, db, stream):
    jti = db.emit(stream.name)
    t0 = time.monotonic()
    r = client.poll(stream, {"maxEvents": 0}, timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert r.json()["sets"] == {}
    assert db.outbox(stream.name, jti)["state"] == "pending"


def test_unknown_members_ignored(client, db, stream):
    jti = db.emit(stream.name)
    r = client.poll(stream, {"returnImmediately": True, "max_events": 0, "x": [1, {}]})
    assert r.status_code == 200, r.text
    assert list(r.json()["sets"]) == [jti]


@pytest.mark.parametrize("body", [
    '{"maxEvents": -1, "returnImmediately": true}',
    '{"maxEvents": 1.5, "returnImmediately": true}',
    '{"maxEvents": "3", "returnImmediately": true}',
    '{"maxEvents": null, "returnImmediately": true}',
    '{"ack": "abc", "returnImmediately": true}',
    '{"ack": {"a": 1}, "returnImmediately": true}',
    '{"ack": [1, 2], "returnImmediately": true}',
    '{"setErrs": [], "returnImmediately": true}',
    '{"setErrs": "x", "returnImmediately": true}',
    '{"setErrs": {"j": "invalid_key"}, "returnImmediately": true}',
    '{"setErrs": {"j": {"description": "no err"}}, "returnImmediately": true}',
    '{"returnImmediately": "yes"}',
    '{"returnImmediately": 1}',
    '{"returnImmediately": true, "returnImmediately": true}',
    '{"returnImmediately": true',
    'not json',
    '[]',
    '"string"',
    '',
])
def test_malformed_poll_400(client, db, stream, body):
    jti = db.emit(stream.name)
    r = client.poll(stream, body, timeout=5)
    assert_error(r, 400, "invalid_request")
    # a rejected request changes nothing
    assert db.outbox(stream.name, jti)["state"] == "pending"


def test_malformed_poll_applies_no_ack(client, db, stream):
    jti = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [jti]
    r = client.poll(stream, {"ack": [jti], "maxEvents": -1, "returnImmediately": True})
    assert_error(r, 400, "invalid_request")
    assert db.outbox(stream.name, jti)["state"] == "delivered"


def test_poll_content_types(client, stream):
    ok = client.post("/streams/%s/poll" % stream.name, jdump({"returnImmediately": True}),
                     token=stream.token)  # no Content-Type
    assert ok.status_code == 200, ok.text
    ok = client.post("/streams/%s/poll" % stream.name, jdump({"returnImmediately": True}),
                     content_type="application/json; charset=utf-8", token=stream.token)
    assert ok.status_code == 200, ok.text
    bad = client.post("/streams/%s/poll" % stream.name, jdump({"returnImmediately": True}),
                      content_type="text/plain", token=stream.token)
    assert bad.status_code == 415, bad.text


def test_poll_get_405(client, stream):
    r = client.get("/streams/%s/poll" % stream.name, token=stream.token)
    assert r.status_code == 405, r.text
    assert [m.strip() for m in r.headers.get("Allow", "").split(",")] == ["POST"]


def test_disabled_stream_polls_empty_and_holds_nothing(client, db, stream):
    """SSF 8.1.2.1 and RFC 8936 2.5: a poll on a disabled stream answers
    200 with no SETs, its acks and setErrs still applied; disabling settles
    what the stream held (failed, stream_disabled); emit queues nothing."""
    delivered = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [delivered]
    acked = db.emit(stream.name)
    rejected = db.emit(stream.name)
    assert sorted(client.poll(stream).json()["sets"]) == sorted([acked, rejected])
    pending = db.emit(stream.name)
    db.execute("SELECT setstream.disable_stream(%s)", (stream.name,))
    for jti in (delivered, acked, rejected, pending):
        row = db.outbox(stream.name, jti)
        assert (row["state"], row["err"]) == ("failed", "stream_disabled"), row
    assert db.val("SELECT setstream.emit(%s, %s, '{}'::jsonb)",
                  (stream.name, ls.SESSION_REVOKED)) is None

    r = client.poll(stream, {"returnImmediately": True, "ack": [acked],
                             "setErrs": {rejected: {"err": "invalid_key",
                                                    "description": "no such key"}}})
    assert r.status_code == 200, r.text
    assert r.json() == {"sets": {}, "moreAvailable": False}
    # a long poll on a disabled stream does not wait: nothing can come
    t0 = time.monotonic()
    assert client.poll(stream, {}).json() == {"sets": {}, "moreAvailable": False}
    assert time.monotonic() - t0 < 1.0

    # enabled again, new SETs flow; the settled ones stay failed
    db.execute("SELECT setstream.enable_stream(%s)", (stream.name,))
    fresh = db.emit(stream.name)
    assert list(client.poll(stream).json()["sets"]) == [fresh]
    assert db.outbox(stream.name, pending)["state"] == "failed"


def test_disable_answers_a_parked_long_poll_at_once(db, gucs, stream):
    gucs.set(poll_timeout="10000")
    poller = Poller(stream, {})
    db.wait_parked(stream.name)
    t0 = time.monotonic()
    db.execute("SELECT setstream.disable_stream(%s)", (stream.name,))
    r = poller.result(timeout=5)
    assert r.status_code == 200, r.text
    assert r.json() == {"sets": {}, "moreAvailable": False}
    assert poller.answered_at - t0 < 2.0, "the parked poll waited for its timeout"


def test_refusing_inbound_does_not_stop_polls(client, db, stream):
    jti = db.emit(stream.name)
    db.execute("SELECT setstream.set_inbound(%s, 'refuse')", (stream.name,))
    assert list(client.poll(stream).json()["sets"]) == [jti]


def test_paused_stream_polls_empty(client, db, stream):
    jti = db.emit(stream.name)
    db.execute("SELECT setstream.set_stream_status(%s, 'paused')", (stream.name,))
    assert client.poll(stream).json()["sets"] == {}
    db.execute("SELECT setstream.enable_stream(%s)", (stream.name,))
    assert list(client.poll(stream).json()["sets"]) == [jti]


def test_long_poll_returns_at_once_when_sets_are_due(client, db, stream):
    jti = db.emit(stream.name)
    t0 = time.monotonic()
    r = client.poll(stream, {}, timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert list(r.json()["sets"]) == [jti]


# ---------------------------------------------------------------------------
# long poll
# ---------------------------------------------------------------------------

class Poller(threading.Thread):
    """A poll in a thread of its own, with its own HTTP client."""

    def __init__(self, stream, body, timeout=ls.HTTP_TIMEOUT):
        super().__init__(daemon=True)
        self.stream, self.body, self.timeout = stream, body, timeout
        self.response = self.error = self.answered_at = None
        self.started_at = time.monotonic()
        self.start()

    def run(self):
        client = ls.Client()
        try:
            self.response = client.poll(self.stream, self.body, timeout=self.timeout)
            self.answered_at = time.monotonic()
        except Exception as e:  # reported by result()
            self.error = e
        finally:
            client.close()

    def result(self, timeout=ls.HTTP_TIMEOUT):
        self.join(timeout)
        assert not self.is_alive(), "the poll did not return"
        if self.error:
            raise self.error
        return self.response


def test_long_poll_woken_by_commit(db, gucs, stream, capsys):
    """A parked long poll answers within milliseconds of the commit that
    emits a SET; measured from just before COMMIT to the response."""
    gucs.set(poll_timeout="10000")
    emitter = ls.connect_db(autocommit=False)
    latencies = []
    ack = []
    try:
        for i in range(10):
            poller = Poller(stream, {"ack": ack} if ack else {})
            db.wait_parked(stream.name)
            with emitter.cursor() as cur:
                cur.execute("SELECT setstream.emit(%s, %s, %s::jsonb)",
                            (stream.name, ls.SESSION_REVOKED, jdump({"n": i})))
                jti = cur.fetchone()[0]
            # not before the commit
            time.sleep(0.05)
            assert poller.is_alive(), "the long poll answered before the commit"
            t0 = time.monotonic()
            emitter.commit()
            r = poller.result(5)
            latencies.append(poller.answered_at - t0)
            assert r.status_code == 200, r.text
            body = r.json()
            assert list(body["sets"]) == [jti]
            assert body["sets"][jti] == db.outbox(stream.name, jti)["token"]
            if ack:
                assert db.outbox(stream.name, ack[0])["state"] == "acked"
            ack = [jti]
    finally:
        emitter.close()
    ms = sorted(x * 1000 for x in latencies)
    with capsys.disabled():
        print("\nlong-poll wake-up latency, commit -> response (ms): median %.1f, "
              "min %.1f, max %.1f, all %s" % (statistics.median(ms), ms[0], ms[-1],
                                              ["%.1f" % x for x in ms]))
    # the listener looks at parked polls every 250 ms anyway: only the
    # commit's own wake-up (its SetLatch) gets under these bounds
    assert statistics.median(ms) < 30, ms
    assert ms[-1] < 150, ms


def test_rolled_back_emit_does_not_answer(db, gucs, stream):
    gucs.set(poll_timeout="1500")
    poller = Poller(stream, {})
    db.wait_parked(stream.name)
    conn = ls.connect_db(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb)",
                        (stream.name, ls.SESSION_REVOKED))
        conn.rollback()
    finally:
        conn.close()
    r = poller.result()
    assert r.json()["sets"] == {}
    assert poller.answered_at - poller.started_at >= 1.3  # the timeout, not the rollback
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s",
                  (stream.name,)) == 0


def test_long_poll_times_out(client, gucs, stream):
    gucs.set(poll_timeout="1000")
    t0 = time.monotonic()
    r = client.poll(stream, {}, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.json()["sets"] == {}
    assert r.json().get("moreAvailable", False) is False
    assert 0.9 <= elapsed < 2.0, elapsed


def test_long_poll_holds_no_transaction(db, gucs, stream):
    """While a long poll waits, the listener is idle in pg_stat_activity:
    no open transaction, no snapshot (which would hold back vacuum)."""
    gucs.set(poll_timeout="10000")
    poller = Poller(stream, {})
    db.wait_parked(stream.name)
    time.sleep(0.3)
    rows = db.dicts("SELECT pid, state, xact_start, backend_xid, backend_xmin "
                    "FROM pg_stat_activity WHERE backend_type = 'setstream listener'")
    assert rows, "no setstream listener in pg_stat_activity"
    for row in rows:
        assert row["state"] == "idle", row
        assert row["xact_start"] is None, row
        assert row["backend_xid"] is None, row
        assert row["backend_xmin"] is None, row
    assert db.val("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%%' "
                  "AND pid IN (SELECT pid FROM pg_stat_activity "
                  "WHERE backend_type = 'setstream listener')") == 0
    assert poller.is_alive()
    jti = db.emit(stream.name)
    assert list(poller.result(5).json()["sets"]) == [jti]


def test_long_poll_not_woken_by_other_streams(db, gucs, streams, stream):
    gucs.set(poll_timeout="10000")
    others = [streams.create(signing_alg="ES256") for _ in range(3)]
    poller = Poller(stream, {})
    db.wait_parked(stream.name)
    for other in others:
        db.emit(other.name)
    time.sleep(0.5)
    assert poller.is_alive(), "a SET of another stream answered the long poll"
    assert db.long_polls(stream.name) == 1
    jti = db.emit(stream.name)
    r = poller.result(5)
    assert r.json()["sets"] == {jti: db.outbox(stream.name, jti)["token"]}
    for other in others:
        assert db.val("SELECT state FROM setstream.outbox WHERE stream = %s",
                      (other.name,)) == "pending"


def test_two_long_polls_one_set(db, gucs, stream):
    """Two parked polls of one stream: one SET goes to exactly one of them."""
    gucs.set(poll_timeout="1500")
    p1 = Poller(stream, {})
    p2 = Poller(stream, {})
    db.wait_parked(stream.name, 2)
    jti = db.emit(stream.name)
    got = [p.result(5).json()["sets"] for p in (p1, p2)]
    assert sorted(len(s) for s in got) == [0, 1], got
    assert any(list(s) == [jti] for s in got)
    assert db.outbox(stream.name, jti)["attempts"] == 1


def test_abandoned_long_poll_does_not_swallow_a_set(client, db, gucs, raw, stream):
    """A long poll whose client went away must not take the next SET."""
    gucs.set(poll_timeout="10000")
    c = raw()
    c.send(ls.build_request("POST", "/streams/%s/poll" % stream.name, [
        ("Authorization", "Bearer " + stream.token),
        ("Content-Type", "application/json")], b"{}"))
    db.wait_parked(stream.name)
    c.close()
    deadline = time.monotonic() + 5
    while db.long_polls(stream.name) != 0:
        assert time.monotonic() < deadline, "the listener kept the abandoned long poll"
        time.sleep(0.01)
    jti = db.emit(stream.name)
    time.sleep(0.2)
    assert db.outbox(stream.name, jti)["state"] == "pending"
    r = client.poll(stream)
    assert list(r.json()["sets"]) == [jti]
    assert db.outbox(stream.name, jti)["attempts"] == 1


def test_long_poll_max_events_respected(db, gucs, stream):
    gucs.set(poll_timeout="10000")
    poller = Poller(stream, {"maxEvents": 1})
    db.wait_parked(stream.name)
    conn = ls.connect_db(autocommit=False)
    try:
        with conn.cursor() as cur:
            for i in range(3):
                cur.execute("SELECT setstream.emit(%s, %s, %s::jsonb)",
                            (stream.name, ls.SESSION_REVOKED, jdump({"n": i})))
        conn.commit()
    finally:
        conn.close()
    body = poller.result(5).json()
    assert len(body["sets"]) == 1
    assert body["moreAvailable"] is True
