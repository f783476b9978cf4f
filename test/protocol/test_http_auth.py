"""Authentication, stream isolation, routing and /jwks.json.

Every stream route needs "Authorization: Bearer <token>" with a token
issued for that stream.  Missing, wrong, revoked and other streams' tokens
get 401 with WWW-Authenticate: Bearer and say nothing about the stream; a
token in the query string is never read; an unknown stream looks exactly
like a known one with a wrong token (401, not 404).  Unknown routes get 404.
GET /jwks.json needs no token and lists public keys only.
"""

import json

import pytest

import listener_support as ls
from listener_support import assert_error

ROUTES = ["events", "poll", "pushpull"]


def _body_for(route, stream):
    if route == "events":
        return stream.set()[1], ls.SET_TYPE
    if route == "poll":
        return ls.jdump({"returnImmediately": True}), "application/json"
    return ls.jdump({"sets": {}}), "application/json"


def assert_401(r):
    assert r.status_code == 401, (r.status_code, r.text)
    challenge = r.headers.get("WWW-Authenticate", "")
    assert challenge.split(" ")[0].lower() == "bearer", r.headers
    body = assert_error(r, 401)
    assert body.get("err") == "authentication_failed", body
    return body


@pytest.fixture
def two(streams, db):
    """Streams A and B; B has an inbound key, a signing key and one
    outbound SET pending."""
    a = streams.create(signing_alg="ES256")
    b = streams.create(signing_alg="ES256")
    b.pending_jti = db.emit(b.name)
    return a, b


@pytest.mark.parametrize("route", ROUTES)
def test_missing_authorization_401(client, db, two, route):
    _, b = two
    body, ct = _body_for(route, b)
    r = client.post("/streams/%s/%s" % (b.name, route), body, content_type=ct)
    assert_401(r)
    assert db.event_count(b.name) == 0


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("authorization", [
    "Bearer sst_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "Bearer ",
    "Bearer",
    "Basic dXNlcjpwYXNz",
    "Token {token}",
    "Bearer {token}x",
    "Bearer {token_prefix}",
])
def test_wrong_authorization_401(client, db, two, route, authorization):
    _, b = two
    body, ct = _body_for(route, b)
    auth = authorization.format(token=b.token, token_prefix=b.token[:-1])
    r = client.post("/streams/%s/%s" % (b.name, route), body, content_type=ct,
                    headers={"Authorization": auth})
    assert_401(r)
    assert db.event_count(b.name) == 0
    assert db.outbox(b.name, b.pending_jti)["state"] == "pending"


def test_bearer_scheme_is_case_insensitive(client, two):
    """RFC 7235: the auth-scheme is case-insensitive."""
    _, b = two
    r = client.post("/streams/%s/poll" % b.name, ls.jdump({"returnImmediately": True}),
                    content_type="application/json",
                    headers={"Authorization": "bearer " + b.token})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ROUTES)
def test_token_of_another_stream_401_and_nothing_leaks(client, db, two, route):
    a, b = two
    body, ct = _body_for(route, b)
    r = client.post("/streams/%s/%s" % (b.name, route), body, content_type=ct, token=a.token)
    assert_401(r)
    # nothing about B: not its name, issuer, SETs or keys
    text = r.text + json.dumps(dict(r.headers))
    for secret in (b.name, b.issuer, b.pending_jti, b.signing_jwk["kid"]):
        assert secret not in text
    assert db.event_count(b.name) == 0
    assert db.outbox(b.name, b.pending_jti)["state"] == "pending"
    # A's token still opens A
    assert client.poll(a).status_code == 200


def test_unknown_stream_401_like_a_wrong_token(client, two):
    """An unknown stream and a known stream with a wrong token must be
    indistinguishable: 401 both, same body."""
    a, b = two
    unknown = "pt-no-such-stream"
    r1 = client.poll(ls.Stream(unknown, "", [], ""), token=a.token)
    r2 = client.poll(b, token=a.token)
    assert_401(r1)
    assert_401(r2)
    assert r1.json() == r2.json()
    assert r1.headers["WWW-Authenticate"] == r2.headers["WWW-Authenticate"]
    assert unknown not in r1.text
    for route in ROUTES:
        body, ct = _body_for(route, b)
        r = client.post("/streams/%s/%s" % (unknown, route), body, content_type=ct,
                        token=b.token)
        assert r.status_code == 401, (route, r.status_code, r.text)
        r = client.post("/streams/%s/%s" % (unknown, route), body, content_type=ct)
        assert r.status_code == 401, (route, r.status_code, r.text)


