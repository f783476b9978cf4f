"""create_receiver, issue_receiver_token, set_stream_receiver (SQL)."""

import hashlib
import uuid

import psycopg2
import pytest

from listener_support import connect_db, Db


def sqlstate(db, sql, params=None):
    with pytest.raises(psycopg2.Error) as e:
        db.execute(sql, params)
    return e.value.pgcode


def token_rows(db, receiver):
    return db.rows("SELECT encode(token_hash, 'hex'), scopes FROM setstream.receiver_tokens "
                   "WHERE receiver = %s ORDER BY created_at", (receiver,))


def test_create_receiver_returns_its_configuration(db, receivers):
    name = "rcv-" + uuid.uuid4().hex[:12]
    out = db.val("SELECT setstream.create_receiver(%s, '{https://rp.example/a}', 3)", (name,))
    receivers.made.append(name)
    assert out == {"name": name, "audience": ["https://rp.example/a"], "max_streams": 3,
                   "owner": db.val("SELECT current_user")}
    assert db.rows("SELECT audience, max_streams FROM setstream.receivers WHERE name = %s",
                   (name,)) == [(["https://rp.example/a"], 3)]


def test_create_receiver_defaults(db, receivers):
    name = receivers.create()
    assert db.rows("SELECT audience, max_streams FROM setstream.receivers WHERE name = %s",
                   (name,)) == [(None, None)]


@pytest.mark.parametrize("args, code", [
    (("", None, None), "22023"),
    (("-x", None, None), "22023"),
    (("a/b", None, None), "22023"),
    (("x" * 129, None, None), "22023"),
    (("ok-{u}", ["a", None], None), "22004"),
    (("ok-{u}", [""], None), "22023"),
    (("ok-{u}", None, 0), "22023"),
    ((None, None, None), "22004"),
])
def test_create_receiver_refuses_bad_input_and_changes_nothing(db, receivers, args, code):
    before = db.val("SELECT count(*) FROM setstream.receivers")
    name = args[0].replace("{u}", uuid.uuid4().hex[:8]) if args[0] else args[0]
    assert sqlstate(db, "SELECT setstream.create_receiver(%s, %s::text[], %s)",
                    (name, args[1], args[2])) == code
    assert db.val("SELECT count(*) FROM setstream.receivers") == before


def test_create_receiver_twice_is_duplicate_object(db, receivers):
    name = receivers.create(max_streams=1)
    assert sqlstate(db, "SELECT setstream.create_receiver(%s, NULL, 5)", (name,)) == "42710"
    assert db.val("SELECT max_streams FROM setstream.receivers WHERE name = %s", (name,)) == 1


def test_issue_receiver_token_keeps_only_its_hash(db, receivers):
    name = receivers.create()
    token = receivers.token(name)
    assert token.startswith("ssr_") and len(token) == 4 + 43
    rows = token_rows(db, name)
    assert rows == [(hashlib.sha256(token.encode()).hexdigest(), ["ssf.read", "ssf.manage"])]
    # the token text is stored nowhere
    assert db.val("SELECT count(*) FROM setstream.receiver_tokens t "
                  "WHERE t::text LIKE '%%' || %s || '%%'", (token[4:],)) == 0
    other = receivers.token(name, ["ssf.read"])
    assert other != token
    assert [r[1] for r in token_rows(db, name)] == [["ssf.read", "ssf.manage"], ["ssf.read"]]


def test_issue_receiver_token_default_scopes(db, receivers):
    name = receivers.create()
    db.val("SELECT setstream.issue_receiver_token(%s)", (name,))
    assert [r[1] for r in token_rows(db, name)] == [["ssf.read", "ssf.manage"]]


@pytest.mark.parametrize("scopes, code", [
    (["ssf.write"], "22023"),
    (["ssf.read", "admin"], "22023"),
    ([], "22023"),
    ([""], "22023"),
    (["ssf.read", None], "22004"),
    (None, "22023"),
])
def test_issue_receiver_token_validates_scopes(db, receivers, scopes, code):
    name = receivers.create()
    assert sqlstate(db, "SELECT setstream.issue_receiver_token(%s, %s::text[])",
                    (name, scopes)) == code
    assert token_rows(db, name) == []


