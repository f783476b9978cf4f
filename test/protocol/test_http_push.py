"""RFC 8935 push over the listener: POST /streams/{name}/events.

A valid SET gets 202 with an empty body and is stored once; a duplicate
gets 202 again and is not stored twice; every bad SET gets 400 with an
RFC 8935 error body ({"err", "description"}, application/json,
Content-Language) and nothing is stored.  Content types, methods, body
limits (setstream.max_request_bytes) and disabled streams are covered too.
"""

import uuid

import pytest
from jwcrypto import jwk

import listener_support as ls
from listener_support import assert_error, b64u, jdump, sign, sign_raw


@pytest.fixture
def stream(streams):
    return streams.create(peer_algs=("ES256", "RS256"))


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_valid_set_202_stored_once_duplicate_202(client, db, stream, alg):
    jti, token = stream.set(alg, txn="txn-" + alg)
    r = client.push(stream, token)
    assert r.status_code == 202, r.text
    assert r.content == b""
    rows = db.events(stream.name)
    assert len(rows) == 1
    row = rows[0]
    assert row["jti"] == jti
    assert row["iss"] == stream.peer_issuer
    assert row["token"] == token  # byte-exact
    assert row["event_types"] == [ls.SESSION_REVOKED]
    assert row["txn"] == "txn-" + alg
    assert row["header"]["alg"] == alg

    # the same SET again: answered exactly like the first time, stored once
    r = client.push(stream, token)
    assert r.status_code == 202, r.text
    assert r.content == b""
    assert db.event_count(stream.name) == 1


@pytest.mark.parametrize("content_type", [
    "application/secevent+jwt; charset=utf-8",
    "application/secevent+jwt;charset=UTF-8",
    "Application/SecEvent+JWT",
])
def test_content_type_parameters_and_case_accepted(client, db, stream, content_type):
    jti, token = stream.set()
    r = client.push(stream, token, content_type=content_type)
    assert r.status_code == 202, r.text
    assert [e["jti"] for e in db.events(stream.name)] == [jti]


@pytest.mark.parametrize("content_type", [
    "application/json", "application/jwt", "text/plain",
    "application/secevent+jwtx", None,
])
def test_other_content_types_415(client, db, stream, content_type):
    _, token = stream.set()
    headers = {"Authorization": "Bearer " + stream.token}
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = client.request("POST", "/streams/%s/events" % stream.name,
                       data=token.encode(), headers=headers)
    assert r.status_code == 415, r.text
    assert db.event_count(stream.name) == 0


def _jwe_like():
    hdr = b64u(jdump({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "secevent+jwt"}))
    return ".".join([hdr, b64u(b"k" * 32), b64u(b"i" * 12), b64u(b"c" * 40), b64u(b"t" * 16)])


