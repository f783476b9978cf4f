"""setstream as an SSF receiver (issue 13, Receiver part): subscribe,
unsubscribe and request_verification.

setstream subscribes to setstream: a stream of this database subscribes,
over real HTTP through the listener, to this same database's SSF
transmitter (its discovery document, /ssf/streams), in poll and in push
mode, and the SETs emitted on the stream the transmitter made arrive on
the subscribed stream, verified with the keys of the transmitter's
jwks_uri.  The error cases run against a fake transmitter (a Python HTTP
server in the test) that answers with a wrong issuer or a wrong iss.
"""

import http.server
import json
import threading
import time
import urllib.parse
import uuid

import psycopg2
import pytest

from listener_support import URL, peer_key, public_jwk, sign

CREDENTIAL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


def wait_for(what, pred, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


@pytest.fixture
def sub_env(receivers, transmitter, db):
    """a receiver of this database's transmitter, outbound to loopback"""
    transmitter.set(outbound_allowed_networks="127.0.0.0/8")
    aud = "https://rp.example/aud-" + uuid.uuid4().hex[:8]
    name = receivers.create(audience=[aud])
    token = receivers.token(name)
    made = []
    yield name, token, aud, made
    for s in made:
        db.execute("DELETE FROM setstream.streams WHERE name = %s", (s,))


def new_name(made):
    s = "sub-" + uuid.uuid4().hex[:12]
    made.append(s)
    return s


def remote_streams(db, receiver):
    return [r[0] for r in db.rows("SELECT name FROM setstream.streams WHERE receiver = %s",
                                  (receiver,))]


@pytest.mark.parametrize("delivery", ["poll", "push"])
def test_subscribe_to_ourselves(db, sub_env, delivery):
    receiver, token, aud, made = sub_env
    b = new_name(made)
    db.execute("SELECT setstream.subscribe(%s, %s, %s, %s::text[], %s::jsonb)",
               (b, URL, delivery, [SESSION_REVOKED], json.dumps({"bearer": token})))
    sub = db.dicts("SELECT * FROM setstream.subscriptions WHERE stream = %s", (b,))[0]
    remote = remote_streams(db, receiver)
    made.extend(remote)
    assert remote == [sub["remote_stream_id"]]
    assert sub["transmitter_issuer"] == URL and sub["delivery"] == delivery
    assert sub["aud"] == [aud] and sub["jwks_uri"] == URL + "/jwks.json"
    assert sub["configuration_endpoint"] == URL + "/ssf/streams"
    assert sub["events_delivered"] == [SESSION_REVOKED]
    row = db.dicts("SELECT issuer, peer_issuer, peer_jwks_uri FROM setstream.streams "
                   "WHERE name = %s", (b,))[0]
    assert row == {"issuer": aud, "peer_issuer": URL, "peer_jwks_uri": URL + "/jwks.json"}
    sid = sub["remote_stream_id"]
    d = db.dicts("SELECT method, endpoint_url FROM setstream.deliveries WHERE stream = %s",
                 (sid,))
    if delivery == "push":
        assert d == [{"method": "push", "endpoint_url": URL + "/streams/%s/events" % b}]
        assert db.val("SELECT count(*) FROM setstream.sources WHERE stream = %s", (b,)) == 0
    else:
        assert db.val("SELECT endpoint_url FROM setstream.sources WHERE stream = %s",
                      (b,)) == URL + "/streams/%s/poll" % sid
    # the credentials are the owner's only: not in any column a reader sees
    assert token not in json.dumps(sub, default=str)

    jti = db.emit(sid)
    wait_for("the SET on %s" % b, lambda: len(db.events(b, jti)) == 1)
    ev = db.events(b, jti)[0]
    assert ev["iss"] == URL

    # unsubscribe deletes the stream at the transmitter
    db.execute("SELECT setstream.unsubscribe(%s)", (b,))
    assert remote_streams(db, receiver) == []
    assert db.val("SELECT count(*) FROM setstream.subscriptions WHERE stream = %s", (b,)) == 0
    assert db.val("SELECT count(*) FROM setstream.subscription_secrets WHERE stream = %s",
                  (b,)) == 0
    assert db.val("SELECT count(*) FROM setstream.sources WHERE stream = %s", (b,)) == 0
    assert db.val("SELECT count(*) FROM setstream.tokens WHERE stream = %s "
                  "AND revoked_at IS NULL", (b,)) == 0


@pytest.mark.parametrize("delivery", ["poll", "push"])
def test_read_update_replace_status_delete_at_our_transmitter(db, sub_env, delivery):
    """What the receiver-happypath and receiver-stream-status-update
    modules of the suite wait for: create, read, update (PATCH), replace
    (PUT), status read and change, delete of the same stream_id, here
    against this cluster's own transmitter"""
    receiver, token, aud, made = sub_env
    b = new_name(made)
    db.execute("SELECT setstream.subscribe(%s, %s, %s, %s::text[], %s::jsonb)",
               (b, URL, delivery, [SESSION_REVOKED], json.dumps({"bearer": token})))
    sid = db.val("SELECT remote_stream_id FROM setstream.subscriptions WHERE stream = %s", (b,))
    made.append(sid)

    def remote(col):
        return db.val("SELECT %s FROM setstream.streams WHERE name = %%s" % col, (sid,))
    cfg = json.loads(db.val("SELECT setstream.subscription_config(%s)::text", (b,)))
    assert cfg["stream_id"] == sid and cfg["iss"] == URL
    assert cfg["events_delivered"] == [SESSION_REVOKED]
    # update: only the members given change there
    cfg = json.loads(db.val("SELECT setstream.update_subscription(%s, %s::jsonb)::text",
                            (b, json.dumps({"description": "patched",
                                            "events_requested": [SESSION_REVOKED,
                                                                 CREDENTIAL_CHANGE]}))))
    assert cfg["description"] == "patched"
    assert remote("description") == "patched"
    assert remote("events_requested") == [SESSION_REVOKED, CREDENTIAL_CHANGE]
    sub = db.dicts("SELECT * FROM setstream.subscriptions WHERE stream = %s", (b,))[0]
    assert sub["events_requested"] == [SESSION_REVOKED, CREDENTIAL_CHANGE]
    assert sub["events_delivered"] == [SESSION_REVOKED, CREDENTIAL_CHANGE]
    old_token = sub["push_token_id"]
    # replace: what is left out is removed; the delivery stays ours
    cfg = json.loads(db.val("SELECT setstream.update_subscription(%s, %s::jsonb, true)::text",
                            (b, json.dumps({"events_requested": [SESSION_REVOKED]}))))
    assert "description" not in cfg and remote("description") is None
    assert cfg["events_delivered"] == [SESSION_REVOKED]
    d = db.dicts("SELECT method, endpoint_url FROM setstream.deliveries WHERE stream = %s",
                 (sid,))
    if delivery == "push":
        assert d == [{"method": "push", "endpoint_url": URL + "/streams/%s/events" % b}]
        new_token = db.val("SELECT push_token_id FROM setstream.subscriptions WHERE stream = %s",
                           (b,))
        assert new_token != old_token
        assert db.val("SELECT revoked_at IS NOT NULL FROM setstream.tokens WHERE id = %s",
                      (old_token,))
        assert db.val("SELECT count(*) FROM setstream.tokens WHERE stream = %s "
                      "AND revoked_at IS NULL", (b,)) == 1
    else:
        assert d in ([], [{"method": "poll", "endpoint_url": None}])
    # the SETs still arrive, with the new push token
    jti = db.emit(sid)
    wait_for("the SET on %s" % b, lambda: len(db.events(b, jti)) == 1)
    # status: read, pause, enable
    st = json.loads(db.val("SELECT setstream.subscription_status(%s)::text", (b,)))
    assert st["status"] == "enabled"
    st = json.loads(db.val("SELECT setstream.set_subscription_status(%s, 'paused', 'maintenance')"
                           "::text", (b,)))
    assert st["status"] == "paused"
    assert remote("status") == "paused"
    sub = db.dicts("SELECT * FROM setstream.subscriptions WHERE stream = %s", (b,))[0]
    assert (sub["transmitter_status"], sub["transmitter_status_reason"]) == \
        ("paused", "maintenance")
    db.val("SELECT setstream.set_subscription_status(%s, 'enabled')", (b,))
    assert remote("status") == "enabled"
    # delete
    db.execute("SELECT setstream.unsubscribe(%s)", (b,))
    assert remote_streams(db, receiver) == []


def test_update_subscription_refusals(db, sub_env):
    receiver, token, aud, made = sub_env
    b = new_name(made)
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (b, URL, json.dumps({"bearer": token})))
    made.extend(remote_streams(db, receiver))
    before = db.val("SELECT setstream.subscription_config(%s)::text", (b,))
    for sql, args, code in [
            ("SELECT setstream.update_subscription(%s, %s::jsonb)",
             (b, json.dumps({"delivery": {"method": "urn:ietf:rfc:8935"}})), "22023"),
            ("SELECT setstream.update_subscription(%s, %s::jsonb)", (b, "[]"), "22023"),
            ("SELECT setstream.update_subscription(%s, %s::jsonb)",
             (b, json.dumps({"description": 7})), "22023"),
            ("SELECT setstream.update_subscription(%s, %s::jsonb)",
             (b, json.dumps({"events_requested": [1]})), "22023"),
            ("SELECT setstream.update_subscription(%s, NULL)", (b,), "22023"),
            ("SELECT setstream.set_subscription_status(%s, 'asleep')", (b,), "22023"),
            ("SELECT setstream.subscription_config(%s)", ("not-subscribed-" + b,), "42704"),
            ("SELECT setstream.subscription_status(%s)", ("not-subscribed-" + b,), "42704")]:
        with pytest.raises(psycopg2.Error) as e:
            db.execute(sql, args)
        assert e.value.pgcode == code, (sql, args, e.value)
    assert db.val("SELECT setstream.subscription_config(%s)::text", (b,)) == before
    # the transmitter refusing a change (a transmitter-supplied member): 08P01, nothing changed
    sid = remote_streams(db, receiver)[0]
    db.execute("DELETE FROM setstream.streams WHERE name = %s", (sid,))
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.update_subscription(%s, %s::jsonb)",
                   (b, json.dumps({"description": "x"})))
    assert e.value.pgcode == "08P01" and "HTTP 404" in str(e.value)


