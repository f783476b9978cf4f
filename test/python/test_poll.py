"""RFC 8936 poll through setstream.poll(): request validation, delivery
state, acknowledgement, redelivery, and concurrent pollers.

Several tests use more than one connection at a time: a poll that has not
committed yet holds its SETs (FOR UPDATE SKIP LOCKED), and two pollers must
never be handed the same SET inside the redelivery interval.
"""

import threading
import time

import pytest

from conftest import SESSION_REVOKED, jdump, split_token, verify


@pytest.fixture
def transmitter(streams, admin):
    """Factory: a stream with a signing key; returns (stream, public JWK)."""

    def factory(**kw):
        s = streams.create(**kw)
        return s, admin.generate_key(s.name, "ES256")

    return factory


def emit_n(db, stream, n):
    return [db.emit(stream, SESSION_REVOKED, {"n": i}) for i in range(n)]


def states(db, stream):
    return dict(db.rows("SELECT jti, state FROM setstream.outbox WHERE stream = %s", (stream,)))


def test_empty_poll(db, transmitter):
    s, _ = transmitter()
    assert db.poll(s.name) == {"sets": {}, "moreAvailable": False}
    assert db.poll(s.name, {"returnImmediately": True}) == {"sets": {}, "moreAvailable": False}


def test_poll_returns_the_signed_sets(db, transmitter):
    s, pub = transmitter()
    jtis = emit_n(db, s.name, 3)
    resp = db.poll(s.name, {"returnImmediately": True})
    assert resp["moreAvailable"] is False
    assert sorted(resp["sets"]) == sorted(jtis)
    for jti, token in resp["sets"].items():
        assert token == db.outbox_token(s.name, jti)
        _, claims = verify(token, pub, "ES256")
        assert claims["jti"] == jti


def test_delivery_state(db, transmitter):
    s, _ = transmitter()
    jti = db.emit(s.name)
    db.poll(s.name)
    row = db.outbox(s.name, jti)
    assert row["state"] == "delivered"
    assert row["attempts"] == 1
    assert row["delivered_at"] is not None
    assert row["acked_at"] is None


def test_max_events_and_more_available_oldest_first(db, transmitter):
    s, _ = transmitter()
    jtis = emit_n(db, s.name, 5)
    first = db.poll(s.name, {"maxEvents": 2})
    assert sorted(first["sets"]) == sorted(jtis[:2])
    assert first["moreAvailable"] is True
    second = db.poll(s.name, {"maxEvents": 2})
    assert sorted(second["sets"]) == sorted(jtis[2:4])
    assert second["moreAvailable"] is True
    third = db.poll(s.name, {"maxEvents": 2})
    assert list(third["sets"]) == [jtis[4]]
    assert third["moreAvailable"] is False
    # everything is delivered and not yet due again
    assert db.poll(s.name) == {"sets": {}, "moreAvailable": False}


def test_one_at_a_time_in_emit_order(db, transmitter):
    s, _ = transmitter()
    jtis = emit_n(db, s.name, 6)
    got = []
    for _ in range(6):
        got += list(db.poll(s.name, {"maxEvents": 1})["sets"])
    assert got == jtis


def test_max_poll_events_caps_a_poll(db, transmitter):
    s, _ = transmitter()
    emit_n(db, s.name, 5)
    db.execute("SET setstream.max_poll_events = 3")
    resp = db.poll(s.name)
    assert len(resp["sets"]) == 3 and resp["moreAvailable"] is True
    resp = db.poll(s.name, {"maxEvents": 100})
    assert len(resp["sets"]) == 2 and resp["moreAvailable"] is False


def test_ack_marks_acked_and_stops_redelivery(db, transmitter):
    s, _ = transmitter()
    a, b = emit_n(db, s.name, 2)
    db.poll(s.name)
    resp = db.poll(s.name, {"ack": [a], "maxEvents": 0, "returnImmediately": True})
    assert resp == {"sets": {}, "moreAvailable": False}
    row = db.outbox(s.name, a)
    assert row["state"] == "acked" and row["acked_at"] is not None
    assert db.outbox(s.name, b)["state"] == "delivered"
    db.execute("SET setstream.redelivery_interval = 0")
    assert list(db.poll(s.name)["sets"]) == [b]


def test_ack_of_a_pending_set(db, transmitter):
    """A receiver may ack a SET it got by other means; it is simply done."""
    s, _ = transmitter()
    a = db.emit(s.name)
    db.poll(s.name, {"ack": [a], "maxEvents": 0})
    assert db.outbox(s.name, a)["state"] == "acked"
    assert db.poll(s.name) == {"sets": {}, "moreAvailable": False}


