"""The pushpull HTTP binding: POST /streams/{name}/pushpull.

A Communication Object in, one out: stored SETs acknowledged in "ack",
refused ones reported in "setErrs" with their RFC 8935 code (a key that is
not the SET's jti is invalid_request), the peer's ack / setErrs applied to
the outbox, and up to maxResponseEvents outbound SETs returned.  A
malformed object gets 400 invalid_request.  GET without a WebSocket
upgrade gets 426.
"""

import pytest

import listener_support as ls
from listener_support import assert_error, jdump


@pytest.fixture
def stream(streams):
    return streams.create(peer_algs=("ES256", "RS256"), signing_alg="ES256")


def test_mixed_sets_ack_and_set_errs(client, db, stream):
    good1, tok1 = stream.set("ES256")
    good2, tok2 = stream.set("RS256")
    bad_iss, tok3 = stream.set(iss="https://evil.example.com/")
    bad_aud, tok4 = stream.set(aud="https://other.example.com/")
    key, kid = stream.peer_keys["ES256"]
    bad_kid_jti = "k-" + good1
    tok5 = ls.sign(key, "ES256", stream.claims(jti=bad_kid_jti), "no-such-kid")
    r = client.pushpull(stream, {"sets": {
        good1: tok1, bad_iss: tok3, good2: tok2, bad_aud: tok4, bad_kid_jti: tok5,
        "garbage": "not a jwt"}})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    body = r.json()
    assert sorted(body["ack"]) == sorted([good1, good2])
    errs = body["setErrs"]
    assert set(errs) == {bad_iss, bad_aud, bad_kid_jti, "garbage"}
    assert errs[bad_iss]["err"] == "invalid_issuer"
    assert errs[bad_aud]["err"] == "invalid_audience"
    assert errs[bad_kid_jti]["err"] == "invalid_key"
    assert errs["garbage"]["err"] == "invalid_request"
    for e in errs.values():
        assert isinstance(e["description"], str) and e["description"]
    assert body.get("sets", {}) == {}
    stored = {e["jti"]: e["token"] for e in db.events(stream.name)}
    assert stored == {good1: tok1, good2: tok2}


def test_duplicate_set_acked_again_stored_once(client, db, stream):
    jti, tok = stream.set()
    for _ in range(2):
        r = client.pushpull(stream, {"sets": {jti: tok}})
        assert r.status_code == 200, r.text
        assert r.json()["ack"] == [jti]
        assert r.json()["setErrs"] == {}
    assert db.event_count(stream.name) == 1


