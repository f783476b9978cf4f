"""Writes to streams, keys and tokens that do not go through setstream's
functions still drop the listener's caches:

  * under session_replication_role = replica (logical replication's apply
    worker, some restore tools) the config_changed triggers fire too
    (ENABLE ALWAYS): a token revoked that way opens nothing any more, a
    stream made to refuse inbound SETs refuses them, a disabled one
    delivers nothing;
  * with the triggers disabled (ALTER TABLE ... DISABLE TRIGGER, as
    pg_restore --disable-triggers does) they cannot: the README's operator
    action, an UPDATE of setstream.streams that changes no row, makes every
    listener drop its cache.
"""

import contextlib

import listener_support as ls


@contextlib.contextmanager
def session(**settings):
    conn = ls.connect_db(autocommit=False)
    try:
        with conn.cursor() as cur:
            for k, v in settings.items():
                cur.execute("SET %s = %s" % (k, v))
            yield cur
        conn.commit()
    finally:
        conn.close()


def test_replica_role_revoke_closes_the_stream(client, streams):
    s = streams.create()
    assert client.poll(s).status_code == 200  # stream and token cached
    with session(session_replication_role="replica") as cur:
        cur.execute("UPDATE setstream.tokens SET revoked_at = now() WHERE stream = %s",
                    (s.name,))
        assert cur.rowcount == 1
    r = client.poll(s)
    assert r.status_code == 401, "a token revoked under session_replication_role = " \
        "replica still opens the stream: %d %s" % (r.status_code, r.text)


def test_replica_role_refuse_inbound_refuses(client, streams):
    s = streams.create()
    _, token = s.set()
    assert client.push(s, token).status_code == 202  # stream cached
    with session(session_replication_role="replica") as cur:
        cur.execute("UPDATE setstream.streams SET inbound = 'refuse' WHERE name = %s",
                    (s.name,))
        assert cur.rowcount == 1
    _, token = s.set()
    ls.assert_error(client.push(s, token), 400, "access_denied")


def test_replica_role_disable_stops_polls(client, db, streams):
    s = streams.create(signing_alg="ES256")
    jti = db.emit(s.name)
    assert client.poll(s, {"returnImmediately": True, "maxEvents": 0}).status_code == 200
    with session(session_replication_role="replica") as cur:
        cur.execute("UPDATE setstream.streams SET status = 'disabled' WHERE name = %s",
                    (s.name,))
        assert cur.rowcount == 1
    r = client.poll(s, {"returnImmediately": True})
    assert r.json() == {"sets": {}, "moreAvailable": False}, \
        "a stream disabled under session_replication_role = replica still delivers %s" % jti


def test_disabled_triggers_and_the_operator_action(db, client, streams):
    s = streams.create()
    assert client.poll(s).status_code == 200
    db.execute("ALTER TABLE setstream.tokens DISABLE TRIGGER config_changed")
    try:
        db.execute("UPDATE setstream.tokens SET revoked_at = now() WHERE stream = %s",
                   (s.name,))
    finally:
        db.execute("ALTER TABLE setstream.tokens ENABLE ALWAYS TRIGGER config_changed")
    # the documented action after such writes (README, "Writes that bypass
    # triggers"): a statement on setstream.streams that changes nothing
    db.execute("UPDATE setstream.streams SET name = name WHERE false")
    r = client.poll(s)
    assert r.status_code == 401, (r.status_code, r.text)