def test_subscribe_twice_refused(db, sub_env):
    receiver, token, aud, made = sub_env
    b = new_name(made)
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (b, URL, json.dumps({"bearer": token})))
    made.extend(remote_streams(db, receiver))
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                   (b, URL, json.dumps({"bearer": token})))
    assert e.value.pgcode == "42710"
    assert len(remote_streams(db, receiver)) == 1


def test_wrong_bearer_refused_nothing_kept(db, sub_env):
    receiver, token, aud, made = sub_env
    b = new_name(made)
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                   (b, URL, json.dumps({"bearer": "ssr_wrong"})))
    assert e.value.pgcode == "08P01" and "HTTP 401" in str(e.value)
    assert "ssr_wrong" not in str(e.value)
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (b,)) == 0
    assert remote_streams(db, receiver) == []


def test_bad_arguments(db, sub_env):
    receiver, token, aud, made = sub_env
    b = new_name(made)
    for args, code in [((b, URL, "carrier-pigeon", None), "22023"),
                       ((b, "ftp://x", "poll", None), "22023"),
                       ((b, URL, "poll", '{"bearer": 1}'), "22023"),
                       ((b, URL, "poll", '{"client_id": "a", "private_key_jwk": []}'), "22023")]:
        with pytest.raises(psycopg2.Error) as e:
            db.execute("SELECT setstream.subscribe(%s, %s, %s, NULL, %s::jsonb)", args)
        assert e.value.pgcode == code, (args, e.value)
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.unsubscribe(%s)", (b,))
    assert e.value.pgcode == "42704"


