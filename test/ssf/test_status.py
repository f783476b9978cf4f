"""The management API's authentication, and GET/POST /ssf/status."""

import json

import pytest

from listener_support import assert_error

CT = "application/json"


def status_of(db, stream):
    return db.val("SELECT status FROM setstream.streams WHERE name = %s", (stream,))


def post_status(client, token, body):
    return client.post("/ssf/status", body if isinstance(body, (str, bytes)) else json.dumps(body),
                       content_type=CT, token=token)


def assert_no_store(r):
    assert r.headers.get("Cache-Control") == "no-store", r.headers


# --- authentication --------------------------------------------------------

def test_no_token_is_401_without_error(client, receivers, transmitter):
    name = receivers.create()
    s = receivers.stream(name)
    r = client.get("/ssf/status?stream_id=" + s.name)
    assert_error(r, 401, "authentication_failed")
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="setstream"'
    assert_no_store(r)


@pytest.mark.parametrize("auth", ["Bearer invalid:0000", "Bearer ssr_" + "A" * 43, "Basic Zm9vOmJhcg==",
                                  "Bearer "])
def test_bad_token_is_401_invalid_token(client, receivers, db, auth):
    name = receivers.create()
    s = receivers.stream(name)
    r = client.post("/ssf/status", json.dumps({"stream_id": s.name, "status": "paused"}),
                    content_type=CT, headers={"Authorization": auth})
    assert_error(r, 401, "authentication_failed")
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    assert_no_store(r)
    assert status_of(db, s.name) == "enabled"


def test_a_stream_token_is_no_receiver_token(client, receivers, streams, db):
    name = receivers.create()
    s = receivers.stream(name)
    stream_token = db.val("SELECT setstream.issue_token(%s)", (s.name,))
    r = client.get("/ssf/status?stream_id=" + s.name, token=stream_token)
    assert_error(r, 401, "authentication_failed")


def test_token_in_the_query_string_is_not_read(client, receivers):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    for q in ("access_token", "token", "authorization"):
        r = client.get("/ssf/status?stream_id=%s&%s=%s" % (s.name, q, token))
        assert_error(r, 401, "authentication_failed")
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="setstream"'


def test_read_scope_reads_but_does_not_change(client, receivers, db):
    name = receivers.create()
    read = receivers.token(name, ["ssf.read"])
    s = receivers.stream(name)
    r = client.get("/ssf/status?stream_id=" + s.name, token=read)
    assert r.status_code == 200, r.text
    r = post_status(client, read, {"stream_id": s.name, "status": "paused"})
    assert_error(r, 403, "insufficient_scope")
    assert r.headers["WWW-Authenticate"] == \
        'Bearer realm="setstream", error="insufficient_scope", scope="ssf.manage"'
    assert_no_store(r)
    assert status_of(db, s.name) == "enabled"


def test_manage_scope_alone_cannot_read(client, receivers, db):
    name = receivers.create()
    manage = receivers.token(name, ["ssf.manage"])
    s = receivers.stream(name)
    r = client.get("/ssf/status?stream_id=" + s.name, token=manage)
    assert_error(r, 403, "insufficient_scope")
    assert 'scope="ssf.read"' in r.headers["WWW-Authenticate"]
    r = post_status(client, manage, {"stream_id": s.name, "status": "paused"})
    assert r.status_code == 200, r.text


# --- status ----------------------------------------------------------------

def test_get_status(client, receivers):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name, status="paused")
    r = client.get("/ssf/status?stream_id=" + s.name, token=token)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert_no_store(r)
    assert r.json() == {"stream_id": s.name, "status": "paused"}


def test_post_status_enabled_paused_disabled(client, receivers, db):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    for status in ("enabled", "paused", "disabled", "enabled"):
        body = {"stream_id": s.name, "status": status, "reason": "test " + status}
        r = post_status(client, token, body)
        assert r.status_code == 200, r.text
        assert_no_store(r)
        assert r.json() == body
        assert status_of(db, s.name) == status
        assert client.get("/ssf/status?stream_id=" + s.name, token=token).json() == \
            {"stream_id": s.name, "status": status}
    # reason is optional
    r = post_status(client, token, {"stream_id": s.name, "status": "paused"})
    assert r.json() == {"stream_id": s.name, "status": "paused"}


