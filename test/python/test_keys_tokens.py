"""Keys, secrets, bearer tokens and stream management.

add_key() takes a peer's public JWK (or an oct secret) and refuses private
keys, weak keys, unsupported types and algorithms that do not fit; oct
secrets live only in setstream.key_secrets, which no other role can read
while the C code still uses them on that role's behalf.  issue_token()
returns "sst_" + 43 base64url characters and stores only its SHA-256.
"""

import base64
import json
import os
import re
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from jwcrypto import jwk

from conftest import b64u, jdump, key_for, public_jwk, sha256, sign, verify

TOKEN_RE = re.compile(r"^sst_[A-Za-z0-9_-]{43}$")


def jwk_from_cryptography(key, **extra):
    d = json.loads(jwk.JWK.from_pyca(key).export(private_key=False))
    d.update(extra)
    return d


# ---------------------------------------------------------------------------
# add_key
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["RS256", "ES256", "ES384", "ES512", "EdDSA"])
def test_private_keys_are_refused(alg, db, streams):
    s = streams.create()
    private = json.loads(key_for(alg).export_private())
    e = db.expect_error("22023", "SELECT setstream.add_key(%s, %s::jsonb)",
                        (s.name, jdump(private)))
    assert "private" in e.diag.message_primary
    assert db.val("SELECT count(*) FROM setstream.keys WHERE stream = %s", (s.name,)) == 0


def _rsa_public(bits, e=65537):
    return jwk_from_cryptography(rsa.generate_private_key(e, bits).public_key())


BAD_KEYS = {
    "rsa-1024": lambda: _rsa_public(1024),
    "rsa-2047": lambda: _rsa_public(2047),
    "rsa-no-e": lambda: {k: v for k, v in public_jwk(key_for("RS256")).items() if k != "e"},
    "rsa-even-e": lambda: dict(public_jwk(key_for("RS256")), e=b64u(b"\x01\x00\x00")),
    "ec-secp256k1": lambda: jwk_from_cryptography(ec.generate_private_key(ec.SECP256K1()).public_key()),
    "ec-no-crv": lambda: {k: v for k, v in public_jwk(key_for("ES256")).items() if k != "crv"},
    "ec-short-x": lambda: dict(public_jwk(key_for("ES256")), x=b64u(os.urandom(31))),
    "ec-off-curve": lambda: dict(public_jwk(key_for("ES256")),
                                 y=public_jwk(key_for("ES256"))["x"]),
    "ec-crv-mismatch": lambda: dict(public_jwk(key_for("ES384")), crv="P-256"),
    "okp-x25519": lambda: {"kty": "OKP", "crv": "X25519", "x": b64u(
        x25519.X25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw))},
    "okp-ed448": lambda: jwk_from_cryptography(ed448.Ed448PrivateKey.generate().public_key()),
    "okp-short-x": lambda: dict(public_jwk(key_for("EdDSA")), x=b64u(os.urandom(16))),
    "oct-31-bytes": lambda: {"kty": "oct", "k": b64u(os.urandom(31))},
    "oct-empty": lambda: {"kty": "oct", "k": ""},
    "oct-no-k": lambda: {"kty": "oct"},
    "oct-not-base64url": lambda: {"kty": "oct", "k": "not base64url!" * 4},
    "oct-hs512-needs-64": lambda: {"kty": "oct", "k": b64u(os.urandom(32)), "alg": "HS512"},
    "alg-rs-on-ec": lambda: public_jwk(key_for("ES256"), alg="RS256"),
    "alg-es384-on-p256": lambda: public_jwk(key_for("ES256"), alg="ES384"),
    "alg-hs-on-rsa": lambda: public_jwk(key_for("RS256"), alg="HS256"),
    "alg-none": lambda: public_jwk(key_for("ES256"), alg="none"),
    "alg-not-string": lambda: public_jwk(key_for("ES256"), alg=256),
    "alg-eddsa-on-ec": lambda: public_jwk(key_for("ES256"), alg="EdDSA"),
    "use-enc": lambda: public_jwk(key_for("RS256"), use="enc"),
    "use-not-string": lambda: public_jwk(key_for("RS256"), use=1),
    "kid-empty": lambda: public_jwk(key_for("ES256"), kid=""),
    "kid-not-string": lambda: public_jwk(key_for("ES256"), kid=5),
    "kid-too-long": lambda: public_jwk(key_for("ES256"), kid="k" * 256),
    "kty-unknown": lambda: {"kty": "DSA", "y": "AQAB"},
    "kty-missing": lambda: {"k": b64u(os.urandom(32))},
    "kty-not-string": lambda: {"kty": 1, "k": b64u(os.urandom(32))},
    "not-an-object": lambda: ["kty", "oct"],
    "string": lambda: "oct",
}


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_bad_keys_are_refused(name, db, streams):
    s = streams.create()
    db.expect_error("22023", "SELECT setstream.add_key(%s, %s::jsonb)",
                    (s.name, jdump(BAD_KEYS[name]())))
    assert db.val("SELECT count(*) FROM setstream.keys WHERE stream = %s", (s.name,)) == 0