def test_revoked_token_401(client, db, two):
    _, b = two
    second = db.val("SELECT setstream.issue_token(%s)", (b.name,))
    assert client.poll(b).status_code == 200
    db.execute("SELECT setstream.revoke_token(%s, %s::text)", (b.name, b.token))
    assert_401(client.poll(b))
    assert_401(client.push(b, b.set()[1]))
    # the other token of the stream still works
    assert client.poll(b, token=second).status_code == 200


@pytest.mark.parametrize("param", ["access_token", "token", "bearer"])
def test_query_string_token_never_accepted(client, db, two, param):
    _, b = two
    for route in ROUTES:
        body, ct = _body_for(route, b)
        r = client.post("/streams/%s/%s?%s=%s" % (b.name, route, param, b.token), body,
                        content_type=ct)
        assert_401(r)
    # with a wrong header, the query-string token does not help either
    r = client.post("/streams/%s/poll?access_token=%s" % (b.name, b.token),
                    ls.jdump({"returnImmediately": True}), content_type="application/json",
                    headers={"Authorization": "Bearer sst_wrong"})
    assert_401(r)
    assert db.event_count(b.name) == 0
    assert db.outbox(b.name, b.pending_jti)["state"] == "pending"


def test_query_string_ignored_with_valid_header(client, two):
    """The query string is not part of the route: a valid header works."""
    _, b = two
    r = client.post("/streams/%s/poll?x=1" % b.name, ls.jdump({"returnImmediately": True}),
                    content_type="application/json", token=b.token)
    assert r.status_code == 200, r.text
    assert r.json()["sets"] == {b.pending_jti: db_token(b)}


def db_token(stream):
    conn = ls.connect_db()
    try:
        return ls.Db(conn).outbox(stream.name, stream.pending_jti)["token"]
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/", "/nope", "/jwks", "/jwks.json/x", "/streams", "/streams/",
    "/streams/{name}", "/streams/{name}/", "/streams/{name}/unknown",
    "/streams/{name}/events/x", "/streams//events", "/streams/{name}/Events",
    # (/.well-known/ssf-configuration exists since issue 13: test/ssf)
    "/.well-known/ssf-configuration/x", "/ssf", "/ssf/", "/ssf/unknown",
])
def test_unknown_route_404(client, two, path):
    _, b = two
    r = client.post(path.format(name=b.name), b"{}", content_type="application/json",
                    token=b.token)
    assert r.status_code == 404, (path, r.status_code, r.text)
    r = client.get(path.format(name=b.name))
    assert r.status_code == 404, (path, r.status_code, r.text)


def test_jwks_without_auth_lists_public_keys(client, streams):
    es = streams.create(signing_alg="ES256", token=False)
    rs = streams.create(signing_alg="RS256", token=False)
    r = client.get("/jwks.json")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    keys = r.json()["keys"]
    assert isinstance(keys, list)
    by_kid = {k["kid"]: k for k in keys}
    for s in (es, rs):
        published = by_kid[s.signing_jwk["kid"]]
        assert published == s.signing_jwk
        assert published["use"] == "sig"
    assert by_kid[es.signing_jwk["kid"]]["alg"] == "ES256"
    assert by_kid[rs.signing_jwk["kid"]]["alg"] == "RS256"
    # never private material, in any key
    for k in keys:
        for member in ls.PRIVATE_MEMBERS:
            assert member not in k, k
    assert '"d"' not in r.text


def test_jwks_ignores_bogus_authorization(client):
    r = client.get("/jwks.json", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 200


def test_jwks_other_methods_405(client):
    r = client.post("/jwks.json", b"{}", content_type="application/json")
    assert r.status_code == 405, r.text
    assert [m.strip() for m in r.headers.get("Allow", "").split(",")] == ["GET"]


def test_revoked_signing_key_leaves_jwks(client, db, streams):
    s = streams.create(signing_alg="ES256", token=False)
    kid = s.signing_jwk["kid"]
    assert kid in {k["kid"] for k in client.get("/jwks.json").json()["keys"]}
    db.execute("SELECT setstream.revoke_key(%s, %s)", (s.name, kid))
    assert kid not in {k["kid"] for k in client.get("/jwks.json").json()["keys"]}
