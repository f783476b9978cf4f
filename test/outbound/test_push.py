"""RFC 8935 push by the sender worker (issue 17): requests and answers.

Each test makes a push stream whose endpoint is a scripted Receiver on
127.0.0.1 (allowed by setstream.outbound_allowed_networks), emits SETs, and
checks what reached the receiver and what the outbox and the stream's
delivery state say afterwards: one test per row of the answer table.
"""

import time

import psycopg2
import pytest

from conftest import answer, wait_for

ACKED = lambda r: r["state"] == "acked"        # noqa: E731
FAILED = lambda r: r["state"] == "failed"      # noqa: E731


def test_push_sends_the_stored_token_with_the_rfc8935_headers(loopback, receiver, pushes, db):
    auth = "Bearer outbound-" + str(time.time())
    s = pushes.create(receiver.url, authorization=auth)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, ACKED, "ack")
    assert receiver.count() == 1
    req = receiver.requests[0]
    assert req["path"] == "/events"
    assert req["body"] == row["token"].encode()          # byte for byte
    assert req["headers"]["content-type"] == "application/secevent+jwt"
    assert req["headers"]["accept"] == "application/json"
    assert req["headers"]["authorization"] == auth
    assert row["attempts"] == 1 and row["last_status"] == 202
    assert row["acked_at"] is not None and row["err"] is None
    d = pushes.delivery(s)
    assert d["state"] == "active" and d["nonconformant_acks"] == 0


def test_an_emit_is_pushed_within_milliseconds_of_its_commit(loopback, receiver, pushes, db):
    """The commit wakes the sender (wakeup.c): no waiting for its 1 s scan."""
    s = pushes.create(receiver.url)
    db.emit(s.name)
    wait_for("first push", lambda: receiver.count() == 1)
    time.sleep(0.3)
    delays = []
    for i in range(5):
        before = receiver.count()
        t0 = time.monotonic()
        db.emit(s.name)
        wait_for("push %d" % i, lambda: receiver.count() > before, timeout=5)
        delays.append(receiver.requests[-1]["t"] - t0)
        time.sleep(0.137 * (i + 1))   # land anywhere in the sender's scan period
    # the periodic scan alone would average 500 ms
    assert max(delays) < 0.4, delays


def test_other_2xx_is_acked_and_counted_nonconformant(loopback, receiver, pushes, db):
    receiver.default = answer(200, body=b'{"ok":true}')
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, ACKED, "ack")
    assert row["last_status"] == 200
    assert wait_for("the nonconformant count",
                    lambda: pushes.delivery(s)["nonconformant_acks"] == 1)
    assert pushes.delivery(s)["state"] == "active"


@pytest.mark.parametrize("err", ["invalid_request", "invalid_issuer",
                                 "invalid_audience", "invalid_state"])
def test_400_with_a_final_err_fails_the_set_without_retry(loopback, receiver, pushes, db, err):
    receiver.default = answer(400, err=err, description="rejected: " + err)
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, FAILED, "failure")
    assert row["err"] == err
    assert row["description"] == "rejected: " + err
    assert row["last_status"] == 400 and row["attempts"] == 1
    time.sleep(1.5)
    assert receiver.count() == 1, "a SET failed by the receiver was pushed again"
    assert pushes.delivery(s)["state"] == "active"


def test_400_invalid_key_is_retried_for_a_bounded_time_then_failed(loopback, receiver, pushes, db):
    loopback.set(invalid_key_retry="5")
    receiver.default = answer(400, err="invalid_key", description="unknown kid")
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, FAILED, "failure", timeout=20)
    assert row["err"] == "invalid_key"
    n = receiver.count()
    assert n >= 2, "invalid_key was not retried"
    assert row["attempts"] == n
    first, last = receiver.requests[0]["t"], receiver.requests[-1]["t"]
    assert last - first >= 4.0 - 0.5     # retried until about 5 s after the emit
    time.sleep(1.5)
    assert receiver.count() == n


