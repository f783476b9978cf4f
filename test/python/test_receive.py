"""Inbound SETs signed by an independent JOSE library (jwcrypto).

A peer's key is registered with add_key(); receive() must accept SETs that
jwcrypto signs with it under every supported algorithm, store them byte for
byte, and refuse (invalid_key) every SET whose signature, key or algorithm
is not right: tampering, unknown or revoked keys, "none", algorithm
confusion, algorithms that do not fit the key.
"""

import datetime
import json
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwcrypto import jwk

from conftest import (SESSION_REVOKED, VERIFY_ALGS, b64u, b64u_decode, jdump,
                      key_for, public_jwk, sign, sign_raw, split_token,
                      thumbprint, unsigned)

UTC = datetime.timezone.utc


@pytest.mark.parametrize("alg", VERIFY_ALGS)
def test_receive_accepts_every_algorithm(alg, db, receiver):
    s, key, kid = receiver(alg)
    claims = s.claims()
    token = sign(key, alg, claims, kid=kid)
    assert db.receive(s.name, token) == claims["jti"]
    rows = db.event_rows(s.name, claims["jti"])
    assert len(rows) == 1
    assert rows[0]["token"] == token
    assert rows[0]["header"] == {"alg": alg, "typ": "secevent+jwt", "kid": kid}


@pytest.mark.parametrize("alg", VERIFY_ALGS)
def test_receive_without_kid_tries_the_stream_keys(alg, db, streams, admin):
    """No kid in the header: any active key of the stream that fits may verify."""
    s = streams.create()
    # decoys first: keys of other types, and one of the same type
    admin.add_key(s.name, public_jwk(key_for("ES256", variant=1)))
    admin.add_key(s.name, public_jwk(key_for("HS256", variant=1)))
    admin.add_key(s.name, public_jwk(key_for(alg, variant=3)))
    admin.add_key(s.name, public_jwk(key_for(alg)))
    claims = s.claims()
    assert db.receive(s.name, sign(key_for(alg), alg, claims)) == claims["jti"]


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256", "EdDSA"])
def test_given_kid_is_kept_and_selects_the_key(alg, db, streams):
    s = streams.create()
    key = key_for(alg)
    kids = ["peer-key-1", "another key id", "k" * 255]
    for i, kid in enumerate(kids):
        k = key if i == 0 else key_for(alg, variant=i + 10)
        assert db.add_key(s.name, public_jwk(k, kid=kid)) == kid
    stored = db.rows("SELECT kid, jwk->>'kid' FROM setstream.keys WHERE stream = %s "
                     "ORDER BY created_at", (s.name,))
    assert stored == [(k, k) for k in kids]
    claims = s.claims()
    assert db.receive(s.name, sign(key, alg, claims, kid="peer-key-1")) == claims["jti"]
    db.set_error("invalid_key", s.name, sign(key, alg, s.claims(), kid="another key id"))


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES384", "EdDSA"])
def test_kid_defaults_to_the_rfc7638_thumbprint(alg, db, streams):
    s = streams.create()
    key = key_for(alg)
    pub = public_jwk(key)
    kid = db.add_key(s.name, pub)
    assert kid == thumbprint(pub) == key.thumbprint()
    stored = db.val("SELECT jwk FROM setstream.keys WHERE stream = %s AND kid = %s",
                    (s.name, kid))
    assert stored["kid"] == kid
    claims = s.claims()
    assert db.receive(s.name, sign(key, alg, claims, kid=kid)) == claims["jti"]


def test_stored_event_row(db, receiver):
    s, key, kid = receiver("ES256")
    event = {"credential_type": "password", "change_type": "revoke",
             "reason_user": {"de": "Passwort zurückgesetzt"}}
    claims = s.claims(
        aud=["https://someone-else.example.com", s.issuer],
        iat=1700000000, toe=1699999990.25, txn="txn-7",
        sub_id={"format": "iss_sub", "iss": "https://idp.example.com", "sub": "u-1"},
        events={"https://schemas.openid.net/secevent/caep/event-type/credential-change": event},
        extension_claim={"anything": [1, 2, 3]})
    header_extra = {"x-vendor": "ignored but kept"}
    token = sign(key, "ES256", claims, header=header_extra, kid=kid)
    db.receive(s.name, token)
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["stream"] == s.name
    assert row["iss"] == s.peer_issuer
    assert row["aud"] == ["https://someone-else.example.com", s.issuer]
    assert row["iat"] == datetime.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert row["toe"] == datetime.datetime(2023, 11, 14, 22, 13, 10, 250000, tzinfo=UTC)
    assert row["txn"] == "txn-7"
    assert row["subject"] == claims["sub_id"]
    assert row["event_types"] == list(claims["events"])
    assert row["events"] == claims["events"]
    assert row["claims"] == claims
    assert row["header"] == {"alg": "ES256", "typ": "secevent+jwt", "kid": kid,
                             "x-vendor": "ignored but kept"}
    assert row["token"] == token
    assert row["received_at"] is not None