def test_set_errs_mark_failed_and_stop_redelivery(db, transmitter):
    s, _ = transmitter()
    a, b, c = emit_n(db, s.name, 3)
    db.poll(s.name)
    db.poll(s.name, {"setErrs": {
        a: {"err": "invalid_key", "description": "The SET could not be verified"},
        b: {"err": "authentication_failed"}}, "maxEvents": 0})
    ra, rb = db.outbox(s.name, a), db.outbox(s.name, b)
    assert (ra["state"], ra["err"], ra["description"]) == \
        ("failed", "invalid_key", "The SET could not be verified")
    assert (rb["state"], rb["err"], rb["description"]) == ("failed", "authentication_failed", None)
    assert ra["failed_at"] is not None
    db.execute("SET setstream.redelivery_interval = 0")
    assert list(db.poll(s.name)["sets"]) == [c]


def test_ack_wins_over_set_errs_for_the_same_jti(db, transmitter):
    s, _ = transmitter()
    a = db.emit(s.name)
    db.poll(s.name)
    db.poll(s.name, {"ack": [a], "setErrs": {a: {"err": "invalid_request"}}, "maxEvents": 0})
    row = db.outbox(s.name, a)
    assert row["state"] == "acked" and row["err"] is None


def test_final_states_do_not_change(db, transmitter):
    s, _ = transmitter()
    a, b = emit_n(db, s.name, 2)
    db.poll(s.name, {"ack": [a], "setErrs": {b: {"err": "invalid_key"}}, "maxEvents": 0})
    db.poll(s.name, {"ack": [b], "setErrs": {a: {"err": "invalid_request"}}, "maxEvents": 0})
    ra, rb = db.outbox(s.name, a), db.outbox(s.name, b)
    assert (ra["state"], ra["err"]) == ("acked", None)
    assert (rb["state"], rb["err"]) == ("failed", "invalid_key")


def test_acks_for_unknown_or_foreign_jtis_are_ignored(db, transmitter):
    s1, _ = transmitter()
    s2, _ = transmitter()
    mine = db.emit(s1.name)
    theirs = db.emit(s2.name)
    other = db.emit(s2.name)
    resp = db.poll(s1.name, {"ack": [theirs, "no-such-jti"],
                             "setErrs": {other: {"err": "invalid_key"},
                                         "unknown": {"err": "invalid_key"}}})
    assert list(resp["sets"]) == [mine]
    assert states(db, s2.name) == {theirs: "pending", other: "pending"}


def test_redelivery_after_the_interval_is_byte_identical(db, transmitter):
    s, _ = transmitter()
    a = db.emit(s.name)
    token = db.poll(s.name)["sets"][a]
    # default interval (60 s): not due yet
    assert db.poll(s.name)["sets"] == {}
    db.execute("SET setstream.redelivery_interval = '200ms'")
    time.sleep(0.4)
    again = db.poll(s.name)
    assert again["sets"] == {a: token}
    assert db.outbox(s.name, a)["attempts"] == 2
    db.execute("SET setstream.redelivery_interval = 0")
    assert db.poll(s.name)["sets"] == {a: token}
    assert db.outbox(s.name, a)["attempts"] == 3


def test_redelivered_and_new_sets_come_oldest_first(db, transmitter):
    s, _ = transmitter()
    old = db.emit(s.name)
    db.poll(s.name)
    new = db.emit(s.name)
    db.execute("SET setstream.redelivery_interval = 0")
    assert list(db.poll(s.name, {"maxEvents": 1})["sets"]) == [old]
    assert sorted(db.poll(s.name, {"maxEvents": 2})["sets"]) == sorted([old, new])
    assert db.outbox(s.name, old)["attempts"] == 3


def test_max_events_zero_is_acknowledge_only(db, transmitter):
    s, _ = transmitter()
    a, b = emit_n(db, s.name, 2)
    resp = db.poll(s.name, {"maxEvents": 0, "ack": [a]})
    # nothing is handed out, but the receiver learns that b is waiting
    assert resp == {"sets": {}, "moreAvailable": True}
    assert states(db, s.name) == {a: "acked", b: "pending"}
    assert db.outbox(s.name, b)["attempts"] == 0
    assert db.poll(s.name, {"maxEvents": 0, "ack": [b]}) == {"sets": {}, "moreAvailable": False}


