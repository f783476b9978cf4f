"""The transmitter checks of the OpenID SSF conformance suite, made as the
suite makes them (../shared/spec/SSF-CONFORMANCE.md, section 2), against
the real listener over TLS, in the CAEP interoperability profile
(openid-ssf-transmitter-caep-test-plan): the TLS preamble, the metadata
module, the happy path, the verification modules (poll-only,
poll-and-ack, ack-only, push, push without authorization) and the CAEP
interop module (CAEP events emitted by hand on the transmitter, each SET
checked as the suite checks it), in poll and in push.

The listener serves TLS with a certificate made for the module
(test/protocol/test_listener_tls.py's `tls` fixture); setstream.public_url
and the issuer are its https URL.  The suite's push receiver is a small
HTTP server on 127.0.0.1 here (its own TLS is not the transmitter's)."""

import base64
import http.server
import json
import socket
import ssl
import threading
import time
import uuid

import pytest

import listener_support as ls
from listener_support import protocol_module, verify_with_jwk

_tls = protocol_module("setstream_tls_support", "test_listener_tls.py")
cert_dir = _tls.cert_dir
tls = _tls.tls
tls_context = _tls.tls_context

BASE = "https://%s:%d" % (ls.HOST, ls.PORT)
CT = "application/json"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
VERIFICATION = SSF + "verification"
SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
DEVICE_COMPLIANCE = CAEP + "device-compliance-change"
INTEROP = [SESSION_REVOKED, CREDENTIAL_CHANGE, DEVICE_COMPLIANCE]
KNOWN_PREFIXES = ("https://schemas.openid.net/secevent/ssf/",
                  "https://schemas.openid.net/secevent/caep/",
                  "https://schemas.openid.net/secevent/risc/",
                  "urn:ietf:params:scim:event:")
SUBJECT = {"format": "email", "email": "example.user@example.com"}
# the CAEP 1.0 examples, as an operator would emit them
CAEP_EVENTS = {
    SESSION_REVOKED: {"event_timestamp": 1615304991, "initiating_entity": "policy",
                      "reason_admin": {"en": "Landspeed Policy Violation: C076E82F"},
                      "reason_user": {"en": "Access attempt from multiple regions.",
                                      "es-410": "Intento de acceso desde varias regiones."}},
    CREDENTIAL_CHANGE: {"credential_type": "fido2-roaming", "change_type": "create",
                        "fido2_aaguid": "accced6a-63f5-490a-9eea-e59bc1896cfc",
                        "friendly_name": "Jane's USB authenticator",
                        "initiating_entity": "user",
                        "reason_admin": {"en": "User self-enrollment"},
                        "event_timestamp": 1615304991},
    DEVICE_COMPLIANCE: {"current_status": "not-compliant", "previous_status": "compliant",
                        "initiating_entity": "policy",
                        "reason_admin": {"en": "Location Policy Violation: C076E8A3"},
                        "reason_user": {"en": "Device is no longer in a trusted location."},
                        "event_timestamp": 1615304991},
}
CREDENTIAL_TYPES = {"password", "pin", "x509", "fido2-platform", "fido2-roaming", "fido-u2f",
                    "verifiable-credential", "phone-voice", "phone-sms", "app"}


