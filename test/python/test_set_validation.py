"""SET validation rules and the RFC 8935 error code each fault gets.

The SETs here are signed correctly with jwcrypto (HS256, a key registered on
the stream), so a refusal can only come from the rule under test.  The
order of the checks fixes the code a SET with several faults gets:
parse/header/claim types -> invalid_request; iss -> invalid_issuer;
signature -> invalid_key; aud -> invalid_audience; profile rules ->
invalid_request.
"""

import pytest

from conftest import (DROP, SESSION_REVOKED, SQLSTATE, b64u, b64u_decode, jdump,
                      key_for, public_jwk, sign, sign_raw)

ALG = "HS256"


@pytest.fixture
def ssf(receiver):
    return receiver(ALG)


@pytest.fixture
def plain(receiver):
    """A stream under profile rfc8417."""
    return receiver(ALG, profile="rfc8417")


def raw_token(key, kid, header_text=None, payload_text=None, stream=None):
    header_text = header_text or jdump({"alg": ALG, "typ": "secevent+jwt", "kid": kid})
    payload_text = payload_text or jdump(stream.claims())
    return sign_raw(key, ALG, header_text, payload_text)


# ---------------------------------------------------------------------------
# error reporting
# ---------------------------------------------------------------------------

def test_error_code_maps_every_sqlstate(db):
    for code, state in SQLSTATE.items():
        assert db.val("SELECT setstream.error_code(%s)", (state,)) == code
    assert db.val("SELECT setstream.error_code('22023')") is None
    assert db.val("SELECT setstream.error_code(NULL)") is None
    # not a SQLSTATE at all, or not spelled as PostgreSQL spells them
    for junk in ("", "SE00", "SE0011", "se001", "SE 01", "SE00\u00e9"):
        assert db.val("SELECT setstream.error_code(%s)", (junk,)) is None, junk
    # and it is the C mapping the listener answers with, not a SQL copy
    assert db.val("SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang"
                  " WHERE p.oid = 'setstream.error_code(text)'::regprocedure") == "c"


def test_error_message_names_the_code(db, ssf):
    s, key, kid = ssf
    e = db.error("SELECT setstream.receive(%s, %s)",
                 (s.name, sign(key, ALG, s.claims(iss="https://evil.example.com"), kid=kid)))
    assert e.pgcode == "SE003"
    assert e.diag.message_primary.startswith("invalid_issuer: ")
    assert db.val("SELECT setstream.error_code(%s)", (e.pgcode,)) == "invalid_issuer"


def test_errors_can_be_trapped_by_sqlstate(db, ssf):
    """The SQLSTATEs are usable in PL/pgSQL exception handlers."""
    s, key, kid = ssf
    token = sign(key, ALG, s.claims(aud="https://not-us.example.com"), kid=kid)
    # stream names and compact JWS hold no quote characters
    e = db.error("DO $$ BEGIN PERFORM setstream.receive('%s', '%s'); "
                 "EXCEPTION WHEN SQLSTATE 'SE004' THEN "
                 "RAISE EXCEPTION 'trapped: %%', setstream.error_code(SQLSTATE); END $$"
                 % (s.name, token))
    assert e.diag.message_primary == "trapped: invalid_audience"


# ---------------------------------------------------------------------------
# compact serialization and JOSE header: invalid_request
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("token", [
    "",
    "abc",
    "a.b",
    "..",
    "a.b.c.d",
    "a.b.c.d.e.f",
    "eyJhbGciOiJIUzI1NiJ9..c2ln",
    ".eyJhIjoxfQ.c2ln",
    "!!!.eyJhIjoxfQ.c2ln",
    "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.!!!",
    "eyJhbGciOiJIUzI1NiJ9=.eyJhIjoxfQ.c2ln",
    "eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ=.c2ln",
    "eyJhbGciOiJIUzI1NiJ9 .eyJhIjoxfQ.c2ln",
])
def test_not_a_compact_jws(token, db, ssf):
    s, _, _ = ssf
    db.set_error("invalid_request", s.name, token)


def test_jwe_is_refused(db, ssf):
    s, _, _ = ssf
    header = b64u(jdump({"alg": "RSA-OAEP", "enc": "A256GCM", "typ": "secevent+jwt"}))
    token = ".".join([header, b64u(b"k" * 256), b64u(b"i" * 12), b64u(b"c" * 40), b64u(b"t" * 16)])
    db.set_error("invalid_request", s.name, token)