def _bad_sets(stream):
    """(label, expected err, token) of SETs the listener must refuse."""
    es_key, es_kid = stream.peer_keys["ES256"]
    rs_key, rs_kid = stream.peer_keys["RS256"]
    claims = stream.claims()
    hdr = {"alg": "ES256", "typ": "secevent+jwt", "kid": es_kid}

    # a valid SET with its signature changed
    good = sign(es_key, "ES256", stream.claims(), es_kid)
    h, p, s = good.split(".")
    sig = bytearray(ls.b64u_decode(s))
    sig[5] ^= 0x01
    bad_sig = "%s.%s.%s" % (h, p, b64u(bytes(sig)))

    # HS256 keyed with the RSA public key (the classic alg confusion)
    pem = rs_key.export_to_pem(private_key=False)
    hmac_key = jwk.JWK(kty="oct", k=b64u(pem))
    hs_confused = sign(hmac_key, "HS256", stream.claims(), rs_kid)

    alg_none = "%s.%s." % (b64u(jdump({"alg": "none", "typ": "secevent+jwt"})),
                           b64u(jdump(stream.claims())))

    dup_claims = jdump(claims)[:-1] + ',"jti":"%s"}' % uuid.uuid4().hex
    dup_header = '{"alg":"ES256","typ":"secevent+jwt","kid":"%s","kid":"%s"}' % (es_kid, es_kid)

    return [
        ("garbage", "invalid_request", "this is not a JWT"),
        ("two parts", "invalid_request", "%s.%s" % (b64u(jdump(hdr)), b64u(jdump(claims)))),
        ("jwe", "invalid_request", _jwe_like()),
        ("payload not json", "invalid_request", sign_raw(es_key, "ES256", jdump(hdr), "not json")),
        ("duplicate claim", "invalid_request", sign_raw(es_key, "ES256", jdump(hdr), dup_claims)),
        ("duplicate header member", "invalid_request",
         sign_raw(es_key, "ES256", dup_header, jdump(stream.claims()))),
        ("missing jti", "invalid_request", sign(es_key, "ES256", stream.claims(jti=None), es_kid)),
        ("missing events", "invalid_request",
         sign(es_key, "ES256", stream.claims(events=None), es_kid)),
        ("missing iat", "invalid_request", sign(es_key, "ES256", stream.claims(iat=None), es_kid)),
        ("missing iss", "invalid_request", sign(es_key, "ES256", stream.claims(iss=None), es_kid)),
        ("missing sub_id", "invalid_request",
         sign(es_key, "ES256", stream.claims(sub_id=None), es_kid)),
        ("bad sub_id", "invalid_request",
         sign(es_key, "ES256", stream.claims(sub_id={"format": "email"}), es_kid)),
        ("unknown sub_id format member", "invalid_request",
         sign(es_key, "ES256",
              stream.claims(sub_id={"format": "opaque", "id": "x", "email": "a@b.c"}), es_kid)),
        ("no typ", "invalid_request",
         sign_raw(es_key, "ES256", jdump({"alg": "ES256", "kid": es_kid}), jdump(stream.claims()))),
        ("bad signature", "invalid_key", bad_sig),
        ("unknown kid", "invalid_key", sign(es_key, "ES256", stream.claims(), "no-such-kid")),
        ("HS256 with the RSA key", "invalid_key", hs_confused),
        ("alg none", "invalid_key", alg_none),
        ("signed by another key", "invalid_key",
         sign(ls.peer_key("ES256", variant=1), "ES256", stream.claims(), es_kid)),
        ("wrong issuer", "invalid_issuer",
         sign(es_key, "ES256", stream.claims(iss="https://evil.example.com/"), es_kid)),
        ("wrong audience", "invalid_audience",
         sign(es_key, "ES256", stream.claims(aud="https://someone-else.example.com/"), es_kid)),
        ("no audience", "invalid_audience", sign(es_key, "ES256", stream.claims(aud=None), es_kid)),
    ]


BAD_LABELS = [
    "garbage", "two parts", "jwe", "payload not json", "duplicate claim",
    "duplicate header member", "missing jti", "missing events", "missing iat",
    "missing iss", "missing sub_id", "bad sub_id", "unknown sub_id format member",
    "no typ", "bad signature", "unknown kid", "HS256 with the RSA key", "alg none",
    "signed by another key", "wrong issuer", "wrong audience", "no audience",
]


@pytest.mark.parametrize("label", BAD_LABELS)
def test_bad_set_400_with_error_code(client, db, stream, label):
    cases = {lbl: (err, tok) for lbl, err, tok in _bad_sets(stream)}
    assert set(cases) == set(BAD_LABELS)
    err, token = cases[label]
    r = client.push(stream, token)
    assert_error(r, 400, err)
    assert stream.token not in r.text
    assert db.event_count(stream.name) == 0


def test_bad_set_counted_as_rejected(client, db, stream):
    """setstream.stats counts the refusals by RFC 8935 code."""
    _, token = stream.set(iss="https://evil.example.com/")
    assert_error(client.push(stream, token), 400, "invalid_issuer")
    assert_error(client.push(stream, "garbage"), 400, "invalid_request")
    rejected = db.val("SELECT rejected FROM setstream.stats WHERE stream = %s", (stream.name,))
    assert rejected == {"invalid_issuer": 1, "invalid_request": 1}