class PushReceiver:
    """The suite's /ssf-push: answers 202 and keeps (Authorization, body)"""

    def __init__(self):
        self.got = []
        me = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                me.got.append((self.headers.get("Authorization"),
                               self.headers.get("Content-Type"), body.decode()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/ssf-push" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Suite:
    """What the suite does, over https, with a receiver's bearer token"""

    def __init__(self, client, token, cert):
        self.c, self.token, self.cert = client, token, cert
        self.metadata = None

    def send(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": CT} if data is not None else {}
        return self.c.request(method, path, token=token or self.token, headers=headers,
                              data=data)

    def discover(self):
        r = self.c.get("/.well-known/ssf-configuration")
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        self.metadata = r.json()
        return self.metadata

    def path(self, member):
        url = self.metadata[member]
        assert url.startswith(BASE + "/"), url
        return url[len(BASE):]

    def jwks(self):
        r = self.c.get(self.path("jwks_uri"))
        assert r.status_code == 200
        return r.json()["keys"]

    def create(self, delivery=None):
        body = {"description": "conformance " + uuid.uuid4().hex[:8],
                "events_requested": INTEROP}
        if delivery is not None:
            body["delivery"] = delivery
        r = self.send("POST", self.path("configuration_endpoint"), body)
        assert r.status_code == 201, r.text
        cfg = r.json()
        for member in ("stream_id", "iss", "aud", "events_delivered", "delivery"):
            assert member in cfg, member
        assert cfg["iss"] == self.metadata["issuer"]
        assert cfg["delivery"]["method"] in ("urn:ietf:rfc:8935", "urn:ietf:rfc:8936")
        assert set(cfg["events_delivered"]) & set(INTEROP), "no CAEP interop event type"
        return cfg

    def verify(self, cfg, state):
        # the suite waits out min_verification_interval first (cap 120 s)
        time.sleep(min(cfg.get("min_verification_interval", 0), 120) + 0.2)
        r = self.send("POST", self.path("verification_endpoint"),
                      {"stream_id": cfg["stream_id"], "state": state})
        assert r.status_code == 204, r.text

    def poll(self, cfg, body):
        url = cfg["delivery"]["endpoint_url"]
        assert url.startswith(BASE + "/")
        r = self.send("POST", url[len(BASE):], body)
        assert r.status_code == 200, r.text             # RFC8936-2.5
        return r.json().get("sets", {})

    def delete(self, cfg):
        r = self.c.request("DELETE", self.path("configuration_endpoint") +
                           "?stream_id=" + cfg["stream_id"], token=self.token)
        assert r.status_code == 204, r.text

    def check_set(self, token, cfg, expect_type):
        """Every check the suite makes of a SET (verification and CAEP)"""
        head = json.loads(b64(token.split(".")[0]))
        keys = [k for k in self.jwks() if k.get("kid") == head.get("kid")]
        assert len(keys) == 1, "the SET's kid is not in jwks_uri"
        header, claims = verify_with_jwk(token, keys[0], head["alg"])
        assert header["typ"] == "secevent+jwt"
        assert header["alg"] == "RS256"                     # CAEP interop
        assert len(claims["events"]) == 1                   # FAIL under CAEP
        assert "sub" not in claims and "exp" not in claims
        assert claims["iss"] == self.metadata["issuer"]
        assert claims["iat"] <= time.time() + 1
        aud = claims["aud"]
        assert isinstance(aud, (str, list))
        stream_aud = cfg["aud"] if isinstance(cfg["aud"], list) else [cfg["aud"]]
        assert set(aud if isinstance(aud, list) else [aud]) <= set(stream_aud)
        (etype, event), = claims["events"].items()
        assert etype == expect_type
        if etype.startswith(SSF):
            assert claims["sub_id"] == {"format": "opaque", "id": cfg["stream_id"]}
        else:
            check_caep_event(etype, event)
            assert claims["sub_id"] == SUBJECT
        return claims, event


def b64(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_caep_event(etype, event):
    """The CAEP interop module's checks of one CAEP event (all FAIL-level
    but the standard values of credential-change, WARN)"""
    assert isinstance(event["event_timestamp"], (int, float))
    if "initiating_entity" in event:
        assert event["initiating_entity"] in ("admin", "user", "policy", "system")
    for reason in ("reason_admin", "reason_user"):
        if reason in event:
            assert isinstance(event[reason], dict) and event[reason]
            assert all(isinstance(v, str) for v in event[reason].values())
    if etype == CREDENTIAL_CHANGE:
        assert isinstance(event["credential_type"], str)
        assert isinstance(event["change_type"], str)
        assert event["credential_type"] in CREDENTIAL_TYPES
        assert event["change_type"] in ("create", "revoke", "update", "delete")
    if etype == DEVICE_COMPLIANCE:
        assert event["current_status"] in ("compliant", "not-compliant")
        assert event["previous_status"] in ("compliant", "not-compliant")


@pytest.fixture
def suite(tls, gucs, receivers):
    gucs.set(public_url=BASE + "/", issuer=BASE, ssf_min_verification_interval=1,
             outbound_allowed_networks="127.0.0.0/8")
    client = ls.Client(base=BASE, verify=tls)
    name = receivers.create(audience=["https://suite.example/aud"])
    yield Suite(client, receivers.token(name), tls)
    client.close()


@pytest.fixture
def push_receiver():
    r = PushReceiver()
    yield r
    r.close()


def spec_version_key(v):
    """SSF spec_version order: 1_0-ID1 < 1_0-ID2 < 1_0 (a final version
    comes after its implementer's drafts)"""
    base, _, draft = v.partition("-")
    return (tuple(int(x) for x in base.split("_")),
            (0, int(draft[2:])) if draft.startswith("ID") else (1, 0))


def handshake_version(ctx):
    sock = socket.create_connection((ls.HOST, ls.PORT), timeout=5)
    try:
        with ctx.wrap_socket(sock, server_hostname=ls.HOST) as t:
            return t.version()
    finally:
        sock.close()


def test_tls_preamble_and_metadata(suite):
    """openid-ssf-transmitter-metadata, with the TLS preamble (RFC 9325)"""
    # TLS 1.3 offered and preferred, 1.2 taken (1.0 and 1.1 refused by the
    # server: test/protocol/test_listener_tls.py, test_old_tls_refused)
    assert handshake_version(tls_context(suite.cert)) == "TLSv1.3"
    assert handshake_version(tls_context(suite.cert, maximum=ssl.TLSVersion.TLSv1_2)) == \
        "TLSv1.2"
    md = suite.discover()
    assert md["issuer"] == BASE                              # as fetched
    for member in ("jwks_uri", "configuration_endpoint", "status_endpoint",
                   "add_subject_endpoint", "remove_subject_endpoint", "verification_endpoint"):
        assert md[member].startswith("https://"), member
    assert md["default_subjects"] in ("ALL", "NONE")
    schemes = [s["spec_urn"] for s in md["authorization_schemes"]]
    assert all(u.startswith("urn:") for u in schemes)
    assert "urn:ietf:rfc:6749" in schemes                    # CAEP
    assert "." not in md["spec_version"]
    assert spec_version_key(md["spec_version"]) >= spec_version_key("1_0-ID2")
    assert not any(v == [] for v in md.values()), "an empty array"
    for k in suite.jwks():
        assert k["kty"] in ("RSA", "EC", "OKP")
        assert not set(k) & {"d", "p", "q", "dp", "dq", "qi"}, "a private member"


def test_happy_path(suite):
    """openid-ssf-stream-control-happy-path (CAEP plan: no PATCH/PUT)"""
    suite.discover()
    cfg = suite.create()
    r = suite.send("GET", suite.path("configuration_endpoint") + "?stream_id=" +
                   cfg["stream_id"])
    assert r.status_code == 200 and r.json()["iss"] == suite.metadata["issuer"]
    supported = r.json()["events_supported"]
    assert all(e.startswith(KNOWN_PREFIXES) for e in supported), supported
    assert set(supported) & set(INTEROP)
    r = suite.send("GET", suite.path("status_endpoint") + "?stream_id=" + cfg["stream_id"])
    assert r.status_code == 200 and r.json()["status"] == "enabled"
    suite.delete(cfg)
    r = suite.send("GET", suite.path("configuration_endpoint") + "?stream_id=" +
                   cfg["stream_id"])
    assert r.status_code == 404


def test_verification_poll_only_poll_and_ack_ack_only(suite):
    suite.discover()
    cfg = suite.create()
    # the transmitter's own verification after create: no state
    first = suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True})
    for tok in first.values():
        claims, event = suite.check_set(tok, cfg, VERIFICATION)
        assert "state" not in event
    state1 = str(uuid.uuid4())
    suite.verify(cfg, state1)
    # poll-only: the solicited verification SET is in the answer
    sets = suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True})
    states = {suite.check_set(t, cfg, VERIFICATION)[1].get("state") for t in sets.values()}
    assert state1 in states
    # poll-and-ack: a second verify, the first batch acked with the poll
    state2 = str(uuid.uuid4())
    suite.verify(cfg, state2)
    sets2 = suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True,
                             "ack": list(first) + list(sets)})
    assert state2 in {suite.check_set(t, cfg, VERIFICATION)[1].get("state")
                      for t in sets2.values()}
    assert not set(sets2) & (set(first) | set(sets)), "an acked SET came again"
    # ack-only
    r = suite.send("POST", cfg["delivery"]["endpoint_url"][len(BASE):],
                   {"maxEvents": 0, "returnImmediately": True, "ack": list(sets2)})
    assert r.status_code == 200
    assert suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True}) == {}
    suite.delete(cfg)