@pytest.mark.parametrize("header_text", [
    "not json",
    "[]",
    '"secevent+jwt"',
    "{}",
    '{"typ":"secevent+jwt"}',
    '{"alg":5,"typ":"secevent+jwt"}',
    '{"alg":"","typ":"secevent+jwt"}',
    '{"alg":"HS256","typ":"secevent+jwt","crit":["exp"],"exp":1}',
    '{"alg":"HS256","typ":"secevent+jwt","enc":"A256GCM"}',
    '{"alg":"HS256","typ":5}',
    '{"alg":"HS256","typ":"secevent+jwt","kid":""}',
    '{"alg":"HS256","typ":"secevent+jwt","kid":7}',
    '{"alg":"HS256","typ":"secevent+jwt","alg":"HS256"}',
    '{"alg":"HS256","typ":"secevent+jwt","typ":"secevent+jwt"}',
    '{"alg":"HS256","typ":"secevent+jwt"',
])
def test_bad_jose_header(header_text, db, ssf):
    s, key, _ = ssf
    token = sign_raw(key, ALG, header_text, jdump(s.claims()))
    db.set_error("invalid_request", s.name, token)


def test_header_with_whitespace_and_trailing_newline_is_fine(db, ssf):
    """RFC 8935's own example header decodes to JSON followed by a newline."""
    s, key, kid = ssf
    claims = s.claims()
    token = sign_raw(key, ALG, '{"typ":"secevent+jwt",\r\n "alg":"HS256", "kid":"%s"}\n' % kid,
                     jdump(claims))
    assert db.receive(s.name, token) == claims["jti"]


@pytest.mark.parametrize("typ", ["secevent+jwt", "SECEVENT+JWT", "SecEvent+JWT",
                                 "application/secevent+jwt", "Application/SecEvent+JWT",
                                 "APPLICATION/SECEVENT+JWT"])
def test_typ_is_a_case_insensitive_media_type(typ, db, ssf):
    s, key, kid = ssf
    claims = s.claims()
    assert db.receive(s.name, sign(key, ALG, claims, header={"typ": typ}, kid=kid)) == claims["jti"]


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt", "application/json",
                                 "secevent", "secevent+jwt ", "application/secevent+jwt; x=1x",
                                 "application/application/secevent+jwt", ""])
def test_ssf_requires_typ_secevent(typ, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(), header={"typ": typ}, kid=kid))


@pytest.mark.parametrize("typ", [DROP, "secevent+jwt", "application/secevent+jwt", "JWT"])
def test_rfc8417_profile_typ_optional(typ, db, plain):
    s, key, kid = plain
    claims = s.claims()
    assert db.receive(s.name, sign(key, ALG, claims, header={"typ": typ}, kid=kid)) == claims["jti"]


@pytest.mark.parametrize("typ", ["at+jwt", "application/json", "dpop+jwt"])
def test_rfc8417_profile_refuses_other_explicit_types(typ, db, plain):
    """An explicitly typed other kind of JWT is not a SET (RFC 8417 section 4)."""
    s, key, kid = plain
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(), header={"typ": typ}, kid=kid))


def test_unknown_header_members_are_ignored(db, ssf):
    s, key, kid = ssf
    claims = s.claims()
    token = sign(key, ALG, claims, header={"cty": "JWT", "x5t": "abc", "vendor": {"a": 1}}, kid=kid)
    assert db.receive(s.name, token) == claims["jti"]


# ---------------------------------------------------------------------------
# claims: invalid_request
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload_text", [
    "not json",
    "[]",
    '"a string"',
    "null",
    "42",
    '{"iss":"x"',
    '{"iss":"https://a","iss":"https://a"}',
])
def test_claims_not_a_json_object(payload_text, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name, raw_token(key, kid, payload_text=payload_text))


