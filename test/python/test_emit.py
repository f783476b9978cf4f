"""SETs that setstream emits, checked with an independent JOSE library.

generate_key() makes the stream's signing key and returns its public JWK;
emit() signs a SET at once and queues it in setstream.outbox.  jwcrypto must
verify every emitted SET with nothing but that public JWK, and the SET must
follow the SSF profile (typ secevent+jwt, sub_id, no sub, no exp).
"""

import io
import json
import os
import re
import time

import psycopg2
import pytest
from jwcrypto import jwk

from conftest import (CREDENTIAL_CHANGE, GENERATE_ALGS, SESSION_REVOKED,
                      UUID4_RE, b64u, jdump, split_token, thumbprint, verify)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.mark.parametrize("alg", GENERATE_ALGS)
def test_emitted_set_verifies_with_jwcrypto(alg, db, streams):
    s = streams.create()
    pub = db.generate_key(s.name, alg)
    assert not PRIVATE_MEMBERS & set(pub), pub
    assert pub["alg"] == alg and pub["use"] == "sig"
    assert pub["kid"] == thumbprint(pub)
    if pub["kty"] == "RSA":
        assert jwk.JWK(**pub).get_op_key("verify").key_size >= 2048

    jti = db.emit(s.name, SESSION_REVOKED, {"initiating_entity": "admin"})
    token = db.outbox_token(s.name, jti)
    header, claims = verify(token, pub, alg)
    assert header == {"alg": alg, "kid": pub["kid"], "typ": "secevent+jwt"}
    assert claims["jti"] == jti
    assert claims["events"] == {SESSION_REVOKED: {"initiating_entity": "admin"}}


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_emitted_set_fails_with_another_key(alg, db, streams):
    """The check above could not pass with a key that did not sign."""
    s = streams.create()
    db.generate_key(s.name, alg)
    other = streams.create()
    other_pub = db.generate_key(other.name, alg)
    token = db.outbox_token(s.name, db.emit(s.name))
    with pytest.raises(Exception):
        verify(token, other_pub, alg)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "PS384", "EdDSA"])
def test_generated_private_key_matches_public_key(alg, db, streams, admin):
    """key_secrets holds the private half of exactly the returned public key."""
    s = streams.create()
    pub = db.generate_key(s.name, alg)
    text = admin.val("SELECT jwk FROM setstream.key_secrets WHERE stream = %s AND kid = %s",
                     (s.name, pub["kid"]))
    private = jwk.JWK.from_json(text)
    assert private.has_private
    exported = json.loads(private.export_public())
    for member in ("kty", "crv", "x", "y", "n", "e"):
        assert exported.get(member) == pub.get(member), member
    row = admin.row("SELECT purpose, kty, alg, jwk FROM setstream.keys "
                    "WHERE stream = %s AND kid = %s", (s.name, pub["kid"]))
    assert row[:3] == ("sign", pub["kty"], alg)
    assert row[3] == pub
    assert not PRIVATE_MEMBERS & set(row[3])


def test_set_claims_follow_the_ssf_profile(db, streams):
    s = streams.create()
    pub = db.generate_key(s.name)
    before = int(time.time())
    jti = db.emit(s.name, CREDENTIAL_CHANGE,
                  {"credential_type": "password", "change_type": "update"},
                  {"format": "email", "email": "bob@example.com"}, "txn-42")
    after = int(time.time())
    assert re.match(UUID4_RE, jti), jti
    _, claims = verify(db.outbox_token(s.name, jti), pub, "ES256")
    assert set(claims) == {"iss", "aud", "iat", "jti", "sub_id", "events", "txn"}
    assert claims["iss"] == s.issuer
    assert claims["aud"] == s.audience[0]          # one audience: a string
    assert isinstance(claims["iat"], int) and not isinstance(claims["iat"], bool)
    assert before - 5 <= claims["iat"] <= after + 5
    assert claims["sub_id"] == {"format": "email", "email": "bob@example.com"}
    assert claims["events"] == {CREDENTIAL_CHANGE: {"credential_type": "password",
                                                    "change_type": "update"}}
    assert claims["txn"] == "txn-42"