def test_disabled_through_the_api_settles_the_outbox(client, receivers, db):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    db.execute("SELECT setstream.generate_key(%s, 'ES256')", (s.name,))
    jti = db.emit(s.name)
    assert db.outbox(s.name, jti)["state"] == "pending"
    assert post_status(client, token, {"stream_id": s.name, "status": "disabled"}).status_code == 200
    row = db.outbox(s.name, jti)
    assert (row["state"], row["err"]) == ("failed", "stream_disabled")


def test_unknown_and_foreign_streams_are_404(client, receivers, db):
    mine = receivers.create()
    other = receivers.create()
    token = receivers.token(mine)
    theirs = receivers.stream(other)
    unattached = receivers.streams.create(token=False)
    for stream_id in (theirs.name, unattached.name, "no-such-stream", "bad/../id", "%2e%2e"):
        r = client.get("/ssf/status?stream_id=" + stream_id, token=token)
        assert_error(r, 404)
        assert_no_store(r)
        r = post_status(client, token, {"stream_id": stream_id, "status": "paused"})
        assert_error(r, 404)
    assert status_of(db, theirs.name) == "enabled"
    assert status_of(db, unattached.name) == "enabled"


@pytest.mark.parametrize("body, why", [
    (";{ broken", "not JSON"),
    ("[]", "object"),
    ('"x"', "object"),
    ({"status": "paused"}, "stream_id"),
    ({"stream_id": "S"}, "status"),
    ({"stream_id": 7, "status": "paused"}, "stream_id"),
    ({"stream_id": "S", "status": 1}, "status"),
    ({"stream_id": "S", "status": "stopped"}, "enabled, paused or disabled"),
    ({"stream_id": "S", "status": "PAUSED"}, "enabled, paused or disabled"),
    ({"stream_id": "S", "status": "paused", "reason": 5}, "reason"),
    ('{"stream_id": "S", "stream_id": "S", "status": "paused"}', "stream_id"),
])
def test_bad_bodies_are_400_and_change_nothing(client, receivers, db, body, why):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    if isinstance(body, dict) and body.get("stream_id") == "S":
        body["stream_id"] = s.name
    if isinstance(body, str):
        body = body.replace('"S"', json.dumps(s.name))
    r = post_status(client, token, body)
    b = assert_error(r, 400, "invalid_request")
    assert why in b["description"], b
    assert_no_store(r)
    assert status_of(db, s.name) == "enabled"


def test_bad_body_without_a_token_is_401(client, receivers):
    receivers.create()
    r = post_status(client, None, ";{ broken")
    assert_error(r, 401)


def test_wrong_content_type_is_400(client, receivers, db):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    r = client.post("/ssf/status", json.dumps({"stream_id": s.name, "status": "paused"}),
                    content_type="text/plain", token=token)
    assert_error(r, 400, "invalid_request")
    assert status_of(db, s.name) == "enabled"


def test_get_without_stream_id_is_400(client, receivers):
    name = receivers.create()
    token = receivers.token(name)
    for q in ("", "?", "?stream=x", "?stream_id=a&stream_id=b", "?stream_id=%00"):
        assert_error(client.get("/ssf/status" + q, token=token), 400, "invalid_request")


def test_stream_id_is_percent_decoded(client, receivers):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    quoted = "".join("%%%02X" % ord(c) for c in s.name)
    r = client.get("/ssf/status?stream_id=" + quoted, token=token)
    assert r.status_code == 200 and r.json()["stream_id"] == s.name, r.text


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(client, receivers, method):
    name = receivers.create()
    token = receivers.token(name)
    r = client.request(method, "/ssf/status", token=token)
    assert_error(r, 405)
    assert r.headers["Allow"] == "GET, POST"
    assert_no_store(r)


def test_stream_made_by_sql_status_is_seen_by_the_api(client, receivers, db):
    name = receivers.create()
    token = receivers.token(name)
    s = receivers.stream(name)
    db.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    assert client.get("/ssf/status?stream_id=" + s.name, token=token).json()["status"] == "paused"


@pytest.mark.parametrize("query", ["stream_id=%zz", "stream_id=%4", "stream_id=a%"])
def test_bad_percent_encoding_is_400(raw, receivers, query):
    """(raw: requests would quote the stray % itself)"""
    name = receivers.create()
    token = receivers.token(name)
    r = raw().request("GET", "/ssf/status?" + query,
                      headers=[("Authorization", "Bearer " + token)])
    assert r.status == 400, r
    assert r.json()["err"] == "invalid_request"
    assert r.header("Cache-Control") == "no-store"