@pytest.mark.parametrize("how", ["401", "authentication_failed"])
def test_401_retries_a_few_times_then_suspends_the_stream(loopback, receiver, pushes, db, how):
    receiver.default = (answer(401, headers={"WWW-Authenticate": "Bearer"}) if how == "401"
                        else answer(400, err="authentication_failed"))
    s = pushes.create(receiver.url, authorization="Bearer wrong")
    jti = db.emit(s.name)
    d = wait_for("suspension", lambda: (lambda d: d if d["state"] == "suspended" else None)(
        pushes.delivery(s)), timeout=20)
    assert "authentication_failed" in d["suspended_reason"]
    assert receiver.count() == 3            # setstream.auth_retries
    gaps = [b["t"] - a["t"] for a, b in zip(receiver.requests, receiver.requests[1:])]
    assert all(g >= 0.4 for g in gaps), gaps  # spaced, not hammered
    row = pushes.row(s, jti)
    assert row["state"] != "failed" and row["acked_at"] is None
    time.sleep(1.5)
    assert receiver.count() == 3, "a suspended stream was pushed"
    # the operator fixes the credentials and resumes
    receiver.default = answer(202)
    db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
    row = pushes.wait_row(s, jti, ACKED, "ack after resume")
    assert row["attempts"] == 4
    assert pushes.delivery(s)["state"] == "active"


@pytest.mark.parametrize("status,err", [(403, None), (404, None), (410, None),
                                        (400, "access_denied")])
def test_forbidden_or_gone_suspends_at_once(loopback, receiver, pushes, db, status, err):
    receiver.default = answer(status, err=err)
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    d = wait_for("suspension", lambda: (lambda d: d if d["state"] == "suspended" else None)(
        pushes.delivery(s)))
    assert (err or "http_%d" % status) in d["suspended_reason"]
    row = pushes.row(s, jti)
    assert row["state"] == "delivered" and row["last_status"] == status
    db.emit(s.name)
    time.sleep(1.5)
    assert receiver.count() == 1, "a suspended stream was pushed"


def test_413_fails_the_set(loopback, receiver, pushes, db):
    receiver.default = answer(413)
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, FAILED, "failure")
    assert row["err"] == "http_413" and row["last_status"] == 413
    time.sleep(1.2)
    assert receiver.count() == 1
    assert pushes.delivery(s)["state"] == "active"


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_waited_exactly_and_not_counted(loopback, receiver, pushes, db, status):
    receiver.script = [answer(status, headers={"Retry-After": "2"})]
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    wait_for("the first push", lambda: receiver.count() == 1)
    d = wait_for("the backoff", lambda: (lambda d: d if d["state"] == "backoff" else None)(
        pushes.delivery(s)))
    assert d["backoff_until"] is not None
    row = pushes.wait_row(s, jti, ACKED, "ack")
    gap = receiver.requests[1]["t"] - receiver.requests[0]["t"]
    assert 1.9 <= gap <= 3.0, gap
    assert row["attempts"] == 1, "the %d was counted as an attempt" % status
    assert receiver.count() == 2
    assert pushes.delivery(s)["state"] == "active"


def test_5xx_backs_off_exponentially_then_recovers(loopback, receiver, pushes, db):
    receiver.script = [answer(503), answer(500), answer(502)]
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, ACKED, "ack", timeout=20)
    assert receiver.count() == 4 and row["attempts"] == 4
    t = [r["t"] for r in receiver.requests]
    gaps = [b - a for a, b in zip(t, t[1:])]
    # 0.5-1 s, 1-2 s, 2-4 s: jittered, doubling
    assert gaps[0] >= 0.45 and gaps[2] > gaps[0] and gaps[2] >= 1.9, gaps
    d = pushes.delivery(s)
    assert d["state"] == "active" and d["failures"] == 0


