"""Two setstream streams talking to each other.

Stream A transmits; stream B is configured as A's receiver: B.peer_issuer =
A.issuer, B.issuer is one of A.audience, and B holds the public JWK that
generate_key(A) returned.  A's SETs travel by poll (A) and ingest (B), B's
acks travel back, and each side ends in the state the protocols say.
jwcrypto checks the tokens in between.
"""

import pytest

from conftest import (CREDENTIAL_CHANGE, GENERATE_ALGS, SESSION_REVOKED,
                      split_token, verify)


def pair(streams, db, alg, audience=None, b_issuer=None):
    audience = audience or None
    a = streams.create(audience=audience)
    pub = db.generate_key(a.name, alg)
    b = streams.create(issuer=b_issuer or a.audience[0], peer_issuer=a.issuer)
    kid = db.add_key(b.name, pub)
    return a, b, pub, kid


@pytest.mark.parametrize("alg", GENERATE_ALGS)
def test_poll_then_ingest_round_trip(alg, db, streams):
    a, b, pub, kid = pair(streams, db, alg)
    assert kid == pub["kid"]
    emitted = [db.emit(a.name, SESSION_REVOKED, {"initiating_entity": "system"},
                       {"format": "email", "email": "u%d@example.com" % i}, "txn-%d" % i)
               for i in range(3)]
    polled = db.poll(a.name, {"returnImmediately": True})["sets"]
    assert sorted(polled) == sorted(emitted)
    for token in polled.values():
        verify(token, pub, alg)                    # independent check

    resp = db.ingest(b.name, {"sets": polled})
    assert sorted(resp["ack"]) == sorted(emitted)
    assert resp["setErrs"] == {}

    for jti in emitted:
        out = db.outbox(a.name, jti)
        got = db.event_rows(b.name, jti)[0]
        assert got["token"] == out["token"]
        assert got["claims"] == out["claims"]
        assert got["iss"] == a.issuer
        assert got["aud"] == [b.issuer]
        assert got["subject"] == out["claims"]["sub_id"]
        assert got["txn"] == out["claims"]["txn"]
        assert got["header"] == {"alg": alg, "kid": kid, "typ": "secevent+jwt"}

    # B's acks close the loop on A
    db.poll(a.name, {"ack": resp["ack"], "maxEvents": 0})
    assert {db.outbox(a.name, j)["state"] for j in emitted} == {"acked"}


def test_receive_each_outbox_token(db, streams):
    a, b, pub, _ = pair(streams, db, "ES256")
    for event_type in (SESSION_REVOKED, CREDENTIAL_CHANGE):
        jti = db.emit(a.name, event_type, {})
        assert db.receive(b.name, db.outbox_token(a.name, jti)) == jti
        assert db.event_rows(b.name, jti)[0]["event_types"] == [event_type]


def test_multiple_audiences(db, streams):
    aud = ["https://rp1.example.com", "https://rp2.example.com"]
    a, b, pub, _ = pair(streams, db, "ES256", audience=aud, b_issuer="https://rp2.example.com")
    c = streams.create(issuer="https://rp3.example.com", peer_issuer=a.issuer)
    db.add_key(c.name, pub)
    jti = db.emit(a.name)
    token = db.outbox_token(a.name, jti)
    assert split_token(token)[1]["aud"] == aud
    assert db.receive(b.name, token) == jti
    assert db.event_rows(b.name, jti)[0]["aud"] == aud
    db.set_error("invalid_audience", c.name, token)


def test_pushpull_both_ways_in_one_exchange(db, streams):
    """A and B each transmit and receive; one ingest call per direction."""
    a = streams.create()
    b = streams.create(issuer=a.audience[0], peer_issuer=a.issuer,
                       audience=[a.issuer])
    # A receives from B as well
    db.execute("SELECT setstream.alter_stream(%s, peer_issuer => %s)", (a.name, b.issuer))
    a_pub = db.generate_key(a.name, "ES384")
    b_pub = db.generate_key(b.name, "PS256")
    db.add_key(b.name, a_pub)
    db.add_key(a.name, b_pub)

    a_jti = db.emit(a.name)
    b_jti = db.emit(b.name)
    # B initiates: it sends its SET to A and asks for A's
    b_out = db.ingest(b.name, {"maxResponseEvents": 0})     # B's own view: nothing to ack
    assert b_out == {"ack": [], "setErrs": {}}
    b_sets = db.poll(b.name)["sets"]
    resp_from_a = db.ingest(a.name, {"sets": b_sets})
    assert resp_from_a["ack"] == [b_jti]
    assert list(resp_from_a["sets"]) == [a_jti]
    # B processes A's response: stores A's SET, and A's ack of its own
    resp_from_b = db.ingest(b.name, {"sets": resp_from_a["sets"], "ack": resp_from_a["ack"]})
    assert resp_from_b["ack"] == [a_jti]
    assert db.outbox(b.name, b_jti)["state"] == "acked"
    db.ingest(a.name, {"ack": resp_from_b["ack"]})
    assert db.outbox(a.name, a_jti)["state"] == "acked"
    assert db.event_rows(a.name, b_jti)[0]["iss"] == b.issuer
    assert db.event_rows(b.name, a_jti)[0]["iss"] == a.issuer


def test_receiver_reports_errors_back(db, streams):
    """A SET B refuses comes back to A as a failed outbox row."""
    a, b, pub, _ = pair(streams, db, "EdDSA")
    db.execute("SELECT setstream.alter_stream(%s, issuer => %s)",
               (b.name, "https://someone-else.example.com"))
    jti = db.emit(a.name)
    resp = db.ingest(b.name, {"sets": db.poll(a.name)["sets"]})
    assert resp["ack"] == []
    assert resp["setErrs"][jti]["err"] == "invalid_audience"
    db.poll(a.name, {"setErrs": resp["setErrs"], "maxEvents": 0})
    row = db.outbox(a.name, jti)
    assert (row["state"], row["err"]) == ("failed", "invalid_audience")
    assert row["description"] == resp["setErrs"][jti]["description"]


def test_key_rotation_on_the_transmitter(db, streams):
    a, b, old_pub, _ = pair(streams, db, "ES256")
    old_jti = db.emit(a.name)
    new_pub = db.generate_key(a.name, "ES512")
    new_jti = db.emit(a.name)
    sets = db.poll(a.name)["sets"]
    # B knows only the old key so far
    resp = db.ingest(b.name, {"sets": sets})
    assert resp["ack"] == [old_jti]
    assert resp["setErrs"][new_jti]["err"] == "invalid_key"
    db.add_key(b.name, new_pub)
    new_token = db.outbox_token(a.name, new_jti)
    assert db.ingest(b.name, {"sets": {new_jti: new_token}})["ack"] == [new_jti]