# ---------------------------------------------------------------------
# A fake transmitter for the error cases
# ---------------------------------------------------------------------

class FakeTransmitter:
    def __init__(self):
        self.requests = []
        self.issuer_override = None
        self.iss_override = None
        self.verification_status = 204
        self.valid_tokens = None    # a set: /streams and /verify want one of them
        self.issued = 0
        self.expires_in = 3600      # of the access tokens /token gives
        self.born = {}              # access token: when /token gave it
        self.expire = False         # a token older than expires_in is refused
        self.serve_polls = False    # else /poll/... is 404 whatever the token
        self.polls = []             # (Authorization, status) of each poll
        self.token_status = 200     # else /token fails with it (counted in token_tries)
        self.token_tries = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, obj=None):
                body = b"" if obj is None else json.dumps(obj).encode()
                self.send_response(status)
                if obj is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _record(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                fake.requests.append((self.command, self.path,
                                      self.headers.get("Authorization"), body))
                return body

            def do_GET(self):
                self._record()
                if self.path == "/.well-known/oauth-authorization-server":
                    self._send(200, {"issuer": fake.url, "token_endpoint": fake.url + "/token"})
                elif self.path == "/jwks.json":
                    k = dict(public_jwk(peer_key("ES256", 3)), kid="fake-k1", alg="ES256",
                             use="sig")
                    self._send(200, {"keys": [k]})
                elif self.path.startswith("/.well-known/ssf-configuration"):
                    self._send(200, {
                        "issuer": fake.issuer_override or fake.url,
                        "jwks_uri": fake.url + "/jwks.json",
                        "configuration_endpoint": fake.url + "/streams",
                        "verification_endpoint": fake.url + "/verify",
                        "delivery_methods_supported": ["urn:ietf:rfc:8936"]})
                else:
                    self._send(404, {"error": "no"})

            def _authorized(self):
                if fake.valid_tokens is None:
                    return True
                a = self.headers.get("Authorization") or ""
                if a.startswith("Bearer ") and a[7:] in fake.valid_tokens and not (
                        fake.expire and
                        time.monotonic() - fake.born[a[7:]] >= fake.expires_in):
                    return True
                self._send(401, {"error": "invalid_token"})
                return False

            def do_POST(self):
                body = self._record()
                if self.path == "/token" and fake.token_status != 200:
                    fake.token_tries += 1
                    self._send(fake.token_status, {"error": "temporarily_unavailable"})
                    return
                if self.path == "/token":
                    fake.issued += 1
                    tok = "at-%d" % fake.issued
                    fake.born[tok] = time.monotonic()
                    fake.valid_tokens = (fake.valid_tokens or set()) | {tok}
                    self._send(200, {"access_token": tok, "token_type": "Bearer",
                                     "expires_in": fake.expires_in})
                    return
                if self.path.startswith("/poll/"):
                    self._poll()
                    return
                if not self._authorized():
                    return
                if self.path == "/streams":
                    fake.create_body = json.loads(body)
                    self._send(201, {
                        "stream_id": "fake-1", "iss": fake.iss_override or fake.url,
                        "aud": "https://rp.example/fake",
                        "delivery": fake.create_body["delivery"]
                        if fake.create_body["delivery"]["method"].endswith("8935") else
                        {"method": "urn:ietf:rfc:8936",
                         "endpoint_url": fake.url + "/poll/fake-1"}})
                elif self.path == "/verify":
                    fake.verify_body = json.loads(body)
                    self._send(fake.verification_status)
                else:
                    self._send(404, {"error": "no"})

            def _poll(self):
                """RFC 8936: a long poll that finds nothing (0.3 s)"""
                auth = self.headers.get("Authorization")
                if not fake.serve_polls:
                    fake.polls.append((auth, 404))
                    self._send(404, {"error": "no"})
                elif self._authorized():
                    time.sleep(0.3)
                    fake.polls.append((auth, 200))
                    self._send(200, {"sets": {}})
                else:
                    fake.polls.append((auth, 401))

            def do_DELETE(self):
                self._record()
                if self._authorized():
                    self._send(204)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(gucs):
    gucs.set(outbound_allowed_networks="127.0.0.0/8")
    f = FakeTransmitter()
    yield f
    f.close()


@pytest.fixture
def name(db):
    s = "sub-" + uuid.uuid4().hex[:12]
    yield s
    db.execute("DELETE FROM setstream.streams WHERE name = %s", (s,))


def test_discovery_with_wrong_issuer_refused(db, fake, name):
    fake.issuer_override = "https://evil.example"
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                   (name, fake.url, json.dumps({"bearer": "t0k"})))
    assert e.value.pgcode == "08P01" and "https://evil.example" in str(e.value)
    # nothing was created at the transmitter, nothing kept here
    assert [r[0] for r in fake.requests] == ["GET"]
    assert fake.requests[0][2] is None  # discovery goes without credentials
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (name,)) == 0


