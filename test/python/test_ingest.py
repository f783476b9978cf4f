"""pushpull Communication Objects through setstream.ingest().

One object carries inbound SETs (each verified and stored on its own, so one
bad SET leaves its neighbours alone), acks and setErrs for SETs we sent, and
asks for outbound SETs (maxResponseEvents).  The answer always has "ack" and
"setErrs"; "sets" only when there are outbound SETs.
"""

import threading
import uuid

import pytest

from conftest import (SESSION_REVOKED, jdump, key_for, public_jwk, sign,
                      split_token, unsigned, verify)

ALG = "ES256"


@pytest.fixture
def peer(receiver, admin):
    """A stream that both receives (peer key) and transmits (own key)."""
    s, key, kid = receiver(ALG)
    pub = admin.generate_key(s.name, "EdDSA")
    return s, key, kid, pub


def good(s, key, kid, **claims):
    c = s.claims(**claims)
    return c["jti"], sign(key, ALG, c, kid=kid)


def test_empty_object(db, peer):
    s = peer[0]
    assert db.ingest(s.name, {}) == {"ack": [], "setErrs": {}}


def test_valid_sets_are_stored_and_acked(db, peer):
    s, key, kid, _ = peer
    sets = dict(good(s, key, kid) for _ in range(3))
    resp = db.ingest(s.name, {"sets": sets})
    assert sorted(resp["ack"]) == sorted(sets)
    assert resp["setErrs"] == {}
    assert "sets" not in resp
    for jti, token in sets.items():
        rows = db.event_rows(s.name, jti)
        assert len(rows) == 1 and rows[0]["token"] == token


def test_mixed_batch(db, peer):
    s, key, kid, _ = peer
    ok_jti, ok_token = good(s, key, kid)
    bad_sig_jti, _ = good(s, key, kid)
    bad_sig = sign(key_for(ALG, variant=5), ALG, s.claims(jti=bad_sig_jti), kid=kid)
    bad_iss_jti, bad_iss = good(s, key, kid, iss="https://evil.example.com")
    bad_aud_jti, bad_aud = good(s, key, kid, aud="https://not-us.example.com")
    sub_jti, with_sub = good(s, key, kid, sub="alice")
    mismatch_jti, mismatch = good(s, key, kid)
    wrong_key = "not-" + mismatch_jti
    resp = db.ingest(s.name, {"sets": {
        ok_jti: ok_token,
        bad_sig_jti: bad_sig,
        bad_iss_jti: bad_iss,
        bad_aud_jti: bad_aud,
        sub_jti: with_sub,
        wrong_key: mismatch,
        "garbage": "not a jwt",
        "unsigned": unsigned(s.claims(jti="unsigned")),
    }})
    assert resp["ack"] == [ok_jti]
    assert "sets" not in resp
    errs = resp["setErrs"]
    assert {j: e["err"] for j, e in errs.items()} == {
        bad_sig_jti: "invalid_key",
        bad_iss_jti: "invalid_issuer",
        bad_aud_jti: "invalid_audience",
        sub_jti: "invalid_request",
        wrong_key: "invalid_request",
        "garbage": "invalid_request",
        "unsigned": "invalid_key",
    }
    for e in errs.values():
        assert set(e) == {"err", "description"}
        assert isinstance(e["description"], str) and e["description"]
        # the description is the explanation alone, not "<code>: ..."
        assert not e["description"].startswith(e["err"])
    stored = [r["jti"] for r in db.event_rows(s.name)]
    assert stored == [ok_jti]


def test_key_must_be_the_jti(db, peer):
    s, key, kid, _ = peer
    jti, token = good(s, key, kid)
    resp = db.ingest(s.name, {"sets": {"other": token, jti: token}})
    assert resp["ack"] == [jti]
    assert list(resp["setErrs"]) == ["other"]
    assert resp["setErrs"]["other"]["err"] == "invalid_request"
    assert len(db.event_rows(s.name, jti)) == 1


def test_duplicates_are_acked_again_and_stored_once(db, peer):
    s, key, kid, _ = peer
    jti, token = good(s, key, kid)
    assert db.receive(s.name, token) == jti
    assert db.ingest(s.name, {"sets": {jti: token}})["ack"] == [jti]
    assert db.ingest(s.name, {"sets": {jti: token}})["ack"] == [jti]
    assert len(db.event_rows(s.name, jti)) == 1


