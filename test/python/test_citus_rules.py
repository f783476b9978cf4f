"""The rules that let setstream's tables be distributed by stream (Citus),
checked on a single PostgreSQL (issue 18; DESIGN, "Distributable by
stream"):

  * no sequence and no identity column: the outbox's order and token ids
    do not come from a node-local sequence; setstream._order_key()
    increases strictly within a session, and SETs emitted by two sessions
    in turn keep the order they were emitted in;
  * every primary or unique key includes the stream (streams: its name):
    a token hash is unique per stream, not across streams; the SSF
    receivers' tables (receivers, receiver_tokens: configuration of no
    stream, reference tables only, never distributed) are keyed by the
    receiver instead;
  * no foreign key cascades updates (Citus refuses ON UPDATE CASCADE when
    the distribution column is in the key);
  * the statements a poll runs (take the due SETs, apply acks) select the
    outbox's rows by stream at the level of the modification itself, not
    only by ctid in a subquery: on Citus that is what routes them to one
    shard (read from the plans, with auto_explain);
  * revoke_key's UPDATE calls no function (Citus refuses a volatile one
    in an UPDATE of a distributed table);
  * setstream.distribute() and setstream.prepare_drop() without Citus are
    a clear 0A000.
"""

import json

import pytest


TABLES_SQL = """
SELECT c.oid::regclass::text, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'setstream' AND c.relkind IN ('r', 'p')
"""


def test_no_sequence_and_no_identity(db):
    seqs = db.rows("SELECT c.relname FROM pg_class c JOIN pg_namespace n"
                   " ON n.oid = c.relnamespace"
                   " WHERE n.nspname = 'setstream' AND c.relkind = 'S'")
    assert seqs == [], "sequences are per node: %r" % seqs
    ident = db.rows("SELECT a.attrelid::regclass::text, a.attname FROM pg_attribute a"
                    " JOIN pg_class c ON c.oid = a.attrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'setstream' AND a.attidentity <> ''")
    assert ident == [], "identity columns draw from a per-node sequence: %r" % ident
    defaults = dict(db.rows(
        "SELECT a.attrelid::regclass::text || '.' || a.attname,"
        " pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
        " JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
        " WHERE d.adrelid IN ('setstream.outbox'::regclass, 'setstream.tokens'::regclass)"
        " AND a.attname IN ('seq', 'id')"))
    assert defaults == {"setstream.outbox.seq": "setstream._order_key()",
                        "setstream.tokens.id": "setstream._order_key()"}, defaults


def test_order_key_increases_within_a_session(db):
    ok, n = db.row("SELECT bool_and(k > p), count(*) FROM ("
                   " SELECT k, lag(k) OVER (ORDER BY i) AS p FROM ("
                   "  SELECT i, setstream._order_key() AS k"
                   "  FROM generate_series(1, 20000) AS i) a) b WHERE p IS NOT NULL")
    assert n == 19999 and ok


def test_emits_of_two_sessions_keep_their_order(connect, streams):
    s = streams.create()
    a, b = connect(), connect()
    a.generate_key(s.name)
    jtis = []
    for i in range(6):
        jtis.append((a if i % 2 == 0 else b).emit(s.name))
    got = [r[0] for r in a.rows(
        "SELECT jti FROM setstream.outbox WHERE stream = %s ORDER BY seq", (s.name,))]
    assert got == jtis
    # and polls hand them out oldest first, one at a time
    handed = []
    for _ in jtis:
        sets = a.poll(s.name, {"maxEvents": 1, "returnImmediately": True})["sets"]
        assert len(sets) == 1
        handed += list(sets)
        a.poll(s.name, {"ack": list(sets), "maxEvents": 0})
    assert handed == jtis


def test_every_unique_key_includes_the_stream(db):
    rows = db.rows(
        "SELECT co.conrelid::regclass::text, co.conname,"
        " array_agg(a.attname::text ORDER BY a.attname)"
        " FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace"
        " JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = ANY (co.conkey)"
        " WHERE n.nspname = 'setstream' AND co.contype IN ('p', 'u')"
        " GROUP BY 1, 2")
    assert rows
    bad = [r for r in rows
           if "stream" not in r[2]
           and not (r[0] == "setstream.streams" and r[2] == ["name"])
           and not (r[0] == "setstream.receivers" and r[2] == ["name"])
           and not (r[0] == "setstream.receiver_tokens" and "receiver" in r[2])]
    assert bad == [], "unique keys without the stream: %r" % bad


def test_a_token_hash_is_unique_per_stream_only(db, streams):
    s1, s2 = streams.create(), streams.create()
    h = bytes(range(32))
    db.execute("INSERT INTO setstream.tokens (stream, token_hash) VALUES (%s, %s)",
               (s1.name, h))
    db.execute("INSERT INTO setstream.tokens (stream, token_hash) VALUES (%s, %s)",
               (s2.name, h))
    db.expect_error("23505", "INSERT INTO setstream.tokens (stream, token_hash)"
                    " VALUES (%s, %s)", (s1.name, h))