def test_discovery_path_inserted(db, fake, name):
    fake_issuer = fake.url + "/tenant/a"
    with pytest.raises(psycopg2.Error):
        db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                   (name, fake_issuer, json.dumps({"bearer": "t0k"})))
    assert fake.requests[0][1] == "/.well-known/ssf-configuration/tenant/a"


def test_stream_with_wrong_iss_refused_and_deleted(db, fake, name):
    fake.iss_override = "https://evil.example"
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                   (name, fake.url, json.dumps({"bearer": "t0k"})))
    assert e.value.pgcode == "08P01" and "deleted" in str(e.value.pgerror) + str(e.value)
    methods = [(r[0], r[1], r[2]) for r in fake.requests]
    assert methods == [("GET", "/.well-known/ssf-configuration", None),
                       ("POST", "/streams", "Bearer t0k"),
                       ("DELETE", "/streams?stream_id=fake-1", "Bearer t0k")]
    assert db.val("SELECT count(*) FROM setstream.streams WHERE name = %s", (name,)) == 0


def test_fake_poll_subscription_and_verification_request(db, fake, name):
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (name, fake.url, json.dumps({"bearer": "t0k"})))
    post = json.loads(fake.requests[1][3])
    assert post == {"delivery": {"method": "urn:ietf:rfc:8936"}}
    assert db.val("SELECT endpoint_url FROM setstream.sources WHERE stream = %s",
                  (name,)) == fake.url + "/poll/fake-1"
    assert db.val("SELECT issuer FROM setstream.streams WHERE name = %s",
                  (name,)) == "https://rp.example/fake"
    state = db.val("SELECT setstream.request_verification(%s)", (name,))
    assert len(state) == 64
    assert fake.verify_body == {"stream_id": "fake-1", "state": state}
    assert db.val("SELECT verification_state FROM setstream.subscriptions WHERE stream = %s",
                  (name,)) == state
    fake.verification_status = 429
    with pytest.raises(psycopg2.Error) as e:
        db.execute("SELECT setstream.request_verification(%s)", (name,))
    assert "HTTP 429" in str(e.value)
    db.execute("SELECT setstream.unsubscribe(%s)", (name,))
    assert calls(fake)[-1] == ("DELETE", "/streams?stream_id=fake-1", "Bearer t0k")