def test_a_trigger_that_rejects_a_set_leaves_it_unacknowledged(db, peer, admin):
    s, key, kid, _ = peer
    fn = "public.pytest_reject_" + uuid.uuid4().hex[:12]
    admin.execute("""
        CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.stream = '%s' AND NEW.events ? 'urn:example:reject' THEN
                RAISE EXCEPTION 'rejected by a user trigger';
            END IF;
            RETURN NEW;
        END $$""" % (fn, s.name))
    trig = "pytest_reject_" + uuid.uuid4().hex[:12]
    admin.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events "
                  "FOR EACH ROW EXECUTE FUNCTION %s()" % (trig, fn))
    try:
        before_jti, before = good(s, key, kid)
        bad_jti, bad = good(s, key, kid, events={"urn:example:reject": {}})
        after_jti, after = good(s, key, kid)
        invalid_jti, invalid = good(s, key, kid, aud="https://not-us.example.com")
        del db.conn.notices[:]
        resp = db.ingest(s.name, {"sets": {before_jti: before, bad_jti: bad,
                                           after_jti: after, invalid_jti: invalid}})
        assert sorted(resp["ack"]) == sorted([before_jti, after_jti])
        assert list(resp["setErrs"]) == [invalid_jti]
        assert sorted(r["jti"] for r in db.event_rows(s.name)) == sorted([before_jti, after_jti])
        warnings = [n for n in db.conn.notices if bad_jti in n]
        assert warnings and "WARNING" in warnings[0], db.conn.notices
        # receive() reports the trigger's own error
        e = db.error("SELECT setstream.receive(%s, %s)", (s.name, bad))
        assert "rejected by a user trigger" in e.diag.message_primary
    finally:
        admin.execute("DROP TRIGGER %s ON setstream.events" % trig)
        admin.execute("DROP FUNCTION %s()" % fn)
    # the peer sends it again once the trigger lets it through
    assert db.ingest(s.name, {"sets": {bad_jti: bad}})["ack"] == [bad_jti]


def test_acks_and_set_errs_apply_to_our_outbox(db, peer):
    s, _, _, _ = peer
    a, b, c = (db.emit(s.name) for _ in range(3))
    db.poll(s.name)
    resp = db.ingest(s.name, {"ack": [a, "unknown"],
                              "setErrs": {b: {"err": "invalid_audience", "description": "not for us"},
                                          "unknown2": {"err": "invalid_key"}},
                              "maxResponseEvents": 0})
    assert resp == {"ack": [], "setErrs": {}}
    assert db.outbox(s.name, a)["state"] == "acked"
    rb = db.outbox(s.name, b)
    assert (rb["state"], rb["err"], rb["description"]) == \
        ("failed", "invalid_audience", "not for us")
    assert db.outbox(s.name, c)["state"] == "delivered"


def test_outbound_sets_in_the_response(db, peer):
    s, key, kid, pub = peer
    emitted = [db.emit(s.name, SESSION_REVOKED, {"n": i}) for i in range(3)]
    in_jti, in_token = good(s, key, kid)
    resp = db.ingest(s.name, {"sets": {in_jti: in_token}, "maxResponseEvents": 2})
    assert resp["ack"] == [in_jti]
    assert sorted(resp["sets"]) == sorted(emitted[:2])
    for jti, token in resp["sets"].items():
        assert token == db.outbox_token(s.name, jti)
        assert verify(token, pub, "EdDSA")[1]["jti"] == jti
        assert db.outbox(s.name, jti)["state"] == "delivered"
    resp = db.ingest(s.name, {"ack": list(resp["sets"])})
    assert list(resp["sets"]) == [emitted[2]]
    assert [db.outbox(s.name, j)["state"] for j in emitted] == ["acked", "acked", "delivered"]
    # nothing more is due: no "sets" member at all
    assert db.ingest(s.name, {}) == {"ack": [], "setErrs": {}}


def test_max_response_events_zero(db, peer):
    s = peer[0]
    db.emit(s.name)
    assert db.ingest(s.name, {"maxResponseEvents": 0}) == {"ack": [], "setErrs": {}}
    assert len(db.ingest(s.name, {})["sets"]) == 1


def test_paused_stream_receives_but_sends_nothing(db, peer, admin):
    s, key, kid, _ = peer
    db.emit(s.name)
    admin.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    jti, token = good(s, key, kid)
    assert db.ingest(s.name, {"sets": {jti: token}}) == {"ack": [jti], "setErrs": {}}


def test_refused_inbound_sets_are_set_errs(db, peer, admin):
    s, key, kid, _ = peer
    admin.execute("SELECT setstream.set_inbound(%s, 'refuse')", (s.name,))
    jti, token = good(s, key, kid)
    out = db.ingest(s.name, {"sets": {jti: token}})
    assert out["ack"] == []
    assert out["setErrs"] == {jti: {"err": "access_denied",
                                    "description": "the stream refuses inbound SETs"}}
    assert db.event_rows(s.name) == []