@pytest.mark.parametrize("max_events", [0, 1, 5, None])
@pytest.mark.parametrize("how", ["ack", "setErrs"])
def test_more_available_ignores_sets_closed_by_the_same_request(max_events, how, db, transmitter):
    """moreAvailable reflects the outbox after this request's ack/setErrs."""
    s, _ = transmitter()
    a = db.emit(s.name)
    request = {"ack": [a]} if how == "ack" else {"setErrs": {a: {"err": "invalid_key"}}}
    if max_events is not None:
        request["maxEvents"] = max_events
    assert db.poll(s.name, request) == {"sets": {}, "moreAvailable": False}
    assert db.outbox(s.name, a)["state"] == ("acked" if how == "ack" else "failed")


def test_poll_never_waits(db, transmitter):
    s, _ = transmitter()
    start = time.monotonic()
    assert db.poll(s.name, {"returnImmediately": False})["sets"] == {}
    assert db.poll(s.name, {})["sets"] == {}
    assert time.monotonic() - start < 3


def test_unknown_members_are_ignored(db, transmitter):
    s, _ = transmitter()
    jtis = emit_n(db, s.name, 3)
    resp = db.poll(s.name, {"max_events": 1, "return_immediately": "yes", "acks": 5,
                            "vendor": {"x": [1]}})
    assert sorted(resp["sets"]) == sorted(jtis)


@pytest.mark.parametrize("request_json", [
    '{"maxEvents": -1}',
    '{"maxEvents": 1.5}',
    '{"maxEvents": "5"}',
    '{"maxEvents": true}',
    '{"maxEvents": [1]}',
    '{"returnImmediately": "true"}',
    '{"returnImmediately": 1}',
    '{"returnImmediately": {}}',
    '{"ack": "jti-1"}',
    '{"ack": {"jti-1": true}}',
    '{"ack": [1]}',
    '{"ack": [null]}',
    '{"ack": [["jti-1"]]}',
    '{"setErrs": []}',
    '{"setErrs": "x"}',
    '{"setErrs": {"jti-1": "invalid_key"}}',
    '{"setErrs": {"jti-1": {}}}',
    '{"setErrs": {"jti-1": {"err": 5}}}',
    '{"setErrs": {"jti-1": {"description": "no err"}}}',
    '{"setErrs": {"jti-1": {"err": "invalid_key", "description": 5}}}',
    '[]',
    '"poll"',
    '42',
    'null',
])
def test_invalid_poll_requests(request_json, db, transmitter):
    s, _ = transmitter()
    a = db.emit(s.name)
    e = db.error("SELECT setstream.poll(%s, %s::jsonb)", (s.name, request_json))
    assert e.pgcode == "SE001", (e.pgcode, e.diag.message_primary)
    assert e.diag.message_primary.startswith("invalid_request: ")
    # nothing was delivered
    assert db.outbox(s.name, a)["state"] == "pending"


def test_invalid_poll_applies_no_acks(db, transmitter):
    s, _ = transmitter()
    a = db.emit(s.name)
    db.poll(s.name)
    db.expect_error("SE001", "SELECT setstream.poll(%s, %s::jsonb)",
                    (s.name, jdump({"ack": [a], "maxEvents": -3})))
    assert db.outbox(s.name, a)["state"] == "delivered"


def test_rfc8936_example_requests_are_accepted(db, transmitter):
    s, _ = transmitter()
    a, b = emit_n(db, s.name, 2)
    db.poll(s.name)
    # Figure 3 (acknowledge-only) and Figure 5 (ack and errors), with our jtis
    db.poll(s.name, {"ack": [a], "maxEvents": 0, "returnImmediately": True})
    db.poll(s.name, {"ack": [], "setErrs": {b: {"err": "authentication_failed",
                                                "description": "The SET could not be authenticated"}},
                     "returnImmediately": True})
    assert states(db, s.name) == {a: "acked", b: "failed"}


def test_paused_stream_holds_its_sets(db, transmitter, admin):
    s, _ = transmitter()
    a = db.emit(s.name)
    admin.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    b = db.emit(s.name)
    assert db.poll(s.name) == {"sets": {}, "moreAvailable": False}
    # acks are still taken while paused
    db.poll(s.name, {"ack": [a]})
    assert states(db, s.name) == {a: "acked", b: "pending"}
    admin.execute("SELECT setstream.enable_stream(%s)", (s.name,))
    assert list(db.poll(s.name)["sets"]) == [b]