GOOD_KEYS = {
    "rsa-2048": lambda: public_jwk(key_for("RS256")),
    "rsa-3072-e3": lambda: _rsa_public(3072, e=3),
    "rsa-with-alg-ps512": lambda: public_jwk(key_for("RS256"), alg="PS512"),
    "rsa-with-use-sig": lambda: public_jwk(key_for("RS256"), use="sig"),
    "ec-p256": lambda: public_jwk(key_for("ES256")),
    "ec-p384": lambda: public_jwk(key_for("ES384")),
    "ec-p521": lambda: public_jwk(key_for("ES512"), alg="ES512"),
    "okp-ed25519": lambda: public_jwk(key_for("EdDSA"), alg="EdDSA"),
    "oct-32": lambda: {"kty": "oct", "k": b64u(os.urandom(32))},
    "oct-64-hs512": lambda: {"kty": "oct", "k": b64u(os.urandom(64)), "alg": "HS512"},
    "extra-members": lambda: public_jwk(key_for("ES256"), key_ops=["verify"], x5t="abc"),
}


@pytest.mark.parametrize("name", sorted(GOOD_KEYS))
def test_good_keys_are_accepted(name, db, streams):
    s = streams.create()
    given = GOOD_KEYS[name]()
    kid = db.add_key(s.name, given)
    assert kid
    row = db.dicts("SELECT * FROM setstream.keys WHERE stream = %s", (s.name,))[0]
    assert (row["kid"], row["purpose"], row["kty"], row["alg"]) == \
        (kid, "verify", given["kty"], given.get("alg"))
    assert row["revoked_at"] is None


def test_oct_secret_lives_only_in_key_secrets(db, streams, admin):
    s = streams.create()
    secret = b64u(os.urandom(48))
    kid = db.add_key(s.name, {"kty": "oct", "k": secret})
    public = db.val("SELECT jwk FROM setstream.keys WHERE stream = %s AND kid = %s",
                    (s.name, kid))
    assert "k" not in public and public["kty"] == "oct"
    stored = json.loads(admin.val(
        "SELECT jwk FROM setstream.key_secrets WHERE stream = %s AND kid = %s", (s.name, kid)))
    assert stored["k"] == secret
    # nothing else in the schema holds the secret
    assert db.val("SELECT count(*) FROM setstream.keys WHERE jwk::text LIKE %s",
                  ("%" + secret + "%",)) == 0
    assert secret not in jdump(db.val("SELECT setstream.jwks()"))


def test_public_keys_keep_no_secret_row(db, streams, admin):
    s = streams.create()
    kid = db.add_key(s.name, public_jwk(key_for("ES256")))
    assert admin.val("SELECT count(*) FROM setstream.key_secrets WHERE stream = %s AND kid = %s",
                     (s.name, kid)) == 0


def test_duplicate_kid(db, streams):
    s = streams.create()
    key = public_jwk(key_for("ES256"))
    kid = db.add_key(s.name, key)
    e = db.expect_error("42710", "SELECT setstream.add_key(%s, %s::jsonb)", (s.name, jdump(key)))
    assert kid in e.diag.message_primary
    # the same kid for another key, given explicitly
    db.expect_error("42710", "SELECT setstream.add_key(%s, %s::jsonb)",
                    (s.name, jdump(dict(public_jwk(key_for("RS256")), kid=kid))))
    # another stream may use the same kid
    other = streams.create()
    assert db.add_key(other.name, key) == kid