def test_issue_receiver_token_scopes_deduplicated(db, receivers):
    name = receivers.create()
    receivers.token(name, ["ssf.read", "ssf.read"])
    assert [r[1] for r in token_rows(db, name)] == [["ssf.read"]]


def test_issue_receiver_token_for_a_missing_receiver(db):
    assert sqlstate(db, "SELECT setstream.issue_receiver_token('no-such-receiver')") == "42704"


def test_set_stream_receiver(db, receivers):
    name = receivers.create()
    s = receivers.stream(name)
    assert db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (s.name,)) == name
    db.execute("SELECT setstream.set_stream_receiver(%s, NULL)", (s.name,))
    assert db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (s.name,)) is None
    assert sqlstate(db, "SELECT setstream.set_stream_receiver(%s, 'no-such-receiver')",
                    (s.name,)) == "42704"
    assert sqlstate(db, "SELECT setstream.set_stream_receiver('no-such-stream', %s)",
                    (name,)) == "42704"
    assert db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (s.name,)) is None


# --- privileges ------------------------------------------------------------

@pytest.fixture
def role(db):
    made = []

    def make(create=False):
        name = "ssfr_" + uuid.uuid4().hex[:10]
        db.execute("CREATE ROLE %s LOGIN NOSUPERUSER" % name)
        if create:
            db.execute("SELECT setstream.allow_stream_creation(%s)", (name,))
        made.append(name)
        conn = psycopg2.connect(dbname=db.val("SELECT current_database()"), user=name)
        conn.autocommit = True
        conns.append(conn)
        return name, Db(conn)

    conns = []
    yield make
    for c in conns:
        c.close()
    for name in made:
        db.execute("UPDATE setstream.streams SET receiver = NULL WHERE receiver IN "
                   "(SELECT name FROM setstream.receivers WHERE owner::text = %s)", (name,))
        db.execute("DELETE FROM setstream.streams WHERE owner::text = %s", (name,))
        db.execute("DELETE FROM setstream.receivers WHERE owner::text = %s", (name,))
        db.execute("DROP OWNED BY %s CASCADE" % name)
        db.execute("DROP ROLE %s" % name)


def test_a_role_without_stream_creation_cannot_make_receivers(db, role):
    _, plain = role()
    assert sqlstate(plain, "SELECT setstream.create_receiver('nope-%s')"
                    % uuid.uuid4().hex[:8]) == "42501"
    assert sqlstate(plain, "SELECT * FROM setstream.receivers") == "42501"
    assert sqlstate(plain, "SELECT * FROM setstream.receiver_tokens") == "42501"


def test_receivers_belong_to_their_role(db, role, receivers):
    alice, a = role(create=True)
    bob, b = role(create=True)
    name = "rcv-" + uuid.uuid4().hex[:12]
    out = a.val("SELECT setstream.create_receiver(%s)", (name,))
    assert out["owner"] == alice
    assert a.val("SELECT setstream.issue_receiver_token(%s)", (name,)).startswith("ssr_")
    # the tables stay the owner's: not even the receiver's owner reads them
    assert sqlstate(a, "SELECT * FROM setstream.receiver_tokens") == "42501"
    # another role: the receiver does not exist, and nothing changes
    assert sqlstate(b, "SELECT setstream.issue_receiver_token(%s)", (name,)) == "42704"
    assert len(token_rows(db, name)) == 1
    sname = "st-" + uuid.uuid4().hex[:10]
    b.execute("SELECT setstream.create_stream(%s, 'https://b.example', '{https://r.example}')",
              (sname,))
    assert sqlstate(b, "SELECT setstream.set_stream_receiver(%s, %s)", (sname, name)) == "42704"
    # and alice cannot attach bob's stream
    assert sqlstate(a, "SELECT setstream.set_stream_receiver(%s, %s)", (sname, name)) == "42704"
    assert db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (sname,)) is None
    # the superuser may
    db.execute("SELECT setstream.set_stream_receiver(%s, %s)", (sname, name))
    assert db.val("SELECT receiver FROM setstream.streams WHERE name = %s", (sname,)) == name
