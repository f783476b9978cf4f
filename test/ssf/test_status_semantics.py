"""SSF status semantics (issue 13): paused holds, disabled drops,
stream-updated SETs, POST /ssf/verify, inactivity.

Made the way the OpenID SSF conformance suite makes its checks: a receiver
creates a poll stream through /ssf/streams and reads its SETs from the
stream's poll endpoint_url with its receiver token.
"""

import base64
import json
import time

import pytest

from listener_support import URL, assert_error

CT = "application/json"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def decode(token):
    header, payload, _ = token.split(".")
    return b64json(header), b64json(payload)


def post(client, path, token, body):
    return client.post(path, json.dumps(body), content_type=CT, token=token)


class Rcv:
    """A receiver with a poll stream made through /ssf/streams"""

    def __init__(self, client, db, token):
        self.client, self.db, self.token = client, db, token
        r = post(client, "/ssf/streams", token, {"events_requested": [SESSION_REVOKED]})
        assert r.status_code == 201, r.text
        cfg = r.json()
        self.sid = cfg["stream_id"]
        self.path = cfg["delivery"]["endpoint_url"][len(URL):]

    def poll(self, ack=(), max_events=10):
        r = post(self.client, self.path, self.token,
                 {"maxEvents": max_events, "returnImmediately": True, "ack": list(ack)})
        assert r.status_code == 200, r.text
        return r.json().get("sets", {})

    def drain(self):
        """Poll one at a time and acknowledge until nothing is due; the
        SETs in delivery order (a "sets" object's members have none)"""
        got = []
        sets = self.poll(max_events=1)
        while sets:
            assert len(sets) == 1
            got.extend(sets.items())
            sets = self.poll(ack=list(sets), max_events=1)
        return got

    def status(self, status, reason=None):
        body = {"stream_id": self.sid, "status": status}
        if reason:
            body["reason"] = reason
        r = post(self.client, "/ssf/status", self.token, body)
        assert r.status_code == 200, r.text
        return r

    def verify(self, state=None):
        body = {"stream_id": self.sid}
        if state is not None:
            body["state"] = state
        return post(self.client, "/ssf/verify", self.token, body)


@pytest.fixture
def rcv(client, db, receivers, transmitter):
    name = receivers.create(audience=["https://rp.example/aud"])
    token = receivers.token(name)
    return lambda: Rcv(client, db, token)


def event_of(token):
    _, claims = decode(token)
    assert len(claims["events"]) == 1
    (etype, event), = claims["events"].items()
    return etype, event, claims


def assert_ssf_set(token, sid):
    header, claims = decode(token)
    assert header["typ"] == "secevent+jwt"
    assert "sub" not in claims and "exp" not in claims
    assert claims["iss"] == URL
    assert claims["aud"] == "https://rp.example/aud"
    assert isinstance(claims["iat"], int) and claims["iat"] <= time.time() + 1
    assert claims["sub_id"] == {"format": "opaque", "id": sid}


def test_create_queues_a_verification_without_state(rcv):
    s = rcv()
    got = s.drain()
    assert len(got) == 1
    etype, event, _ = event_of(got[0][1])
    assert etype == VERIFICATION and event == {}
    assert_ssf_set(got[0][1], s.sid)


def test_paused_holds_then_releases_in_order(rcv, db):
    s = rcv()
    s.drain()
    s.status("paused")
    jtis = [db.emit(s.sid) for _ in range(3)]
    assert s.verify("while-paused").status_code == 204
    assert s.poll() == {}
    assert [db.outbox(s.sid, j)["state"] for j in jtis] == ["pending"] * 3
    s.status("enabled")
    got = s.drain()
    assert [j for j, _ in got][:3] == jtis
    assert len(got) == 4
    etype, event, _ = event_of(got[3][1])
    assert (etype, event) == (VERIFICATION, {"state": "while-paused"})
    # the receiver asked for both changes: no stream-updated SET
    assert all(event_of(t)[0] != STREAM_UPDATED for _, t in got)


def test_disabled_drops_and_verification_after_enable(rcv, db):
    s = rcv()
    s.drain()
    jti = db.emit(s.sid)
    s.status("disabled")
    assert s.poll() == {}
    assert db.outbox(s.sid, jti)["err"] == "stream_disabled"
    assert db.emit(s.sid) is None
    # a verification asked for on a disabled stream: 204, nothing held
    assert s.verify("dropped").status_code == 204
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                  "AND state = 'pending'", (s.sid,)) == 0
    s.status("enabled")
    got = s.drain()
    assert len(got) == 1
    assert event_of(got[0][1])[:2] == (VERIFICATION, {})


def test_verification_over_poll_with_and_without_state(rcv):
    s = rcv()
    s.drain()
    r = s.verify("VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo=")
    assert r.status_code == 204, r.text
    assert r.content == b""
    got = s.drain()
    assert len(got) == 1
    etype, event, _ = event_of(got[0][1])
    assert (etype, event) == (VERIFICATION,
                              {"state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="})
    assert_ssf_set(got[0][1], s.sid)
    t = rcv()
    t.drain()
    assert t.verify().status_code == 204
    got = t.drain()
    assert len(got) == 1
    assert event_of(got[0][1])[:2] == (VERIFICATION, {})


def test_second_verification_within_the_interval_is_429(rcv, gucs):
    gucs.set(ssf_min_verification_interval=30)
    s = rcv()
    s.drain()
    assert s.verify("one").status_code == 204
    r = s.verify("two")
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 30
    got = s.drain()
    assert [event_of(t)[1] for _, t in got] == [{"state": "one"}]
    # the transmitter's own verification after create does not count
    t = rcv()
    assert t.verify("first").status_code == 204