@pytest.mark.parametrize("body", [
    '[]', '"x"', '5', 'null',
    '{"sets": []}', '{"sets": "x"}', '{"sets": {"j": 5}}', '{"sets": {"j": null}}',
    '{"sets": {"j": {"token": "a.b.c"}}}',
    '{"ack": "j"}', '{"ack": [5]}', '{"ack": [""]}',
    '{"setErrs": []}', '{"setErrs": {"j": {"description": "x"}}}',
    '{"setErrs": {"j": {"err": "invalid_key", "description": 1}}}',
    '{"maxResponseEvents": -1}', '{"maxResponseEvents": 2.5}',
    '{"maxResponseEvents": "2"}', '{"maxResponseEvents": false}',
])
def test_malformed_objects(body, db, peer):
    s, key, kid, _ = peer
    a = db.emit(s.name)
    e = db.error("SELECT setstream.ingest(%s, %s::jsonb)", (s.name, body))
    assert e.pgcode == "SE001", (e.pgcode, e.diag.message_primary)
    assert e.diag.message_primary.startswith("invalid_request: ")
    assert db.outbox(s.name, a)["state"] == "pending"


def test_malformed_object_applies_nothing(db, peer):
    s, key, kid, _ = peer
    a = db.emit(s.name)
    db.poll(s.name)
    jti, token = good(s, key, kid)
    db.expect_error("SE001", "SELECT setstream.ingest(%s, %s::jsonb)",
                    (s.name, jdump({"sets": {jti: token}, "ack": [a], "maxResponseEvents": -1})))
    assert db.outbox(s.name, a)["state"] == "delivered"
    assert db.event_rows(s.name) == []


def test_unknown_members_are_ignored(db, peer):
    s, key, kid, _ = peer
    jti, token = good(s, key, kid)
    resp = db.ingest(s.name, {"sets": {jti: token}, "returnImmediately": True,
                              "max_response_events": 0, "vendor": [1, 2]})
    assert resp["ack"] == [jti]


def test_ingest_is_transactional(db, peer):
    s, key, kid, _ = peer
    a = db.emit(s.name)
    jti, token = good(s, key, kid)
    db.execute("BEGIN")
    resp = db.ingest(s.name, {"sets": {jti: token}, "ack": [a]})
    assert resp["ack"] == [jti]
    db.execute("ROLLBACK")
    assert db.event_rows(s.name) == []
    assert db.outbox(s.name, a)["state"] == "pending"


def test_ack_of_an_inbound_set_means_it_is_stored(db, peer, connect):
    """Acknowledged means committed: another session sees the SET."""
    s, key, kid, _ = peer
    jti, token = good(s, key, kid)
    assert db.ingest(s.name, {"sets": {jti: token}})["ack"] == [jti]
    other = connect()
    assert other.val("SELECT token FROM setstream.events WHERE stream = %s AND jti = %s",
                     (s.name, jti)) == token


def test_many_sets_in_one_object(db, peer):
    s, key, kid, _ = peer
    sets = {}
    for i in range(100):
        jti, token = good(s, key, kid)
        if i % 10 == 0:
            token = sign(key_for(ALG, variant=5), ALG, split_token(token)[1], kid=kid)
        sets[jti] = token
    resp = db.ingest(s.name, {"sets": sets})
    assert len(resp["ack"]) == 90 and len(resp["setErrs"]) == 10
    assert set(resp["ack"]) | set(resp["setErrs"]) == set(sets)
    assert all(e["err"] == "invalid_key" for e in resp["setErrs"].values())
    assert len(db.event_rows(s.name)) == 90


def test_keys_are_registered_per_stream_for_ingest_too(db, receiver, streams, admin):
    s, key, kid = receiver(ALG)
    other = streams.create(peer_issuer=s.peer_issuer, issuer=s.issuer)
    admin.add_key(other.name, public_jwk(key_for(ALG, variant=6)))
    jti, token = good(s, key, kid)
    resp = db.ingest(other.name, {"sets": {jti: token}})
    assert resp["ack"] == [] and resp["setErrs"][jti]["err"] == "invalid_key"


@pytest.mark.parametrize("first_outcome", ["COMMIT", "ROLLBACK"])
def test_concurrent_deliveries_of_one_set(first_outcome, peer, connect):
    """The same SET arriving in two sessions at once: both are answered with
    an ack once it is stored, and it is stored once, whichever way the
    first session's transaction ends."""
    s, key, kid, _ = peer
    first, second, check = connect(), connect(), connect()
    jti, token = good(s, key, kid)
    first.execute("BEGIN")
    assert first.ingest(s.name, {"sets": {jti: token}})["ack"] == [jti]
    result = {}

    def deliver_again():
        try:
            result["resp"] = second.ingest(s.name, {"sets": {jti: token}})
        except Exception as exc:  # reported below
            result["error"] = exc

    t = threading.Thread(target=deliver_again)
    t.start()
    t.join(timeout=0.5)
    assert t.is_alive(), "the second delivery should wait for the first transaction"
    first.execute(first_outcome)
    t.join(timeout=20)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    assert result["resp"] == {"ack": [jti], "setErrs": {}}
    assert len(check.event_rows(s.name, jti)) == 1


