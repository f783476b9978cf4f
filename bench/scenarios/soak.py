#!/usr/bin/python3
"""soak: mixed traffic for a set time; the listener's private memory must
stay flat.

For BENCH_SOAK_SECONDS (600) one client drives, round after round, every
kind of request the listener serves, on keep-alive connections and on
fresh ones:

  * RFC 8935 push of a valid SET (202) and of one with a bad signature
    (400 invalid_key), a push with a wrong bearer token (401);
  * SETs emitted with setstream.emit() and fetched by RFC 8936 polls
    (returnImmediately), acknowledged by the next poll;
  * the pushpull HTTP binding: a Communication Object with a new SET and
    the acks of the SETs the previous answer carried;
  * every BENCH_SOAK_WS_EVERY (5) rounds a pushpull WebSocket session:
    upgrade, one SET in, its ack out, the emitted SETs pushed and acked,
    close;
  * connection churn: a new connection for GET /jwks.json, one for an
    unknown route (404), one for malformed HTTP (400), one for a push
    whose Content-Length exceeds setstream.max_request_bytes (413, answered
    before the body), each closed at once.

Every answer is checked (status, acks); anything unexpected is an error.
The failed-authentication limiter (setstream.auth_failure_limit) is off
while the traffic runs: the wrong-token pushes alone exceed its limit.
Every BENCH_SOAK_SAMPLE (5) seconds the listener's memory is sampled from
/proc/PID/smaps_rollup of each `setstream listener` process: Anonymous (its
private anonymous memory: malloc heap, memory contexts, stack) and
Private_Dirty.  The result reports start, end and max of both, and the
least-squares slope of Anonymous after BENCH_SOAK_WARMUP (60 s), in KB per
minute and KB per 1,000 requests.  The listener pid must not change (a
crash would restart it).

Why Anonymous and not Private_Dirty: smaps counts a shared-memory page as
private while only one process has touched it, so Private_Dirty also grows
with every shared buffer the listener is first to dirty (the events table
growing), up to shared_buffers, and falls when backends touch the same
pages.  It is reported, but it is no measure of a leak.

Target: Anonymous slope after warm-up <= 64 KB/min
(BENCH_SOAK_MAX_SLOPE_KB_MIN).

test/protocol/test_memory_soak.py imports this module (Traffic, sample_kb,
slope) for a short version with an assertion.
"""
import asyncio
import json
import os
import socket
import sys
import time
import uuid

sys.dont_write_bytecode = True   # no __pycache__ in bench/

SCENARIO = "soak"
CAEP = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"


# ---------------------------------------------------------------------------
# memory of the listener
# ---------------------------------------------------------------------------

def sample_kb(pid):
    """{"Anonymous": kB, "Private_Dirty": kB, "Private_Clean": kB, "Rss": kB}
    of PID, from /proc/PID/smaps_rollup; None when the process is gone."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Private_Dirty", "Private_Clean", "Rss", "Anonymous"):
                    out[k] = int(v.split()[0])
    except OSError:
        return None
    return out


def slope(points):
    """Least-squares slope of [(x, y)]; None with fewer than 2 points."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