def test_default_subject_is_the_stream(db, streams):
    s = streams.create()
    pub = db.generate_key(s.name)
    jti = db.emit(s.name, SESSION_REVOKED, {})
    _, claims = verify(db.outbox_token(s.name, jti), pub, "ES256")
    assert claims["sub_id"] == {"format": "opaque", "id": s.name}
    assert "txn" not in claims and "sub" not in claims and "exp" not in claims


def test_several_audiences_become_an_array(db, streams):
    aud = ["https://a.example.com", "https://b.example.com", "https://c.example.com"]
    s = streams.create(audience=aud)
    pub = db.generate_key(s.name, "EdDSA")
    _, claims = verify(db.outbox_token(s.name, db.emit(s.name)), pub, "EdDSA")
    assert claims["aud"] == aud


def test_outbox_row_describes_the_set(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    jti = db.emit(s.name, SESSION_REVOKED, {"reason_admin": {"en": "test"}})
    row = db.outbox(s.name, jti)
    _, claims, _ = split_token(row["token"])
    assert row["state"] == "pending"
    assert row["attempts"] == 0
    assert row["delivered_at"] is None and row["acked_at"] is None
    assert row["err"] is None and row["description"] is None
    assert row["event_types"] == [SESSION_REVOKED]
    assert row["claims"] == claims


def test_unicode_payload_survives_signing(db, streams):
    s = streams.create()
    pub = db.generate_key(s.name)
    event = {"reason_user": {"fr": "Mot de passe réinitialisé ✓",
                             "ja": "パスワードがリセットされました"},
             "note": "quote \" backslash \\ tab \t"}
    subject = {"format": "email", "email": "zoë@exämple.com"}
    jti = db.emit(s.name, SESSION_REVOKED, event, subject)
    _, claims = verify(db.outbox_token(s.name, jti), pub, "ES256")
    assert claims["events"][SESSION_REVOKED] == event
    assert claims["sub_id"] == subject


def test_every_emit_gets_its_own_jti(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    jtis = [db.emit(s.name) for _ in range(20)]
    assert len(set(jtis)) == 20
    assert all(re.match(UUID4_RE, j) for j in jtis)


def test_newest_signing_key_signs_and_old_sets_stay_byte_identical(db, streams):
    s = streams.create()
    first = db.generate_key(s.name, "ES256")
    jti1 = db.emit(s.name)
    token1 = db.outbox_token(s.name, jti1)
    second = db.generate_key(s.name, "EdDSA")
    jti2 = db.emit(s.name)
    header2, _ = verify(db.outbox_token(s.name, jti2), second, "EdDSA")
    assert header2["kid"] == second["kid"]
    # the SET queued before the rotation is untouched and still verifies
    assert db.outbox_token(s.name, jti1) == token1
    verify(token1, first, "ES256")

    # jti2 is unsettled and signed by the second key: revoking it needs force
    db.expect_error("55006", "SELECT setstream.revoke_key(%s, %s)", (s.name, second["kid"]))
    db.execute("SELECT setstream.revoke_key(%s, %s, force => true)", (s.name, second["kid"]))
    header3, _ = verify(db.outbox_token(s.name, db.emit(s.name)), first, "ES256")
    assert header3["kid"] == first["kid"]

    db.execute("SELECT setstream.revoke_key(%s, %s, force => true)", (s.name, first["kid"]))
    db.expect_error("55000", "SELECT setstream.emit(%s, %s, '{}')", (s.name, SESSION_REVOKED))


def test_jwks_lists_active_signing_keys_only(db, streams):
    s = streams.create()
    peer = streams.create()
    kept = db.generate_key(s.name, "ES384")
    revoked = db.generate_key(s.name, "EdDSA")
    db.add_key(peer.name, {"kty": "oct", "k": b64u(os.urandom(32)), "kid": "shared"})
    db.execute("SELECT setstream.revoke_key(%s, %s)", (s.name, revoked["kid"]))
    keys = db.val("SELECT setstream.jwks()")["keys"]
    kids = [k["kid"] for k in keys]
    assert kept in keys
    assert revoked["kid"] not in kids
    assert "shared" not in kids
    for k in keys:
        assert not PRIVATE_MEMBERS & set(k), k


def test_emit_without_signing_key(db, streams):
    s = streams.create()
    e = db.expect_error("55000", "SELECT setstream.emit(%s, %s, '{}')",
                        (s.name, SESSION_REVOKED))
    assert "generate_key" in (e.diag.message_hint or "")
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 0


def test_verification_keys_do_not_sign(db, streams):
    """A peer's key (add_key) is for verifying; it never signs our SETs."""
    s = streams.create()
    db.add_key(s.name, {"kty": "oct", "k": b64u(os.urandom(32)), "kid": "peer"})
    db.expect_error("55000", "SELECT setstream.emit(%s, %s, '{}')", (s.name, SESSION_REVOKED))


@pytest.mark.parametrize("alg", ["HS256", "none", "RS1", "ES256K", "es256", ""])
def test_generate_key_refuses_unsupported_algorithms(alg, db, streams):
    s = streams.create()
    e = db.expect_error("22023", "SELECT setstream.generate_key(%s, %s)", (s.name, alg))
    assert "ES256" in (e.diag.message_hint or "")
    assert db.val("SELECT count(*) FROM setstream.keys WHERE stream = %s", (s.name,)) == 0


@pytest.mark.parametrize("call,args", [
    ("SELECT setstream.emit(%s, 'urn:x:y', '{}')", ()),
    ("SELECT setstream.generate_key(%s)", ()),
    ("SELECT setstream.issue_token(%s)", ()),
    ("SELECT setstream.add_key(%s, '{\"kty\":\"oct\",\"k\":\"" + "A" * 43 + "\"}')", ()),
    ("SELECT setstream.poll(%s, '{}')", ()),
    ("SELECT setstream.ingest(%s, '{}')", ()),
    ("SELECT setstream.receive(%s, 'a.b.c')", ()),
    ("SELECT setstream.revoke_key(%s, 'k')", ()),
    ("SELECT setstream.drop_stream(%s)", ()),
    ("SELECT setstream.alter_stream(%s, issuer => 'https://x')", ()),
    ("SELECT setstream.set_stream_status(%s, 'paused')", ()),
])
def test_unknown_stream(call, args, db):
    e = db.expect_error("42704", call, ("py-no-such-stream",) + args)
    assert e.diag.message_primary == 'stream "py-no-such-stream" does not exist'


@pytest.mark.parametrize("event_type,event,subject,txn,sqlstate", [
    ("not a uri", {}, None, None, "22023"),
    ("session-revoked", {}, None, None, "22023"),
    (SESSION_REVOKED, [], None, None, "22023"),
    (SESSION_REVOKED, "text", None, None, "22023"),
    (SESSION_REVOKED, {}, {"format": "email"}, None, "22023"),
    (SESSION_REVOKED, {}, {"format": "email", "email": "not-an-address"}, None, "22023"),
    (SESSION_REVOKED, {}, {"format": "no-such-format", "id": "x"}, None, "22023"),
    (SESSION_REVOKED, {}, {"format": "opaque", "id": "x", "extra": 1}, None, "22023"),
    (SESSION_REVOKED, {}, "alice", None, "22023"),
    (SESSION_REVOKED, {}, None, "", "22023"),
])
def test_emit_refuses_bad_arguments(event_type, event, subject, txn, sqlstate, db, streams):
    s = streams.create()
    db.generate_key(s.name)
    db.expect_error(sqlstate, "SELECT setstream.emit(%s, %s, %s::jsonb, %s::jsonb, %s)",
                    (s.name, event_type, jdump(event),
                     None if subject is None else jdump(subject), txn))
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 0


def test_emit_refuses_null_arguments(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    for args in [(s.name, None, "{}"), (s.name, SESSION_REVOKED, None), (None, SESSION_REVOKED, "{}")]:
        db.expect_error("22004", "SELECT setstream.emit(%s, %s, %s::jsonb)", args)


def test_emit_on_disabled_and_paused_streams(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    db.execute("SELECT setstream.disable_stream(%s)", (s.name,))
    assert db.emit(s.name) is None
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 0
    db.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    jti = db.emit(s.name)
    assert re.match(UUID4_RE, jti)
    assert db.outbox(s.name, jti)["state"] == "pending"


def test_emit_is_transactional(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    db.execute("BEGIN")
    jti = db.emit(s.name)
    db.execute("ROLLBACK")
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s AND jti = %s",
                  (s.name, jti)) == 0


def test_emit_trigger_builds_subject_and_payload(db, streams, admin):
    s = streams.create()
    pub = db.generate_key(s.name, "ES256")
    table = "pytest_users_" + s.name.replace("-", "_")
    admin.execute("CREATE TABLE public.%s (id int, email text, phone text, payload jsonb)" % table)
    try:
        admin.execute(
            "CREATE TRIGGER t_email AFTER INSERT ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', 'email', 'email', 'payload')"
            % (table, s.name, CREDENTIAL_CHANGE))
        admin.execute(
            "CREATE TRIGGER t_phone AFTER UPDATE ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', 'phone_number', 'phone')"
            % (table, s.name, SESSION_REVOKED))
        db.execute("INSERT INTO public.%s VALUES (1, 'carol@example.com', '+12065550100', "
                   "'{\"credential_type\": \"password\", \"change_type\": \"update\"}')" % table)
        db.execute("UPDATE public.%s SET phone = '+441632960961'" % table)
        # a rolled back change emits nothing
        db.execute("BEGIN")
        db.execute("INSERT INTO public.%s VALUES (2, 'dave@example.com', NULL, '{}')" % table)
        db.execute("ROLLBACK")

        rows = db.rows("SELECT token FROM setstream.outbox WHERE stream = %s ORDER BY seq",
                       (s.name,))
        assert len(rows) == 2
        _, c1 = verify(rows[0][0], pub, "ES256")
        _, c2 = verify(rows[1][0], pub, "ES256")
        assert c1["sub_id"] == {"format": "email", "email": "carol@example.com"}
        assert c1["events"] == {CREDENTIAL_CHANGE: {"credential_type": "password",
                                                    "change_type": "update"}}
        assert c2["sub_id"] == {"format": "phone_number", "phone_number": "+441632960961"}
        assert c2["events"] == {SESSION_REVOKED: {}}
    finally:
        admin.execute("DROP TABLE public.%s" % table)


@pytest.mark.parametrize("fmt,member,value", [
    ("opaque", "id", "user-42"),
    ("account", "uri", "acct:example.user@service.example.com"),
    ("uri", "uri", "https://example.com/users/42"),
    ("did", "url", "did:example:123456"),
    ("email", "email", "erin@example.com"),
    ("phone_number", "phone_number", "+12065550100"),
])
def test_emit_trigger_subject_formats_and_delete(fmt, member, value, db, streams, admin):
    s = streams.create()
    pub = db.generate_key(s.name, "EdDSA")
    table = "pytest_fmt_" + s.name.replace("-", "_")
    admin.execute("CREATE TABLE public.%s (v text)" % table)
    try:
        admin.execute(
            "CREATE TRIGGER t AFTER DELETE ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', '%s', 'v')" % (table, s.name, SESSION_REVOKED, fmt))
        db.execute("INSERT INTO public.%s VALUES (%%s)" % table, (value,))
        db.execute("DELETE FROM public.%s" % table)
        token = db.val("SELECT token FROM setstream.outbox WHERE stream = %s", (s.name,))
        _, claims = verify(token, pub, "EdDSA")
        assert claims["sub_id"] == {"format": fmt, member: value}
        assert claims["events"] == {SESSION_REVOKED: {}}
    finally:
        admin.execute("DROP TABLE public.%s" % table)


def test_emit_trigger_refuses_null_subject_and_wrong_use(db, streams, admin):
    s = streams.create()
    db.generate_key(s.name)
    table = "pytest_bad_" + s.name.replace("-", "_")
    admin.execute("CREATE TABLE public.%s (v text)" % table)
    try:
        admin.execute(
            "CREATE TRIGGER t AFTER INSERT ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', 'email', 'v')" % (table, s.name, SESSION_REVOKED))
        db.expect_error("22004", "INSERT INTO public.%s VALUES (NULL)" % table)
        db.expect_error("22023", "INSERT INTO public.%s VALUES ('not-an-email')" % table)
        admin.execute("DROP TRIGGER t ON public.%s" % table)
        admin.execute(
            "CREATE TRIGGER t BEFORE INSERT ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', 'email', 'v')" % (table, s.name, SESSION_REVOKED))
        db.error("INSERT INTO public.%s VALUES ('a@example.com')" % table)
        assert db.val("SELECT count(*) FROM public.%s" % table) == 0
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 0
    finally:
        admin.execute("DROP TABLE public.%s" % table)


def test_emit_trigger_batch_deferred_copy_and_commit(db, streams, admin):
    """emit_trigger's batches (emitbuf.c) across real commits: a bulk INSERT
    is verified by jwcrypto row by row; a deferred trigger fires at COMMIT
    and its SETs are stored by that commit; COPY fires row triggers outside
    any executor and stores them too; a failing COMMIT-time trigger leaves
    nothing."""
    s = streams.create()
    pub = db.generate_key(s.name, "ES256")
    table = "pytest_batch_" + s.name.replace("-", "_")
    admin.execute("CREATE TABLE public.%s (id int, email text)" % table)
    try:
        admin.execute(
            "CREATE TRIGGER t AFTER INSERT ON public.%s FOR EACH ROW EXECUTE FUNCTION "
            "setstream.emit_trigger('%s', '%s', 'email', 'email')" % (table, s.name, SESSION_REVOKED))
        db.execute("INSERT INTO public.%s SELECT g, 'b' || g || '@example.com' "
                   "FROM generate_series(1, 1500) g" % table)
        rows = db.rows("SELECT token, jti FROM setstream.outbox WHERE stream = %s ORDER BY seq",
                       (s.name,))
        assert len(rows) == 1500
        for i, (token, jti) in enumerate(rows, start=1):
            _, claims = verify(token, pub, "ES256")
            assert claims["jti"] == jti
            assert claims["sub_id"] == {"format": "email", "email": "b%d@example.com" % i}

        # COPY: row triggers fired by COPY itself
        cur = db.conn.cursor()
        cur.copy_expert("COPY public.%s FROM STDIN" % table,
                        io.StringIO("".join("%d\tc%d@example.com\n" % (i, i)
                                                          for i in range(1, 51))))
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                      "AND claims->'sub_id'->>'email' LIKE 'c%%'", (s.name,)) == 50

        # deferred to COMMIT
        admin.execute("DROP TRIGGER t ON public.%s" % table)
        admin.execute(
            "CREATE CONSTRAINT TRIGGER d AFTER INSERT ON public.%s DEFERRABLE INITIALLY DEFERRED "
            "FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('%s', '%s', 'email', 'email')"
            % (table, s.name, SESSION_REVOKED))
        db.execute("BEGIN")
        db.execute("INSERT INTO public.%s SELECT g, 'd' || g || '@example.com' "
                   "FROM generate_series(1, 30) g" % table)
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                      "AND claims->'sub_id'->>'email' LIKE 'd%%'", (s.name,)) == 0
        db.execute("COMMIT")
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                      "AND claims->'sub_id'->>'email' LIKE 'd%%'", (s.name,)) == 30

        # a deferred trigger failing at COMMIT: the transaction leaves nothing
        db.execute("BEGIN")
        db.execute("INSERT INTO public.%s VALUES (1, 'e1@example.com'), (2, NULL)" % table)
        with pytest.raises(psycopg2.Error) as failed:
            db.execute("COMMIT")
        assert failed.value.pgcode == "22004"
        assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                      "AND claims->'sub_id'->>'email' LIKE 'e%%'", (s.name,)) == 0
    finally:
        admin.execute("DROP TABLE public.%s" % table)
