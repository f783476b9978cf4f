#!/usr/bin/python3
"""Scenario hostile: a good client's push rate alone and under each attack.

The good client is wrk (push.lua, 1 thread, BENCH_HOSTILE_CONNS = 8
keep-alive connections from 127.0.0.1) pushing distinct pre-generated ES256
SETs at a fresh stream for BENCH_DURATION seconds.  For every attack it is
measured alone, then again while the attack runs; the result is the rate
under attack, with the rate alone (same run, just before) as its limit, and
the ratio between them.  Target: >= 30% of the rate alone.

Each attacker is one forked Python process connecting from loopback
addresses of its own (127.3.0.0/16; Linux routes all of 127/8 to lo), as
fast as the listener answers it:

  slowloris      300 connections sending a request head a byte at a time
                 (past the limit of 256: 503; held ones closed, stalest
                 first, to make room)
  idle_flood     2 x setstream.max_connections (256 for the scenario) idle
                 connections, opened once and held (503 past the limit;
                 held ones closed, stalest first, to make room)
  reconnect_flood  the same, each reopened as soon as it is refused or
                 closed: the attacker then takes slots at its connection
                 rate (known limit: no per-address share of connections)
  big_headers    requests with 20 KiB of headers (431)
  big_body       Content-Length 100 x setstream.max_request_bytes (413)
  big_ws_frame   a WebSocket frame announcing more than max_request_bytes
                 (close 1009), on an attacker stream with a valid token
  garbage        a valid request followed by pipelined garbage (200, 400)
  brute_force    wrong bearer tokens on keep-alive connections (401, then
                 429 past setstream.auth_failure_limit)

Errors: non-2xx answers or socket errors of the good client, answers to the
attacker other than the documented ones, and anything stored from the
attacker.  The machine's 2 cores are shared by wrk, the attacker, the
listener and PostgreSQL (and, on a shared machine, other jobs): ratios are
noisy.
"""
import multiprocessing
import os
import re
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.environ.get("BENCH_DIR")
                or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gen_sets  # noqa: E402
import lib  # noqa: E402

CONNS = int(os.environ.get("BENCH_HOSTILE_CONNS", "8"))
ATTACKS = os.environ.get("BENCH_HOSTILE_ATTACKS",
                         "slowloris idle_flood reconnect_flood big_headers big_body big_ws_frame garbage "
                         "brute_force").split()
MAX_CONNECTIONS = 256
MAX_REQUEST_BYTES = 65536
META = None  # the pre-generated SETs (gen_sets)
HOST, PORT = "127.0.0.1", int(os.environ.get("SETSTREAM_PORT", "8417"))