def fake_set(fake, events, sub_id=None):
    claims = {"jti": uuid.uuid4().hex, "iss": fake.url, "aud": "https://rp.example/fake",
              "iat": int(time.time()), "events": events}
    if sub_id is not None:
        claims["sub_id"] = sub_id
    return sign(peer_key("ES256", 3), "ES256", claims, "fake-k1")


def push_to_us(fake, token_text):
    d = fake.create_body["delivery"]
    import urllib.request
    req = urllib.request.Request(d["endpoint_url"], data=token_text.encode(), method="POST",
                                 headers={"Content-Type": "application/secevent+jwt",
                                          "Authorization": d["authorization_header"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
STREAM_UPDATED = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"


def test_push_verification_round_trip(db, fake, name, transmitter):
    """push from the fake transmitter to our listener: verification with the
    state we sent, with another state, with another sub_id, without state;
    and a stream-updated recorded"""
    db.execute("SELECT setstream.subscribe(%s, %s, 'push', NULL, %s::jsonb)",
               (name, fake.url, json.dumps({"bearer": "t0k"})))
    d = fake.create_body["delivery"]
    assert d["method"] == "urn:ietf:rfc:8935"
    assert d["endpoint_url"] == URL + "/streams/%s/events" % name
    assert d["authorization_header"].startswith("Bearer ")
    wait_for("the fake's keys", lambda: db.val(
        "SELECT coalesce(max(keys), 0) FROM setstream.peer_jwks WHERE stream = %s",
        (name,)) == 1)
    me = {"format": "opaque", "id": "fake-1"}
    state = db.val("SELECT setstream.request_verification(%s)", (name,))
    # a state we did not send: invalid_state
    st, body = push_to_us(fake, fake_set(fake, {VERIFICATION: {"state": "x" * 64}}, me))
    assert st == 400 and json.loads(body)["err"] == "invalid_state", body
    # another stream's sub_id: invalid_request
    st, body = push_to_us(fake, fake_set(fake, {VERIFICATION: {"state": state}},
                                         {"format": "opaque", "id": "other"}))
    assert st == 400 and json.loads(body)["err"] == "invalid_request", body
    assert db.val("SELECT verified_at FROM setstream.subscriptions WHERE stream = %s",
                  (name,)) is None
    # the state we sent: stored, verified
    st, body = push_to_us(fake, fake_set(fake, {VERIFICATION: {"state": state}}, me))
    assert st == 202, body
    assert db.val("SELECT verified_at IS NOT NULL FROM setstream.subscriptions "
                  "WHERE stream = %s", (name,))
    # transmitter-initiated (no state): accepted
    st, body = push_to_us(fake, fake_set(fake, {VERIFICATION: {}}, me))
    assert st == 202, body
    # stream-updated: the transmitter's status recorded
    st, body = push_to_us(fake, fake_set(fake, {STREAM_UPDATED: {
        "status": "paused", "reason": "maintenance"}}, me))
    assert st == 202, body
    row = db.dicts("SELECT transmitter_status, transmitter_status_reason FROM "
                   "setstream.subscriptions WHERE stream = %s", (name,))[0]
    assert row == {"transmitter_status": "paused", "transmitter_status_reason": "maintenance"}
    assert db.val("SELECT count(*) FROM setstream.events WHERE stream = %s", (name,)) == 3
    # unsubscribe: the push token is revoked
    db.execute("SELECT setstream.unsubscribe(%s)", (name,))
    st, body = push_to_us(fake, fake_set(fake, {VERIFICATION: {}}, me))
    assert st == 401, body


def calls(fake, since=0):
    """the requests subscribe & co. made (not the sender's polls and JWKS
    fetches, which start once the subscription is committed)"""
    return [(r[0], r[1], r[2]) for r in fake.requests[since:]
            if not r[1].startswith("/poll/") and r[1] != "/jwks.json"]


def test_oauth_client_secret_basic_cached_and_renewed_on_401(db, fake, name):
    """no token_endpoint given: found in the authorization server metadata;
    client_secret_basic; the access token is cached, and fetched anew when
    the transmitter answers 401"""
    fake.valid_tokens = set()
    cred = {"client_id": "c1", "client_secret": "s e/cret"}
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (name, fake.url, json.dumps(cred)))
    got = calls(fake)
    import base64
    basic = "Basic " + base64.b64encode(b"c1:s+e%2Fcret").decode()
    assert got == [("GET", "/.well-known/ssf-configuration", None),
                   ("GET", "/.well-known/oauth-authorization-server", None),
                   ("POST", "/token", basic),
                   ("POST", "/streams", "Bearer at-1")]
    assert fake.requests[2][3] == b"grant_type=client_credentials"
    # the poll client polls with the access token
    assert db.val("SELECT authorization_header FROM setstream.source_secrets "
                  "WHERE stream = %s", (name,)) == "Bearer at-1"
    # the secret and the token: not in the subscription, which others may read
    row = json.dumps(db.dicts("SELECT * FROM setstream.subscriptions WHERE stream = %s",
                              (name,)), default=str)
    assert "s e/cret" not in row and "at-1" not in row
    # cached: the next request fetches none
    n = len(fake.requests)
    db.val("SELECT setstream.request_verification(%s)", (name,))
    assert calls(fake, n) == [("POST", "/verify", "Bearer at-1")]
    # the transmitter forgets it: 401, a new token, the request again
    fake.valid_tokens = set()
    n = len(fake.requests)
    db.execute("SELECT setstream.unsubscribe(%s)", (name,))
    assert calls(fake, n) == [
        ("DELETE", "/streams?stream_id=fake-1", "Bearer at-1"),
        ("POST", "/token", basic),
        ("DELETE", "/streams?stream_id=fake-1", "Bearer at-2")]


def source_of(db, name):
    return db.dicts("SELECT s.state, s.auth_failures, c.authorization_header"
                    "  FROM setstream.sources s JOIN setstream.source_secrets c USING (stream)"
                    " WHERE s.stream = %s", (name,))[0]


def subscribe_polling_with_oauth(db, fake, name):
    """subscribe (poll) with OAuth client credentials to the fake, which
    serves polls to a valid token, and wait for the first poll"""
    fake.valid_tokens = set()
    fake.serve_polls = True
    cred = {"client_id": "c1", "client_secret": "s1", "token_endpoint": fake.url + "/token"}
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (name, fake.url, json.dumps(cred)))
    wait_for("a poll with at-1", lambda: ("Bearer at-1", 200) in fake.polls, timeout=10)


def test_the_poll_clients_oauth_token_is_renewed_before_it_expires(db, fake, name):
    """The poll client's access token is renewed when it is good no longer
    (its expiry less a tenth of its life, 60 s at most), by a token
    renewer the sender starts: the polls go on with the new token, and
    none is refused.  On the code before the renewer, the poll after the
    expiry is refused 401 (and the source suspended after
    setstream.auth_retries)."""
    fake.expire = True
    fake.expires_in = 30         # good until 27 s
    subscribe_polling_with_oauth(db, fake, name)
    t0 = time.monotonic()
    wait_for("a new token", lambda: fake.issued >= 2, timeout=40)
    renewed_after = time.monotonic() - t0
    wait_for("a poll with at-2", lambda: ("Bearer at-2", 200) in fake.polls, timeout=10)
    assert fake.issued == 2
    assert 20 < renewed_after < 30, renewed_after     # neither too early nor late
    assert [p for p in fake.polls if p[1] != 200] == [], "a poll was refused"
    src = source_of(db, name)
    assert src["state"] == "active" and src["auth_failures"] == 0
    assert src["authorization_header"] == "Bearer at-2"
    # the management calls use the renewed token too (cached), not a third
    n = len(fake.requests)
    db.val("SELECT setstream.request_verification(%s)", (name,))
    assert calls(fake, n) == [("POST", "/verify", "Bearer at-2")]


def test_a_refused_oauth_token_is_renewed(db, fake, name, gucs):
    """A token the transmitter stops accepting (401) is renewed at once,
    before the source is suspended (setstream.auth_retries)"""
    gucs.set(auth_retries=6)
    subscribe_polling_with_oauth(db, fake, name)
    fake.valid_tokens = set()            # the transmitter forgets at-1
    wait_for("a poll with at-2", lambda: ("Bearer at-2", 200) in fake.polls, timeout=20)
    assert ("Bearer at-1", 401) in fake.polls
    assert fake.issued == 2
    wait_for("the source's 401s forgotten", lambda: source_of(db, name)["auth_failures"] == 0)
    src = source_of(db, name)
    assert src["state"] == "active"
    assert src["authorization_header"] == "Bearer at-2"


def test_a_failing_token_endpoint_is_not_hammered(db, fake, name, gucs):
    """A token that cannot be renewed is tried again after 10 s, then
    after 20 s...: not once a second; the source is suspended after its
    401s like any other"""
    subscribe_polling_with_oauth(db, fake, name)
    gucs.set(auth_retries=20)
    fake.token_status = 500
    fake.valid_tokens = set()
    wait_for("a renewal tried", lambda: fake.token_tries >= 1, timeout=10)
    time.sleep(6)
    assert fake.token_tries == 1, "the token endpoint was asked again within 6 s"
    wait_for("a second try", lambda: fake.token_tries >= 2, timeout=10)
    assert fake.issued == 1
    assert source_of(db, name)["authorization_header"] == "Bearer at-1"


def test_oauth_client_secret_post(db, fake, name, transmitter):
    fake.valid_tokens = set()
    cred = {"client_id": "c2", "client_secret": "p&q", "scope": "ssf.manage ssf.read",
            "token_endpoint": fake.url + "/token",
            "token_endpoint_auth_method": "client_secret_post"}
    db.execute("SELECT setstream.subscribe(%s, %s, 'push', NULL, %s::jsonb)",
               (name, fake.url, json.dumps(cred)))
    got = calls(fake)
    assert got == [("GET", "/.well-known/ssf-configuration", None),
                   ("POST", "/token", None),
                   ("POST", "/streams", "Bearer at-1")]
    assert fake.requests[1][3] == (b"grant_type=client_credentials&scope=ssf.manage+ssf.read"
                                   b"&client_id=c2&client_secret=p%26q")


def test_oauth_bad_credentials(db, fake, name):
    for cred, code in [({"client_id": "c"}, "22023"),
                       ({"client_id": "c", "client_secret": "s",
                         "token_endpoint_auth_method": "none"}, "22023"),
                       ({"client_id": "c", "client_secret": "s",
                         "private_key_jwk": {"kty": "EC"}}, "22023"),
                       ({"client_id": "c", "private_key_jwk": "x"}, "22023")]:
        with pytest.raises(psycopg2.Error) as e:
            db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                       (name, fake.url, json.dumps(cred)))
        assert e.value.pgcode == code, (cred, e.value)
    assert fake.requests == []