def test_key_not_jti_is_invalid_request(client, db, stream):
    jti, tok = stream.set()
    r = client.pushpull(stream, {"sets": {"not-" + jti: tok}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == []
    assert body["setErrs"]["not-" + jti]["err"] == "invalid_request"
    assert db.event_count(stream.name) == 0


def test_empty_object(client, stream):
    r = client.pushpull(stream, {})
    assert r.status_code == 200, r.text
    assert r.json() == {"ack": [], "setErrs": {}}


@pytest.mark.parametrize("body", [
    "not json", "", "[]", "42", '{"sets": []}', '{"sets": "x"}',
    '{"sets": {"a": 1}}', '{"sets": {"a": {"token": "x"}}}', '{"ack": "x"}',
    '{"ack": [1]}', '{"setErrs": []}', '{"setErrs": {"a": "invalid_key"}}',
    '{"maxResponseEvents": -1}', '{"maxResponseEvents": "2"}', '{"maxResponseEvents": 1.5}',
    '{"sets": {}, "sets": {}}',
])
def test_malformed_object_400(client, db, stream, body):
    jti = db.emit(stream.name)
    r = client.pushpull(stream, body)
    assert_error(r, 400, "invalid_request")
    assert db.outbox(stream.name, jti)["state"] == "pending"
    assert db.event_count(stream.name) == 0


def test_malformed_object_stores_nothing(client, db, stream):
    jti, tok = stream.set()
    r = client.pushpull(stream, {"sets": {jti: tok}, "ack": "not an array"})
    assert_error(r, 400, "invalid_request")
    assert db.event_count(stream.name) == 0


def test_outbound_sets_up_to_max_response_events(client, db, stream):
    jtis = [db.emit(stream.name, event={"n": i}) for i in range(3)]
    r = client.pushpull(stream, {"maxResponseEvents": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == [] and body["setErrs"] == {}
    assert sorted(body["sets"]) == sorted(jtis[:2])
    for jti, token in body["sets"].items():
        assert token == db.outbox(stream.name, jti)["token"]
        assert db.outbox(stream.name, jti)["state"] == "delivered"
    assert db.outbox(stream.name, jtis[2])["state"] == "pending"

    # acknowledge those two (and report nothing else): the third comes out
    r = client.pushpull(stream, {"ack": jtis[:2]})
    body = r.json()
    assert list(body["sets"]) == [jtis[2]]
    for jti in jtis[:2]:
        assert db.outbox(stream.name, jti)["state"] == "acked"

    # the peer refuses the third: failed, with its code and description
    r = client.pushpull(stream, {"setErrs": {jtis[2]: {"err": "invalid_audience",
                                                       "description": "not for us"}}})
    assert r.json().get("sets", {}) == {}
    row = db.outbox(stream.name, jtis[2])
    assert (row["state"], row["err"], row["description"]) == \
        ("failed", "invalid_audience", "not for us")


def test_max_response_events_zero(client, db, stream):
    jti = db.emit(stream.name)
    r = client.pushpull(stream, {"maxResponseEvents": 0})
    assert r.json().get("sets", {}) == {}
    assert db.outbox(stream.name, jti)["state"] == "pending"


def test_inbound_and_outbound_in_one_exchange(client, db, stream):
    out = db.emit(stream.name)
    jti, tok = stream.set()
    r = client.pushpull(stream, {"sets": {jti: tok}})
    body = r.json()
    assert body["ack"] == [jti]
    assert list(body["sets"]) == [out]
    header, _ = ls.split_token(body["sets"][out])
    _, claims = ls.verify_with_jwk(body["sets"][out], stream.signing_jwk, header["alg"])
    assert claims["jti"] == out


def test_refused_inbound_sets_are_set_errs(client, db, stream):
    """set_inbound(stream, 'refuse'): each inbound SET gets a setErr
    access_denied and nothing is stored; acks still apply and outbound
    SETs still flow.  'accept' takes the same SET again."""
    out = db.emit(stream.name)
    assert list(client.pushpull(stream, {}).json()["sets"]) == [out]
    db.execute("SELECT setstream.set_inbound(%s, 'refuse')", (stream.name,))
    jti, tok = stream.set()
    later = db.emit(stream.name)
    r = client.pushpull(stream, {"sets": {jti: tok}, "ack": [out]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == []
    assert body["setErrs"] == {jti: {"err": "access_denied",
                                     "description": "the stream refuses inbound SETs"}}
    assert list(body["sets"]) == [later]
    assert db.event_count(stream.name) == 0
    assert db.outbox(stream.name, out)["state"] == "acked"
    db.execute("SELECT setstream.set_inbound(%s, 'accept')", (stream.name,))
    assert client.pushpull(stream, {"sets": {jti: tok}}).json()["ack"] == [jti]
    assert db.event_count(stream.name) == 1


def test_disabled_stream_takes_inbound_sets(client, db, stream):
    """Disabled stops what the stream transmits, not what it receives."""
    out = db.emit(stream.name)
    db.execute("SELECT setstream.disable_stream(%s)", (stream.name,))
    jti, tok = stream.set()
    r = client.pushpull(stream, {"sets": {jti: tok}})
    assert r.status_code == 200, r.text
    assert r.json()["ack"] == [jti]
    assert r.json().get("sets", {}) == {}
    assert db.event_count(stream.name) == 1
    assert db.outbox(stream.name, out)["err"] == "stream_disabled"


def test_other_content_type_415(client, db, stream):
    jti, tok = stream.set()
    r = client.post("/streams/%s/pushpull" % stream.name, jdump({"sets": {jti: tok}}),
                    content_type="application/secevent+jwt", token=stream.token)
    assert r.status_code == 415, r.text
    assert db.event_count(stream.name) == 0


def test_get_without_upgrade_426(client, stream):
    r = client.get("/streams/%s/pushpull" % stream.name, token=stream.token)
    assert r.status_code == 426, r.text


def test_426_names_websocket_in_upgrade_header(client, stream):
    """RFC 9110 15.5.22: the server MUST send an Upgrade header field in a
    426 response to say which protocol is required."""
    r = client.get("/streams/%s/pushpull" % stream.name, token=stream.token)
    assert r.status_code == 426, r.text
    assert "websocket" in r.headers.get("Upgrade", "").lower(), r.headers


def test_get_without_token_401(client, stream):
    r = client.get("/streams/%s/pushpull" % stream.name)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_405(client, stream, method):
    r = client.request(method, "/streams/%s/pushpull" % stream.name, token=stream.token)
    assert r.status_code == 405, r.text
    allow = sorted(m.strip() for m in r.headers.get("Allow", "").split(","))
    assert allow == ["GET", "POST"]
