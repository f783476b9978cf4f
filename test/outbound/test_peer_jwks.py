"""Peer keys from a jwks_uri (issue 17): the sender fetches, the listener asks.

A JwksServer on 127.0.0.1 serves a JWK Set the test changes as it goes,
with a Cache-Control max-age, counts its requests, and can answer with an
error, a redirect, a body over the limit, a set with a private key or
something that is not a JWK Set.  The streams get their keys only from it
(alter_stream(..., peer_jwks_uri => ...)); SETs signed by the "peer" are
pushed to the real listener.
"""

import json
import threading
import time
import uuid

import pytest
from jwcrypto import jwk

from conftest import QuietHandler, send_answer, serve_http, wait_for
from listener_support import assert_error, jdump, sign

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


def new_key(kid):
    return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid)


def public(key):
    return json.loads(key.export_public())


class JwksServer:
    """Serves /jwks.json (GET); counts requests; scriptable failures."""

    def __init__(self, tls=None):
        self.keys = []             # jwcrypto keys whose public halves are served
        self.max_age = 3600        # None: no Cache-Control
        self.mode = "ok"           # ok, status:NNN, redirect, oversize, private, notjson
        self.requests = []         # monotonic times
        self.lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                with server.lock:
                    server.requests.append(time.monotonic())
                    mode, keys, max_age = server.mode, list(server.keys), server.max_age
                status, headers = 200, {"Content-Type": "application/jwk-set+json"}
                if max_age is not None:
                    headers["Cache-Control"] = "public, max-age=%d" % max_age
                body = jdump({"keys": [public(k) for k in keys]}).encode()
                if mode.startswith("status:"):
                    status, body = int(mode[7:]), b'{"error":"down"}'
                elif mode == "redirect":
                    status, body = 302, b""
                    headers["Location"] = "http://127.0.0.1:%d/jwks.json" % server.port
                elif mode == "oversize":
                    pad = [dict(public(keys[0]), kid="pad-%d" % i) for i in range(1000)]
                    body = jdump({"keys": pad}).encode()
                elif mode == "private":
                    body = jdump({"keys": [public(k) for k in keys] +
                                  [json.loads(new_key("leak").export_private())]}).encode()
                elif mode == "notjson":
                    body = b"<html>not a JWK Set</html>"
                send_answer(self, (status, headers, body))

        self.server, self.port, self.url, _ = serve_http(Handler, "/jwks.json", tls)

    def count(self):
        with self.lock:
            return len(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks():
    s = JwksServer()
    yield s
    s.close()


class PeerJwks:
    """Streams whose peer keys come from a jwks_uri."""

    def __init__(self, streams, db):
        self.streams = streams
        self.db = db

    def create(self, uri):
        s = self.streams.create(peer_algs=())
        self.db.execute("SELECT setstream.alter_stream(%s, peer_jwks_uri => %s)",
                        (s.name, uri))
        return s

    def state(self, s):
        rows = self.db.dicts("SELECT * FROM setstream.peer_jwks WHERE stream = %s",
                             (s.name,))
        return rows[0] if rows else None

    def keys(self, s, origin=None):
        return {r[0]: (r[1], r[2]) for r in self.db.rows(
            "SELECT kid, origin, jwk FROM setstream.keys WHERE stream = %s"
            " AND (%s IS NULL OR origin = %s) AND revoked_at IS NULL",
            (s.name, origin, origin))}

    def wait_fetched(self, s, n_before=0, timeout=15):
        return wait_for("a successful fetch of %s" % s.name,
                        lambda: (lambda st: st if st and st["fetched_at"] and
                                 st["keys"] > 0 and st["failures"] == 0 else None)(
                                     self.state(s)), timeout=timeout)

    def wait_failed(self, s, timeout=15):
        return wait_for("a failed fetch of %s" % s.name,
                        lambda: (lambda st: st if st and st["failures"] > 0 else None)(
                            self.state(s)), timeout=timeout)


@pytest.fixture
def peers(streams, db):
    return PeerJwks(streams, db)


def signed(s, key, kid=None):
    claims = s.claims()
    return claims["jti"], sign(key, "ES256", claims, kid or key.get("kid"))


def test_keys_are_fetched_from_the_jwks_uri_and_verify_pushed_sets(loopback, jwks, peers, client, db):
    a = new_key("key-a")
    jwks.keys = [a]
    jwks.max_age = 600
    s = peers.create(jwks.url)
    st = peers.wait_fetched(s)
    assert st["keys"] == 1 and st["last_status"] == 200 and st["uri"] == jwks.url
    # expires_at: the max-age of the answer
    age = (st["expires_at"] - st["fetched_at"]).total_seconds()
    assert 599 <= age <= 601, age
    assert st["next_fetch_at"] == st["expires_at"]
    keys = peers.keys(s)
    assert list(keys) == ["key-a"] and keys["key-a"][0] == "jwks_uri"
    jti, token = signed(s, a)
    r = client.push(s, token)
    assert r.status_code == 202, r.text
    assert db.events(s.name, jti)
    assert jwks.count() == 1


def test_a_rotated_key_gets_503_with_retry_after_then_202_after_the_refetch(loopback, jwks, peers, client, db):
    loopback.set(jwks_refetch_interval="4")
    a, b, c = new_key("rot-a"), new_key("rot-b"), new_key("rot-c")
    jwks.keys = [a]
    s = peers.create(jwks.url)
    peers.wait_fetched(s)
    assert jwks.count() == 1
    # the peer rotates: its JWK Set now has b; a SET signed with b arrives
    jwks.keys = [b]
    jti, token = signed(s, b)
    t_ask = time.monotonic()
    r = client.push(s, token)
    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After") == "2"
    assert "invalid_key" not in r.text
    # the refetch: the same SET goes through once its key is there
    status = wait_for("a 202 after the refetch",
                      lambda: (lambda r: r.status_code if r.status_code == 202 else None)(
                          client.push(s, token)), timeout=10, interval=0.2)
    assert status == 202
    assert db.events(s.name, jti)
    assert jwks.count() == 2
    assert list(peers.keys(s)) == ["rot-b"], "a refetch keeps only the set's keys"
    # a kid the set does not have, within the refetch interval: invalid_key,
    # and no request to the peer
    _, token_c = signed(s, c)
    r = client.push(s, token_c)
    assert_error(r, 400, "invalid_key")
    time.sleep(1.0)
    assert jwks.count() == 2, "a refetch inside setstream.jwks_refetch_interval"
    # after the interval, one more refetch (503 meanwhile), then invalid_key
    time.sleep(max(0.0, t_ask + 4.5 - time.monotonic()))
    r = client.push(s, token_c)
    assert r.status_code == 503, r.text
    wait_for("the second refetch", lambda: jwks.count() == 3)
    # (a list: a Response of a 400 is false)
    final = wait_for("invalid_key after the refetch",
                     lambda: (lambda r: [r] if r.status_code == 400 else None)(
                         client.push(s, token_c)), timeout=10, interval=0.2)
    assert_error(final[0], 400, "invalid_key")
    time.sleep(0.5)
    assert jwks.count() == 3


def test_max_age_is_honoured(loopback, jwks, peers, db):
    loopback.set(jwks_min_cache_time="1")
    a, b = new_key("age-a"), new_key("age-b")
    jwks.keys = [a]
    jwks.max_age = 2
    s = peers.create(jwks.url)
    st = peers.wait_fetched(s)
    assert abs((st["expires_at"] - st["fetched_at"]).total_seconds() - 2) < 0.01
    t0 = time.monotonic()
    # the next fetch comes when the set expires, with no SET asking for it
    jwks.keys = [b]
    wait_for("the keys of the refetch", lambda: list(peers.keys(s)) == ["age-b"], timeout=10)
    n = jwks.count()
    assert n == 2
    assert jwks.requests[1] - jwks.requests[0] >= 1.9
    # over ~5 s: a fetch every ~2 s, never more often
    time.sleep(5)
    n5 = jwks.count() - n
    assert 1 <= n5 <= 3, n5
    gaps = [y - x for x, y in zip(jwks.requests, jwks.requests[1:])]
    assert min(gaps) >= 1.8, gaps
    # without max-age: an hour
    jwks.max_age = None
    wait_for("a fetch without max-age",
             lambda: (lambda st: st if (st["expires_at"] - st["fetched_at"]).total_seconds() > 3000
                      else None)(peers.state(s)), timeout=10)
    del t0


@pytest.mark.parametrize("mode,needle", [
    ("status:500", "HTTP 500"),
    ("status:404", "HTTP 404"),
    ("redirect", "HTTP 302"),
    ("notjson", "not a JWK Set"),
    ("oversize", "larger than"),
    ("private", "private"),
])
def test_a_failed_refetch_keeps_the_keys_and_is_recorded(loopback, jwks, peers, client, db, mode, needle):
    loopback.set(jwks_min_cache_time="1")
    a = new_key("keep-a")
    jwks.keys = [a]
    jwks.max_age = 1
    s = peers.create(jwks.url)
    peers.wait_fetched(s)
    before = peers.keys(s)
    n = jwks.count()
    jwks.mode = mode
    st = peers.wait_failed(s)
    assert needle in st["last_error"], st["last_error"]
    assert st["last_error_at"] is not None
    if mode.startswith("status:"):
        assert st["last_status"] == int(mode[7:])
    elif mode == "redirect":
        assert st["last_status"] == 302     # not followed
    else:
        assert st["last_status"] in (0, 200)
    assert peers.keys(s) == before, "a failed fetch changed the keys"
    assert jwks.count() > n
    # the old key still verifies
    _, token = signed(s, a)
    assert client.push(s, token).status_code == 202
    if mode != "status:500":
        return
    loopback.set(max_backoff="5000")     # the backoff: 5 s, then 5 s (+-20%)
    # retried with backoff: the second failure comes after the first's 5 s (+-20%)
    t_first = jwks.requests[n]
    st2 = wait_for("a second failure", lambda: (lambda st: st if st["failures"] >= 2 else None)(
        peers.state(s)), timeout=15)
    assert jwks.requests[n + 1] - t_first >= 3.9
    # and it recovers
    jwks.mode = "ok"
    st3 = peers.wait_fetched(s, timeout=30)
    assert st3["failures"] == 0 and st3["last_error"] == st2["last_error"]


def test_a_jwks_uri_whose_certificate_does_not_verify_gives_no_keys(loopback, certificate, peers, db):
    server = JwksServer(tls=certificate)
    try:
        server.keys = [new_key("tls-a")]
        s = peers.create(server.url)
        st = peers.wait_failed(s)
        assert st["last_status"] == 0
        assert "certificate" in st["last_error"].lower(), st["last_error"]
        assert peers.keys(s) == {}
        # trusting it lets the fetch through
        loopback.set(outbound_ca_file=certificate[0])
        peers.wait_fetched(s, timeout=30)
        assert list(peers.keys(s)) == ["tls-a"]
    finally:
        server.close()


def test_a_jwks_uri_outside_the_allowed_networks_is_not_fetched(jwks, peers, db, gucs):
    gucs.set(outbound_allowed_networks="")
    jwks.keys = [new_key("net-a")]
    s = peers.create(jwks.url)
    st = peers.wait_failed(s)
    assert "not allowed" in st["last_error"], st["last_error"]
    assert jwks.count() == 0
    assert peers.keys(s) == {}


def test_add_key_keys_are_left_alone_and_clearing_the_uri_drops_fetched_keys(loopback, jwks, peers, db):
    mine, theirs, other = new_key("same-kid"), new_key("same-kid"), new_key("other")
    s = peers.create("http://127.0.0.1:1/none.json")
    manual = dict(public(mine))
    db.val("SELECT setstream.add_key(%s, %s::jsonb)", (s.name, jdump(manual)))
    jwks.keys = [theirs, other]
    db.execute("SELECT setstream.alter_stream(%s, peer_jwks_uri => %s)", (s.name, jwks.url))
    wait_for("the fetched key", lambda: "other" in peers.keys(s))
    keys = peers.keys(s)
    assert keys["same-kid"][0] == "sql"
    assert keys["same-kid"][1]["x"] == manual["x"], "a fetched key replaced add_key's"
    # other settings left as they are by alter_stream
    assert db.val("SELECT peer_jwks_uri FROM setstream.streams WHERE name = %s",
                  (s.name,)) == jwks.url
    db.execute("SELECT setstream.alter_stream(%s, profile => 'ssf')", (s.name,))
    assert db.val("SELECT peer_jwks_uri FROM setstream.streams WHERE name = %s",
                  (s.name,)) == jwks.url
    db.execute("SELECT setstream.alter_stream(%s, peer_jwks_uri => '')", (s.name,))
    assert db.val("SELECT peer_jwks_uri FROM setstream.streams WHERE name = %s",
                  (s.name,)) is None
    assert list(peers.keys(s)) == ["same-kid"]


def test_alter_stream_refuses_a_peer_jwks_uri_that_is_not_a_url(peers, db):
    import psycopg2
    s = peers.streams.create(peer_algs=())
    with pytest.raises(psycopg2.errors.InvalidParameterValue):
        db.execute("SELECT setstream.alter_stream(%s, peer_jwks_uri => 'file:///etc/passwd')",
                   (s.name,))


def test_pushpull_leaves_a_set_with_a_pending_key_unacknowledged(loopback, jwks, peers, client, db):
    loopback.set(jwks_refetch_interval="3")
    a, b = new_key("pp-a"), new_key("pp-b")
    jwks.keys = [a]
    s = peers.create(jwks.url)
    peers.wait_fetched(s)
    jwks.keys = [a, b]
    jti_a, tok_a = signed(s, a)
    jti_b, tok_b = signed(s, b)
    r = client.pushpull(s, {"sets": {jti_a: tok_a, jti_b: tok_b}, "returnImmediately": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == [jti_a]
    assert jti_b not in body["setErrs"], "a SET whose key is being fetched got a setErr"
    # the peer sends it again once the key is there
    wait_for("the refetch", lambda: "pp-b" in peers.keys(s))
    r = client.pushpull(s, {"sets": {jti_b: tok_b}, "returnImmediately": True})
    assert r.json()["ack"] == [jti_b], r.text


def test_pushpull_websocket_leaves_a_set_with_a_pending_key_unacknowledged(loopback, jwks, peers, db):
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "protocol"))
    import wsutil
    loopback.set(jwks_refetch_interval="3")
    a, b = new_key("ws-a"), new_key("ws-b")
    jwks.keys = [a]
    s = peers.create(jwks.url)
    s.path = "/streams/%s/pushpull" % s.name
    peers.wait_fetched(s)
    jwks.keys = [a, b]
    jti_a, tok_a = signed(s, a)
    jti_b, tok_b = signed(s, b)

    async def go():
        async with wsutil.connect(s) as ws:
            peer = wsutil.Peer(ws)
            await peer.send({"sets": {jti_a: tok_a, jti_b: tok_b}})
            await peer.wait_answered([jti_a])
            await peer.quiet(1.0)
            first = (list(peer.acks), dict(peer.set_errs))
            # the peer sends it again once the key is there
            wait_for("the refetch", lambda: "ws-b" in peers.keys(s))
            await peer.send({"sets": {jti_b: tok_b}})
            await peer.wait_answered([jti_b])
            return first, peer

    (acks, errs), peer = wsutil.run(go())
    assert acks == [jti_a] and errs == {}, (acks, errs)
    assert jti_b in peer.acks and jti_b not in peer.set_errs


def receive_sql(db, s, token):
    """setstream.receive(): (jti, None) when stored, (None, SQLSTATE) when raised."""
    import psycopg2
    try:
        return db.val("SELECT setstream.receive(%s, %s)", (s.name, token)), None
    except psycopg2.Error as e:
        return None, e.pgcode


def test_sql_receive_asks_for_the_refetch_and_raises_key_pending(loopback, jwks, peers, streams, db):
    """receive() in SQL does what the listener does with an unknown kid:
    asks for a refetch, raises SE008 (not invalid_key) while it is pending,
    stores the SET once the key is there; invalid_key within the refetch
    interval.  The stream is made by create_stream(peer_jwks_uri => ...)."""
    from listener_support import Stream
    loopback.set(jwks_refetch_interval="4")
    a, b, c = new_key("sql-a"), new_key("sql-b"), new_key("sql-c")
    jwks.keys = [a]
    name = "pt-sql-" + uuid.uuid4().hex[:12]
    s = Stream(name, "https://db.example.com/" + name, ["https://receiver.example.com/" + name],
               "https://idp.example.com/" + name)
    row = db.dicts("SELECT * FROM setstream.create_stream(%s, %s, %s::text[], %s,"
                   " peer_jwks_uri => %s)", (name, s.issuer, s.audience, s.peer_issuer, jwks.url))
    streams.created.append(name)
    assert row[0]["peer_jwks_uri"] == jwks.url
    peers.wait_fetched(s)
    assert list(peers.keys(s)) == ["sql-a"]
    jti_a, tok_a = signed(s, a)
    assert receive_sql(db, s, tok_a) == (jti_a, None)
    assert jwks.count() == 1
    # the peer rotates; a SET signed with its new key is received in SQL
    jwks.keys = [b]
    jti, token = signed(s, b)
    assert receive_sql(db, s, token) == (None, "SE008")
    assert not db.events(s.name, jti)
    assert db.val("SELECT setstream.error_code('SE008')") is None
    # tried again, it is stored once the refetch brought the key
    got = wait_for("receive() after the refetch",
                   lambda: (lambda r: r if r[0] else None)(receive_sql(db, s, token)),
                   timeout=10, interval=0.2)
    assert got == (jti, None)
    assert db.events(s.name, jti)
    assert jwks.count() == 2
    # a kid the set does not have, within the refetch interval: invalid_key,
    # and no request to the peer
    _, token_c = signed(s, c)
    assert receive_sql(db, s, token_c) == (None, "SE002")
    time.sleep(1.0)
    assert jwks.count() == 2, "a refetch inside setstream.jwks_refetch_interval"


def test_sql_receive_on_a_stream_without_peer_jwks_uri_is_invalid_key(peers, db):
    """An unknown kid on a stream whose keys are its own (add_key) is
    invalid_key at once: no refetch to wait for."""
    s = peers.streams.create(peer_algs=("ES256",))
    _, token = signed(s, new_key("nowhere"))
    assert receive_sql(db, s, token) == (None, "SE002")


def test_streams_whose_names_share_a_slot_share_the_refetch(loopback, jwks, peers, streams, db):
    """The README's query names the streams that share a refetch slot
    (hashtext(name) & 1023): an unknown kid on one refetches the other's JWK
    Set too, and within the interval the other's unknown kid is invalid_key
    at once; a stream in another slot asks for its own refetch."""
    from listener_support import Stream
    loopback.set(jwks_refetch_interval="30")
    prefix = "pt-slot-" + uuid.uuid4().hex[:8] + "-"
    # two names in one slot, and one in another
    a_name, b_name = db.rows(
        "SELECT n FROM (SELECT %s || i AS n FROM generate_series(1, 5000) i) x"
        " WHERE hashtext(n COLLATE \"C\") & 1023 = (SELECT hashtext((%s || 1) COLLATE \"C\") & 1023)"
        " ORDER BY n LIMIT 2", (prefix, prefix))
    c_name = prefix + "other"
    assert db.val("SELECT hashtext(%s COLLATE \"C\") & 1023 <> hashtext(%s COLLATE \"C\") & 1023",
                  (c_name, a_name[0]))
    other = JwksServer()
    third = JwksServer()
    try:
        made = []
        for (name,), server in ((a_name, jwks), (b_name, other), ((c_name,), third)):
            s = Stream(name, "https://db.example.com/" + name, ["https://receiver.example.com/" + name],
                       "https://idp.example.com/" + name)
            server.keys = [new_key(name + "-k1")]
            db.execute("SELECT setstream.create_stream(%s, %s, %s::text[], %s, peer_jwks_uri => %s)",
                       (name, s.issuer, s.audience, s.peer_issuer, server.url))
            streams.created.append(name)
            made.append((s, server))
        for s, _ in made:
            peers.wait_fetched(s)
        (a, _), (b, _), (c, _) = made
        assert (jwks.count(), other.count(), third.count()) == (1, 1, 1)
        # an unknown kid on a: a's set is refetched, and b's with it
        _, tok = signed(a, new_key("a-unknown"))
        assert receive_sql(db, a, tok) == (None, "SE008")
        wait_for("a's refetch", lambda: jwks.count() == 2)
        wait_for("b's refetch, asked for by a", lambda: other.count() == 2)
        # b's rotation within the interval: invalid_key at once, no refetch
        wait_for("the request done", lambda: receive_sql(db, a, tok)[1] == "SE002")
        _, tok_b = signed(b, new_key("b-unknown"))
        assert receive_sql(db, b, tok_b) == (None, "SE002")
        # c, in a slot of its own, asks for its own refetch
        _, tok_c = signed(c, new_key("c-unknown"))
        assert receive_sql(db, c, tok_c) == (None, "SE008")
        wait_for("c's refetch", lambda: third.count() == 2)
        time.sleep(0.5)
        assert (jwks.count(), other.count()) == (2, 2)
    finally:
        other.close()
        third.close()
