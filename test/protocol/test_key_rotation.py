"""Key rotation (issue 13): rotate_key signs with a new key at once; the key
it replaces stays in /jwks.json while SETs it signed are unsettled and for
setstream.jwks_max_age (the max-age the JWKS answer carries), then the
sender retires it by itself; revoke_key refuses a key unsettled SETs still
need, unless forced."""

import time

import psycopg2

import listener_support as ls


def expect_error(db, sqlstate, sql, params=None):
    try:
        db.execute(sql, params)
    except psycopg2.Error as e:
        assert e.pgcode == sqlstate, (e.pgcode, e.diag.message_primary)
        return e
    raise AssertionError("no error from %s" % sql)


def jwks(client):
    r = client.get("/jwks.json")
    assert r.status_code == 200
    return r, [k["kid"] for k in r.json()["keys"]]


def key_row(db, stream, kid):
    return db.dicts("SELECT superseded_at, revoked_at FROM setstream.keys"
                    " WHERE stream = %s AND kid = %s", (stream, kid))[0]


def settle(db, stream, jtis):
    """Deliver and acknowledge SETs through setstream.poll (SQL)."""
    got = db.val("SELECT setstream.poll(%s, '{\"maxEvents\": 100, \"returnImmediately\": true}')", (stream,))
    assert set(jtis) <= set(got["sets"]), got
    db.val("SELECT setstream.poll(%s, %s::jsonb)",
           (stream, ls.jdump({"ack": list(jtis), "maxEvents": 0, "returnImmediately": True})))
    for jti in jtis:
        assert db.outbox(stream, jti)["state"] == "acked"


def wait_until(what, cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.1)


def test_rotate_key_signs_with_the_new_key_at_once(db, streams, client, gucs):
    gucs.set(jwks_max_age=7)
    s = streams.create(signing_alg="ES256")
    old = s.signing_jwk
    jti1 = db.emit(s.name)
    new = db.val("SELECT setstream.rotate_key(%s, 'RS256')", (s.name,))
    assert new["kid"] != old["kid"] and new["kty"] == "RSA" and new["alg"] == "RS256"
    assert "d" not in new, "rotate_key returned private material"

    jti2 = db.emit(s.name)
    header, _ = ls.verify_with_jwk(db.outbox(s.name, jti2)["token"], new, "RS256")
    assert header["kid"] == new["kid"]
    # the SET signed before the rotation keeps its signature
    header, _ = ls.verify_with_jwk(db.outbox(s.name, jti1)["token"], old, "ES256")
    assert header["kid"] == old["kid"]

    assert key_row(db, s.name, old["kid"])["superseded_at"] is not None
    assert key_row(db, s.name, new["kid"])["superseded_at"] is None
    r, kids = jwks(client)
    assert old["kid"] in kids and new["kid"] in kids
    assert r.headers["Cache-Control"] == "max-age=7"


def test_rotate_key_needs_a_known_alg_and_stream(db, streams):
    s = streams.create(signing_alg="ES256")
    expect_error(db, "22023", "SELECT setstream.rotate_key(%s, 'HS1')", (s.name,))
    # nothing was superseded by the failed call
    assert key_row(db, s.name, s.signing_jwk["kid"])["superseded_at"] is None
    expect_error(db, "42704", "SELECT setstream.rotate_key('no-such-stream')")


def test_revoke_key_refuses_a_key_with_unsettled_sets(db, streams):
    s = streams.create(signing_alg="ES256")
    old = s.signing_jwk["kid"]
    jti = db.emit(s.name)
    db.val("SELECT setstream.rotate_key(%s)", (s.name,))
    expect_error(db, "55006", "SELECT setstream.revoke_key(%s, %s)", (s.name, old))
    assert key_row(db, s.name, old)["revoked_at"] is None

    settle(db, s.name, [jti])
    db.execute("SELECT setstream.revoke_key(%s, %s)", (s.name, old))
    assert key_row(db, s.name, old)["revoked_at"] is not None


def test_revoke_key_with_force_revokes_a_key_in_use(db, streams, client):
    s = streams.create(signing_alg="ES256")
    kid = s.signing_jwk["kid"]
    db.emit(s.name)
    expect_error(db, "55006", "SELECT setstream.revoke_key(%s, %s, false)", (s.name, kid))
    db.execute("SELECT setstream.revoke_key(%s, %s, force => true)", (s.name, kid))
    assert key_row(db, s.name, kid)["revoked_at"] is not None
    assert kid not in jwks(client)[1]


def test_a_replaced_key_retires_itself_once_its_sets_are_settled(db, streams, client, gucs):
    gucs.set(jwks_max_age=2)
    s = streams.create(signing_alg="ES256")
    old = s.signing_jwk["kid"]
    jti = db.emit(s.name)
    new = db.val("SELECT setstream.rotate_key(%s)", (s.name,))["kid"]

    # past max-age, but a SET it signed is unsettled: still published
    time.sleep(4)
    assert old in jwks(client)[1]
    assert key_row(db, s.name, old)["revoked_at"] is None

    settle(db, s.name, [jti])
    wait_until("the old key to retire",
               lambda: key_row(db, s.name, old)["revoked_at"] is not None)
    kids = jwks(client)[1]
    assert old not in kids and new in kids
    assert key_row(db, s.name, new)["revoked_at"] is None


def test_a_replaced_key_stays_published_for_max_age(db, streams, client, gucs):
    gucs.set(jwks_max_age=5)
    s = streams.create(signing_alg="ES256")
    old = s.signing_jwk["kid"]
    db.val("SELECT setstream.rotate_key(%s)", (s.name,))
    start = time.monotonic()
    # no SET was signed by it: only max-age holds it
    time.sleep(2)
    assert old in jwks(client)[1], "retired before setstream.jwks_max_age"
    wait_until("the old key to retire",
               lambda: key_row(db, s.name, old)["revoked_at"] is not None)
    assert time.monotonic() - start >= 4.5
    assert old not in jwks(client)[1]


def test_token_kid_reads_the_header_and_never_fails(db, streams):
    s = streams.create(signing_alg="ES256")
    jti = db.emit(s.name)
    assert db.val("SELECT setstream._token_kid(token) FROM setstream.outbox"
                  " WHERE stream = %s AND jti = %s", (s.name, jti)) == s.signing_jwk["kid"]
    for junk in ["", "a.b.c", "x", "e30.e30.", ls.b64u(b'{"kid": 5}') + ".e30.x",
                 "a.b.c.d.e"]:
        assert db.val("SELECT setstream._token_kid(%s)", (junk,)) is None, junk