def source(i):
    return "127.3.%d.%d" % (lib.RUN * 40 + i // 250, i % 250 + 1)


def connect(i, timeout=5.0):
    sock = socket.create_connection((HOST, PORT), timeout=timeout, source_address=(source(i), 0))
    sock.settimeout(timeout)
    return sock


def statuses_until_close(sock):
    """Statuses of every response until the server closes; "open" at the
    end when it did not within the timeout."""
    buf = b""
    end = "close"
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        end = "open"
    return ",".join(re.findall(r"HTTP/1\.1 (\d{3}) ", buf.decode("latin-1")) + [end])


def request(path, headers=(), body=b""):
    lines = ["POST %s HTTP/1.1" % path, "Host: x"] + ["%s: %s" % h for h in headers]
    if body:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# -- the attacks: attack(stop, ready, ctx) -> {answer: count} ---------------

def _repeat(stop, ready, make_conn, once):
    counts = {}
    n = 0
    while not stop.is_set():
        try:
            sock = make_conn(n)
            key = once(sock)
            sock.close()
        except OSError as e:
            key = "socket error: %s" % e.__class__.__name__
        counts[key] = counts.get(key, 0) + 1
        n += 1
        if n == 5:
            ready.set()
    return counts


def slowloris(stop, ready, ctx):
    head = request("/streams/%s/events" % ctx["good"])[:-4] + b"\r\nX-Pad: " + b"a" * 100000
    conns = []
    for i in range(300):
        sock = connect(i % 50)
        sock.setblocking(False)
        conns.append(sock)
    counts = {"trickled bytes": 0, "closed by server": 0, "503": 0, "answered": 0}
    pos = 0
    started = time.monotonic()
    while not stop.is_set():
        if not ready.is_set() and time.monotonic() - started > 1.2:
            ready.set()  # the connections are past their first second
        for sock in list(conns):
            try:
                data = sock.recv(4096)
                if data:
                    counts["503" if data.startswith(b"HTTP/1.1 503 ") else "answered"] += 1
                    conns.remove(sock)
                    continue
                else:
                    counts["closed by server"] += 1
                    conns.remove(sock)
                    continue
            except BlockingIOError:
                pass
            sock.send(head[pos:pos + 1])
            counts["trickled bytes"] += 1
        pos += 1
        time.sleep(0.1)
    for sock in conns:
        sock.close()
    return counts


def idle_flood(stop, ready, ctx):
    """2 x max_connections idle connections, opened once and held."""
    counts = {}
    conns = [connect(i % 200) for i in range(2 * MAX_CONNECTIONS)]
    for sock in conns:
        sock.setblocking(False)
    started = time.monotonic()
    while not stop.is_set():
        if not ready.is_set() and time.monotonic() - started > 1.2:
            ready.set()  # the held connections are past their first second
        time.sleep(0.02)
        _reap(conns, counts)
    for sock in conns:
        sock.close()
    return counts


def reconnect_flood(stop, ready, ctx):
    """2 x max_connections idle connections, each reopened at once when the
    listener closes or refuses it."""
    counts = {}
    conns = []
    i = 0
    while not stop.is_set():
        while len(conns) < 2 * MAX_CONNECTIONS:
            sock = connect(i % 200)
            sock.setblocking(False)
            conns.append(sock)
            i += 1
        ready.set()
        time.sleep(0.02)
        _reap(conns, counts)
    for sock in conns:
        sock.close()
    return counts


def _reap(conns, counts):
    """Count and drop the connections the listener refused or closed."""
    for sock in list(conns):
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            continue
        except ConnectionResetError:
            data = b""
        key = "503" if data.startswith(b"HTTP/1.1 503 ") else ("closed" if not data else "other")
        counts[key] = counts.get(key, 0) + 1
        conns.remove(sock)
        sock.close()


def big_headers(stop, ready, ctx):
    req = request("/streams/%s/events" % ctx["good"],
                  [("X-Junk-%d" % i, "j" * 1000) for i in range(20)], b"{}")

    def once(sock):
        sock.sendall(req)
        return statuses_until_close(sock)
    return _repeat(stop, ready, lambda n: connect(n % 200), once)


def big_body(stop, ready, ctx):
    head = ("POST /streams/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/secevent+jwt\r\nContent-Length: %d\r\n\r\n"
            % (ctx["attacker"], ctx["attacker_token"], 100 * MAX_REQUEST_BYTES)).encode()

    def once(sock):
        sock.sendall(head + b"e" * 8192)
        return statuses_until_close(sock)
    return _repeat(stop, ready, lambda n: connect(n % 200), once)


def big_ws_frame(stop, ready, ctx):
    upgrade = ("GET /streams/%s/pushpull HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pushpull\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (ctx["attacker"], ctx["attacker_token"])).encode()
    frame = bytes([0x81, 0xFF]) + struct.pack("!Q", MAX_REQUEST_BYTES + 1) + os.urandom(4)

    def once(sock):
        sock.sendall(upgrade + frame + b"x" * 4096)
        buf = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        frames = buf.split(b"\r\n\r\n", 1)[-1]
        if len(frames) >= 4 and frames[0] & 0x0F == 0x8:
            return "close %d" % struct.unpack("!H", frames[2:4])[0]
        return "no close frame"
    return _repeat(stop, ready, lambda n: connect(n % 200), once)


def garbage(stop, ready, ctx):
    req = b"GET /jwks.json HTTP/1.1\r\nHost: x\r\n\r\n"
    req += b"\x16\x03\x01\x02\x00GET / HTTP/9.9\r\n\x00\xff\r\n\r\n" * 50

    def once(sock):
        sock.sendall(req)
        return statuses_until_close(sock)
    return _repeat(stop, ready, lambda n: connect(n % 200), once)


def brute_force(stop, ready, ctx):
    counts = {}
    sock = connect(0)
    buf = b""
    n = 0
    while not stop.is_set():
        token = "sst_" + os.urandom(32).hex()
        sock.sendall(request("/streams/%s/events" % ctx["good"],
                             [("Authorization", "Bearer " + token),
                              ("Content-Type", "application/secevent+jwt")], b"x.y.z"))
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, buf = buf.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(buf) < length:
            buf += sock.recv(65536)
        buf = buf[length:]
        key = head.split(b" ")[1].decode()
        counts[key] = counts.get(key, 0) + 1
        n += 1
        if n == 50:
            ready.set()
    sock.close()
    return counts


EXPECTED = {
    "slowloris": {"trickled bytes", "503", "closed by server"},
    "idle_flood": {"503", "closed"},
    "reconnect_flood": {"503", "closed"},
    "big_headers": {"431,close"},
    "big_body": {"413,close"},
    "big_ws_frame": {"close 1009"},
    "garbage": {"200,400,close"},
    "brute_force": {"401", "429"},
}


def _attacker_main(fn, stop, ready, ctx, send):
    try:
        send.send(fn(stop, ready, ctx))
    except BaseException as e:  # reported as an error of the run
        send.send({"attacker failed: %r" % e: 1})


def run_attack(name, ctx, measure):
    """measure() while attack NAME runs; returns (its result, attacker counts)."""
    stop, ready = multiprocessing.Event(), multiprocessing.Event()
    recv, send = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.get_context("fork").Process(
        target=_attacker_main, args=(globals()[name], stop, ready, ctx, send), daemon=True)
    proc.start()
    if not ready.wait(30):
        stop.set()
        proc.join(10)
        raise RuntimeError("attack %s did not get going" % name)
    try:
        out = measure()
    finally:
        stop.set()
    counts = recv.recv() if recv.poll(60) else {"attacker did not report": 1}
    proc.join(10)
    return out, counts


# -- the good client -------------------------------------------------------

def good_stream(phase):
    """A fresh stream for one measurement of the good client."""
    return lib.receiver_for("bench_hostile_%s_r%d" % (phase, lib.RUN), META)


def good_push(tsv, info, phase):
    """wrk pushes at the fresh stream info; (SETs/s, errors list)."""
    name = info["name"]
    w = lib.run_wrk("push.lua", lib.URL, ["/streams/%s/events" % name, info["token"], tsv,
                                         META["count"], 1, 1], threads=1, conns=CONNS)
    secs = w["duration_us"] / 1e6
    ok = w["requests"] - w["status"] - w.get("bad", 0)
    errors = []
    if w["status"]:
        errors.append("%s: %d non-2xx answers to the good client" % (phase, w["status"]))
    sock_errors = w["connect"] + w["read"] + w["write"] + w["timeout"]
    if sock_errors:
        errors.append("%s: %d socket errors of the good client" % (phase, sock_errors))
    time.sleep(0.5)  # what wrk abandoned at the end settles
    n_stored = lib.stored(name)
    if not ok <= n_stored <= w["sent"]:
        errors.append("%s: %d stored, %d acknowledged, %d sent" % (phase, n_stored, ok, w["sent"]))
    lib.drop_stream_if_exists(name)
    return ok / secs, errors


def set_listener(**settings):
    for k, v in settings.items():
        if v is None:
            lib.sql("ALTER SYSTEM RESET setstream.%s" % k)
        else:
            lib.sql("ALTER SYSTEM SET setstream.%s = %s" % (k, lib._literal(v)))
    lib.sql("SELECT pg_reload_conf()")
    time.sleep(1.0)


def main():
    global META
    path, META = gen_sets.ensure("ES256", gen_sets.needed("ES256", lib.DURATION))
    attacker = lib.make_stream("bench_hostile_attacker_r%d" % lib.RUN, peer=True, alg="ES256")
    set_listener(max_connections=MAX_CONNECTIONS, max_request_bytes=MAX_REQUEST_BYTES)
    try:
        for name in ATTACKS:
            lib.clear_events()
            lib.checkpoint()
            ctx = {"good": "bench_hostile_target_r%d" % lib.RUN,
                   "attacker": attacker["name"], "attacker_token": attacker["token"]}
            alone, errors = good_push(path, good_stream("alone"), "alone")
            info = good_stream("attacked_" + name)
            (during, errors2), counts = run_attack(
                name, ctx, lambda: good_push(path, info, "under " + name))
            errors += errors2
            unexpected = {k: v for k, v in counts.items() if v and k not in EXPECTED[name]}
            if unexpected:
                errors.append("unexpected answers to the attacker: %r" % unexpected)
            if lib.stored(attacker["name"]):
                errors.append("%d SETs stored from the attacker" % lib.stored(attacker["name"]))
            lib.result(scenario="hostile %s: good push ES256, %d conns" % (name, CONNS),
                       sets_per_s=round(during, 1), limit="good client alone (same run)",
                       limit_per_s=round(alone, 1), ratio=round(during / alone, 3) if alone else 0,
                       target=">= 30% of limit", errors=len(errors),
                       error_detail="; ".join(errors) or None,
                       note="attacker answers: %s" % ", ".join(
                           "%s x%d" % kv for kv in sorted(counts.items())))
    finally:
        set_listener(max_connections=None, max_request_bytes=None)
        lib.drop_stream_if_exists(attacker["name"])


if __name__ == "__main__":
    main()