def test_no_foreign_key_cascades_updates(db):
    rows = db.rows("SELECT co.conrelid::regclass::text, co.conname, co.confupdtype"
                   " FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace"
                   " WHERE n.nspname = 'setstream' AND co.contype = 'f'")
    assert rows
    bad = [r for r in rows if r[2] != "a"]
    assert bad == [], "foreign keys with an ON UPDATE action: %r" % bad


# ---------------------------------------------------------------------------
# plans, read with auto_explain
# ---------------------------------------------------------------------------

def explained(db, sql, params=None):
    """Run sql; the JSON plans of every statement it ran (nested included)."""
    for stmt in ("LOAD 'auto_explain'",
                 "SET auto_explain.log_min_duration = 0",
                 "SET auto_explain.log_nested_statements = on",
                 "SET auto_explain.log_format = json",
                 "SET auto_explain.log_verbose = on",
                 "SET auto_explain.log_level = notice",
                 "SET client_min_messages = notice"):
        db.execute(stmt)
    del db.conn.notices[:]
    try:
        db.execute(sql, params)
    finally:
        db.execute("SET auto_explain.log_min_duration = -1")
        db.execute("SET client_min_messages = warning")
    plans = []
    for notice in db.conn.notices:
        if "plan:" not in notice:
            continue
        text = notice.split("plan:", 1)[1]
        plans.append(json.loads(text))
    return plans


def scans_of(node, relation):
    """The scans of relation under node, leaving out InitPlans and SubPlans."""
    found = []
    if node.get("Relation Name") == relation and "Scan" in node.get("Node Type", ""):
        found.append(node)
    for child in node.get("Plans", []):
        if child.get("Parent Relationship") in ("InitPlan", "SubPlan"):
            continue
        found.extend(scans_of(child, relation))
    return found


def conditions(node):
    return " ".join(str(node.get(k, "")) for k in
                    ("Filter", "Index Cond", "Recheck Cond", "TID Cond"))


def modifications(plans, relation):
    out = []
    for p in plans:
        top = p["Plan"]
        if top.get("Node Type") == "ModifyTable" and top.get("Relation Name") == relation:
            out.append((p.get("Query Text", ""), top))
    return out


def test_poll_modifies_the_outbox_by_stream(db, streams):
    s = streams.create()
    db.generate_key(s.name)
    first = db.emit(s.name)
    db.emit(s.name)
    plans = explained(db, "SELECT setstream.poll(%s, %s::jsonb)",
                      (s.name, json.dumps({"maxEvents": 1, "returnImmediately": True})))
    plans += explained(db, "SELECT setstream.poll(%s, %s::jsonb)",
                       (s.name, json.dumps({"ack": [first], "maxEvents": 1,
                                            "returnImmediately": True})))
    mods = modifications(plans, "outbox")
    assert len(mods) >= 2, [q for q, _ in mods]
    assert any("ctid" in q for q, _ in mods), "the take-due statement was not seen"
    for query, top in mods:
        scans = [n for c in top.get("Plans", [])
                 if c.get("Parent Relationship") not in ("InitPlan", "SubPlan")
                 for n in scans_of(c, "outbox")]
        assert scans, query
        for n in scans:
            assert "stream" in conditions(n), \
                "the modification selects outbox rows without the stream:\n%s\n%s" \
                % (query, json.dumps(n, indent=1))


def test_revoke_key_update_calls_no_function(db, streams):
    s = streams.create()
    kid = db.val("SELECT setstream.generate_key(%s)->>'kid'", (s.name,))
    plans = explained(db, "SELECT setstream.revoke_key(%s, %s)", (s.name, kid))
    mods = modifications(plans, "keys")
    assert len(mods) == 1, [q for q, _ in mods]
    query, top = mods[0]
    out = json.dumps(top)
    assert "clock_timestamp" not in out and "now()" not in out, \
        "a function in revoke_key's UPDATE: %s" % query
    assert db.val("SELECT revoked_at IS NOT NULL FROM setstream.keys"
                  " WHERE stream = %s AND kid = %s", (s.name, kid))


def test_distribute_without_citus(db):
    if db.val("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"):
        pytest.skip("Citus is installed here")
    db.expect_error("0A000", "SELECT setstream.distribute()", message="Citus")


def test_prepare_drop_without_citus(db):
    if db.val("SELECT count(*) FROM pg_extension WHERE extname = 'citus'"):
        pytest.skip("Citus is installed here")
    db.expect_error("0A000", "SELECT setstream.prepare_drop()", message="Citus")
    # nothing was dropped
    assert db.val("SELECT to_regclass('setstream.stats') IS NOT NULL")