@pytest.mark.parametrize("how", ["reset", "hang"])
def test_transport_errors_back_off_and_retry(loopback, receiver, pushes, db, how):
    loopback.set(outbound_timeout="1000")
    receiver.script = [how]
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, ACKED, "ack", timeout=20)
    assert receiver.count() == 2 and row["attempts"] == 2
    if how == "hang":
        gap = receiver.requests[1]["t"] - receiver.requests[0]["t"]
        assert gap >= 1.0 + 0.45, gap      # the timeout, then a backoff


def test_transport_error_is_recorded(loopback, receiver, pushes, db):
    loopback.set(outbound_timeout="1000")
    receiver.default = "hang"
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, lambda r: r["last_error"] is not None, "an error")
    assert row["last_status"] == 0 and "timed out" in row["last_error"].lower()
    assert pushes.delivery(s)["state"] == "backoff"


def test_past_max_delivery_age_the_set_fails_undeliverable(loopback, receiver, pushes, db):
    loopback.set(max_delivery_age="3")
    receiver.default = answer(503)
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, FAILED, "failure", timeout=20)
    assert row["err"] == "undeliverable"
    assert row["last_status"] == 503        # the last answer is kept
    assert receiver.count() >= 2


def test_redeliver_puts_a_failed_set_back(loopback, receiver, pushes, db):
    receiver.script = [answer(400, err="invalid_request")]
    s = pushes.create(receiver.url)
    jti = db.emit(s.name)
    pushes.wait_row(s, jti, FAILED, "failure")
    assert db.val("SELECT setstream.redeliver(%s, ARRAY[%s])", (s.name, jti)) == 1
    row = pushes.wait_row(s, jti, ACKED, "ack after redeliver")
    assert row["attempts"] == 2 and row["err"] is None
    assert receiver.count() == 2
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]


def test_several_in_flight_oldest_first_on_kept_alive_connections(loopback, receiver, pushes, db):
    receiver.delay = 0.3
    s = pushes.create(receiver.url, concurrency=4)
    with db.conn.cursor() as cur:
        cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb) FROM generate_series(1, 16)",
                    (s.name, "https://schemas.openid.net/secevent/caep/event-type/session-revoked"))
    jtis = [r[0] for r in db.rows("SELECT jti FROM setstream.outbox WHERE stream = %s "
                                  "ORDER BY seq", (s.name,))]
    wait_for("all acks", lambda: db.val(
        "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
        (s.name,)) == 16, timeout=30)
    assert 2 <= receiver.max_active <= 4, receiver.max_active
    tokens = dict(db.rows("SELECT token, jti FROM setstream.outbox WHERE stream = %s",
                          (s.name,)))
    order = [tokens[b] for b in receiver.bodies()]
    assert sorted(order) == sorted(jtis) and len(order) == 16
    assert set(order[:4]) == set(jtis[:4])          # the oldest went first
    ports = {r["port"] for r in receiver.requests}
    assert len(ports) <= 4, "connections were not kept alive: %d" % len(ports)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_destination_outside_allowed_networks_is_refused(gucs, receiver, pushes, db, host):
    """Checked on the address connected to: a name that resolves to
    loopback is refused like the address itself."""
    gucs.set(outbound_allowed_networks="10.0.0.0/8")
    s = pushes.create(receiver.url.replace("127.0.0.1", host))
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, lambda r: r["last_error"] is not None, "an error")
    assert "not allowed" in row["last_error"], row["last_error"]
    assert "127.0.0.1" in row["last_error"] or "::1" in row["last_error"], row["last_error"]
    assert row["state"] != "acked"
    time.sleep(1.0)
    assert receiver.count() == 0, "a refused destination was reached"
    # allowing loopback lets it through (after the backoff)
    gucs.set(outbound_allowed_networks="10.0.0.0/8, 127.0.0.1/32")
    db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
    pushes.wait_row(s, jti, ACKED, "ack once allowed")