def test_revoke_key(db, streams):
    s = streams.create()
    kid = db.add_key(s.name, public_jwk(key_for("ES256")))
    db.execute("SELECT setstream.revoke_key(%s, %s)", (s.name, kid))
    assert db.val("SELECT revoked_at IS NOT NULL FROM setstream.keys WHERE stream = %s",
                  (s.name,))
    db.expect_error("42704", "SELECT setstream.revoke_key(%s, %s)", (s.name, kid))
    db.expect_error("42704", "SELECT setstream.revoke_key(%s, %s)", (s.name, "no-such-kid"))


# ---------------------------------------------------------------------------
# privileges: secrets stay with the extension owner
# ---------------------------------------------------------------------------

README_GRANTS = [
    # README, "Privileges": the stream's owner gives a role rights on it
    "SELECT setstream.grant_stream('{stream}', '{role}', '{{emit,receive,read}}')",
]


def test_readme_emit_grants_are_needed(db, streams, make_role):
    """The emit right the README lists is really needed to emit."""
    s = streams.create()
    role = make_role(["SELECT setstream.grant_stream('{stream}', '{role}', '{{receive,read}}')"],
                     stream=s.name)
    db.generate_key(s.name)
    db.execute("SET ROLE %s" % role)
    try:
        db.expect_error("42501", "SELECT setstream.emit(%s, 'https://example.com/e', '{}')",
                        (s.name,))
    finally:
        db.execute("RESET ROLE")


@pytest.fixture
def make_role(admin):
    """Factory: a NOLOGIN role with the given statements ({role}, {stream})."""
    made = []

    def factory(grants, stream=None):
        role = "pytest_role_" + uuid.uuid4().hex[:12]
        admin.execute("CREATE ROLE %s NOLOGIN" % role)
        made.append(role)
        for grant in grants:
            admin.execute(grant.format(role=role, stream=stream))
        return role

    yield factory
    for role in made:
        admin.execute("DROP OWNED BY %s" % role)
        admin.execute("DROP ROLE %s" % role)


@pytest.fixture
def plain_role(make_role):
    """Factory: a role that may use the API on one stream (every right but
    manage), and has no access to key_secrets."""
    return lambda stream: make_role(
        ["SELECT setstream.grant_stream('{stream}', '{role}', "
         "'{{emit,receive,read,deliver}}')"], stream=stream)


def test_readme_privileges_suffice_to_emit_and_receive(db, streams, make_role):
    s = streams.create()
    role = make_role(README_GRANTS, stream=s.name)
    key = key_for("HS256")
    kid = db.add_key(s.name, public_jwk(key))
    db.generate_key(s.name)
    db.execute("SET ROLE %s" % role)
    try:
        claims = s.claims()
        assert db.receive(s.name, sign(key, "HS256", claims, kid=kid)) == claims["jti"]
        jti = db.emit(s.name)
    finally:
        db.execute("RESET ROLE")
    assert len(db.event_rows(s.name, claims["jti"])) == 1
    assert db.outbox(s.name, jti)["state"] == "pending"


def test_key_secrets_are_not_readable_by_other_roles(db, streams, plain_role, admin):
    s = streams.create()
    db.add_key(s.name, {"kty": "oct", "k": b64u(os.urandom(32))})
    db.generate_key(s.name)
    role = plain_role(s.name)
    db.execute("SET ROLE %s" % role)
    try:
        assert db.val("SELECT count(*) FROM setstream.keys WHERE stream = %s", (s.name,)) == 2
        db.expect_error("42501", "SELECT * FROM setstream.key_secrets")
    finally:
        db.execute("RESET ROLE")


def test_a_role_without_grants_reaches_nothing(db, streams, admin):
    s = streams.create()
    role = "pytest_role_" + uuid.uuid4().hex[:12]
    admin.execute("CREATE ROLE %s NOLOGIN" % role)
    try:
        db.execute("SET ROLE %s" % role)
        for sql in ("SELECT setstream.issue_token(%s)", "SELECT setstream.poll(%s)",
                    "SELECT * FROM setstream.streams WHERE name = %s"):
            db.expect_error("42501", sql, (s.name,))
    finally:
        db.execute("RESET ROLE")
        admin.execute("DROP ROLE %s" % role)


