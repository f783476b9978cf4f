"""PATCH and PUT of a stream's configuration, the subject endpoints and
the emit filter (issue 13), made the way the OpenID SSF conformance suite
makes its requests (SSF-CONFORMANCE.md: stream-control happy path, the
update/replace negatives, stream-subject-control)."""

import json
import uuid

import pytest

from listener_support import URL, assert_error

CT = "application/json"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
DEVICE_COMPLIANCE = "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change"
RISC_PURGED = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
ALICE = {"format": "email", "email": "example.user@example.com"}
BOB = {"format": "email", "email": "bob@example.com"}


def send(client, method, path, token, body):
    return client.request(method, path, token=token,
                          headers={"Content-Type": CT},
                          data=body if isinstance(body, (str, bytes)) else json.dumps(body))


def create(client, token, body):
    r = send(client, "POST", "/ssf/streams", token, body)
    assert r.status_code == 201, r.text
    return r.json()


def config_row(db, sid):
    return db.dicts("SELECT s.description, s.events_requested, d.method, d.endpoint_url "
                    "FROM setstream.streams s LEFT JOIN setstream.deliveries d "
                    "ON d.stream = s.name WHERE s.name = %s", (sid,))


def subjects(db, sid):
    return db.dicts("SELECT subject, included, verified FROM setstream.stream_subjects "
                    "WHERE stream = %s ORDER BY subject::text", (sid,))


@pytest.fixture
def rcv(receivers, transmitter):
    name = receivers.create(audience=["https://rp.example/aud"])
    return name, receivers.token(name)


@pytest.fixture
def stream(client, rcv):
    name, token = rcv
    cfg = create(client, token, {"description": "before", "events_requested": [
        SESSION_REVOKED, CREDENTIAL_CHANGE, DEVICE_COMPLIANCE]})
    return cfg, token


# --- PATCH and PUT -------------------------------------------------------

