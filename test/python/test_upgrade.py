"""ALTER EXTENSION setstream UPDATE from 0.1.0, 0.2.0 and 0.3.0 (every released
version): every table keeps its rows,
and the upgraded extension is object for object the one a fresh CREATE
EXTENSION makes (tables, columns, defaults, constraints, indexes, triggers,
policies, row-level security, functions with their bodies and settings,
views, privileges), compared twice: by catalog queries, and by the output
of pg_dump --schema-only.  A plain schema dump shows of an extension only
CREATE EXTENSION and what was changed after it (privileges against
pg_init_privs); pg_dump --binary-upgrade --schema-only writes out every
member object as pg_upgrade would recreate it, and that text (less OIDs,
transaction ids and LSNs) must be the same line for line.

Two databases are made for each test: one installs the old version, is
filled through its API (every table gets rows), and is updated; the other installs the
current version.  Both are dropped at the end.
"""

import contextlib
import json
import re
import subprocess
import time
import uuid

import psycopg2
import pytest

from conftest import jdump, key_for, public_jwk, sign

TABLES_0_1_0 = ["streams", "keys", "key_secrets", "tokens", "client_certs", "events", "outbox"]
TABLES_0_2_0 = TABLES_0_1_0 + ["stream_grants", "deliveries", "delivery_secrets"]
TABLES_0_3_0 = TABLES_0_2_0 + ["peer_jwks", "sources", "source_secrets", "receivers",
                               "receiver_tokens"]
TABLES = {"0.1.0": TABLES_0_1_0, "0.2.0": TABLES_0_2_0, "0.3.0": TABLES_0_3_0}

# Every object of the extension, described by its definition
CATALOG_QUERIES = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'setstream'::regnamespace AND a.attnum > 0
           AND NOT a.attisdropped
         ORDER BY 1, 2""",
    "relations": """
        SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
               coalesce(c.reloptions::text, ''), coalesce(c.relacl::text, '')
          FROM pg_class c WHERE c.relnamespace = 'setstream'::regnamespace
         ORDER BY 1""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'setstream'::regnamespace
         ORDER BY 1, 2""",
    "indexes": """
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE c.relnamespace = 'setstream'::regnamespace ORDER BY 1""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = 'setstream'::regnamespace AND NOT tgisinternal
         ORDER BY 1, 2""",
    "policies": """
        SELECT tablename, policyname, permissive, roles::text, cmd,
               coalesce(qual, ''), coalesce(with_check, '')
          FROM pg_policies WHERE schemaname = 'setstream' ORDER BY 1, 2""",
    "functions": """
        SELECT p.oid::regprocedure::text,
               CASE WHEN p.prokind = 'a' THEN '' ELSE pg_get_functiondef(p.oid) END,
               coalesce(p.proacl::text, '')
          FROM pg_proc p WHERE p.pronamespace = 'setstream'::regnamespace ORDER BY 1""",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid)
          FROM pg_class c WHERE c.relnamespace = 'setstream'::regnamespace
           AND c.relkind = 'v' ORDER BY 1""",
    "members": """
        SELECT pg_describe_object(classid, objid, objsubid)
          FROM pg_depend WHERE refclassid = 'pg_extension'::regclass
           AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'setstream')
           AND deptype = 'e' ORDER BY 1""",
    "config_dump": """
        SELECT extconfig::regclass[]::text, extcondition::text FROM pg_extension
         WHERE extname = 'setstream'""",
}

# A self-signed certificate is not needed: client_certs rows are written
# directly (bind_client_cert parses PEM; the table is what is upgraded).


def connect(dbname):
    conn = psycopg2.connect(dbname=dbname, application_name="setstream-upgrade-test",
                            options="-c client_min_messages=warning")
    conn.autocommit = True
    return conn