def test_disabled_stream_polls_empty(db, transmitter, admin):
    s, _ = transmitter()
    jti = db.emit(s.name)
    admin.execute("SELECT setstream.disable_stream(%s)", (s.name,))
    assert db.poll(s.name) == {"sets": {}, "moreAvailable": False}
    row = db.val("SELECT row(state, err)::text FROM setstream.outbox "
                 "WHERE stream = %s AND jti = %s", (s.name, jti))
    assert row == "(failed,stream_disabled)"


def test_polls_of_one_stream_do_not_see_another(db, transmitter):
    s1, _ = transmitter()
    s2, _ = transmitter()
    a = db.emit(s1.name)
    b = db.emit(s2.name)
    assert list(db.poll(s1.name)["sets"]) == [a]
    assert list(db.poll(s2.name)["sets"]) == [b]


# ---------------------------------------------------------------------------
# concurrent pollers
# ---------------------------------------------------------------------------

def test_uncommitted_poll_holds_its_sets(connect, transmitter):
    a_db, b_db = connect(), connect()
    s, _ = transmitter()
    jtis = emit_n(a_db, s.name, 3)
    a_db.execute("BEGIN")
    taken = a_db.poll(s.name, {"maxEvents": 2})["sets"]
    assert sorted(taken) == sorted(jtis[:2])
    # B neither waits for A's locks nor gets A's SETs, even when due at once
    b_db.execute("SET statement_timeout = '5s'")
    b_db.execute("SET setstream.redelivery_interval = 0")
    got = b_db.poll(s.name)["sets"]
    assert list(got) == [jtis[2]]
    # (interval 0: B's own SET is due again at once; A's are still held)
    assert list(b_db.poll(s.name, {"maxEvents": 5})["sets"]) == [jtis[2]]
    # A rolls back: its two SETs are pending again, never delivered
    a_db.execute("ROLLBACK")
    assert b_db.outbox(s.name, jtis[0])["attempts"] == 0
    assert sorted(b_db.poll(s.name)["sets"]) == sorted(jtis)   # interval 0: all due


def test_committed_poll_is_not_redelivered_to_another_poller(connect, transmitter):
    a_db, b_db = connect(), connect()
    s, _ = transmitter()
    jtis = emit_n(a_db, s.name, 2)
    a_db.execute("BEGIN")
    a_db.poll(s.name)
    a_db.execute("COMMIT")
    assert b_db.poll(s.name)["sets"] == {}
    assert sorted(b_db.outbox(s.name, j)["state"] for j in jtis) == ["delivered"] * 2


def test_ack_inside_a_rolled_back_transaction_is_not_applied(connect, transmitter):
    a_db, b_db = connect(), connect()
    s, _ = transmitter()
    a = a_db.emit(s.name)
    a_db.poll(s.name)
    a_db.execute("BEGIN")
    a_db.poll(s.name, {"ack": [a], "maxEvents": 0})
    assert b_db.outbox(s.name, a)["state"] == "delivered"
    a_db.execute("ROLLBACK")
    assert b_db.outbox(s.name, a)["state"] == "delivered"


def test_concurrent_pollers_never_share_a_set(connect, transmitter):
    n_sets, n_pollers = 60, 4
    s, _ = transmitter()
    setup = connect()
    emitted = set(emit_n(setup, s.name, n_sets))
    pollers = [connect() for _ in range(n_pollers)]
    received = [[] for _ in range(n_pollers)]
    errors = []
    barrier = threading.Barrier(n_pollers)

    def work(i):
        try:
            barrier.wait(timeout=10)
            empty = 0
            while empty < 3:
                got = pollers[i].poll(s.name, {"maxEvents": 3})["sets"]
                received[i].extend(got)
                empty = empty + 1 if not got else 0
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_pollers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    flat = [j for r in received for j in r]
    assert len(flat) == len(set(flat)), "a SET was handed to two pollers"
    assert set(flat) == emitted
    assert setup.val("SELECT max(attempts) FROM setstream.outbox WHERE stream = %s",
                     (s.name,)) == 1


def test_poll_and_emit_in_one_transaction(db, transmitter):
    """A poll sees SETs emitted earlier in its own transaction."""
    s, _ = transmitter()
    db.execute("BEGIN")
    a = db.emit(s.name)
    assert list(db.poll(s.name)["sets"]) == [a]
    db.execute("ROLLBACK")
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 0


def test_poll_response_tokens_have_the_jti_as_key(db, transmitter):
    s, _ = transmitter()
    emit_n(db, s.name, 4)
    for jti, token in db.poll(s.name)["sets"].items():
        assert split_token(token)[1]["jti"] == jti