@pytest.mark.parametrize("auth", [True, False], ids=["push", "push-no-auth"])
def test_verification_push(suite, push_receiver, auth):
    suite.discover()
    delivery = {"method": "urn:ietf:rfc:8935", "endpoint_url": push_receiver.url}
    header = "Bearer push_token_" + str(uuid.uuid4())
    if auth:
        delivery["authorization_header"] = header
    cfg = suite.create(delivery)
    assert "authorization_header" not in cfg["delivery"]     # never echoed
    state = str(uuid.uuid4())
    suite.verify(cfg, state)
    ls_wait("the solicited verification SET", lambda: any(
        suite.check_set(b, cfg, VERIFICATION)[1].get("state") == state
        for _, _, b in push_receiver.got), timeout=5)
    unsolicited = 0
    for authz, ctype, body in push_receiver.got:
        assert authz == (header if auth else None)
        assert ctype == "application/secevent+jwt"
        event = suite.check_set(body, cfg, VERIFICATION)[1]
        if event.get("state") == state:
            break
        assert "state" not in event      # before the verify call: no state
        unsolicited += 1
    assert unsolicited <= 10
    suite.delete(cfg)


def ls_wait(what, pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


def emit_caep_events(db, cfg):
    """The events "triggered by hand on the transmitter": one of each
    CAEP interop type in events_delivered, about SUBJECT"""
    jtis = {}
    for etype in cfg["events_delivered"]:
        jtis[etype] = db.val("SELECT setstream.emit(%s, %s, %s::jsonb, %s::jsonb)",
                             (cfg["stream_id"], etype, json.dumps(CAEP_EVENTS[etype]),
                              json.dumps(SUBJECT)))
        assert jtis[etype] is not None, "emit filtered a CAEP event out"
    return jtis


def test_caep_interop_poll(suite, db):
    """openid-ssf-transmitter-stream-caep-interop, poll"""
    suite.discover()
    cfg = suite.create()
    assert set(cfg["events_delivered"]) == set(INTEROP)
    suite.send("GET", suite.path("configuration_endpoint") + "?stream_id=" + cfg["stream_id"])
    r = suite.send("GET", suite.path("status_endpoint") + "?stream_id=" + cfg["stream_id"])
    assert r.status_code == 200
    suite.verify(cfg, str(uuid.uuid4()))
    jtis = emit_caep_events(db, cfg)
    got, ack = {}, []
    sets = suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True})
    for _ in range(12):
        for jti, tok in sets.items():
            claims = json.loads(b64(tok.split(".")[1]))
            (etype,) = claims["events"]
            if etype.startswith(CAEP):
                suite.check_set(tok, cfg, etype)
                got[etype] = jti
            ack.append(jti)
        if set(got) == set(INTEROP):
            break
        sets = suite.poll(cfg, {"maxEvents": 10, "returnImmediately": True, "ack": ack})
        ack = []
    assert got == jtis
    r = suite.send("POST", cfg["delivery"]["endpoint_url"][len(BASE):],
                   {"maxEvents": 0, "returnImmediately": True, "ack": ack})
    assert r.status_code == 200
    assert db.val("SELECT count(*) FROM setstream.outbox WHERE stream = %s "
                  "AND state <> 'acked'", (cfg["stream_id"],)) == 0
    suite.delete(cfg)


def test_caep_interop_push(suite, push_receiver, db):
    """openid-ssf-transmitter-stream-caep-interop, push"""
    suite.discover()
    header = "Bearer push_token_" + str(uuid.uuid4())
    cfg = suite.create({"method": "urn:ietf:rfc:8935", "endpoint_url": push_receiver.url,
                        "authorization_header": header})
    suite.verify(cfg, str(uuid.uuid4()))
    jtis = emit_caep_events(db, cfg)

    def caep_received():
        out = {}
        for _, _, body in push_receiver.got:
            claims = json.loads(b64(body.split(".")[1]))
            (etype,) = claims["events"]
            if etype.startswith(CAEP):
                out[etype] = claims["jti"]
        return out
    ls_wait("every CAEP event pushed", lambda: set(caep_received()) == set(INTEROP),
            timeout=20)
    assert caep_received() == jtis
    for authz, _, body in push_receiver.got:
        assert authz == header
        claims = json.loads(b64(body.split(".")[1]))
        (etype,) = claims["events"]
        suite.check_set(body, cfg, etype)
    suite.delete(cfg)