def test_aud_string_and_missing_optional_claims(db, receiver):
    s, key, kid = receiver("HS256")
    claims = s.claims()
    db.receive(s.name, sign(key, "HS256", claims, kid=kid))
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["aud"] == [s.issuer]
    assert row["txn"] is None and row["toe"] is None


def test_fractional_iat_is_kept(db, receiver):
    s, key, kid = receiver("HS256")
    claims = s.claims(iat=1700000000.5)
    db.receive(s.name, sign(key, "HS256", claims, kid=kid))
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["iat"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)


def test_token_is_stored_byte_exact(db, receiver):
    """Whitespace and member order inside header and claims are the peer's."""
    s, key, kid = receiver("RS256")
    claims = s.claims()
    header_text = '{ "typ" : "secevent+jwt",\n  "kid" : "%s", "alg" : "RS256" }\n' % kid
    payload_text = json.dumps(claims, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    token = sign_raw(key, "RS256", header_text, payload_text)
    assert db.receive(s.name, token) == claims["jti"]
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["token"] == token
    assert row["claims"] == claims


def test_non_ascii_claims(db, receiver):
    s, key, kid = receiver("EdDSA")
    claims = s.claims(sub_id={"format": "email", "email": "zoë@exämple.com"},
                      events={SESSION_REVOKED: {"reason_user": {"ja": "セッション失効 🔒"}}})
    token = sign(key, "EdDSA", claims, kid=kid)
    db.receive(s.name, token)
    row = db.event_rows(s.name, claims["jti"])[0]
    assert row["claims"] == claims
    assert row["token"] == token


def test_duplicate_set_is_stored_once(db, receiver):
    s, key, kid = receiver("HS256")
    claims = s.claims()
    token = sign(key, "HS256", claims, kid=kid)
    assert db.receive(s.name, token) == claims["jti"]
    first = db.event_rows(s.name, claims["jti"])
    assert db.receive(s.name, token) == claims["jti"]
    # same iss and jti, different content: still the first one stays
    other = sign(key, "HS256", dict(claims, events={SESSION_REVOKED: {"x": 1}}), kid=kid)
    assert db.receive(s.name, other) == claims["jti"]
    again = db.event_rows(s.name, claims["jti"])
    assert len(again) == 1
    assert again[0]["token"] == token
    assert again[0]["received_at"] == first[0]["received_at"]


def test_same_jti_on_two_streams_is_stored_on_each(db, receiver):
    s1, key, kid = receiver("HS256", peer_issuer="https://shared-idp.example.com")
    s2 = receiver("HS256", peer_issuer="https://shared-idp.example.com")[0]
    claims = s1.claims()
    db.receive(s1.name, sign(key, "HS256", claims, kid=kid))
    db.receive(s2.name, sign(key, "HS256", dict(claims, aud=s2.issuer), kid=kid))
    assert len(db.event_rows(s1.name, claims["jti"])) == 1
    assert len(db.event_rows(s2.name, claims["jti"])) == 1


# ---------------------------------------------------------------------------
# invalid_key
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", VERIFY_ALGS)
def test_signature_by_another_key_of_the_same_kind(alg, db, receiver):
    s, key, kid = receiver(alg)
    token = sign(key_for(alg, variant=2), alg, s.claims(), kid=kid)
    db.set_error("invalid_key", s.name, token)


@pytest.mark.parametrize("alg", VERIFY_ALGS)
def test_tampered_payload(alg, db, receiver):
    s, key, kid = receiver(alg)
    claims = s.claims()
    h, _, sig = sign(key, alg, claims, kid=kid).split(".")
    forged = b64u(jdump(dict(claims, events={SESSION_REVOKED: {"forged": True}})))
    db.set_error("invalid_key", s.name, "%s.%s.%s" % (h, forged, sig))


@pytest.mark.parametrize("alg", VERIFY_ALGS)
def test_truncated_or_empty_signature(alg, db, receiver):
    s, key, kid = receiver(alg)
    token = sign(key, alg, s.claims(), kid=kid)
    h, p, sig = token.split(".")
    db.set_error("invalid_key", s.name, "%s.%s.%s" % (h, p, sig[:-4]))
    db.set_error("invalid_key", s.name, "%s.%s." % (h, p))


def test_ecdsa_signature_must_be_raw_r_s_not_der(db, receiver):
    """JWS ES256 signatures are R || S (64 bytes); a DER signature is invalid."""
    s, key, kid = receiver("ES256")
    token = sign(key, "ES256", s.claims(), kid=kid)
    h, p, sig = token.split(".")
    raw = b64u_decode(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    db.set_error("invalid_key", s.name, "%s.%s.%s" % (h, p, b64u(der)))
    # the raw form of the very same signature is accepted
    assert db.receive(s.name, token)


def test_unknown_kid(db, receiver):
    s, key, kid = receiver("HS256")
    msg = db.set_error("invalid_key", s.name, sign(key, "HS256", s.claims(), kid="no-such-kid"))
    assert "no-such-kid" in msg


def test_stream_without_keys(db, streams):
    s = streams.create()
    db.set_error("invalid_key", s.name, sign(key_for("HS256"), "HS256", s.claims()))
    db.set_error("invalid_key", s.name, sign(key_for("HS256"), "HS256", s.claims(), kid="k"))


def test_revoked_key_stops_verifying_at_once(db, receiver):
    """Keys are cached per backend; the revocation must still take effect."""
    s, key, kid = receiver("ES256")
    assert db.receive(s.name, sign(key, "ES256", s.claims(), kid=kid))
    db.execute("SELECT setstream.revoke_key(%s, %s)", (s.name, kid))
    db.set_error("invalid_key", s.name, sign(key, "ES256", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "ES256", s.claims()))


def test_dropped_and_recreated_stream_forgets_its_keys(db, streams, admin):
    s = streams.create()
    key = key_for("HS256")
    kid = admin.add_key(s.name, public_jwk(key))
    assert db.receive(s.name, sign(key, "HS256", s.claims(), kid=kid))
    admin.execute("SELECT setstream.drop_stream(%s)", (s.name,))
    admin.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s)",
                  (s.name, s.issuer, s.audience, s.peer_issuer))
    db.set_error("invalid_key", s.name, sign(key, "HS256", s.claims(), kid=kid))