# ---------------------------------------------------------------------------
# HTTP over a raw socket
# ---------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection, read by hand."""

    def __init__(self, host, port, timeout=30.0):
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def request_bytes(self, method, path, body=b"", headers=()):
        if isinstance(body, str):
            body = body.encode()
        h = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (self.host, self.port)]
        h += ["%s: %s" % kv for kv in headers]
        if not any(k.lower() == "content-length" for k, _ in headers):
            h.append("Content-Length: %d" % len(body))
        return ("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + body

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def request(self, method, path, body=b"", headers=()):
        self.send(self.request_bytes(method, path, body, headers))
        return self.response()


# ---------------------------------------------------------------------------
# the traffic
# ---------------------------------------------------------------------------

class Traffic:
    """Mixed traffic against stream NAME of the database behind CONN (a
    psycopg2 connection, autocommit) and the listener at HOST:PORT.

    Creates the stream (its peer's ES256 key registered, a signing key of
    its own, a bearer token); drop() removes it.  round() runs one round
    and counts requests (self.requests) and errors (self.errors, with the
    first few in self.error_detail)."""

    def __init__(self, conn, host, port, ws_every=5, emit_per_round=3, prefix="soak"):
        from jwcrypto import jwk
        self.conn, self.host, self.port = conn, host, port
        self.ws_every, self.emit_per_round = ws_every, emit_per_round
        self.name = "%s-%d-%s" % (prefix, os.getpid(), uuid.uuid4().hex[:8])
        self.issuer = "https://soak.example/%s" % self.name
        self.peer_issuer = "https://peer.example/%s" % self.name
        self.key = jwk.JWK.generate(kty="EC", crv="P-256")
        self.other_key = jwk.JWK.generate(kty="EC", crv="P-256")
        pub = json.loads(self.key.export_public())
        self.q("SELECT setstream.create_stream(%s, %s, %s, %s)",
               (self.name, self.issuer, ["https://peer.example/aud/" + self.name], self.peer_issuer))
        self.kid = self.q("SELECT setstream.add_key(%s, %s::jsonb)", (self.name, json.dumps(pub)))[0][0]
        self.q("SELECT setstream.generate_key(%s, 'ES256')", (self.name,))
        self.token = self.q("SELECT setstream.issue_token(%s)", (self.name,))[0][0]
        self.max_bytes = int(self.q("SELECT setting FROM pg_settings"
                                    " WHERE name = 'setstream.max_request_bytes'")[0][0])
        self.auth = ("Authorization", "Bearer " + self.token)
        self.keep = None
        self.rounds = 0
        self.requests = 0
        self.errors = 0
        self.error_detail = []
        self.poll_acks = []
        self.pp_acks = []
        self.counts = {}
        self.error_kinds = {}

    # -- helpers -----------------------------------------------------------

    def q(self, sql, args=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else []

    def drop(self):
        try:
            self.q("SELECT setstream.drop_stream(%s)", (self.name,))
        except Exception as e:  # noqa: BLE001 -- best effort
            print("soak: could not drop %s: %s" % (self.name, e), file=sys.stderr)
        if self.keep:
            self.keep.close()

    def sign(self, key=None):
        from jwcrypto import jws
        jti = uuid.uuid4().hex
        claims = {"iss": self.peer_issuer, "aud": self.issuer, "jti": jti,
                  "iat": int(time.time()),
                  "sub_id": {"format": "email", "email": "soak@example.com"},
                  "events": {CAEP: {"event_timestamp": int(time.time())}}}
        s = jws.JWS(json.dumps(claims, separators=(",", ":")))
        s.add_signature(key or self.key, None,
                        json.dumps({"alg": "ES256", "kid": self.kid, "typ": "secevent+jwt"}))
        return jti, s.serialize(compact=True)

    def expect(self, kind, status, want, body=b"", check=None):
        self.requests += 1
        self.counts[kind] = self.counts.get(kind, 0) + 1
        ok = status == want
        if ok and check is not None:
            try:
                ok = bool(check(body))
            except (ValueError, KeyError, TypeError):
                ok = False
        if not ok:
            self.errors += 1
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
            if len(self.error_detail) < 5:
                self.error_detail.append("%s: %s %r" % (kind, status, body[:200]))
        return ok

    def conn_keep(self):
        if self.keep is None:
            self.keep = Conn(self.host, self.port)
        return self.keep

    def on_keep(self, *args, **kw):
        """A request on the keep-alive connection (reopened once if the
        server closed it)."""
        try:
            return self.conn_keep().request(*args, **kw)
        except (ConnectionError, OSError):
            self.keep.close()
            self.keep = None
            return self.conn_keep().request(*args, **kw)

    def one_shot(self, data):
        """Send DATA on a new connection, read one response, close."""
        c = Conn(self.host, self.port)
        try:
            c.send(data)
            return c.response()
        finally:
            c.close()

    # -- the kinds of request --------------------------------------------------

    def push(self):
        path = "/streams/%s/events" % self.name
        ct = ("Content-Type", "application/secevent+jwt")
        _, tok = self.sign()
        s, _, b = self.on_keep("POST", path, tok, [self.auth, ct])
        self.expect("push", s, 202, b)
        _, bad = self.sign(self.other_key)
        s, _, b = self.on_keep("POST", path, bad, [self.auth, ct])
        self.expect("push_bad_signature", s, 400, b, lambda x: json.loads(x)["err"] == "invalid_key")
        s, _, b = self.on_keep("POST", path, tok, [("Authorization", "Bearer not-a-token"), ct])
        self.expect("bad_auth", s, 401, b)

    def poll(self):
        self.q("SELECT count(setstream.emit(%s, %s, '{}'::jsonb,"
               " jsonb_build_object('format', 'email', 'email', 'soak@example.com')))"
               " FROM generate_series(1, %s)", (self.name, CAEP, self.emit_per_round))
        body = json.dumps({"returnImmediately": True, "maxEvents": 50, "ack": self.poll_acks})
        s, _, b = self.on_keep("POST", "/streams/%s/poll" % self.name, body,
                               [self.auth, ("Content-Type", "application/json")])
        if self.expect("poll", s, 200, b, lambda x: "sets" in json.loads(x)):
            self.poll_acks = list(json.loads(b)["sets"])

    def pushpull(self):
        jti, tok = self.sign()
        body = json.dumps({"sets": {jti: tok}, "ack": self.pp_acks, "maxResponseEvents": 50})
        s, _, b = self.on_keep("POST", "/streams/%s/pushpull" % self.name, body,
                               [self.auth, ("Content-Type", "application/json")])
        if self.expect("pushpull", s, 200, b, lambda x: json.loads(x)["ack"] == [jti]):
            self.pp_acks = list(json.loads(b).get("sets", {}))

    def churn(self):
        c = Conn(self.host, self.port)
        s, _, b = c.request("GET", "/jwks.json")
        c.close()
        self.expect("churn_jwks", s, 200, b, lambda x: "keys" in json.loads(x))
        s, _, b = self.one_shot(b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n")
        self.expect("not_found", s, 404, b)
        s, _, b = self.one_shot(b"GARBAGE \x01\x02 HTTP/9\r\n\r\n")
        self.expect("malformed", s, 400, b)
        c = Conn(self.host, self.port)
        try:
            s, _, b = c.request("POST", "/streams/%s/events" % self.name, b"",
                                [self.auth, ("Content-Type", "application/secevent+jwt"),
                                 ("Content-Length", str(self.max_bytes + 1))])
        finally:
            c.close()
        self.expect("oversized", s, 413, b)

    def websocket(self):
        asyncio.run(asyncio.wait_for(self._ws_session(), 30))

    async def _ws_session(self):
        import warnings
        # websockets 14 made a new client the default (additional_headers=,
        # InvalidStatus, no .open); the legacy client, with the API these tests use,
        # is there from 10.4 (Debian 12) to 15 (Debian 13), deprecated from 14 on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from websockets.legacy.client import connect as ws_connect
        url = "ws://%s:%d/streams/%s/pushpull" % (self.host, self.port, self.name)
        async with ws_connect(url, subprotocols=["pushpull"],
                              extra_headers={"Authorization": "Bearer " + self.token},
                              open_timeout=10, close_timeout=5) as ws:
            self.requests += 1
            self.counts["ws_session"] = self.counts.get("ws_session", 0) + 1
            jti, tok = self.sign()
            await ws.send(json.dumps({"sets": {jti: tok}}))
            acked = False
            deadline = time.monotonic() + 10
            while not acked and time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                acked = jti in msg.get("ack", [])
                if msg.get("sets"):
                    await ws.send(json.dumps({"ack": list(msg["sets"])}))
            self.expect("ws_ack", 200 if acked else 0, 200)

    def round(self):
        self.rounds += 1
        self.push()
        self.poll()
        self.pushpull()
        self.churn()
        if self.ws_every and self.rounds % self.ws_every == 0:
            self.websocket()


# ---------------------------------------------------------------------------
# the scenario
# ---------------------------------------------------------------------------

def main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import lib_extra as L

    seconds = float(os.environ.get("BENCH_SOAK_SECONDS", "600"))
    every = float(os.environ.get("BENCH_SOAK_SAMPLE", "5"))
    warmup = float(os.environ.get("BENCH_SOAK_WARMUP", "60"))
    max_slope = float(os.environ.get("BENCH_SOAK_MAX_SLOPE_KB_MIN", "64"))
    target = "listener private anonymous memory slope after warm-up <= %g KB/min" % max_slope
    conn = L.connect()
    pids = L.listener_pids(conn)
    if not pids:
        L.result(SCENARIO, target, note="CHECK FAILED: no setstream listener is running")
        return 1
    host, port = L.host_port()
    # Every round makes one push with a wrong token: thousands of failed
    # authentications a minute from 127.0.0.1, over the per-minute limit
    # (setstream.auth_failure_limit, 1000), after which every request of
    # the client is answered 429.  The limiter is not what the soak
    # measures: it is off while the traffic runs (reset at the end).
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ALTER SYSTEM SET setstream.auth_failure_limit = 0")
        cur.execute("SELECT pg_reload_conf()")
    time.sleep(1.0)
    t = Traffic(conn, host, port, ws_every=int(os.environ.get("BENCH_SOAK_WS_EVERY", "5")))
    samples = []        # (seconds since start, requests, sum Anonymous, sum Private_Dirty)
    cpu = L.CpuMeter(pids)
    try:
        t0 = time.monotonic()
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                mem = [sample_kb(p) for p in pids]
                if any(m is None for m in mem):
                    t.errors += 1
                    t.error_detail.append("a listener process ended (crash?)")
                    break
                samples.append((now - t0, t.requests, sum(m["Anonymous"] for m in mem),
                                sum(m["Private_Dirty"] for m in mem)))
                L.log("soak %4.0f s: %7d requests, %d errors%s, listener Anonymous %d kB,"
                      " Private_Dirty %d kB"
                      % (now - t0, t.requests, t.errors,
                         " " + json.dumps(t.error_kinds, sort_keys=True) if t.errors else "",
                         samples[-1][2], samples[-1][3]))
                next_sample += every
                if now - t0 >= seconds:
                    break
            try:
                t.round()
            except Exception as e:  # noqa: BLE001 -- counted, and the soak goes on
                t.errors += 1
                if len(t.error_detail) < 5:
                    t.error_detail.append("round %d: %r" % (t.rounds, e))
                if t.keep:
                    t.keep.close()
                    t.keep = None
        wall = time.monotonic() - t0
        cpu_pct = cpu.pct()
        if L.listener_pids(conn) != pids:
            t.errors += 1
            t.error_detail.append("listener pids changed: %s -> %s" % (pids, L.listener_pids(conn)))
    finally:
        t.drop()
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM RESET setstream.auth_failure_limit")
            cur.execute("SELECT pg_reload_conf()")
        conn.close()
    after = [s for s in samples if s[0] >= warmup]
    per_min = slope([(s[0] / 60.0, s[2]) for s in after])
    per_kreq = slope([(s[1] / 1000.0, s[2]) for s in after])
    anon = [s[2] for s in samples]
    dirty = [s[3] for s in samples]
    note = ("%d requests in %.0f s (%.0f/s), %d rounds, %d errors%s%s; kinds: %s; listener "
            "Anonymous (private anonymous memory) start %d kB, after warm-up (%.0f s) %d kB, "
            "end %d kB, max %d kB; slope after warm-up %s KB/min, %s KB per 1000 requests; "
            "Private_Dirty start %d kB, end %d kB, max %d kB (includes shared buffers only the "
            "listener touched); %d samples every %.0f s; Anonymous series (kB): %s; "
            "Private_Dirty series (kB): %s"
            % (t.requests, wall, t.requests / wall if wall else 0, t.rounds, t.errors,
               " by kind " + json.dumps(t.error_kinds, sort_keys=True) if t.errors else "",
               (" (" + "; ".join(t.error_detail) + ")") if t.error_detail else "",
               json.dumps(t.counts, sort_keys=True), anon[0] if anon else -1, warmup,
               after[0][2] if after else -1, anon[-1] if anon else -1, max(anon) if anon else -1,
               "%.2f" % per_min if per_min is not None else "n/a",
               "%.3f" % per_kreq if per_kreq is not None else "n/a",
               dirty[0] if dirty else -1, dirty[-1] if dirty else -1, max(dirty) if dirty else -1,
               len(samples), every, ",".join(str(d) for d in anon),
               ",".join(str(d) for d in dirty)))
    ok = t.errors == 0 and per_min is not None and per_min <= max_slope
    if not ok:
        note = "CHECK FAILED: " + note
    L.result(SCENARIO, target, sets_per_s=None, cpu_pct=cpu_pct,
             rss_mb=(anon[-1] / 1024.0) if anon else None, note=note,
             slope_kb_min=per_min, errors=t.errors)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