def test_patch_changes_only_what_it_gives(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    r = send(client, "PATCH", "/ssf/streams", token,
             {"stream_id": sid, "description": "after"})
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    new = r.json()
    assert new == dict(cfg, description="after")
    assert client.get("/ssf/streams?stream_id=" + sid, token=token).json() == new
    # events_requested alone: events_delivered follows
    r = send(client, "PATCH", "/ssf/streams", token,
             {"stream_id": sid, "events_requested": [CREDENTIAL_CHANGE, "https://x.example/y"]})
    assert r.status_code == 200, r.text
    assert r.json()["events_delivered"] == [CREDENTIAL_CHANGE]
    assert r.json()["description"] == "after"


def test_put_replaces_and_removes_what_is_missing(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    # the suite sends the configuration back with a changed description:
    # transmitter-supplied members equal to ours are accepted
    body = dict(cfg, description="replaced")
    r = send(client, "PUT", "/ssf/streams", token, body)
    assert r.status_code == 200, r.text
    assert r.json() == body
    # a PUT with stream_id alone: description and events_requested removed
    r = send(client, "PUT", "/ssf/streams", token, {"stream_id": sid})
    assert r.status_code == 200, r.text
    new = r.json()
    assert "description" not in new and "events_requested" not in new
    assert new["events_delivered"] == []
    assert new["delivery"] == {"method": "urn:ietf:rfc:8936",
                               "endpoint_url": URL + "/streams/%s/poll" % sid}
    assert config_row(db, sid)[0]["description"] is None


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("member,value", [
    ("iss", "https://other.example"),
    ("aud", "https://other.example/aud"),
    ("events_supported", [SESSION_REVOKED]),
    ("events_delivered", [SESSION_REVOKED]),
    ("min_verification_interval", 1),
    ("inactivity_timeout", 3600),
])
def test_a_changed_transmitter_member_is_400_and_changes_nothing(client, db, stream, method,
                                                                  member, value):
    cfg, token = stream
    sid = cfg["stream_id"]
    before = config_row(db, sid)
    r = send(client, method, "/ssf/streams", token,
             {"stream_id": sid, "description": "not taken", member: value})
    assert_error(r, 400, "invalid_request")
    assert member in r.json()["description"]
    assert config_row(db, sid) == before


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("body,why", [
    (";{ broken", "not JSON"),
    ("[]", "object"),
    ({"description": "no id"}, "stream_id"),
    ({"stream_id": 7}, "stream_id"),
    ({"description": 7}, "description"),
    ({"events_requested": "x"}, "events_requested"),
    ({"events_requested": [""]}, "events_requested"),
    ({"delivery": {"method": "urn:example:carrier-pigeon"}}, "delivery method"),
    ({"delivery": {"method": "urn:ietf:rfc:8935"}}, "endpoint_url"),
    ({"delivery": {"method": "urn:ietf:rfc:8935", "endpoint_url": "https://rp.example/p",
                   "authorization_header": "a\r\nb"}}, "authorization_header"),
    ({"delivery": {"method": "urn:ietf:rfc:8936",
                   "endpoint_url": "https://evil.example/poll"}}, "delivery"),
])
def test_bad_updates_are_400_and_change_nothing(client, db, stream, method, body, why):
    cfg, token = stream
    sid = cfg["stream_id"]
    if isinstance(body, dict) and "stream_id" not in body and why != "stream_id":
        body = dict(body, stream_id=sid)
    before = config_row(db, sid)
    r = send(client, method, "/ssf/streams", token, body)
    assert_error(r, 400, "invalid_request")
    assert why in r.json()["description"], r.json()
    assert config_row(db, sid) == before


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_update_of_an_unknown_deleted_or_others_stream_is_404(client, db, stream, receivers,
                                                             method):
    cfg, token = stream
    sid = cfg["stream_id"]
    other = receivers.create()
    theirs = create(client, receivers.token(other), {})["stream_id"]
    for target in (str(uuid.uuid4()), "no/such", theirs):
        r = send(client, method, "/ssf/streams", token, {"stream_id": target, "description": "x"})
        assert_error(r, 404)
    assert client.request("DELETE", "/ssf/streams?stream_id=" + sid, token=token).status_code == 204
    assert_error(send(client, method, "/ssf/streams", token,
                      {"stream_id": sid, "description": "x"}), 404)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_update_needs_a_manage_token(client, db, stream, rcv, receivers, method):
    cfg, token = stream
    name, _ = rcv
    sid = cfg["stream_id"]
    body = {"stream_id": sid, "description": "x"}
    r = client.request(method, "/ssf/streams", token="invalid:" + str(uuid.uuid4()),
                       headers={"Content-Type": CT}, data=json.dumps(body))
    assert_error(r, 401)
    r = send(client, method, "/ssf/streams", receivers.token(name, ["ssf.read"]), body)
    assert_error(r, 403, "insufficient_scope")
    assert config_row(db, sid)[0]["description"] == "before"


def poll(client, url, token, body=None):
    assert url.startswith(URL)
    return client.post(url[len(URL):],
                       json.dumps(body or {"maxEvents": 10, "returnImmediately": True}),
                       content_type=CT, token=token)


def test_a_delivery_change_reroutes_queued_sets(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    poll_url = cfg["delivery"]["endpoint_url"]
    jti = db.emit(sid)
    secret = "Bearer push_token_" + uuid.uuid4().hex
    r = send(client, "PATCH", "/ssf/streams", token, {"stream_id": sid, "delivery": {
        "method": "urn:ietf:rfc:8935", "endpoint_url": "https://rp.example/ssf-push",
        "authorization_header": secret}})
    assert r.status_code == 200, r.text
    assert r.json()["delivery"] == {"method": "urn:ietf:rfc:8935",
                                    "endpoint_url": "https://rp.example/ssf-push"}
    assert secret not in r.text
    assert config_row(db, sid)[0]["method"] == "push"
    assert db.val("SELECT authorization_header FROM setstream.delivery_secrets "
                  "WHERE stream = %s", (sid,)) == secret
    # the queued SET now waits for the push, not for a poll
    assert db.outbox(sid, jti)["state"] in ("pending", "delivered")
    assert poll(client, poll_url, token).status_code != 200 or \
        jti not in poll(client, poll_url, token).json().get("sets", {})
    # and back to poll (the suite sends our poll URL back): poll serves it
    r = send(client, "PUT", "/ssf/streams", token, {
        "stream_id": sid, "delivery": {"method": "urn:ietf:rfc:8936", "endpoint_url": poll_url}})
    assert r.status_code == 200, r.text
    assert r.json()["delivery"] == {"method": "urn:ietf:rfc:8936", "endpoint_url": poll_url}
    assert db.val("SELECT count(*) FROM setstream.delivery_secrets WHERE stream = %s",
                  (sid,)) == 0
    r = poll(client, poll_url, token)
    assert r.status_code == 200, r.text
    assert jti in r.json()["sets"], db.outbox(sid, jti)


# --- subjects ------------------------------------------------------------

def subject_post(client, path, token, body):
    return send(client, "POST", "/ssf/subjects:" + path, token, body)


def test_add_and_remove_subject(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    r = subject_post(client, "add", token, {"stream_id": sid, "subject": ALICE, "verified": True})
    assert r.status_code == 200, r.text
    assert r.content == b""
    assert r.headers["Cache-Control"] == "no-store"
    assert subjects(db, sid) == [{"subject": ALICE, "included": True, "verified": True}]
    r = subject_post(client, "remove", token, {"stream_id": sid, "subject": ALICE})
    assert r.status_code == 204, r.text
    # default_subjects ALL: the removal is kept, so the subject stays out
    assert subjects(db, sid) == [{"subject": ALICE, "included": False, "verified": True}]
    r = subject_post(client, "add", token, {"stream_id": sid, "subject": ALICE,
                                            "verified": False})
    assert r.status_code == 200
    assert subjects(db, sid) == [{"subject": ALICE, "included": True, "verified": False}]


def test_subject_endpoints_are_advertised_and_post_only(client, transmitter, rcv):
    doc = client.get("/.well-known/ssf-configuration").json()
    assert doc["add_subject_endpoint"] == URL + "/ssf/subjects:add"
    assert doc["remove_subject_endpoint"] == URL + "/ssf/subjects:remove"
    assert doc["default_subjects"] == "ALL"
    r = client.get("/ssf/subjects:add", token=rcv[1])
    assert_error(r, 405)
    assert r.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", ["add", "remove"])
@pytest.mark.parametrize("body,why", [
    (";{ broken", "not JSON"),
    ({"subject": ALICE}, "stream_id"),
    ({"stream_id": "SID"}, "subject"),
    ({"stream_id": "SID", "subject": "alice"}, "subject"),
    ({"stream_id": "SID", "subject": {"format": "email"}}, "email"),
    ({"stream_id": "SID", "subject": {"format": "email", "email": 7}}, "email"),
    ({"stream_id": "SID", "subject": {"email": "a@b.example"}}, "format"),
])
def test_bad_subject_requests_are_400_and_change_nothing(client, db, stream, path, body, why):
    cfg, token = stream
    sid = cfg["stream_id"]
    if isinstance(body, dict) and body.get("stream_id") == "SID":
        body = dict(body, stream_id=sid)
    r = subject_post(client, path, token, body)
    assert_error(r, 400, "invalid_request")
    assert why in r.json()["description"], r.json()
    assert subjects(db, sid) == []


def test_bad_verified_is_400(client, db, stream):
    cfg, token = stream
    r = subject_post(client, "add", token, {"stream_id": cfg["stream_id"], "subject": ALICE,
                                            "verified": "yes"})
    assert_error(r, 400, "invalid_request")
    assert subjects(db, cfg["stream_id"]) == []


@pytest.mark.parametrize("path", ["add", "remove"])
def test_subject_of_an_unknown_or_others_stream_is_404(client, db, stream, receivers, path):
    cfg, token = stream
    other = receivers.create()
    theirs = create(client, receivers.token(other), {})["stream_id"]
    for target in (str(uuid.uuid4()), theirs):
        r = subject_post(client, path, token, {"stream_id": target, "subject": ALICE})
        assert_error(r, 404)
    assert subjects(db, theirs) == []


def test_subject_endpoints_need_a_manage_token(client, db, stream, rcv, receivers):
    cfg, token = stream
    body = {"stream_id": cfg["stream_id"], "subject": ALICE}
    assert_error(subject_post(client, "add", "invalid:" + str(uuid.uuid4()), body), 401)
    read = receivers.token(rcv[0], ["ssf.read"])
    assert_error(subject_post(client, "add", read, body), 403, "insufficient_scope")
    assert subjects(db, cfg["stream_id"]) == []


# --- the emit filter -------------------------------------------------------

def test_emit_delivers_only_events_delivered(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    # (the transmitter's own verification SET after the create is queued)
    queued = db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (sid,))
    assert db.emit(sid, SESSION_REVOKED) is not None
    assert db.emit(sid, RISC_PURGED) is None
    assert db.emit(sid, "https://schemas.openid.net/secevent/caep/event-type/session-presented") \
        is None
    # SSF's own events are never filtered
    assert db.emit(sid, VERIFICATION) is not None
    assert db.emit(sid, STREAM_UPDATED, {"status": "enabled"}) is not None
    # the filter follows a PATCH at once (the cache is dropped)
    send(client, "PATCH", "/ssf/streams", token,
         {"stream_id": sid, "events_requested": [RISC_PURGED, SESSION_REVOKED]})
    # RISC is not in events_supported: still not delivered
    assert db.emit(sid, RISC_PURGED) is None
    assert db.emit(sid, CREDENTIAL_CHANGE) is None
    assert db.emit(sid, SESSION_REVOKED) is not None
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (sid,)) == \
        queued + 4


def test_emit_follows_the_subjects(client, db, stream, transmitter):
    cfg, token = stream
    sid = cfg["stream_id"]
    assert db.emit(sid, subject=BOB) is not None
    assert subject_post(client, "remove", token,
                        {"stream_id": sid, "subject": BOB}).status_code == 204
    assert db.emit(sid, subject=BOB) is None
    assert db.emit(sid, subject=ALICE) is not None      # ALL: not removed
    # the stream itself is never filtered
    assert db.emit(sid) is not None
    transmitter.set(default_subjects="NONE")
    assert client.get("/.well-known/ssf-configuration").json()["default_subjects"] == "NONE"
    assert db.emit(sid, subject=ALICE) is None          # NONE: not added
    assert subject_post(client, "add", token,
                        {"stream_id": sid, "subject": ALICE}).status_code == 200
    assert db.emit(sid, subject=ALICE) is not None
    # members in another order are the same subject
    assert db.emit(sid, subject={"email": ALICE["email"], "format": "email"}) is not None
    assert db.emit(sid, subject=BOB) is None


def test_emit_trigger_is_filtered_too(client, db, stream):
    cfg, token = stream
    sid = cfg["stream_id"]
    subject_post(client, "remove", token, {"stream_id": sid, "subject": BOB})
    queued = db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (sid,))
    table = "t_" + uuid.uuid4().hex[:8]
    db.execute("CREATE TABLE %s (email text)" % table)
    try:
        db.execute("CREATE TRIGGER e AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION "
                   "setstream.emit_trigger('%s', '%s', 'email', 'email')"
                   % (table, sid, SESSION_REVOKED))
        db.execute("INSERT INTO %s SELECT 'u' || g || '@example.com' FROM generate_series(1, 50) g "
                   "UNION ALL SELECT 'bob@example.com'" % table)
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s",
                      (sid,)) == queued + 50
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s AND "
                      "claims->'sub_id'->>'email' = 'bob@example.com'", (sid,)) == 0
    finally:
        db.execute("DROP TABLE %s" % table)


def test_a_plain_sql_stream_is_not_filtered(db, streams, transmitter):
    s = streams.create(token=False, signing_alg="ES256")
    assert db.emit(s.name, RISC_PURGED, subject=BOB) is not None
    transmitter.set(default_subjects="NONE")
    assert db.emit(s.name, RISC_PURGED, subject=BOB) is not None