def test_set_delivery_arguments(listener, streams, db):
    s = streams.create(peer_algs=(), token=False)

    def err(sql, params):
        with pytest.raises(psycopg2.Error) as e:
            db.execute(sql, params)
        return e.value.pgcode

    assert err("SELECT setstream.set_delivery(%s, 'carrier-pigeon')", (s.name,)) == "22023"
    # pushpull (the HTTP binding) is built: test_pushpull_client.py
    assert err("SELECT setstream.set_delivery(%s, 'pushpull')", (s.name,)) == "22023"
    # pushpull-ws (the WebSocket binding) is built: test_pushpull_ws.py
    assert err("SELECT setstream.set_delivery(%s, 'pushpull-ws')", (s.name,)) == "22023"
    assert err("SELECT setstream.set_delivery(%s, 'push')", (s.name,)) == "22023"
    assert err("SELECT setstream.set_delivery(%s, 'push', 'ftp://x.example/')",
               (s.name,)) == "22023"
    assert err("SELECT setstream.set_delivery(%s, 'poll', 'https://x.example/')",
               (s.name,)) == "22023"
    assert err("SELECT setstream.set_delivery(%s, 'push', 'https://x.example/', %s)",
               (s.name, "Bearer a\r\nX-Injected: 1")) == "22023"
    assert err("SELECT setstream.set_delivery('no-such-stream', 'push', 'https://x.example/')",
               ()) == "42704"
    db.execute("SELECT setstream.set_delivery(%s, 'urn:ietf:rfc:8935', 'https://x.example/e')",
               (s.name,))
    assert db.val("SELECT method FROM setstream.deliveries WHERE stream = %s",
                  (s.name,)) == "push"
    db.execute("SELECT setstream.set_delivery(%s, 'urn:ietf:rfc:8936')", (s.name,))
    assert db.rows("SELECT method, endpoint_url FROM setstream.deliveries WHERE stream = %s",
                   (s.name,)) == [("poll", None)]
    assert err("SELECT setstream.resume_delivery('no-such-stream')", ()) == "42704"


def test_a_receiver_certificate_that_does_not_verify_is_refused(loopback, certificate, pushes, db):
    from conftest import Receiver
    receiver = Receiver(tls=certificate)
    try:
        s = pushes.create(receiver.url, authorization="Bearer not-for-impostors")
        jti = db.emit(s.name)
        row = pushes.wait_row(s, jti, lambda r: r["last_error"] is not None, "an error")
        assert row["last_status"] == 0
        assert "certificate" in row["last_error"].lower(), row["last_error"]
        assert receiver.count() == 0, "a request reached a receiver whose certificate failed"
        # trusting it (setstream.outbound_ca_file) lets the push through, over TLS
        loopback.set(outbound_ca_file=certificate[0])
        db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
        pushes.wait_row(s, jti, ACKED, "ack over TLS")
        assert receiver.requests[0]["headers"]["authorization"] == "Bearer not-for-impostors"
    finally:
        receiver.close()


def test_mutual_tls_presents_the_configured_client_certificate(loopback, certificate,
                                                               client_certificate, pushes, db):
    from conftest import Receiver
    receiver = Receiver(tls=certificate, client_ca=client_certificate[0])
    try:
        loopback.set(outbound_ca_file=certificate[0])
        s = pushes.create(receiver.url)
        jti = db.emit(s.name)
        # no client certificate configured: the receiver ends the handshake
        row = pushes.wait_row(s, jti, lambda r: r["last_error"] is not None, "an error")
        assert row["last_status"] == 0 and row["acked_at"] is None, row
        assert receiver.count() == 0, "a request got through without a client certificate"

        loopback.set(outbound_client_cert_file=client_certificate[0],
                     outbound_client_key_file=client_certificate[1])
        db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
        pushes.wait_row(s, jti, ACKED, "ack over mutual TLS")
        assert receiver.requests[0]["client_cn"] == "setstream-test-client"
    finally:
        receiver.close()


