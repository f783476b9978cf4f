"""Fixtures of the security suite: attacks made by non-superuser roles.

Every test here reproduces one finding of the least-privilege review (issue
"Least privilege") as an ordinary role that the test creates, and asserts
that the attack fails and changed nothing.  The roles are created with
unique names and dropped (with what they own) when the test ends.

The listener-facing helpers (Db, Client, RawConn, StreamFactory, signing
with jwcrypto) are those of test/protocol, loaded from its conftest.py as
the module `listener_support`.
"""

import contextlib
import importlib.util
import os
import sys
import uuid

import psycopg2
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTOCOL = os.path.join(os.path.dirname(_HERE), "protocol", "conftest.py")

if "listener_support" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("listener_support", _PROTOCOL)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["listener_support"] = _mod
    _spec.loader.exec_module(_mod)

from listener_support import (  # noqa: E402,F401  (fixtures re-exported)
    DATABASE, Db, connect_db, listener, db, streams, client, raw, gucs, protocol_module)


class Roles:
    """Creates LOGIN roles (not superusers) and connections as them."""

    def __init__(self, admin):
        self.admin = admin
        self.made = []
        self.conns = []

    def create(self, prefix="sec", grants=()):
        name = "%s_%s" % (prefix, uuid.uuid4().hex[:10])
        self.admin.execute("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB" % name)
        self.admin.execute("GRANT USAGE ON SCHEMA setstream TO %s" % name)
        for g in grants:
            self.admin.execute(g.replace("{role}", name))
        self.made.append(name)
        return name

    def connect(self, role, autocommit=True):
        conn = psycopg2.connect(
            dbname=DATABASE, user=role, application_name="setstream-security-test",
            options="-c client_min_messages=warning -c statement_timeout=30000")
        conn.autocommit = autocommit
        self.conns.append(conn)
        return Db(conn)

    def is_superuser(self, role):
        return self.admin.val("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))

    def cleanup(self):
        for c in self.conns:
            with contextlib.suppress(Exception):
                c.close()
        for r in reversed(self.made):
            with contextlib.suppress(Exception):
                self.admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (r,))
            with contextlib.suppress(Exception):
                self.admin.execute("DROP OWNED BY %s CASCADE" % r)
            with contextlib.suppress(Exception):
                self.admin.execute("DROP ROLE %s" % r)


@pytest.fixture
def roles(listener):
    r = Roles(listener)
    yield r
    r.cleanup()


# The table grants the 0.1.0 README listed for each use; on a build without
# per-stream rights (before 0.2.0) they are what a role was given, so that
# each attack below can be replayed on the old code and seen to succeed.
_OLD_GRANTS = {
    "emit": ["GRANT SELECT ON setstream.streams TO {role}",
             "GRANT INSERT ON setstream.outbox TO {role}",
             "GRANT USAGE ON SEQUENCE setstream.outbox_seq TO {role}"],
    "receive": ["GRANT SELECT ON setstream.streams TO {role}",
                "GRANT SELECT, INSERT ON setstream.events TO {role}"],
    "read": ["GRANT SELECT ON setstream.streams, setstream.events, setstream.outbox TO {role}"],
    "deliver": ["GRANT SELECT ON setstream.streams TO {role}",
                "GRANT SELECT, UPDATE ON setstream.outbox TO {role}"],
    "manage": ["GRANT SELECT, UPDATE ON setstream.streams TO {role}",
               "GRANT INSERT, UPDATE ON setstream.keys, setstream.tokens TO {role}",
               "GRANT SELECT ON setstream.keys, setstream.tokens TO {role}"],
}


def has_stream_rights(admin):
    return admin.val("SELECT to_regprocedure('setstream.grant_stream(text,regrole,text[])') "
                     "IS NOT NULL")


def grant_rights(admin, role, stream, rights):
    """Give role the rights on stream: grant_stream, or the old table grants."""
    if has_stream_rights(admin):
        admin.execute("SELECT setstream.grant_stream(%s, %s::regrole, %s::text[])",
                      (stream, role, list(rights)))
    else:
        for r in rights:
            for g in _OLD_GRANTS[r]:
                admin.execute(g.format(role=role))


def plant_function(conn, signature, returns, role, result, loot=None):
    """Create, as the attacker, a plpgsql function that tries to make
    `role` a superuser and, when `loot` (a table (who, secret)) is given, to
    copy setstream.key_secrets into it (recording who it ran as when it
    cannot); it then returns `result`."""
    steal = ""
    if loot:
        steal = """
            BEGIN
                INSERT INTO %(t)s SELECT current_user, k.jwk FROM setstream.key_secrets k;
            EXCEPTION WHEN others THEN
                INSERT INTO %(t)s VALUES (current_user, NULL);
            END;""" % {"t": loot}
    conn.execute("""
        CREATE FUNCTION %(sig)s RETURNS %(ret)s LANGUAGE plpgsql AS $f$
        BEGIN
            BEGIN
                EXECUTE 'ALTER ROLE %(r)s SUPERUSER';
            EXCEPTION WHEN others THEN NULL;
            END;%(steal)s
            RETURN %(res)s;
        END $f$""" % {"sig": signature, "ret": returns, "r": role, "steal": steal,
                      "res": result})