@pytest.mark.parametrize("body, code", [
    ({}, 400), ({"stream_id": 7}, 400), ({"stream_id": "x", "state": 1}, 400),
    ({"stream_id": "00000000-0000-0000-0000-000000000000"}, 404)])
def test_verification_errors(rcv, client, body, code):
    s = rcv()
    assert_error(post(client, "/ssf/verify", s.token, body), code)
    assert_error(post(client, "/ssf/verify", "ssr_" + "A" * 43, {"stream_id": s.sid}), 401)
    assert client.get("/ssf/verify", token=s.token).status_code == 405


def test_read_only_token_cannot_verify(rcv, client, receivers, db):
    s = rcv()
    rcvname = db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (s.sid,))
    read = receivers.token(rcvname, ["ssf.read"])
    assert_error(post(client, "/ssf/verify", read, {"stream_id": s.sid}), 403)


def test_sql_status_change_sends_stream_updated_first(rcv, db):
    s = rcv()
    s.drain()
    held = db.emit(s.sid)
    db.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.sid,))
    after = db.emit(s.sid)
    got = s.poll()
    # only the stream-updated SET is delivered: the hold has begun
    assert len(got) == 1
    (jti, token), = got.items()
    etype, event, _ = event_of(token)
    assert etype == STREAM_UPDATED
    assert event == {"status": "paused",
                     "reason": "changed by the transmitter's administrator"}
    assert_ssf_set(token, s.sid)
    assert s.poll(ack=[jti]) == {}
    db.execute("SELECT setstream.set_stream_status(%s, 'enabled')", (s.sid,))
    got = s.drain()
    assert [j for j, _ in got][:2] == [held, after]
    assert event_of(got[2][1])[:2] == (STREAM_UPDATED, {
        "status": "enabled", "reason": "changed by the transmitter's administrator"})
    # disabled: the queued SETs fail, the stream-updated SET is still delivered
    dropped = db.emit(s.sid)
    db.execute("SELECT setstream.set_stream_status(%s, 'disabled')", (s.sid,))
    assert db.outbox(s.sid, dropped)["err"] == "stream_disabled"
    got = s.drain()
    assert len(got) == 1
    assert event_of(got[0][1])[:2] == (STREAM_UPDATED, {
        "status": "disabled", "reason": "changed by the transmitter's administrator"})


def test_sql_verify_stream(rcv, db):
    s = rcv()
    s.drain()
    jti = db.val("SELECT setstream.verify_stream(%s, 'from-sql')", (s.sid,))
    got = s.drain()
    assert [j for j, _ in got] == [jti]
    assert event_of(got[0][1])[:2] == (VERIFICATION, {"state": "from-sql"})
    db.execute("SELECT setstream.set_stream_status(%s, 'disabled')", (s.sid,))
    assert db.val("SELECT setstream.verify_stream(%s)", (s.sid,)) is None


def test_inactivity_pauses_then_disables(rcv, db, gucs):
    s = rcv()
    s.drain()
    gucs.set(ssf_inactivity_timeout=2)

    def wait_status(want, limit):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            st = db.val("SELECT status FROM setstream.streams WHERE name = %s", (s.sid,))
            if st == want:
                return
            time.sleep(0.2)
        raise AssertionError("stream %s is %s, not %s" % (s.sid, st, want))

    wait_status("paused", 15)
    wait_status("disabled", 15)
    updates = db.rows("SELECT claims->'events'->%s FROM setstream.outbox "
                      "WHERE stream = %s AND event_types = ARRAY[%s] ORDER BY seq",
                      (STREAM_UPDATED, s.sid, STREAM_UPDATED))
    assert [u[0] for u in updates] == [{"status": "paused", "reason": "inactivity"},
                                       {"status": "disabled", "reason": "inactivity"}]
    gucs.set(ssf_inactivity_timeout=0)
    # both are delivered, in order, though the stream is disabled
    got = s.drain()
    assert [event_of(t)[1]["status"] for _, t in got] == ["paused", "disabled"]


def test_activity_keeps_a_stream_enabled(rcv, db, gucs):
    s = rcv()
    s.drain()
    gucs.set(ssf_inactivity_timeout=2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s.poll()
        time.sleep(0.3)
    assert db.val("SELECT status FROM setstream.streams WHERE name = %s",
                  (s.sid,)) == "enabled"


def test_configuration_names_the_verification_interval_and_inactivity_timeout(rcv, client, gucs):
    """SSF 8.1.1: min_verification_interval and inactivity_timeout are the
    transmitter's, in seconds, and left out when there is none (the suite
    waits out min_verification_interval before it asks for a verification)"""
    gucs.set(ssf_min_verification_interval=30, ssf_inactivity_timeout=0)
    s = rcv()

    def config():
        r = client.get("/ssf/streams?stream_id=" + s.sid, token=s.token)
        assert r.status_code == 200, r.text
        return r.json()
    cfg = config()
    assert cfg["min_verification_interval"] == 30
    assert "inactivity_timeout" not in cfg
    # what the configuration says is what the listener does
    assert s.verify("one").status_code == 204
    r = s.verify("two")
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) <= cfg["min_verification_interval"]
    gucs.set(ssf_min_verification_interval=0, ssf_inactivity_timeout=86400)
    cfg = config()
    assert "min_verification_interval" not in cfg
    assert cfg["inactivity_timeout"] == 86400
    assert s.verify("three").status_code == 204
    # the configuration sent back as it is (PUT) is accepted
    r = client.request("PUT", "/ssf/streams", token=s.token,
                       headers={"Content-Type": CT}, data=json.dumps(cfg))
    assert r.status_code == 200, r.text
    assert r.json() == cfg