@pytest.mark.parametrize("overrides", [
    {"iss": DROP}, {"iss": ""}, {"iss": 5}, {"iss": None}, {"iss": ["https://idp"]},
    {"jti": DROP}, {"jti": ""}, {"jti": 12345}, {"jti": None}, {"jti": "j" * 257},
    {"iat": DROP}, {"iat": "1700000000"}, {"iat": -1}, {"iat": True}, {"iat": None},
    {"events": DROP}, {"events": {}}, {"events": []}, {"events": "x"},
    {"events": {SESSION_REVOKED: []}}, {"events": {SESSION_REVOKED: "revoked"}},
    {"events": {SESSION_REVOKED: None}}, {"events": {"session-revoked": {}}},
    {"events": {"not a uri": {}}}, {"events": {"": {}}},
    {"events": {SESSION_REVOKED: {}, "bad event": {}}},
    {"aud": 5}, {"aud": []}, {"aud": [5]}, {"aud": ""}, {"aud": None}, {"aud": {"a": 1}},
    {"txn": ""}, {"txn": 5},
    {"toe": "yesterday"}, {"toe": -5},
])
def test_bad_claim_types(overrides, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(**overrides), kid=kid))


@pytest.mark.parametrize("overrides", [
    {"exp": "tomorrow"}, {"nbf": "now"}, {"sub": 5},
])
def test_bad_registered_claim_types_under_rfc8417(overrides, db, plain):
    s, key, kid = plain
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(**overrides), kid=kid))


def test_jti_of_256_bytes_is_fine(db, ssf):
    s, key, kid = ssf
    claims = s.claims(jti="j" * 256)
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == "j" * 256


def test_unknown_claims_are_ignored_and_kept(db, ssf):
    s, key, kid = ssf
    claims = s.claims(vendor_claim={"nested": [1, {"x": None}]}, nbf=1, toe=1700000000)
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]
    assert db.event_rows(s.name, claims["jti"])[0]["claims"] == claims


def test_several_events_in_one_set(db, ssf):
    s, key, kid = ssf
    events = {SESSION_REVOKED: {}, "urn:example:alternate-uri": {"a": 1}}
    claims = s.claims(events=events)
    db.receive(s.name, sign(key, ALG, claims, kid=kid))
    row = db.event_rows(s.name, claims["jti"])[0]
    assert sorted(row["event_types"]) == sorted(events)
    assert row["events"] == events


@pytest.mark.parametrize("payload_template", [
    # duplicate member names anywhere are refused (RFC 7519 section 4)
    '{"iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1","jti":"j2",'
    '"sub_id":{"format":"opaque","id":"x"},"events":{"%(ev)s":{}}}',
    '{"iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1",'
    '"sub_id":{"format":"opaque","id":"x"},"events":{"%(ev)s":{},"%(ev)s":{}}}',
    '{"iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1",'
    '"sub_id":{"format":"opaque","id":"x","id":"y"},"events":{"%(ev)s":{}}}',
    '{"iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1",'
    '"sub_id":{"format":"opaque","id":"x"},"events":{"%(ev)s":{"a":1,"a":2}}}',
    '{"iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1","x":{"y":{"z":1,"z":1}},'
    '"sub_id":{"format":"opaque","id":"x"},"events":{"%(ev)s":{}}}',
    '{"iss":"%(iss)s","iss":"%(iss)s","aud":"%(aud)s","iat":1700000000,"jti":"j1",'
    '"sub_id":{"format":"opaque","id":"x"},"events":{"%(ev)s":{}}}',
])
def test_duplicate_member_names(payload_template, db, ssf):
    s, key, kid = ssf
    payload = payload_template % {"iss": s.peer_issuer, "aud": s.issuer, "ev": SESSION_REVOKED}
    db.set_error("invalid_request", s.name, raw_token(key, kid, payload_text=payload))


def test_same_payload_without_duplicates_is_accepted(db, ssf):
    """The control for the test above: the template itself is valid."""
    s, key, kid = ssf
    payload = ('{"iss":"%s","aud":"%s","iat":1700000000,"jti":"j1",'
               '"sub_id":{"format":"opaque","id":"x"},"events":{"%s":{}}}'
               % (s.peer_issuer, s.issuer, SESSION_REVOKED))
    assert db.receive(s.name, raw_token(key, kid, payload_text=payload)) == "j1"


def test_nul_character_in_claims(db, ssf):
    s, key, kid = ssf
    payload = jdump(s.claims(events={SESSION_REVOKED: {"reason": "a\u0000b"}}))
    assert "\\u0000" in payload
    db.set_error("invalid_request", s.name, raw_token(key, kid, payload_text=payload))


def test_set_larger_than_max_request_bytes(db, ssf):
    s, key, kid = ssf
    limit = db.val("SELECT setting::int FROM pg_settings WHERE name = 'setstream.max_request_bytes'")
    claims = s.claims(events={SESSION_REVOKED: {"padding": "p" * limit}})
    db.set_error("invalid_request", s.name, sign(key, ALG, claims, kid=kid))