def test_alg_none_is_refused_on_a_signed_stream(db, receiver):
    s, key, kid = receiver("HS256")
    db.set_error("invalid_key", s.name, unsigned(s.claims()))
    db.set_error("invalid_key", s.name, unsigned(s.claims(), header={"kid": kid}))


def test_alg_none_on_a_stream_that_allows_unsigned_sets(db, streams):
    s = streams.create(allow_unsigned=True)
    claims = s.claims()
    token = unsigned(claims)
    assert db.receive(s.name, token) == claims["jti"]
    assert db.event_rows(s.name, claims["jti"])[0]["token"] == token
    # "none" with something in the signature part is not an unsecured JWS
    bad = unsigned(s.claims()) + b64u(os.urandom(32))
    db.set_error("invalid_key", s.name, bad)
    # without the trailing dot it is not a compact serialization at all
    db.set_error("invalid_request", s.name, unsigned(s.claims())[:-1])


def test_allow_unsigned_does_not_weaken_signed_sets(db, streams, admin):
    s = streams.create(allow_unsigned=True)
    key = key_for("ES256")
    kid = admin.add_key(s.name, public_jwk(key))
    assert db.receive(s.name, sign(key, "ES256", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key_for("ES256", variant=2), "ES256",
                                             s.claims(), kid=kid))


def _hmac_key(secret):
    return jwk.JWK(kty="oct", k=b64u(secret))


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_hmac_with_public_key_material_is_refused(alg, db, receiver):
    """Algorithm confusion: HS256 "signed" with the public key as secret."""
    s, key, kid = receiver(alg)
    pub = key.get_op_key("verify")
    candidates = [
        pub.public_bytes(serialization.Encoding.PEM,
                         serialization.PublicFormat.SubjectPublicKeyInfo),
        pub.public_bytes(serialization.Encoding.DER,
                         serialization.PublicFormat.SubjectPublicKeyInfo),
        key.export_public().encode(),
    ]
    for secret in candidates:
        db.set_error("invalid_key", s.name,
                     sign(_hmac_key(secret), "HS256", s.claims(), kid=kid))
        db.set_error("invalid_key", s.name,
                     sign(_hmac_key(secret), "HS256", s.claims()))


