"""Issue 11, finding 2: the listener must not run as a superuser, and no
database or role setting may change its search_path or synchronous_commit.

Triggers on setstream.events run in the listener's transaction: a role with
TRIGGER on the table gets its code run by every 202.  The probe trigger
below records who it ran as and with which settings, and tries to make its
author a superuser; on 0.1.0 it succeeded (the listener was the bootstrap
superuser).
"""

import time
import uuid

import pytest

from conftest import grant_rights, plant_function
from listener_support import DATABASE, wait_for_listener


def listener_pids(db):
    return [r[0] for r in db.rows("SELECT pid FROM pg_stat_activity "
                                  "WHERE backend_type = 'setstream listener'")]


def restart_listeners(db):
    """Terminate the listeners and wait until their supervisors restarted
    them and the new ones serve."""
    old = set(listener_pids(db))
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE backend_type = 'setstream listener'")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        now = set(listener_pids(db))
        if now and not (now & old):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the listeners did not come back")
    wait_for_listener()


@pytest.fixture
def probe(roles, listener):
    """A role with TRIGGER on setstream.events whose AFTER INSERT trigger
    records (current_user, search_path, synchronous_commit, is superuser)
    in a table of its own and tries ALTER ROLE ... SUPERUSER."""
    admin = listener
    role = roles.create("trg")
    schema = "probe_" + uuid.uuid4().hex[:8]
    admin.execute("CREATE SCHEMA %s AUTHORIZATION %s" % (schema, role))
    admin.execute("GRANT TRIGGER ON setstream.events TO %s" % role)
    me = roles.connect(role)
    me.execute("CREATE TABLE %s.seen (who text, path text, sync text, super boolean)" % schema)
    me.execute("GRANT USAGE ON SCHEMA %s TO PUBLIC" % schema)
    me.execute("GRANT INSERT ON %s.seen TO PUBLIC" % schema)
    me.execute("""
        CREATE FUNCTION %(s)s.spy() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN
            BEGIN
                EXECUTE 'ALTER ROLE %(r)s SUPERUSER';
            EXCEPTION WHEN others THEN NULL;
            END;
            INSERT INTO %(s)s.seen VALUES (current_user,
                pg_catalog.current_setting('search_path'),
                pg_catalog.current_setting('synchronous_commit'),
                (SELECT rolsuper FROM pg_catalog.pg_roles
                  WHERE rolname OPERATOR(pg_catalog.=) current_user));
            RETURN NULL;
        END $f$""" % {"s": schema, "r": role})
    trigger = "spy_" + uuid.uuid4().hex[:8]
    me.execute("CREATE TRIGGER %s AFTER INSERT ON setstream.events "
               "FOR EACH ROW EXECUTE FUNCTION %s.spy()" % (trigger, schema))
    yield role, schema, me
    admin.execute("DROP TRIGGER IF EXISTS %s ON setstream.events" % trigger)
    admin.execute("REVOKE TRIGGER ON setstream.events FROM %s" % role)


def test_listener_is_not_a_superuser(listener):
    rows = listener.rows("""
        SELECT a.usename, r.rolsuper FROM pg_stat_activity a
          JOIN pg_roles r ON r.oid = a.usesysid
         WHERE a.backend_type = 'setstream listener'""")
    assert rows, "no listener is running"
    for name, is_super in rows:
        assert is_super is False, "the listener runs as superuser %s" % name
        assert name == "setstream_worker"


def test_trigger_on_events_runs_without_superuser_rights(probe, roles, streams, client, listener):
    role, schema, _ = probe
    s = streams.create()
    jti, tok = s.set()
    r = client.push(s, tok)
    assert r.status_code == 202, r.text
    seen = listener.rows("SELECT who, path, sync, super FROM %s.seen" % schema)
    assert len(seen) == 1, seen
    who, path, sync, is_super = seen[0]
    assert roles.is_superuser(role) is False, "the trigger's author became a superuser"
    assert who == "setstream_worker" and is_super is False
    assert path == "pg_catalog, pg_temp"
    assert sync == "on"


def test_database_settings_do_not_reach_the_listener(probe, roles, streams, client, listener):
    """ALTER DATABASE ... SET search_path (the database owner may) and
    synchronous_commit = off: after a restart the listener still has its
    pinned settings, and an operator planted in that path is never used."""
    role, schema, me = probe
    admin = listener
    plant_function(me, "%s.eq(a text, b text)" % schema, "boolean", role,
                   "a OPERATOR(pg_catalog.=) b")
    me.execute("CREATE OPERATOR %s.= (LEFTARG = text, RIGHTARG = text, FUNCTION = %s.eq)"
               % (schema, schema))
    me.execute("GRANT EXECUTE ON FUNCTION %s.eq(text, text) TO PUBLIC" % schema)
    admin.execute("ALTER DATABASE %s SET search_path = %s, pg_catalog" % (DATABASE, schema))
    admin.execute("ALTER DATABASE %s SET synchronous_commit = off" % DATABASE)
    try:
        restart_listeners(admin)
        s = streams.create(signing_alg="ES256")
        jti, tok = s.set()
        assert client.push(s, tok).status_code == 202
        admin.emit(s.name)
        for _ in range(2):
            assert client.poll(s, {"returnImmediately": True}).status_code == 200
        seen = admin.rows("SELECT who, path, sync FROM %s.seen" % schema)
        assert seen == [("setstream_worker", "pg_catalog, pg_temp", "on")], seen
        assert roles.is_superuser(role) is False
    finally:
        admin.execute("ALTER DATABASE %s RESET search_path" % DATABASE)
        admin.execute("ALTER DATABASE %s RESET synchronous_commit" % DATABASE)
        restart_listeners(admin)


def test_planted_division_is_never_used_by_redelivery(roles, listener, streams, client):
    """The redelivery cutoff is computed in C: an operator /(float8, numeric)
    planted in public (CREATE on public) is never called."""
    admin = listener
    role = roles.create("div")
    admin.execute("GRANT CREATE ON SCHEMA public TO %s" % role)
    me = roles.connect(role)
    fn = "div_" + uuid.uuid4().hex[:8]
    try:
        plant_function(me, "public.%s(a float8, b numeric)" % fn, "float8", role,
                       "a OPERATOR(pg_catalog./) b::float8")
        me.execute("GRANT EXECUTE ON FUNCTION public.%s(float8, numeric) TO PUBLIC" % fn)
        me.execute("CREATE OPERATOR public./ (LEFTARG = float8, RIGHTARG = numeric, "
                   "FUNCTION = public.%s)" % fn)
        s = streams.create(signing_alg="ES256")
        admin.emit(s.name)
        for _ in range(3):
            assert client.poll(s, {"returnImmediately": True}).status_code == 200
        assert roles.is_superuser(role) is False
    finally:
        admin.execute("DROP OPERATOR IF EXISTS public./ (float8, numeric)")
        admin.execute("DROP FUNCTION IF EXISTS public.%s(float8, numeric)" % fn)
        admin.execute("REVOKE CREATE ON SCHEMA public FROM %s" % role)
