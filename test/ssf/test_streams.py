"""The stream configuration endpoint: POST, GET, DELETE /ssf/streams."""

import json
import uuid

import pytest

from listener_support import URL, assert_error

CT = "application/json"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
DEVICE_COMPLIANCE = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"


def create(client, token, body):
    return client.post("/ssf/streams",
                       body if isinstance(body, (str, bytes)) else json.dumps(body),
                       content_type=CT, token=token)


def stream_count(db, receiver):
    return db.val("SELECT count(*) FROM setstream.streams WHERE receiver = %s", (receiver,))


@pytest.fixture
def rcv(receivers, transmitter):
    name = receivers.create(audience=["https://rp.example/aud"])
    return name, receivers.token(name)


def test_create_poll_stream(client, db, rcv):
    name, token = rcv
    body = {"description": "happy path", "events_requested": [
        SESSION_REVOKED, CREDENTIAL_CHANGE, DEVICE_COMPLIANCE, "https://unknown.example/x"]}
    r = create(client, token, body)
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    cfg = r.json()
    sid = cfg["stream_id"]
    assert str(uuid.UUID(sid)) == sid
    assert cfg["iss"] == URL
    assert cfg["aud"] == "https://rp.example/aud"
    assert cfg["delivery"] == {"method": "urn:ietf:rfc:8936",
                               "endpoint_url": URL + "/streams/%s/poll" % sid}
    assert cfg["events_requested"] == body["events_requested"]
    assert cfg["events_delivered"] == [SESSION_REVOKED, CREDENTIAL_CHANGE, DEVICE_COMPLIANCE]
    assert VERIFICATION in cfg["events_supported"]
    assert cfg["description"] == "happy path"
    # an ordinary stream: SQL sees it, with a signing key, and emit works on it
    row = db.dicts("SELECT receiver, issuer, status FROM setstream.streams WHERE name = %s",
                   (sid,))
    assert row == [{"receiver": name, "issuer": URL, "status": "enabled"}]
    assert db.val("SELECT count(*) FROM setstream.keys WHERE stream = %s AND purpose = 'sign'",
                  (sid,)) == 1
    jti = db.emit(sid)
    assert db.outbox(sid, jti)["state"] == "pending"
    # read back
    r = client.get("/ssf/streams?stream_id=" + sid, token=token)
    assert r.status_code == 200 and r.json() == cfg, r.text


def test_create_push_stream_keeps_the_header_secret(client, db, rcv):
    name, token = rcv
    secret = "Bearer push_token_" + uuid.uuid4().hex
    r = create(client, token, {"delivery": {"method": "urn:ietf:rfc:8935",
                                            "endpoint_url": "https://rp.example/ssf-push",
                                            "authorization_header": secret}})
    assert r.status_code == 201, r.text
    cfg = r.json()
    assert cfg["delivery"] == {"method": "urn:ietf:rfc:8935",
                               "endpoint_url": "https://rp.example/ssf-push"}
    assert secret not in r.text
    sid = cfg["stream_id"]
    assert db.val("SELECT method FROM setstream.deliveries WHERE stream = %s", (sid,)) == "push"
    assert db.val("SELECT authorization_header FROM setstream.delivery_secrets "
                  "WHERE stream = %s", (sid,)) == secret
    assert secret not in client.get("/ssf/streams?stream_id=" + sid, token=token).text


def test_several_streams_per_receiver_and_get_all(client, rcv, receivers):
    name, token = rcv
    a = create(client, token, {}).json()
    b = create(client, token, {"description": "second"}).json()
    assert a["stream_id"] != b["stream_id"]
    r = client.get("/ssf/streams", token=token)
    assert r.status_code == 200
    assert [c["stream_id"] for c in r.json()] == [a["stream_id"], b["stream_id"]]
    # another receiver sees none of them
    other = receivers.create()
    r = client.get("/ssf/streams", token=receivers.token(other))
    assert r.status_code == 200 and r.json() == []
    assert_error(client.get("/ssf/streams?stream_id=" + a["stream_id"],
                            token=receivers.token(other)), 404)