def test_pushes_over_tls_to_an_http1_receiver_go_in_parallel(loopback, certificate, pushes, db):
    """Over TLS the sender first waits for a connection that may multiplex
    (HTTP/2); once the receiver has answered over HTTP/1.1 it opens up to
    push_concurrency connections instead of queueing every push behind the
    few that are open (which made pushes to an HTTP/1.1 receiver over TLS
    go one at a time per connection)."""
    from conftest import Receiver
    receiver = Receiver(tls=certificate)
    try:
        loopback.set(outbound_ca_file=certificate[0])
        s = pushes.create(receiver.url, concurrency=4)
        # one push first: the sender learns that the origin speaks HTTP/1.1
        jti = db.emit(s.name)
        pushes.wait_row(s, jti, ACKED, "the first ack over TLS", timeout=30)
        receiver.delay = 0.3
        receiver.max_active = 0
        db.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb) FROM generate_series(1, 16)",
                   (s.name, "https://schemas.openid.net/secevent/caep/event-type/session-revoked"))
        wait_for("17 acks", lambda: db.val(
            "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'",
            (s.name,)) == 17, timeout=30)
        assert 3 <= receiver.max_active <= 4, receiver.max_active
    finally:
        receiver.close()


STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"


def claims_of(token):
    import base64
    import json
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def status_of(db, s):
    return db.val("SELECT status FROM setstream.streams WHERE name = %s", (s.name,))


@pytest.mark.parametrize("how", ["resume_delivery", "set_delivery"])
def test_a_suspension_pauses_the_ssf_stream_and_resuming_enables_it(loopback, receiver,
                                                                    pushes, db, how):
    """issue 13: the sender suspending an SSF stream's delivery is a status
    change setstream makes on its own: paused, announced by a
    stream-updated SET (which waits with the rest while the receiver
    refuses); resuming enables the stream, announced too, and the receiver
    then gets everything in order"""
    receiver.default = answer(403)
    # one push at a time: the order of arrival is the order of sending
    s = pushes.create(receiver.url, concurrency=1)
    plain = pushes.create(receiver.url)
    db.execute("SELECT setstream.create_receiver(%s)", (s.name + "-r",))
    db.execute("SELECT setstream.set_stream_receiver(%s, %s)", (s.name, s.name + "-r"))
    jti = db.emit(s.name)
    other = db.emit(plain.name)
    for x in (s, plain):
        wait_for("suspension", lambda: pushes.delivery(x)["state"] == "suspended")
    wait_for("the pause", lambda: status_of(db, s) == "paused")
    assert pushes.delivery(s)["paused_stream"] is True
    # a stream without a receiver keeps its status
    assert status_of(db, plain) == "enabled"
    assert pushes.delivery(plain)["paused_stream"] is False
    updates = db.rows("SELECT token, state FROM setstream.outbox WHERE stream = %s "
                      "AND event_types = %s ORDER BY seq", (s.name, [STREAM_UPDATED]))
    assert len(updates) == 1 and updates[0][1] == "pending"
    event = claims_of(updates[0][0])["events"][STREAM_UPDATED]
    assert event["status"] == "paused"
    assert event["reason"].startswith("delivery suspended: "), event
    assert "403" in event["reason"], event
    time.sleep(1.0)
    assert len(receiver.for_token(updates[0][0])) == 0, "pushed while suspended"
    # the operator resumes (or sets the delivery again)
    receiver.default = answer(202)
    if how == "resume_delivery":
        db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
    else:
        db.execute("SELECT setstream.set_delivery(%s, 'push', %s, NULL, 1)",
                   (s.name, receiver.url))
    assert status_of(db, s) == "enabled"
    assert pushes.delivery(s)["paused_stream"] is False
    wait_for("every SET acked", lambda: db.val(
        "SELECT count(*) FILTER (WHERE state <> 'acked') = 0 AND count(*) = 3 "
        "FROM setstream.outbox WHERE stream = %s", (s.name,)))
    tokens = [t for (t,) in db.rows("SELECT token FROM setstream.outbox WHERE stream = %s "
                                    "ORDER BY seq", (s.name,))]
    assert claims_of(tokens[0])["jti"] == jti
    got = [r["body"].decode() for r in receiver.requests if r["body"].decode() in tokens]
    # the first SET was refused once; after resuming, all three in order
    assert got[1:] == tokens, "not delivered oldest first after the resume"
    assert [claims_of(t)["events"].get(STREAM_UPDATED, {}).get("status") for t in tokens] == \
        [None, "paused", "enabled"]
    assert claims_of(tokens[2])["events"][STREAM_UPDATED]["reason"] == "delivery resumed"
    # the plain stream, resumed, gets its SET and no stream-updated
    db.execute("SELECT setstream.resume_delivery(%s)", (plain.name,))
    pushes.wait_row(plain, other, ACKED, "ack after resume")
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s",
                  (plain.name,)) == 1


