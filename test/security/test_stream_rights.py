"""Issue 11, finding 9: rights per stream.

Role A holds every right on stream sa, role B on stream sb.  A must not be
able to emit on, read, poll, acknowledge, manage or even name sb: every
call answers exactly as for a stream that does not exist (42704), and plain
SQL sees none of sb's rows.  On 0.1.0 any role with the README's grants
could do all of it on every stream.
"""

import uuid

import psycopg2
import pytest

from conftest import grant_rights

ALL = ["emit", "receive", "read", "deliver", "manage"]


def sqlstate(db, sql, params=None):
    try:
        db.execute(sql, params)
    except psycopg2.Error as e:
        return e.pgcode
    return None


@pytest.fixture
def two(roles, listener, streams):
    admin = listener
    sa = streams.create(peer_algs=("HS256",), signing_alg="ES256")
    sb = streams.create(peer_algs=("HS256",), signing_alg="ES256")
    a = roles.create("ra")
    b = roles.create("rb")
    grant_rights(admin, a, sa.name, ALL)
    grant_rights(admin, b, sb.name, ALL)
    # sb has history: a received SET and an emitted one
    key, kid = sb.peer_keys["HS256"]
    from listener_support import sign
    admin.val("SELECT setstream.receive(%s, %s)", (sb.name, sign(key, "HS256", sb.claims(), kid)))
    admin.emit(sb.name)
    return admin, sa, sb, a, b, roles.connect(a)


def test_a_cannot_use_or_name_bs_stream(two):
    admin, sa, sb, a, b, A = two
    key, kid = sb.peer_keys["HS256"]
    from listener_support import sign
    calls = [
        ("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sb.name,)),
        ("SELECT setstream.receive(%s, %s)", (sb.name, sign(key, "HS256", sb.claims(), kid))),
        ("SELECT setstream.poll(%s, '{\"maxEvents\": 10}'::jsonb)", (sb.name,)),
        ("SELECT setstream.ingest(%s, '{}'::jsonb)", (sb.name,)),
        ("SELECT setstream.issue_token(%s)", (sb.name,)),
        ("SELECT setstream.generate_key(%s)", (sb.name,)),
        ("SELECT setstream.rotate_key(%s)", (sb.name,)),
        ("SELECT setstream.revoke_key(%s, %s, true)", (sb.name, sb.signing_jwk["kid"])),
        ("SELECT setstream.add_key(%s, '{\"kty\":\"oct\",\"k\":\"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\"}')",
         (sb.name,)),
        ("SELECT setstream.set_stream_status(%s, 'disabled')", (sb.name,)),
        ("SELECT setstream.set_inbound(%s, 'refuse')", (sb.name,)),
        ("SELECT setstream.drop_stream(%s)", (sb.name,)),
        ("SELECT setstream.revoke_token(%s, 1::bigint)", (sb.name,)),
    ]
    for sql, params in calls:
        assert sqlstate(A, sql, params) == "42704", sql
    # the same calls name a stream that does not exist in exactly the same way
    missing = "nosuch-" + uuid.uuid4().hex[:8]
    for sql, params in calls:
        assert sqlstate(A, sql, (missing,) + tuple(params[1:])) == "42704", sql
    # plain SQL sees nothing of sb, and changes nothing
    for table in ("streams", "keys", "tokens", "events", "outbox"):
        col = "name" if table == "streams" else "stream"
        assert A.val("SELECT count(*) FROM setstream.%s WHERE %s = %%s" % (table, col),
                     (sb.name,)) == 0, table
    A.execute("UPDATE setstream.outbox SET state = 'acked', acked_at = now() WHERE stream = %s",
              (sb.name,))
    A.execute("DELETE FROM setstream.events WHERE stream = %s", (sb.name,))
    assert admin.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'pending'",
                     (sb.name,)) == 1
    assert admin.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (sb.name,)) == 1
    assert admin.val("SELECT status FROM setstream.streams WHERE name = %s", (sb.name,)) == "enabled"
    assert A.val("SELECT count(*) FROM setstream.stats WHERE stream = %s", (sb.name,)) == 0
    assert A.val("SELECT count(*) FROM setstream.stream_counters() WHERE stream = %s",
                 (sb.name,)) == 0
    assert A.val("SELECT setstream.check_token(%s, %s)", (sb.name, sb.token)) is False