def test_max_streams_is_409(client, db, receivers, transmitter):
    name = receivers.create(max_streams=1)
    token = receivers.token(name)
    assert create(client, token, {}).status_code == 201
    assert_error(create(client, token, {}), 409)
    assert stream_count(db, name) == 1


def test_delete(client, db, rcv):
    name, token = rcv
    sid = create(client, token, {}).json()["stream_id"]
    r = client.request("DELETE", "/ssf/streams?stream_id=" + sid, token=token)
    assert r.status_code == 204 and r.content == b""
    assert r.headers["Cache-Control"] == "no-store"
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (sid,)) == 0
    assert_error(client.request("DELETE", "/ssf/streams?stream_id=" + sid, token=token), 404)
    assert_error(client.get("/ssf/streams?stream_id=" + sid, token=token), 404)
    assert_error(client.get("/ssf/status?stream_id=" + sid, token=token), 404)


def test_delete_needs_stream_id_and_the_owning_receiver(client, db, rcv, receivers):
    name, token = rcv
    sid = create(client, token, {}).json()["stream_id"]
    assert_error(client.request("DELETE", "/ssf/streams", token=token), 400, "invalid_request")
    other = receivers.create()
    assert_error(client.request("DELETE", "/ssf/streams?stream_id=" + sid,
                                token=receivers.token(other)), 404)
    sql_stream = receivers.streams.create(token=False)
    assert_error(client.request("DELETE", "/ssf/streams?stream_id=" + sql_stream.name,
                                token=token), 404)
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name IN (%s, %s)",
                  (sid, sql_stream.name)) == 2


@pytest.mark.parametrize("body, why", [
    (";{ broken", "not JSON"),
    ("[]", "object"),
    ({"stream_id": "x"}, "supplied by the transmitter"),
    ({"iss": "x"}, "supplied by the transmitter"),
    ({"aud": "x"}, "supplied by the transmitter"),
    ({"events_delivered": []}, "supplied by the transmitter"),
    ({"events_supported": []}, "supplied by the transmitter"),
    ({"min_verification_interval": 5}, "supplied by the transmitter"),
    ({"inactivity_timeout": 5}, "supplied by the transmitter"),
    ({"events_requested": "x"}, "events_requested"),
    ({"events_requested": [1]}, "events_requested"),
    ({"events_requested": [""]}, "events_requested"),
    ({"description": 5}, "description"),
    ({"delivery": "poll"}, "delivery"),
    ({"delivery": {}}, "method"),
    ({"delivery": {"method": "urn:example:unknown"}}, "unsupported delivery method"),
    ({"delivery": {"method": "urn:ietf:rfc:8936", "endpoint_url": "https://x.example/"}},
     "endpoint_url"),
    ({"delivery": {"method": "urn:ietf:rfc:8935"}}, "endpoint_url"),
    ({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "ftp://x.example/"}},
     "endpoint_url"),
    ({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://x.example/",
                   "authorization_header": "Bearer a\r\nX-Evil: 1"}}, "authorization_header"),
    ({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://x.example/",
                   "authorization_header": 7}}, "authorization_header"),
])
def test_bad_creates_are_400_and_make_nothing(client, db, rcv, body, why):
    name, token = rcv
    before = db.val("SELECT count(*) FROM setstream.streams")
    r = create(client, token, body)
    b = assert_error(r, 400, "invalid_request")
    assert why in b["description"], b
    assert r.headers["Cache-Control"] == "no-store"
    assert db.val("SELECT count(*) FROM setstream.streams") == before
    assert stream_count(db, name) == 0


def test_invalid_token_is_401_and_read_scope_403(client, db, rcv, receivers):
    name, token = rcv
    r = client.post("/ssf/streams", "{}", content_type=CT,
                    headers={"Authorization": "Bearer invalid:" + uuid.uuid4().hex})
    assert_error(r, 401)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    read = receivers.token(name, ["ssf.read"])
    assert_error(create(client, read, {}), 403, "insufficient_scope")
    sid = create(client, token, {}).json()["stream_id"]
    assert_error(client.request("DELETE", "/ssf/streams?stream_id=" + sid, token=read),
                 403, "insufficient_scope")
    assert client.get("/ssf/streams?stream_id=" + sid, token=read).status_code == 200
    assert stream_count(db, name) == 1