@pytest.mark.parametrize("key_alg,header_alg", [
    ("RS256", "ES256"), ("ES256", "RS256"), ("ES256", "ES384"), ("ES384", "ES256"),
    ("ES512", "ES256"), ("EdDSA", "ES256"), ("HS256", "RS256"), ("RS256", "EdDSA"),
])
def test_header_alg_that_does_not_fit_the_key(key_alg, header_alg, db, receiver):
    """The alg claimed in the header must fit the key named by kid."""
    s, key, kid = receiver(key_alg)
    # a correct signature under the key's own alg, relabelled
    token = sign(key, key_alg, s.claims(), header={"alg": header_alg}, kid=kid)
    db.set_error("invalid_key", s.name, token)
    # and a correct signature under header_alg by an unregistered key
    token = sign(key_for(header_alg), header_alg, s.claims(), kid=kid)
    db.set_error("invalid_key", s.name, token)


def test_key_registered_with_alg_accepts_only_that_alg(db, streams):
    s = streams.create()
    key = key_for("RS256")
    kid = db.add_key(s.name, public_jwk(key, alg="RS256"))
    assert db.receive(s.name, sign(key, "RS256", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "PS256", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "RS512", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "PS256", s.claims()))


def test_hmac_strength_must_match_the_algorithm(db, streams):
    """RFC 7518 3.2: an HMAC key at least as long as the hash output."""
    s = streams.create()
    key32 = _hmac_key(os.urandom(32))
    k32 = db.add_key(s.name, public_jwk(key32))
    assert db.receive(s.name, sign(key32, "HS256", s.claims(), kid=k32))
    db.set_error("invalid_key", s.name, sign(key32, "HS384", s.claims(), kid=k32))
    db.set_error("invalid_key", s.name, sign(key32, "HS512", s.claims(), kid=k32))
    db.set_error("invalid_key", s.name, sign(key32, "HS512", s.claims()))
    key64 = _hmac_key(os.urandom(64))
    k64 = db.add_key(s.name, public_jwk(key64))
    for alg in ("HS256", "HS384", "HS512"):
        assert db.receive(s.name, sign(key64, alg, s.claims(), kid=k64))


def test_oct_key_pinned_to_an_algorithm(db, streams):
    s = streams.create()
    key = _hmac_key(os.urandom(64))
    kid = db.add_key(s.name, public_jwk(key, alg="HS384"))
    assert db.receive(s.name, sign(key, "HS384", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "HS256", s.claims(), kid=kid))
    db.set_error("invalid_key", s.name, sign(key, "HS512", s.claims(), kid=kid))


def test_inbound_keys_are_per_stream(db, receiver):
    """Two streams, the same kid naming different keys."""
    s1, key, kid = receiver("ES256", kid="shared-kid",
                            peer_issuer="https://same-idp.example.com")
    s2 = receiver("EdDSA", kid="shared-kid", peer_issuer="https://same-idp.example.com")[0]
    assert kid == "shared-kid"
    claims = s1.claims(aud=[s1.issuer, s2.issuer])
    token = sign(key, "ES256", claims, kid=kid)
    assert db.receive(s1.name, token)
    db.set_error("invalid_key", s2.name, token)


def test_signing_key_of_the_stream_does_not_verify_inbound_sets(db, streams, admin):
    """generate_key() makes our own key; it never stands in for the peer's."""
    s = streams.create()
    pub = db.generate_key(s.name, "ES256")
    private = jwk.JWK.from_json(admin.val(
        "SELECT jwk FROM setstream.key_secrets WHERE stream = %s AND kid = %s",
        (s.name, pub["kid"])))
    db.set_error("invalid_key", s.name, sign(private, "ES256", s.claims(), kid=pub["kid"]))
    db.set_error("invalid_key", s.name, sign(private, "ES256", s.claims()))
    # what we emit carries our own iss, which is not the peer's
    token = db.outbox_token(s.name, db.emit(s.name))
    assert split_token(token)[1]["iss"] == s.issuer
    db.set_error("invalid_issuer", s.name, token)