def q(conn, sql, params=None):
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def databases(admin):
    names = ["upg_old_" + uuid.uuid4().hex[:8], "upg_new_" + uuid.uuid4().hex[:8]]
    for n in names:
        admin.execute("CREATE DATABASE %s" % n)
    yield names
    for n in names:
        with contextlib.suppress(Exception):
            admin.execute("DROP DATABASE %s WITH (FORCE)" % n)


def fill(conn):
    """Rows in every table, through the 0.1.0 API."""
    q(conn, "SELECT setstream.create_stream('up-a', 'https://a.example', '{https://b.example}',"
            " 'https://b.example')")
    q(conn, "SELECT setstream.create_stream('up-b', 'https://b.example', '{https://a.example}')")
    # disabled before 0.3.0: it refused inbound SETs, and keeps refusing them
    q(conn, "SELECT setstream.create_stream('up-c', 'https://c.example', '{https://a.example}')")
    q(conn, "SELECT setstream.disable_stream('up-c')")
    key = key_for("HS256")
    kid = q(conn, "SELECT setstream.add_key('up-a', %s::jsonb)", (jdump(public_jwk(key)),))[0][0]
    q(conn, "SELECT setstream.generate_key('up-a', 'ES256')")
    q(conn, "SELECT setstream.generate_key('up-b', 'RS256')")
    q(conn, "SELECT setstream.issue_token('up-a')")
    q(conn, "SELECT setstream.issue_token('up-b')")
    q(conn, "INSERT INTO setstream.client_certs (stream, sha256, subject, not_after)"
            " VALUES ('up-b', decode(repeat('ab', 32), 'hex'), 'CN=up', now() + interval '1 day')")
    for i in range(3):
        claims = {"iss": "https://b.example", "aud": "https://a.example", "iat": int(time.time()),
                  "jti": "up-jti-%d" % i,
                  "sub_id": {"format": "email", "email": "u%d@example.com" % i},
                  "events": {"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {}}}
        q(conn, "SELECT setstream.receive('up-a', %s)", (sign(key, "HS256", claims, kid=kid),))
    jtis = [q(conn, "SELECT setstream.emit('up-a', 'urn:example:e', '{\"n\": %s}'::jsonb)"
                    % i)[0][0] for i in range(4)]
    q(conn, "SELECT setstream.poll('up-a', %s::jsonb)",
      (jdump({"maxEvents": 2}),))
    q(conn, "SELECT setstream.poll('up-a', %s::jsonb)",
      (jdump({"maxEvents": 0, "ack": [jtis[0]],
              "setErrs": {jtis[1]: {"err": "invalid_request", "description": "x"}}}),))


def fill_0_2_0(conn):
    """The 0.1.0 rows, and rows in the tables 0.2.0 added."""
    fill(conn)
    q(conn, "SELECT setstream.grant_stream('up-a', 'pg_monitor', '{read}')")
    # a manager before 0.3.0 may run the new alter_stream (peer_jwks_uri) after it
    q(conn, "SELECT setstream.grant_stream('up-b', 'pg_read_all_stats', '{manage}')")
    # a role that may create streams before 0.3.0 may run the new
    # create_stream (peer_jwks_uri) after it.  (The update grants the roles
    # in the order of their names, a fresh install in the order of the
    # calls: this one's name sorts after the others'.)
    q(conn, "SELECT setstream.allow_stream_creation('pg_signal_backend')")
    q(conn, "SELECT setstream.set_delivery('up-b', 'push', 'https://receiver.example/events',"
            " 'Bearer up-secret', 2)")


def same_grants_0_2_0(conn):
    """grant_stream also grants table privileges to the grantee (RLS then
    filters rows): give the fresh install the same grant, so that the
    catalogs compare equal on the extension's own objects only."""
    q(conn, "SELECT setstream.create_stream('up-a', 'https://a.example', '{https://b.example}')")
    q(conn, "SELECT setstream.grant_stream('up-a', 'pg_monitor', '{read}')")
    q(conn, "SELECT setstream.create_stream('up-b', 'https://b.example', '{https://a.example}')")
    q(conn, "SELECT setstream.grant_stream('up-b', 'pg_read_all_stats', '{manage}')")
    q(conn, "SELECT setstream.allow_stream_creation('pg_signal_backend')")


def fill_0_3_0(conn):
    """The 0.2.0 rows, and rows in the tables 0.3.0 added."""
    fill_0_2_0(conn)
    q(conn, "SELECT setstream.alter_stream('up-b', peer_jwks_uri => 'https://a.example/jwks.json')")
    q(conn, "INSERT INTO setstream.peer_jwks (stream, uri, fetched_at)"
            " VALUES ('up-b', 'https://a.example/jwks.json', now())")
    q(conn, "SELECT setstream.set_source('up-c', 'poll', 'https://c.example/poll',"
            " 'Bearer up-source')")
    q(conn, "SELECT setstream.create_receiver('up-r', '{https://r.example}', 3)")
    q(conn, "SELECT setstream.issue_receiver_token('up-r', '{ssf.read,ssf.manage}')")
    q(conn, "SELECT setstream.set_stream_receiver('up-a', 'up-r')")
    q(conn, "SELECT setstream.rotate_key('up-a', 'ES256')")


FILL = {"0.1.0": fill, "0.2.0": fill_0_2_0, "0.3.0": fill_0_3_0}
SAME_GRANTS = {"0.1.0": lambda conn: None, "0.2.0": same_grants_0_2_0,
               "0.3.0": same_grants_0_2_0}


def table_rows(conn, tables):
    return {t: q(conn, "SELECT row_to_json(x)::text FROM setstream.%s x ORDER BY 1" % t)
            for t in tables}


def catalog(conn):
    return {k: q(conn, sql) for k, sql in CATALOG_QUERIES.items()}


def schema_dump(dbname, binary_upgrade):
    """pg_dump --schema-only of dbname, less what differs between two
    databases made by the same statements: psql's \\restrict keys, OIDs,
    frozen xids, LSNs and sequence positions of --binary-upgrade."""
    args = ["pg_dump", "--schema-only", "-d", dbname]
    if binary_upgrade:
        args.append("--binary-upgrade")
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    lines = []
    for line in out.splitlines():
        # (sequence positions are data: --binary-upgrade dumps them too)
        if re.match(r"\\(un)?restrict ", line) or "binary_upgrade_set_next_" in line \
                or line.startswith("SELECT pg_catalog.setval("):
            continue
        if "binary_upgrade_create_empty_extension" in line:
            line = re.sub(r"'\{[0-9,]*\}'", "'{OIDS}'", line)
        line = re.sub(r"relfrozenxid = '\d+', relminmxid = '\d+'",
                      "relfrozenxid = 'X', relminmxid = 'X'", line)
        line = re.sub(r"^WHERE oid = '\d+';$", "WHERE oid = 'X';", line)
        lines.append(line)
    return lines


def assert_same_dump(old_db, new_db, binary_upgrade):
    a = schema_dump(old_db, binary_upgrade)
    b = schema_dump(new_db, binary_upgrade)
    assert any("CREATE EXTENSION" in l or "binary_upgrade_create_empty_extension" in l
               for l in b), "the dump shows no extension"
    if a != b:
        import difflib
        diff = "\n".join(difflib.unified_diff(a, b, "updated", "fresh", lineterm="", n=2))
        pytest.fail("pg_dump --schema-only%s differs after the update:\n%s"
                    % (" --binary-upgrade" if binary_upgrade else "", diff[:6000]))
    return b


@pytest.mark.parametrize("from_version", ["0.1.0", "0.2.0", "0.3.0"])
def test_update_keeps_data_and_ends_in_the_fresh_schema(databases, admin, from_version):
    old_db, new_db = databases
    old = connect(old_db)
    new = connect(new_db)
    tables = TABLES[from_version]
    try:
        q(old, "CREATE EXTENSION setstream VERSION '%s'" % from_version)
        assert q(old, "SELECT extversion FROM pg_extension WHERE extname = 'setstream'") == \
            [(from_version,)]
        FILL[from_version](old)
        before = table_rows(old, tables)
        assert all(before[t] for t in tables), [t for t in tables if not before[t]]

        q(old, "ALTER EXTENSION setstream UPDATE")
        q(new, "CREATE EXTENSION setstream")
        SAME_GRANTS[from_version](new)
        version = q(new, "SELECT extversion FROM pg_extension WHERE extname = 'setstream'")
        assert q(old, "SELECT extversion FROM pg_extension WHERE extname = 'setstream'") == version
        assert version != [(from_version,)]

        # the data: every row as it was, but for columns the update added
        after = table_rows(old, tables)
        for t in tables:
            assert len(after[t]) == len(before[t]), t
            for b, a in zip(before[t], after[t]):
                b, a = json.loads(b[0]), json.loads(a[0])
                assert {k: a[k] for k in b} == b, t
        # the upgraded extension works on the old rows
        assert q(old, "SELECT setstream.emit('up-b', 'urn:example:e', '{}'::jsonb)")[0][0]
        got = q(old, "SELECT setstream.poll('up-a', '{\"maxEvents\": 10}'::jsonb)")[0][0]
        assert len(got["sets"]) == 2   # the two never acked or failed
        # 0.4.0's subjects (stream_subjects) on an old stream; the emit
        # filter leaves a stream without SSF settings alone
        q(old, "SELECT setstream.add_subject('up-a',"
               " '{\"format\": \"email\", \"email\": \"u@a.example\"}')")
        assert q(old, "SELECT stream, subject::text, included, verified"
                      " FROM setstream.stream_subjects") == \
            [("up-a", '{"email": "u@a.example", "format": "email"}', True, True)]
        assert q(old, "SELECT setstream.emit('up-a', 'urn:example:e', '{}'::jsonb,"
                      " '{\"format\": \"email\", \"email\": \"x@a.example\"}'::jsonb)")[0][0]
        # 0.4.0's tables of the SSF receiver (issue 13) take rows after the
        # update: a subscription and its owner-only credentials
        q(old, "INSERT INTO setstream.subscriptions (stream, transmitter_issuer, delivery,"
               " remote_stream_id, aud, configuration_endpoint, jwks_uri)"
               " VALUES ('up-b', 'https://t.example', 'poll', 'r-1', '{https://b.example}',"
               " 'https://t.example/ssf/streams', 'https://t.example/jwks.json')")
        q(old, "SELECT setstream._set_subscription_secret('up-b', '{\"bearer\": \"x\"}')")
        assert q(old, "SELECT stream, remote_stream_id FROM setstream.subscriptions") == \
            [("up-b", "r-1")]
        assert q(old, "SELECT credentials->>'bearer' FROM setstream.subscription_secrets") == \
            [("x",)]
        # a stream disabled before 0.3.0 refuses inbound SETs still (0.3.0
        # made that a setting of its own: set_inbound); one disabled since
        # 0.3.0 takes them
        assert q(old, "SELECT name, inbound FROM setstream.streams ORDER BY name") == \
            [("up-a", "accept"), ("up-b", "accept"),
             ("up-c", "accept" if from_version == "0.3.0" else "refuse")]

        # the schema: object for object as a fresh install
        a, b = catalog(old), catalog(new)
        for k in CATALOG_QUERIES:
            assert a[k] == b[k], "%s differ after the update" % k

        # and pg_dump says the same
        assert_same_dump(old_db, new_db, binary_upgrade=False)
        full = assert_same_dump(old_db, new_db, binary_upgrade=True)
        # the binary-upgrade dump does show the members
        for needle in ("CREATE TABLE setstream.outbox", "CREATE POLICY",
                       "CREATE FUNCTION setstream.metrics("):
            assert any(needle in l for l in full), needle
    finally:
        old.close()
        new.close()


def test_update_gives_set_inbound_to_managers(databases, admin):
    """0.3.0's set_inbound comes with the manage right: a role that held it
    before the update (grant_stream '{manage}') may run it after, and a role
    with lesser rights may not."""
    old_db, _ = databases
    old = connect(old_db)
    roles = ["upg_m_" + uuid.uuid4().hex[:6], "upg_r_" + uuid.uuid4().hex[:6]]
    try:
        for r in roles:
            admin.execute("CREATE ROLE %s" % r)
        q(old, "CREATE EXTENSION setstream VERSION '0.2.0'")
        q(old, "SELECT setstream.create_stream('up-a', 'https://a.example', '{https://b.example}')")
        q(old, "SELECT setstream.grant_stream('up-a', %s::regrole, '{manage}')", (roles[0],))
        q(old, "SELECT setstream.grant_stream('up-a', %s::regrole, '{read}')", (roles[1],))
        q(old, "ALTER EXTENSION setstream UPDATE")
        rights = q(old, "SELECT r, has_function_privilege(r, 'setstream.set_inbound(text, text)',"
                        " 'EXECUTE'), has_column_privilege(r, 'setstream.streams', 'inbound',"
                        " 'UPDATE') FROM unnest(%s::text[]) r ORDER BY r", (roles,))
        assert rights == [(roles[0], True, True), (roles[1], False, False)], rights
    finally:
        old.close()
        # the roles hold rights in old_db only: drop it first
        with contextlib.suppress(Exception):
            admin.execute("DROP DATABASE %s WITH (FORCE)" % old_db)
        for r in roles:
            with contextlib.suppress(Exception):
                admin.execute("DROP ROLE %s" % r)


def test_update_gives_the_new_create_stream_to_stream_creators(databases, admin):
    """0.3.0's create_stream (peer_jwks_uri) replaces 0.2.0's: a role that
    could create streams before the update (allow_stream_creation) may run
    it after, with a peer_jwks_uri, and a role that could not may not."""
    old_db, _ = databases
    old = connect(old_db)
    roles = ["upg_c_" + uuid.uuid4().hex[:6], "upg_n_" + uuid.uuid4().hex[:6]]
    new_sig = "setstream.create_stream(text, text, text[], text, text, boolean, text, text)"
    try:
        for r in roles:
            admin.execute("CREATE ROLE %s" % r)
        q(old, "CREATE EXTENSION setstream VERSION '0.2.0'")
        q(old, "SELECT setstream.allow_stream_creation(%s::regrole)", (roles[0],))
        q(old, "ALTER EXTENSION setstream UPDATE")
        assert q(old, "SELECT to_regprocedure('setstream.create_stream(text, text, text[],"
                      " text, text, boolean, text)')") == [(None,)], "the old signature is gone"
        rights = q(old, "SELECT r, has_function_privilege(r, %s, 'EXECUTE')"
                        " FROM unnest(%s::text[]) r ORDER BY r", (new_sig, roles))
        assert rights == [(roles[0], True), (roles[1], False)], rights
        q(old, "SET ROLE %s" % roles[0])
        row = q(old, "SELECT name, peer_jwks_uri FROM setstream.create_stream('up-new',"
                     " 'https://a.example', '{https://b.example}',"
                     " peer_jwks_uri => 'https://b.example/jwks.json')")
        assert row == [("up-new", "https://b.example/jwks.json")], row
        q(old, "RESET ROLE")
    finally:
        old.close()
        with contextlib.suppress(Exception):
            admin.execute("DROP DATABASE %s WITH (FORCE)" % old_db)
        for r in roles:
            with contextlib.suppress(Exception):
                admin.execute("DROP ROLE %s" % r)