def test_other_methods_are_405(client, rcv):
    name, token = rcv
    r = client.request("HEAD", "/ssf/streams", token=token)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, POST, PATCH, PUT, DELETE"


def test_no_transmitter_without_public_url(client, receivers, gucs, db):
    gucs.set(public_url="", issuer="")
    name = receivers.create()
    assert_error(create(client, receivers.token(name), {}), 404)
    assert stream_count(db, name) == 0


def poll(client, url, token, body=None):
    assert url.startswith(URL)
    return client.post(url[len(URL):],
                       json.dumps(body or {"maxEvents": 10, "returnImmediately": True}),
                       content_type=CT, token=token)


def test_the_receiver_token_opens_the_poll_endpoint(client, db, rcv, receivers):
    name, token = rcv
    cfg = create(client, token, {"events_requested": [SESSION_REVOKED]}).json()
    sid, url = cfg["stream_id"], cfg["delivery"]["endpoint_url"]
    jti = db.emit(sid)
    r = poll(client, url, token)
    assert r.status_code == 200, r.text
    sets = r.json()["sets"]
    # the transmitter's own verification SET (issue 13), and the emitted one
    assert len(sets) == 2 and jti in sets
    first = [j for j in sets if j != jti][0]
    assert db.outbox(sid, first)["event_types"] == [VERIFICATION]
    # ack with the same token
    r = poll(client, url, token, {"ack": [first, jti], "maxEvents": 0,
                                  "returnImmediately": True})
    assert r.status_code == 200, r.text
    assert db.outbox(sid, jti)["state"] == "acked"
    # a token issued after the stream was cached opens it too (caches dropped)
    read = receivers.token(name, ["ssf.read"])
    assert poll(client, url, read).status_code == 200
    # not: a manage-only token, another receiver's token, a revoked one
    manage = receivers.token(name, ["ssf.manage"])
    assert_error(poll(client, url, manage), 401)
    other = receivers.create()
    assert_error(poll(client, url, receivers.token(other)), 401)
    db.execute("DELETE FROM setstream.receiver_tokens WHERE receiver = %s AND "
               "token_hash = sha256(convert_to(%s, 'UTF8'))", (name, read))
    assert_error(poll(client, url, read), 401)


def test_the_receiver_token_opens_no_other_stream_route(client, db, rcv):
    name, token = rcv
    sid = create(client, token, {}).json()["stream_id"]
    r = client.post("/streams/%s/events" % sid, "x.y.z", content_type="application/secevent+jwt",
                    token=token)
    assert_error(r, 401)
    r = client.post("/streams/%s/pushpull" % sid, "{}", content_type=CT, token=token)
    assert_error(r, 401)


def test_signing_key_of_a_created_stream_follows_ssf_signing_alg(client, db, rcv, gucs):
    """The CAEP interoperability profile requires RS256 SETs: a stream made
    through the API gets an RS256 signing key by default (the verification
    SET queued at create is RS256), and setstream.ssf_signing_alg's
    algorithm when set"""
    import base64
    name, token = rcv

    def made(alg_expected):
        r = create(client, token, {"events_requested": [SESSION_REVOKED]})
        assert r.status_code == 201, r.text
        sid = r.json()["stream_id"]
        assert db.val("SELECT alg FROM setstream.keys WHERE stream = %s AND purpose = 'sign'",
                      (sid,)) == alg_expected
        tok = db.val("SELECT token FROM setstream.outbox WHERE stream = %s "
                     "AND event_types = %s", (sid, [VERIFICATION]))
        head = tok.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        assert header["alg"] == alg_expected and header["typ"] == "secevent+jwt"
        return sid
    made("RS256")
    gucs.set(ssf_signing_alg="ES256")
    made("ES256")