# ---------------------------------------------------------------------------
# SSF profile: sub, exp, sub_id
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [
    {"sub": "alice"}, {"exp": 1900000000}, {"sub_id": DROP},
    {"sub": "alice", "sub_id": DROP},
])
def test_ssf_profile_rules(overrides, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(**overrides), kid=kid))


@pytest.mark.parametrize("overrides", [
    {"sub": "alice"}, {"exp": 1900000000}, {"sub_id": DROP},
    {"sub": "alice", "sub_id": DROP, "exp": 1900000000, "aud": DROP},
])
def test_rfc8417_profile_tolerates_them(overrides, db, plain):
    s, key, kid = plain
    claims = s.claims(**overrides)
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["subject"] == claims.get("sub_id")
    assert row["aud"] == ([claims["aud"]] if "aud" in claims else None)


VALID_SUBJECTS = [
    {"format": "email", "email": "user@example.com"},
    {"format": "email", "email": "first.last+tag@sub.example.co.uk"},
    {"format": "iss_sub", "iss": "https://issuer.example.com/", "sub": "145234573"},
    {"format": "opaque", "id": "11112222333344445555"},
    {"format": "phone_number", "phone_number": "+12065550100"},
    {"format": "account", "uri": "acct:example.user@service.example.com"},
    {"format": "did", "url": "did:example:123456"},
    {"format": "did", "url": "did:example:123456/did/url/path?versionId=1"},
    {"format": "uri", "uri": "https://user.example.com/"},
    {"format": "uri", "uri": "urn:uuid:4e851e98-83c4-4743-a5da-150ecb53042f"},
    {"format": "aliases", "identifiers": [
        {"format": "email", "email": "user@example.com"},
        {"format": "phone_number", "phone_number": "+12065550100"},
        {"format": "email", "email": "user+qualifier@example.com"}]},
    {"format": "jwt_id", "iss": "https://idp.example.com/", "jti": "756E69717565206964656E746966696572"},
    {"format": "saml_assertion_id", "issuer": "https://idp.example.com/",
     "assertion_id": "_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6"},
    {"format": "ip-addresses", "ip-addresses": ["10.29.37.75", "2001:db8::1"]},
    {"format": "complex",
     "user": {"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "u1"},
     "device": {"format": "opaque", "id": "dev-1"},
     "tenant": {"format": "opaque", "id": "t-1"}},
    {"format": "complex", "session": {"format": "opaque", "id": "s-1"}},
]


@pytest.mark.parametrize("sub_id", VALID_SUBJECTS, ids=lambda v: v["format"])
def test_valid_subject_identifiers(sub_id, db, ssf):
    s, key, kid = ssf
    claims = s.claims(sub_id=sub_id)
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]
    assert db.event_rows(s.name, claims["jti"])[0]["subject"] == sub_id


INVALID_SUBJECTS = [
    "user@example.com",
    ["user@example.com"],
    None,
    {},
    {"email": "user@example.com"},
    {"format": 5, "email": "user@example.com"},
    {"format": "", "email": "user@example.com"},
    {"format": "email"},
    {"format": "email", "email": ""},
    {"format": "email", "email": None},
    {"format": "email", "email": 5},
    {"format": "email", "email": "not-an-address"},
    {"format": "email", "email": "user@example.com", "phone_number": "+12065550100"},
    {"format": "iss_sub", "iss": "https://idp.example.com/"},
    {"format": "iss_sub", "sub": "u1"},
    {"format": "opaque"},
    {"format": "opaque", "id": ""},
    {"format": "phone_number", "phone_number": "12065550100"},
    {"format": "phone_number", "phone_number": "+1 206 555 0100"},
    {"format": "phone", "phone_number": "+12065550100"},
    {"format": "account", "uri": "mailto:user@example.com"},
    {"format": "did", "url": "https://example.com"},
    {"format": "did", "URL": "did:example:123"},
    {"format": "uri", "uri": "not a uri"},
    {"format": "aliases", "identifiers": []},
    {"format": "aliases", "identifiers": {"format": "opaque", "id": "x"}},
    {"format": "aliases", "identifiers": [{"format": "aliases", "identifiers": [
        {"format": "opaque", "id": "x"}]}]},
    {"format": "aliases", "identifiers": [{"format": "email", "email": "bad"}]},
    {"format": "jwt_id", "iss": "https://idp.example.com/"},
    {"format": "saml_assertion_id", "assertion_id": "_8e8d"},
    {"format": "ip-addresses", "ip-addresses": []},
    {"format": "ip-addresses", "ip-addresses": ["10.0.0.300"]},
    {"format": "ip-addresses", "ip-addresses": "10.0.0.1"},
    {"format": "complex"},
    {"format": "complex", "user": {"format": "email", "email": "bad"}},
    {"format": "complex", "user": "user@example.com"},
    {"format": "iss-sub", "iss": "https://idp.example.com/", "sub": "u1"},
]