def test_a_stream_paused_by_its_receiver_stays_paused_after_a_resume(loopback, receiver,
                                                                    pushes, db):
    """A suspension pauses only an enabled stream, and a resume enables only
    what the suspension paused"""
    receiver.default = answer(403)
    s = pushes.create(receiver.url)
    db.execute("SELECT setstream.create_receiver(%s)", (s.name + "-r",))
    db.execute("SELECT setstream.set_stream_receiver(%s, %s)", (s.name, s.name + "-r"))
    db.execute("SELECT setstream._set_stream_status(%s, 'paused', 'asked by the receiver', false)",
               (s.name,))
    # a paused stream delivers its stream-updated SETs only: one of those
    # meets the 403
    db.execute("SELECT setstream._control_event(%s, %s, '{\"status\": \"paused\"}')",
               (s.name, STREAM_UPDATED))
    wait_for("suspension", lambda: pushes.delivery(s)["state"] == "suspended")
    assert pushes.delivery(s)["paused_stream"] is False
    receiver.default = answer(202)
    db.execute("SELECT setstream.resume_delivery(%s)", (s.name,))
    assert status_of(db, s) == "paused"
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 1


def test_a_paused_ssf_stream_pushes_its_stream_updated_sets_only(loopback, receiver, pushes, db):
    """issue 13: paused holds the stream's SETs, but its stream-updated SET
    (announcing the pause) is pushed at once; enabled again, the held SET
    goes, then the stream-updated SET announcing that (oldest first)"""
    s = pushes.create(receiver.url, concurrency=1)
    db.execute("SELECT setstream.create_receiver(%s)", (s.name + "-r",))
    db.execute("SELECT setstream.set_stream_receiver(%s, %s)", (s.name, s.name + "-r"))
    db.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    held = db.emit(s.name)
    wait_for("the pause announced", lambda: db.val(
        "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND event_types = %s "
        "AND state = 'acked'", (s.name, [STREAM_UPDATED])) == 1)
    time.sleep(1.0)
    assert pushes.row(s, held)["state"] == "pending", "a paused stream pushed its SET"
    assert [claims_of(b)["events"].get(STREAM_UPDATED, {}).get("status")
            for b in receiver.bodies()] == ["paused"]
    db.execute("SELECT setstream.set_stream_status(%s, 'enabled')", (s.name,))
    wait_for("every SET acked", lambda: db.val(
        "SELECT count(*) FILTER (WHERE state = 'acked') FROM setstream.outbox "
        "WHERE stream = %s", (s.name,)) == 3)
    assert [claims_of(b)["events"].get(STREAM_UPDATED, {}).get("status")
            for b in receiver.bodies()] == ["paused", None, "enabled"]
    assert claims_of(receiver.bodies()[1])["jti"] == held