def test_other_roles_use_secrets_through_the_api(db, streams, plain_role):
    """receive() with an HMAC key and emit() with a private key work for a
    role that cannot read key_secrets, and leave that role's identity alone."""
    s = streams.create()
    key = key_for("HS256")
    kid = db.add_key(s.name, public_jwk(key))
    pub = db.generate_key(s.name, "ES256")
    role = plain_role(s.name)
    db.execute("SET ROLE %s" % role)
    try:
        claims = s.claims()
        assert db.receive(s.name, sign(key, "HS256", claims, kid=kid)) == claims["jti"]
        assert db.val("SELECT current_user") == role
        e = db.error("SELECT setstream.receive(%s, %s)",
                     (s.name, sign(key_for("HS256", variant=9), "HS256", s.claims(), kid=kid)))
        assert e.pgcode == "SE002", (e.pgcode, e.diag.message_primary)
        assert db.val("SELECT current_user") == role
        jti = db.emit(s.name)
        assert db.val("SELECT current_user") == role
        db.expect_error("42501", "SELECT * FROM setstream.key_secrets")
    finally:
        db.execute("RESET ROLE")
    assert len(db.event_rows(s.name, claims["jti"])) == 1
    verify(db.outbox_token(s.name, jti), pub, "ES256")


# ---------------------------------------------------------------------------
# bearer tokens
# ---------------------------------------------------------------------------

def test_issue_token_format_and_hash(db, streams):
    s = streams.create()
    tokens = [db.val("SELECT setstream.issue_token(%s)", (s.name,)) for _ in range(5)]
    assert len(set(tokens)) == 5
    for t in tokens:
        assert TOKEN_RE.match(t), t
        assert len(b64u_decode_strict(t[4:])) == 32
    hashes = [bytes(r[0]) for r in db.rows(
        "SELECT token_hash FROM setstream.tokens WHERE stream = %s ORDER BY id", (s.name,))]
    assert hashes == [sha256(t) for t in tokens]
    # the token itself is nowhere in the table
    assert db.val("SELECT count(*) FROM setstream.tokens t WHERE t::text LIKE %s",
                  ("%" + tokens[0][4:] + "%",)) == 0


def b64u_decode_strict(text):
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    assert b64u(raw) == text
    return raw


def test_check_token(db, streams):
    s = streams.create()
    other = streams.create()
    t = db.val("SELECT setstream.issue_token(%s)", (s.name,))
    t_other = db.val("SELECT setstream.issue_token(%s)", (other.name,))

    def check(stream, token):
        return db.val("SELECT setstream.check_token(%s, %s)", (stream, token))

    assert check(s.name, t) is True
    assert check(other.name, t_other) is True
    assert check(other.name, t) is False          # a token opens its own stream only
    assert check(s.name, t_other) is False
    for wrong in (t[:-1], t + "A", t.upper(), t[4:], "", "sst_", " " + t,
                  t[:-1] + ("A" if t[-1] != "A" else "B")):
        assert check(s.name, wrong) is False, wrong


def test_revoke_token_by_value_and_by_id(db, streams):
    s = streams.create()
    t1 = db.val("SELECT setstream.issue_token(%s)", (s.name,))
    t2 = db.val("SELECT setstream.issue_token(%s)", (s.name,))
    db.execute("SELECT setstream.revoke_token(%s, %s::text)", (s.name, t1))
    assert db.val("SELECT setstream.check_token(%s, %s)", (s.name, t1)) is False
    assert db.val("SELECT setstream.check_token(%s, %s)", (s.name, t2)) is True
    db.expect_error("42704", "SELECT setstream.revoke_token(%s, %s::text)", (s.name, t1))
    id2 = db.val("SELECT id FROM setstream.tokens WHERE stream = %s AND token_hash = %s",
                 (s.name, sha256(t2)))
    db.execute("SELECT setstream.revoke_token(%s, %s::bigint)", (s.name, id2))
    assert db.val("SELECT setstream.check_token(%s, %s)", (s.name, t2)) is False
    db.expect_error("42704", "SELECT setstream.revoke_token(%s, %s::bigint)", (s.name, id2))


def test_revoke_token_of_another_stream(db, streams):
    s = streams.create()
    other = streams.create()
    t = db.val("SELECT setstream.issue_token(%s)", (s.name,))
    db.expect_error("42704", "SELECT setstream.revoke_token(%s, %s::text)", (other.name, t))
    assert db.val("SELECT setstream.check_token(%s, %s)", (s.name, t)) is True