@pytest.mark.parametrize("sub_id", INVALID_SUBJECTS, ids=repr)
def test_invalid_subject_identifiers(sub_id, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(sub_id=sub_id), kid=kid))


@pytest.mark.parametrize("sub_id", [{"format": "email", "email": "bad"}, "text"], ids=repr)
def test_invalid_subject_identifier_under_rfc8417(sub_id, db, plain):
    """sub_id is optional there, but when present it must be valid."""
    s, key, kid = plain
    db.set_error("invalid_request", s.name, sign(key, ALG, s.claims(sub_id=sub_id), kid=kid))


# ---------------------------------------------------------------------------
# issuer and audience
# ---------------------------------------------------------------------------

def test_wrong_issuer(db, ssf):
    s, key, kid = ssf
    for iss in ["https://evil.example.com", s.peer_issuer + "/", s.peer_issuer.upper(), s.issuer]:
        db.set_error("invalid_issuer", s.name, sign(key, ALG, s.claims(iss=iss), kid=kid))


def test_stream_without_peer_issuer_accepts_nothing(db, streams, admin):
    s = streams.create(peer_issuer=None)
    key = key_for(ALG)
    kid = admin.add_key(s.name, public_jwk(key))
    for iss in ["https://idp.example.com", s.issuer]:
        db.set_error("invalid_issuer", s.name, sign(key, ALG, s.claims(iss=iss), kid=kid))


@pytest.mark.parametrize("aud", [
    lambda s: "https://not-us.example.com",
    lambda s: ["https://not-us.example.com", "https://also-not-us.example.com"],
    lambda s: s.audience[0],         # the audience of the SETs we emit is not us
    lambda s: s.audience,
    lambda s: s.issuer.upper(),
    lambda s: s.issuer + "/",
    lambda s: [s.issuer + " "],
    lambda s: DROP,
], ids=["other", "others", "our-audience", "our-audience-array", "upper", "slash",
        "space", "missing"])
def test_wrong_or_missing_audience_under_ssf(aud, db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_audience", s.name, sign(key, ALG, s.claims(aud=aud(s)), kid=kid))


def test_audience_array_containing_us(db, ssf):
    s, key, kid = ssf
    claims = s.claims(aud=["https://a.example.com", s.issuer, "https://b.example.com"])
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]


def test_wrong_audience_under_rfc8417(db, plain):
    s, key, kid = plain
    db.set_error("invalid_audience", s.name,
                 sign(key, ALG, s.claims(aud="https://not-us.example.com"), kid=kid))


def test_alter_stream_takes_effect_at_once(db, ssf, admin):
    s, key, kid = ssf
    assert db.receive(s.name, sign(key, ALG, s.claims(), kid=kid))
    admin.execute("SELECT setstream.alter_stream(%s, peer_issuer => %s)",
                  (s.name, "https://new-idp.example.com"))
    db.set_error("invalid_issuer", s.name, sign(key, ALG, s.claims(), kid=kid))
    assert db.receive(s.name, sign(key, ALG, s.claims(iss="https://new-idp.example.com"), kid=kid))
    admin.execute("SELECT setstream.alter_stream(%s, issuer => %s)",
                  (s.name, "https://new-us.example.com"))
    db.set_error("invalid_audience", s.name,
                 sign(key, ALG, s.claims(iss="https://new-idp.example.com"), kid=kid))
    admin.execute("SELECT setstream.alter_stream(%s, profile => 'rfc8417')", (s.name,))
    claims = s.claims(iss="https://new-idp.example.com", aud="https://new-us.example.com",
                      sub="alice", sub_id=DROP)
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]