def test_a_uses_its_own_stream(two):
    admin, sa, sb, a, b, A = two
    jti = A.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sa.name,))
    got = A.val("SELECT setstream.poll(%s, '{\"maxEvents\": 10}'::jsonb)", (sa.name,))
    assert jti in got["sets"]
    A.val("SELECT setstream.poll(%s, %s::jsonb)", (sa.name, '{"ack": ["%s"], "maxEvents": 0}' % jti))
    assert admin.val("SELECT state FROM setstream.outbox WHERE stream = %s AND jti = %s",
                     (sa.name, jti)) == "acked"
    assert A.val("SELECT count(*) FROM setstream.streams") == 1
    assert A.val("SELECT count(*) FROM setstream.stats") == 1
    # key rotation with the manage right (granted by grant_stream)
    old = sa.signing_jwk["kid"]
    A.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sa.name,))
    new = A.val("SELECT setstream.rotate_key(%s)", (sa.name,))["kid"]
    assert sqlstate(A, "SELECT setstream.revoke_key(%s, %s)", (sa.name, old)) == "55006"
    A.execute("SELECT setstream.revoke_key(%s, %s, force => true)", (sa.name, old))
    assert admin.val("SELECT array_agg(kid ORDER BY kid) FROM setstream.keys WHERE stream = %s"
                     " AND purpose = 'sign' AND revoked_at IS NULL", (sa.name,)) == [new]


def test_another_right_is_42501(roles, listener, streams):
    admin = listener
    s = streams.create(signing_alg="ES256")
    r = roles.create("rd")
    grant_rights(admin, r, s.name, ["read"])
    R = roles.connect(r)
    assert sqlstate(R, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (s.name,)) == "42501"
    assert sqlstate(R, "SELECT setstream.issue_token(%s)", (s.name,)) == "42501"
    admin.emit(s.name)
    assert R.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,)) == 1


def test_rights_follow_set_role_not_the_cache(two, roles):
    """The stream cache survives SET ROLE; the rights must not."""
    admin, sa, sb, a, b, A = two
    c = roles.create("rc")
    admin.execute("GRANT %s, %s TO %s" % (a, b, c))
    C = roles.connect(c)
    C.execute("SET ROLE %s" % b)
    assert C.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sb.name,))
    C.execute("SET ROLE %s" % a)
    assert sqlstate(C, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sb.name,)) == "42704"
    # and in one transaction, after a successful emit as b
    C.conn.autocommit = False
    C.execute("SET LOCAL ROLE %s" % b)
    C.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sb.name,))
    C.execute("SET LOCAL ROLE %s" % a)
    assert sqlstate(C, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (sb.name,)) == "42704"
    C.conn.rollback()


def test_only_the_owner_grants(two, roles):
    admin, sa, sb, a, b, A = two
    if not admin.val("SELECT to_regprocedure('setstream.grant_stream(text,regrole,text[])') IS NOT NULL"):
        pytest.fail("no setstream.grant_stream(): rights per stream do not exist")
    assert sqlstate(A, "SELECT setstream.grant_stream(%s, %s::regrole, '{emit}')", (sb.name, a)) == "42704"
    # A holds manage on sa but is not its owner
    assert sqlstate(A, "SELECT setstream.grant_stream(%s, %s::regrole, '{emit}')", (sa.name, b)) == "42501"