def test_oauth_private_key_jwt(db, fake, name):
    """private_key_jwt (RFC 7523): the token request carries a client
    assertion signed with the private JWK, which the public key verifies"""
    from jwcrypto import jws as jwcrypto_jws
    key = peer_key("ES256", 4)
    private = json.loads(key.export_private())
    private["kid"] = "client-k1"
    fake.valid_tokens = set()
    cred = {"client_id": "c3", "private_key_jwk": private,
            "token_endpoint": fake.url + "/token"}
    db.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
               (name, fake.url, json.dumps(cred)))
    assert calls(fake)[1:] == [("POST", "/token", None), ("POST", "/streams", "Bearer at-1")]
    form = urllib.parse.parse_qs(fake.requests[1][3].decode())
    assert form["grant_type"] == ["client_credentials"] and form["client_id"] == ["c3"]
    assert form["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assertion = form["client_assertion"][0]
    obj = jwcrypto_jws.JWS()
    obj.deserialize(assertion)
    obj.verify(key)    # raises unless the client's key signed it
    header = obj.jose_header
    assert header["alg"] == "ES256" and header["kid"] == "client-k1" and header["typ"] == "JWT"
    claims = json.loads(obj.payload)
    assert claims["iss"] == claims["sub"] == "c3"
    assert claims["aud"] == fake.url + "/token"
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) == 32
    # the private key is in no message and no readable row
    assert private["d"] not in json.dumps(db.dicts(
        "SELECT * FROM setstream.subscriptions WHERE stream = %s", (name,)), default=str)