# ---------------------------------------------------------------------------
# stream status
# ---------------------------------------------------------------------------

def test_refused_inbound_refuses_everything_with_access_denied(db, ssf, admin):
    s, key, kid = ssf
    admin.execute("SELECT setstream.set_inbound(%s, 'refuse')", (s.name,))
    db.set_error("access_denied", s.name, sign(key, ALG, s.claims(), kid=kid))
    db.set_error("access_denied", s.name, "garbage")
    admin.execute("SELECT setstream.set_inbound(%s, 'accept')", (s.name,))
    assert db.receive(s.name, sign(key, ALG, s.claims(), kid=kid))


def test_disabled_stream_still_receives(db, ssf, admin):
    """Disabled stops what the stream transmits (SSF), not what it takes."""
    s, key, kid = ssf
    admin.execute("SELECT setstream.disable_stream(%s)", (s.name,))
    assert db.receive(s.name, sign(key, ALG, s.claims(), kid=kid))


def test_set_inbound_refuses_an_unknown_setting(db, ssf, admin):
    s, _, _ = ssf
    admin.expect_error("22023", "SELECT setstream.set_inbound(%s, 'maybe')", (s.name,))
    admin.expect_error("22023", "SELECT setstream.set_inbound(%s, NULL)", (s.name,))


def test_paused_stream_still_receives(db, ssf, admin):
    s, key, kid = ssf
    admin.execute("SELECT setstream.set_stream_status(%s, 'paused')", (s.name,))
    claims = s.claims()
    assert db.receive(s.name, sign(key, ALG, claims, kid=kid)) == claims["jti"]


# ---------------------------------------------------------------------------
# the order of the checks
# ---------------------------------------------------------------------------

def _bad_signature(key, claims, **kw):
    return sign(key_for(ALG, variant=7), ALG, claims, **kw)


def test_signature_of_the_wrong_length_is_invalid_key(db, ssf):
    """An HMAC signature shorter or longer than the digest is refused
    before cjose compares it (cjose read past the end of a short one;
    found by test/fuzz/fuzz_commobj), and the right one still verifies."""
    s, key, kid = ssf
    token = sign(key, ALG, s.claims(), kid=kid)
    head, payload, sig = token.split(".")
    raw = b64u_decode(sig)
    for bad in (raw[:5], raw[:31], raw + b"\x00", b""):
        db.set_error("invalid_key", s.name, "%s.%s.%s" % (head, payload, b64u(bad)))
    db.val("SELECT setstream.receive(%s, %s)", (s.name, token))


def test_order_claim_types_before_issuer(db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name,
                 sign(key, ALG, s.claims(iss="https://evil.example.com", iat="x"), kid=kid))


def test_order_header_before_issuer(db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_request", s.name,
                 sign(key, ALG, s.claims(iss="https://evil.example.com"),
                      header={"typ": DROP}, kid=kid))


def test_order_issuer_before_signature(db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_issuer", s.name,
                 _bad_signature(key, s.claims(iss="https://evil.example.com"), kid=kid))
    db.set_error("invalid_issuer", s.name,
                 sign(key, ALG, s.claims(iss="https://evil.example.com"), kid="unknown-kid"))


def test_order_signature_before_audience(db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_key", s.name,
                 _bad_signature(key, s.claims(aud="https://not-us.example.com"), kid=kid))
    db.set_error("invalid_key", s.name,
                 sign(key, ALG, s.claims(aud=DROP), kid="unknown-kid"))


def test_order_signature_before_profile(db, ssf):
    s, key, kid = ssf
    db.set_error("invalid_key", s.name, _bad_signature(key, s.claims(sub="alice"), kid=kid))
    db.set_error("invalid_key", s.name, _bad_signature(key, s.claims(sub_id=DROP), kid=kid))


def test_order_alg_none_before_audience(db, ssf):
    from conftest import unsigned
    s, _, _ = ssf
    db.set_error("invalid_key", s.name, unsigned(s.claims(aud="https://not-us.example.com")))


def test_order_audience_before_profile(db, ssf):
    s, key, kid = ssf
    for extra in ({"sub": "alice"}, {"exp": 1900000000}, {"sub_id": DROP},
                  {"sub_id": {"format": "email", "email": "bad"}}):
        db.set_error("invalid_audience", s.name,
                     sign(key, ALG, s.claims(aud="https://not-us.example.com", **extra), kid=kid))
