"""Issue 11, finding 1: SQL that setstream runs with the extension owner's
rights must resolve nothing through the caller's search_path or pg_temp.

Each test gives an ordinary role exactly the rights it needs to emit or
receive on one stream, lets it plant an operator or a type where the
caller's search_path would find it, and calls the API.  The planted code
tries to make the role a superuser and to copy setstream.key_secrets; both
must fail to happen (on 0.1.0 both happened).
"""

import json
import uuid

from conftest import grant_rights, plant_function
from listener_support import peer_key, public_jwk, sign


def _loot_setup(roles, admin, rights, stream):
    """A role with CREATE on a schema of its own and a loot table there."""
    role = roles.create("sp")
    schema = "evil_" + uuid.uuid4().hex[:8]
    admin.execute("CREATE SCHEMA %s AUTHORIZATION %s" % (schema, role))
    grant_rights(admin, role, stream, rights)
    me = roles.connect(role)
    me.execute("CREATE TABLE %s.loot (who text, secret text)" % schema)
    me.execute("GRANT ALL ON %s.loot TO PUBLIC" % schema)
    # the planted function: escalate and steal, whatever it runs as
    plant_function(me, "%s.grab(a text, b text)" % schema, "boolean", role,
                   "a OPERATOR(pg_catalog.=) b", loot="%s.loot" % schema)
    return role, schema, me


def _assert_nothing_stolen(roles, admin, role, schema):
    assert roles.is_superuser(role) is False, "the role became a superuser"
    stolen = admin.val("SELECT count(*) FROM %s.loot WHERE secret IS NOT NULL" % schema)
    assert stolen == 0, "key_secrets rows were copied"
    ran_as = admin.rows("SELECT DISTINCT who FROM %s.loot" % schema)
    assert all(r[0] == role for r in ran_as), "planted code ran as %r" % ran_as


def test_planted_operator_on_emit_runs_nothing_as_owner(roles, listener, streams):
    admin = listener
    s = streams.create(signing_alg="ES256", token=False)
    role, schema, me = _loot_setup(roles, admin, ["emit"], s.name)
    me.execute("CREATE OPERATOR %s.= (LEFTARG = text, RIGHTARG = text, FUNCTION = %s.grab)"
               % (schema, schema))
    me.execute("SET search_path = %s, pg_catalog" % schema)
    jti = me.val("SELECT setstream.emit(%s, 'urn:example:e', '{}'::jsonb)", (s.name,))
    assert jti
    _assert_nothing_stolen(roles, admin, role, schema)


def test_planted_operator_on_receive_runs_nothing_as_owner(roles, listener, streams):
    admin = listener
    s = streams.create(peer_algs=("HS256",), token=False)
    key, kid = s.peer_keys["HS256"]
    role, schema, me = _loot_setup(roles, admin, ["receive"], s.name)
    me.execute("CREATE OPERATOR %s.= (LEFTARG = text, RIGHTARG = text, FUNCTION = %s.grab)"
               % (schema, schema))
    me.execute("SET search_path = %s, pg_catalog" % schema)
    claims = s.claims()
    assert me.val("SELECT setstream.receive(%s, %s)",
                  (s.name, sign(key, "HS256", claims, kid))) == claims["jti"]
    _assert_nothing_stolen(roles, admin, role, schema)


def test_pg_temp_domain_on_receive_runs_nothing_as_owner(roles, listener, streams):
    """No CREATE anywhere: the default TEMP privilege plants pg_temp.text."""
    admin = listener
    s = streams.create(peer_algs=("HS256",), token=False)
    key, kid = s.peer_keys["HS256"]
    role = roles.create("tmp")
    grant_rights(admin, role, s.name, ["receive"])
    table = "loot_" + uuid.uuid4().hex[:8]
    admin.execute("CREATE TABLE public.%s (who text, secret text)" % table)
    admin.execute("GRANT ALL ON public.%s TO PUBLIC" % table)
    try:
        me = roles.connect(role)
        plant_function(me, "pg_temp.grab(v pg_catalog.text)", "boolean", role, "true",
                       loot="public.%s" % table)
        me.execute("CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (pg_temp.grab(VALUE))")
        claims = s.claims()
        me.val("SELECT setstream.receive(%s, %s)", (s.name, sign(key, "HS256", claims, kid)))
        assert roles.is_superuser(role) is False, "the role became a superuser"
        assert admin.val("SELECT count(*) FROM public.%s WHERE secret IS NOT NULL" % table) == 0
        assert all(r[0] == role for r in admin.rows("SELECT DISTINCT who FROM public.%s" % table))
    finally:
        admin.execute("DROP TABLE public.%s" % table)


def test_execute_is_not_granted_to_public(listener):
    """Every function of the API needs a grant (grant_stream gives it)."""
    open_to_public = listener.rows("""
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'setstream'::regnamespace
           AND has_function_privilege('public', p.oid, 'EXECUTE')
         ORDER BY 1""")
    names = {r[0].split("(")[0] for r in open_to_public}
    allowed = {"setstream._outbox_row_valid", "setstream._streams_with", "setstream._holds_role",
               "setstream._require", "setstream.has_stream_privilege", "setstream.grant_stream",
               "setstream.revoke_stream", "setstream._stream_row", "setstream._check_stream_fields",
               "setstream.error_code",
               # shows only the streams the caller holds the read right on
               # (and listener-wide figures that name no stream)
               "setstream.metrics",
               # the default of outbox.seq and tokens.id, evaluated with the
               # inserting role's rights (issue 18); returns a clock value
               "setstream._order_key",
               # key rotation (issue 13): the kid of a token given as argument
               # (pure), and whether outbox rows the caller can read (RLS)
               # carry it; revoke_key and the sender's sweep call them
               "setstream._token_kid", "setstream._key_in_use"}
    assert names <= allowed, sorted(names - allowed)
    assert "setstream.emit" not in names