def test_a_stream_created_by_a_role_is_its_own(roles, listener):
    admin = listener
    if not admin.val("SELECT to_regprocedure('setstream.allow_stream_creation(regrole)') IS NOT NULL"):
        pytest.fail("no setstream.allow_stream_creation(): rights per stream do not exist")
    a = roles.create("own")
    o = roles.create("oth")
    admin.execute("SELECT setstream.allow_stream_creation(%s)", (a,))
    admin.execute("SELECT setstream.allow_stream_creation(%s)", (o,))
    A = roles.connect(a)
    O = roles.connect(o)
    name = "own-" + uuid.uuid4().hex[:8]
    try:
        A.execute("SELECT setstream.create_stream(%s, 'https://a.example', '{https://b.example}')",
                  (name,))
        A.val("SELECT setstream.generate_key(%s)", (name,))
        assert A.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (name,))
        assert sqlstate(O, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (name,)) == "42704"
        assert O.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (name,)) == 0
        A.execute("SELECT setstream.grant_stream(%s, %s::regrole, '{emit}')", (name, o))
        assert O.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (name,))
        A.execute("SELECT setstream.revoke_stream(%s, %s::regrole, '{emit}')", (name, o))
        assert sqlstate(O, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (name,)) == "42704"
    finally:
        admin.execute("DELETE FROM setstream.streams WHERE name = %s", (name,))


def test_a_manager_cannot_take_the_stream(two, roles):
    """manage is not ownership: the owner column (and the name) stay."""
    admin, sa, sb, a, b, A = two
    assert sqlstate(A, "UPDATE setstream.streams SET owner = current_user::regrole WHERE name = %s",
                    (sa.name,)) == "42501"
    assert sqlstate(A, "UPDATE setstream.streams SET name = 'x' || name WHERE name = %s",
                    (sa.name,)) == "42501"
    assert sqlstate(A, "SELECT setstream.grant_stream(%s, %s::regrole, '{manage}')",
                    (sa.name, b)) == "42501"
    assert A.val("SELECT setstream.alter_stream(%s, peer_issuer => 'https://other.example')",
                 (sa.name,)) is not None


def test_manage_includes_set_inbound(two, roles, listener):
    """set_inbound (0.3.0) comes with the manage right, on the manager's
    streams only; a stream creator has it on its own streams."""
    admin, sa, sb, a, b, A = two
    assert A.val("SELECT inbound FROM setstream.set_inbound(%s, 'refuse')", (sa.name,)) == "refuse"
    assert sqlstate(A, "SELECT setstream.set_inbound(%s, 'refuse')", (sb.name,)) == "42704"
    assert sqlstate(A, "UPDATE setstream.streams SET inbound = 'refuse' WHERE name = %s",
                    (sb.name,)) in ("42501", None)
    assert admin.val("SELECT inbound FROM setstream.streams WHERE name = %s", (sb.name,)) == "accept"
    r = roles.create("rd")
    grant_rights(admin, r, sa.name, ["read"])
    assert sqlstate(roles.connect(r), "SELECT setstream.set_inbound(%s, 'accept')",
                    (sa.name,)) == "42501"


def test_revoked_within_a_transaction_is_revoked(roles, listener, streams):
    """The one-entry cache of rights does not outlive a revoke."""
    admin = listener
    s = streams.create(signing_alg="ES256")
    r = roles.create("rv")
    grant_rights(admin, r, s.name, ["emit"])
    admin.execute("GRANT %s TO %s" % (r, admin.val("SELECT current_user")))
    admin.conn.autocommit = False
    try:
        admin.execute("SET LOCAL ROLE %s" % r)
        assert admin.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (s.name,))
        admin.execute("RESET ROLE")
        admin.execute("SELECT setstream.revoke_stream(%s, %s::regrole, '{emit}')", (s.name, r))
        admin.execute("SET LOCAL ROLE %s" % r)
        assert sqlstate(admin, "SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)",
                        (s.name,)) == "42704"
    finally:
        admin.conn.rollback()
        admin.conn.autocommit = True
        admin.execute("REVOKE %s FROM %s" % (r, admin.val("SELECT current_user")))