# ---------------------------------------------------------------------
# Rights
# ---------------------------------------------------------------------

@pytest.fixture
def creator(db):
    """a role that may create streams (so it manages its own), and one
    without any right"""
    names = ["ssfs_" + uuid.uuid4().hex[:10] for _ in range(2)]
    conns = []
    for n in names:
        db.execute("CREATE ROLE %s LOGIN NOSUPERUSER" % n)
    db.execute("SELECT setstream.allow_stream_creation(%s)", (names[0],))
    for n in names:
        c = psycopg2.connect(dbname=db.val("SELECT current_database()"), user=n)
        c.autocommit = True
        conns.append(c)
    from listener_support import Db
    yield [Db(c) for c in conns]
    for c in conns:
        c.close()
    for n in names:
        db.execute("DELETE FROM setstream.streams WHERE owner::text = %s", (n,))
        db.execute("DROP OWNED BY %s CASCADE" % n)
        db.execute("DROP ROLE %s" % n)


def sqlstate(d, sql, params=None):
    try:
        d.execute(sql, params)
    except psycopg2.Error as e:
        return e.pgcode
    return None


def test_rights(db, fake, creator):
    owner, nobody = creator
    s = "sub-" + uuid.uuid4().hex[:12]
    cred = json.dumps({"bearer": "t0k-secret"})
    # a role that may create streams subscribes a stream of its own
    owner.execute("SELECT setstream.subscribe(%s, %s, 'poll', NULL, %s::jsonb)",
                  (s, fake.url, cred))
    assert owner.val("SELECT remote_stream_id FROM setstream.subscriptions "
                     "WHERE stream = %s", (s,)) == "fake-1"
    # the credentials are the extension owner's only
    assert sqlstate(owner, "SELECT * FROM setstream.subscription_secrets") == "42501"
    assert sqlstate(owner, "SELECT setstream._ssf_call(%s, 'GET', %s, NULL, true)",
                    (s, fake.url + "/x")) is None   # its own stream: allowed
    assert calls(fake)[-1] == ("GET", "/x", "Bearer t0k-secret")
    # a role that manages another stream (so it may run the functions),
    # but not this one: none of it
    other = "oth-" + uuid.uuid4().hex[:12]
    owner.execute("SELECT setstream.create_stream(%s, 'https://o.example', '{https://p.example}')",
                  (other,))
    owner.execute("SELECT setstream.grant_stream(%s, %s::regrole, '{manage}')",
                  (other, nobody.val("SELECT current_user")))
    # (a stream the role may not see: "does not exist", or denied)
    denied = ("42501", "42704")
    assert sqlstate(nobody, "SELECT setstream.unsubscribe(%s)", (s,)) in denied
    assert sqlstate(nobody, "SELECT setstream.request_verification(%s)", (s,)) in denied
    assert sqlstate(nobody, "SELECT setstream._ssf_call(%s, 'GET', %s, NULL, true)",
                    (s, fake.url + "/x")) in denied
    assert sqlstate(nobody, "SELECT setstream._set_subscription_secret(%s, NULL)",
                    (s,)) in denied
    n = len(fake.requests)
    assert sqlstate(nobody, "SELECT * FROM setstream.subscription_secrets") == "42501"
    assert nobody.val("SELECT count(*) FROM setstream.subscriptions") == 0
    assert sqlstate(nobody, "DELETE FROM setstream.subscriptions") is None
    assert calls(fake, n) == []
    owner.execute("SELECT setstream.unsubscribe(%s)", (s,))
    assert calls(fake)[-1] == ("DELETE", "/streams?stream_id=fake-1", "Bearer t0k-secret")