def test_empty_body_400(client, db, stream):
    r = client.push(stream, b"")
    assert_error(r, 400, "invalid_request")
    assert db.event_count(stream.name) == 0


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_405_with_allow(client, stream, method):
    r = client.request(method, "/streams/%s/events" % stream.name, token=stream.token)
    assert r.status_code == 405, r.text
    assert [m.strip() for m in r.headers.get("Allow", "").split(",")] == ["POST"]


def test_refused_inbound_access_denied(client, db, stream):
    db.execute("SELECT setstream.set_inbound(%s, 'refuse')", (stream.name,))
    _, token = stream.set()
    r = client.push(stream, token)
    assert_error(r, 400, "access_denied")
    assert r.json()["description"] == "the stream refuses inbound SETs"
    assert db.event_count(stream.name) == 0
    # accepted again, the same SET is taken
    db.execute("SELECT setstream.set_inbound(%s, 'accept')", (stream.name,))
    assert client.push(stream, token).status_code == 202
    assert db.event_count(stream.name) == 1


def test_disabled_stream_takes_pushes(client, db, stream):
    """Disabled stops what the stream transmits; inbound SETs are a
    setting of their own (set_inbound)."""
    db.execute("SELECT setstream.disable_stream(%s)", (stream.name,))
    _, token = stream.set()
    assert client.push(stream, token).status_code == 202
    assert db.event_count(stream.name) == 1


def test_413_announced_body_read_before_body_is_sent(raw, db, stream):
    """A Content-Length over setstream.max_request_bytes (default 1 MiB) is
    refused from the headers alone: the client reads the 413 without
    sending a byte of the body."""
    c = raw()
    c.send(ls.build_request("POST", "/streams/%s/events" % stream.name, [
        ("Authorization", "Bearer " + stream.token),
        ("Content-Type", ls.SET_TYPE),
        ("Content-Length", str(64 * 1024 * 1024)),
    ]))
    r = c.read_response()
    assert r.status == 413, r
    assert r.header("Connection") == "close"
    assert c.closed_within(5)
    assert db.event_count(stream.name) == 0


def test_413_big_body_with_requests(client, db, stream):
    """A client that sends the whole over-size body still reads the 413."""
    _, token = stream.set()
    big = token + "A" * (2 * 1024 * 1024)
    r = client.push(stream, big)
    assert r.status_code == 413, r.text
    assert db.event_count(stream.name) == 0


def test_413_chunked_body_over_limit(raw, db, stream):
    """A chunked body has no Content-Length: the limit still holds."""
    c = raw()
    head = ls.build_request("POST", "/streams/%s/events" % stream.name, [
        ("Authorization", "Bearer " + stream.token),
        ("Content-Type", ls.SET_TYPE),
        ("Transfer-Encoding", "chunked"),
    ])
    chunk = b"A" * 65536
    c.send(head)
    try:
        for _ in range(24):  # 1.5 MiB > 1 MiB
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        c.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may stop reading once it has answered
    r = c.read_response()
    assert r.status == 413, r
    assert db.event_count(stream.name) == 0


def test_max_request_bytes_setting(client, raw, db, gucs, stream):
    """setstream.max_request_bytes (reloadable) bounds bodies and SETs."""
    gucs.set(max_request_bytes="4096")
    jti, token = stream.set()
    assert len(token) < 4096
    assert client.push(stream, token).status_code == 202

    _, big = stream.set(events={ls.SESSION_REVOKED: {"reason": "x" * 5000}})
    assert len(big) > 4096
    r = client.push(stream, big)
    assert r.status_code == 413, r.text

    c = raw()
    c.send(ls.build_request("POST", "/streams/%s/events" % stream.name, [
        ("Authorization", "Bearer " + stream.token),
        ("Content-Type", ls.SET_TYPE),
        ("Content-Length", "4097"),
    ]))
    assert c.read_response().status == 413

    # exactly at the limit is not too large (only not a SET)
    r = client.push(stream, "x" * 4096)
    assert_error(r, 400, "invalid_request")
    assert [e["jti"] for e in db.events(stream.name)] == [jti]