# ---------------------------------------------------------------------------
# stream management
# ---------------------------------------------------------------------------

def test_create_stream_defaults(db, streams):
    s = streams.create()
    row = db.dicts("SELECT * FROM setstream.streams WHERE name = %s", (s.name,))[0]
    assert (row["issuer"], row["audience"], row["peer_issuer"]) == \
        (s.issuer, s.audience, s.peer_issuer)
    assert (row["profile"], row["allow_unsigned"], row["status"]) == ("ssf", False, "enabled")


def test_create_stream_duplicate(db, streams):
    s = streams.create()
    e = db.expect_error("42710", "SELECT setstream.create_stream(%s, 'https://x', '{https://y}')",
                        (s.name,))
    assert s.name in e.diag.message_primary


@pytest.mark.parametrize("name,issuer,audience", [
    ("", "https://x", ["https://y"]),
    ("-leading-dash", "https://x", ["https://y"]),
    ("has space", "https://x", ["https://y"]),
    ("slash/name", "https://x", ["https://y"]),
    ("n" * 129, "https://x", ["https://y"]),
    (None, "", ["https://y"]),
    (None, None, ["https://y"]),
    (None, "https://x", []),
    (None, "https://x", [""]),
    (None, "https://x", ["https://y", None]),
    (None, "https://x", None),
])
def test_create_stream_bad_arguments(name, issuer, audience, db):
    """A bad name, issuer or audience (name None: a fresh, valid name)."""
    name = "py-" + uuid.uuid4().hex[:16] if name is None else name
    db.expect_error("22023", "SELECT setstream.create_stream(%s, %s, %s::text[])",
                    (name, issuer, audience))
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (name,)) == 0


def test_create_stream_bad_profile_and_peer(db):
    name = "py-" + uuid.uuid4().hex[:16]
    db.expect_error("22023", "SELECT setstream.create_stream(%s, 'https://x', '{https://y}', "
                    "profile => 'oidc')", (name,))
    db.expect_error("22023", "SELECT setstream.create_stream(%s, 'https://x', '{https://y}', "
                    "peer_issuer => '')", (name,))


def test_alter_stream_null_means_unchanged(db, streams):
    s = streams.create(profile="rfc8417", allow_unsigned=True)
    db.execute("SELECT setstream.alter_stream(%s, audience => %s::text[])",
               (s.name, ["https://new.example.com"]))
    row = db.dicts("SELECT * FROM setstream.streams WHERE name = %s", (s.name,))[0]
    assert row["audience"] == ["https://new.example.com"]
    assert (row["issuer"], row["peer_issuer"], row["profile"], row["allow_unsigned"]) == \
        (s.issuer, s.peer_issuer, "rfc8417", True)
    db.expect_error("22023", "SELECT setstream.alter_stream(%s, profile => 'nope')", (s.name,))
    db.expect_error("22023", "SELECT setstream.alter_stream(%s, audience => '{}')", (s.name,))


def test_set_stream_status_values(db, streams):
    s = streams.create()
    for status in ("paused", "disabled", "enabled"):
        db.execute("SELECT setstream.set_stream_status(%s, %s)", (s.name, status))
        assert db.val("SELECT status FROM setstream.streams WHERE name = %s", (s.name,)) == status
    for bad in ("Enabled", "stopped", "", None):
        db.expect_error("22023", "SELECT setstream.set_stream_status(%s, %s)", (s.name, bad))


def test_drop_stream_removes_everything(db, streams, admin):
    s = streams.create()
    key = key_for("HS256")
    kid = db.add_key(s.name, public_jwk(key))
    db.generate_key(s.name)
    db.val("SELECT setstream.issue_token(%s)", (s.name,))
    db.receive(s.name, sign(key, "HS256", s.claims(), kid=kid))
    db.emit(s.name)
    db.execute("SELECT setstream.drop_stream(%s)", (s.name,))
    for table in ("streams", "keys", "key_secrets", "tokens", "events", "outbox"):
        column = "name" if table == "streams" else "stream"
        assert admin.val("SELECT count(*) FROM setstream.%s WHERE %s = %%s" % (table, column),
                         (s.name,)) == 0, table
    db.expect_error("42704", "SELECT setstream.drop_stream(%s)", (s.name,))