def test_stats_view_counts_per_stream(db, peer, receiver):
    """README "Observability": received (duplicates included), rejected by
    code, stored, and the outbox by state, for one stream only."""
    s, key, kid, _ = peer
    neighbour, nkey, nkid = receiver(ALG)
    db.receive(neighbour.name, sign(nkey, ALG, neighbour.claims(), kid=nkid))

    jti, token = good(s, key, kid)
    db.receive(s.name, token)
    db.receive(s.name, token)                                    # duplicate
    db.set_error("invalid_key", s.name,
                 sign(key_for(ALG, variant=5), ALG, s.claims(), kid=kid))
    db.set_error("invalid_issuer", s.name,
                 sign(key, ALG, s.claims(iss="https://evil.example.com"), kid=kid))
    jti2, token2 = good(s, key, kid)
    db.ingest(s.name, {"sets": {jti2: token2, "bad": "not a jwt"}})
    emitted = [db.emit(s.name) for _ in range(4)]
    db.poll(s.name, {"maxEvents": 3})
    db.poll(s.name, {"ack": [emitted[0]], "setErrs": {emitted[1]: {"err": "invalid_key"}},
                     "maxEvents": 0})

    row = db.dicts("SELECT * FROM setstream.stats WHERE stream = %s", (s.name,))[0]
    assert row["status"] == "enabled"
    assert row["received"] == 3
    assert row["rejected"] == {"invalid_key": 1, "invalid_issuer": 1, "invalid_request": 1}
    assert row["stored"] == 2
    assert (row["emitted"], row["pending"], row["delivered"], row["acked"], row["failed"]) == \
        (4, 1, 1, 1, 1)
    assert row["outbox_depth"] == 2
    assert row["waiting_long_polls"] == 0
    other = db.dicts("SELECT * FROM setstream.stats WHERE stream = %s", (neighbour.name,))[0]
    assert (other["received"], other["rejected"], other["stored"], other["emitted"]) == \
        (1, {}, 1, 0)


def test_received_counts_committed_sets_only(db, peer):
    """received counts a SET when the transaction that stored it commits:
    a rolled back transaction or savepoint takes its counts with it."""
    s, key, kid, _ = peer

    def received():
        return db.val("SELECT received FROM setstream.stats WHERE stream = %s", (s.name,)) or 0

    db.execute("BEGIN")
    db.receive(s.name, good(s, key, kid)[1])
    db.ingest(s.name, {"sets": dict([good(s, key, kid), good(s, key, kid)])})
    db.execute("ROLLBACK")
    assert received() == 0

    db.execute("BEGIN")
    db.receive(s.name, good(s, key, kid)[1])
    db.execute("SAVEPOINT a")
    db.receive(s.name, good(s, key, kid)[1])
    db.execute("ROLLBACK TO SAVEPOINT a")
    db.execute("SAVEPOINT b")
    db.receive(s.name, good(s, key, kid)[1])
    db.execute("RELEASE SAVEPOINT b")
    assert received() == 0, "nothing counts before the commit"
    db.execute("COMMIT")
    assert received() == 2
    assert db.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (s.name,)) == 2


def test_a_cancel_stops_the_whole_ingest(db, peer, admin):
    """statement_timeout (a query cancel) aborts ingest() as a whole, like
    any statement: it is not one SET's failure to be logged and skipped
    (plpgsql's WHEN OTHERS does not catch query_canceled either)."""
    s, key, kid, _ = peer
    fn = "public.pytest_slow_" + uuid.uuid4().hex[:12]
    trig = "pytest_slow_" + uuid.uuid4().hex[:12]
    admin.execute("""
        CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.stream = '%s' THEN PERFORM pg_sleep(0.2); END IF;
            RETURN NEW;
        END $$""" % (fn, s.name))
    admin.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events "
                  "FOR EACH ROW EXECUTE FUNCTION %s()" % (trig, fn))
    try:
        sets = dict(good(s, key, kid) for _ in range(5))    # at least 1 s of work
        db.execute("SET statement_timeout = '300ms'")
        e = db.error("SELECT setstream.ingest(%s, %s::jsonb)", (s.name, jdump({"sets": sets})))
        db.execute("RESET statement_timeout")
        assert e.pgcode == "57014", (e.pgcode, e.diag.message_primary)
        assert db.event_rows(s.name) == []
    finally:
        admin.execute("DROP TRIGGER %s ON setstream.events" % trig)
        admin.execute("DROP FUNCTION %s()" % fn)
