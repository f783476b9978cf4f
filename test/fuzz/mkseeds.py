#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets (test/fuzz/corpus/<target>/).

Seeds come from the test suites' own inputs, read from their sources with
ast (no import, so no database or jwcrypto needed): the subject identifiers
of test/python/test_set_validation.py and the malformed requests of
test/protocol/test_listener_http.py; around them, the requests, SETs and
Communication Objects the protocol tests send.  SETs are signed here with
the fixture's HS256 secret (shim/fixture.c); fuzz_set's mode 2 seeds are
signed by the target itself with the other fixture keys.

Usage: mkseeds.py [outdir]   (default: corpus)
"""

import ast
import base64
import hashlib
import hmac
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(HERE, "..")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")

PEER = "https://transmitter.example.com/"
ISSUER = "https://receiver.example.com/"
TOKEN = "sst_fuzz-bearer-token-0123456789abcdefghij"
HS_KID = "hs256-fixture"
HS_KEY = base64.urlsafe_b64decode("Zml4dHVyZS1obWFjLXNlY3JldC1mb3ItZnV6emluZy0wMTIzNDU2Nzg5=")
EVENT = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

# stream variants (shim/fixture.c): 1 = ssf, 2 = alg none allowed,
# 4 = no peer issuer, 8 = disabled
SSF, UNSIGNED, NO_PEER, DISABLED = 1, 2, 4, 8


def literal(path, name):
    """The value of a top-level NAME = <literal> in a test file."""
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("%s: no %s" % (path, name))


def parametrized(path, func, argname):
    """The values of @pytest.mark.parametrize(argname, [...]) on func."""
    src = open(path).read()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and dec.args and
                        isinstance(dec.args[0], ast.Constant) and dec.args[0].value == argname):
                    # byte-string arithmetic (b"\x00" * 40) rules out literal_eval
                    return eval(ast.get_source_segment(src, dec.args[1]), {"__builtins__": {}})
    raise SystemExit("%s: no parametrize(%r) on %s" % (path, argname, func))


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jdump(obj):
    return json.dumps(obj, separators=(",", ":"))


def claims(jti="jti-1", **over):
    c = {"iss": PEER, "jti": jti, "iat": 1767225600, "aud": ISSUER,
         "events": {EVENT: {"event_timestamp": 1767225600}},
         "sub_id": {"format": "opaque", "id": "u-1"}}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def hs256(payload, header=None):
    header = header or {"alg": "HS256", "typ": "secevent+jwt", "kid": HS_KID}
    signing_input = b64u(jdump(header)) + "." + b64u(jdump(payload))
    sig = hmac.new(HS_KEY, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64u(sig)


def unsigned(payload):
    return b64u(jdump({"alg": "none", "typ": "secevent+jwt"})) + "." + b64u(jdump(payload)) + "."


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def set_seeds(valid, invalid):
    for i, sub in enumerate(valid):
        # mode 2: signed by the target with fixture key i % 5
        write("fuzz_set", "signed-%02d" % i, bytes([0x20 | SSF, i % 5]) + jdump(claims(sub_id=sub)).encode())
        write("fuzz_set", "subject-valid-%02d" % i, bytes([0x30]) + jdump(sub).encode())
    for i, sub in enumerate(invalid):
        write("fuzz_set", "subject-invalid-%02d" % i, bytes([0x30]) + jdump(sub).encode())
    write("fuzz_set", "hs256-ssf", bytes([SSF]) + hs256(claims()).encode())
    write("fuzz_set", "hs256-rfc8417", bytes([0]) + hs256(claims(sub_id=None, sub="u-1", aud=None)).encode())
    write("fuzz_set", "hs256-multi-aud", bytes([SSF]) + hs256(claims(aud=["x", ISSUER], txn="t-1", toe=1767225600)).encode())
    write("fuzz_set", "unsigned", bytes([SSF | UNSIGNED]) + unsigned(claims()).encode())
    write("fuzz_set", "unsigned-refused", bytes([SSF]) + unsigned(claims()).encode())
    write("fuzz_set", "no-peer-issuer", bytes([SSF | NO_PEER]) + hs256(claims()).encode())
    write("fuzz_set", "jwe", bytes([SSF]) + b"eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")
    headers = [
        {"alg": "none", "typ": "secevent+jwt"},
        {"alg": "none", "typ": "application/secevent+jwt", "kid": "k"},
        {"alg": "none", "typ": "JWT"},
        {"alg": "none", "crit": ["exp"]},
        {"alg": "none", "enc": "A128GCM"},
        {"alg": "ES256", "kid": "nope"},
        {"alg": "HS256", "typ": 5},
    ]
    for i, h in enumerate(headers):
        write("fuzz_set", "parts-%02d" % i, bytes([0x10 | SSF | UNSIGNED]) +
              (jdump(h) + "\n" + jdump(claims(jti="p-%d" % i))).encode())
    write("fuzz_set", "parts-exp-sub", bytes([0x10 | SSF | UNSIGNED]) +
          (jdump(headers[0]) + "\n" + jdump(claims(sub="x", exp=1, nbf=2))).encode())


def commobj_seeds():
    polls = [{}, {"maxEvents": 10, "returnImmediately": True},
             {"maxEvents": 0, "ack": ["a", "b"]},
             {"ack": ["a"], "setErrs": {"b": {"err": "invalid_key", "description": "x"}}},
             {"maxEvents": 10.0}, {"maxEvents": -1}, {"returnImmediately": "yes"}]
    for i, p in enumerate(polls):
        write("fuzz_commobj", "poll-%02d" % i, bytes([SSF << 1]) + jdump(p).encode())
    objs = [{}, {"sets": {"jti-1": hs256(claims())}},
            {"sets": {"jti-1": hs256(claims()), "other": hs256(claims(jti="jti-2"))},
             "ack": ["x"], "setErrs": {"y": {"err": "invalid_request"}}, "maxResponseEvents": 5},
            {"sets": {"u": unsigned(claims(jti="u"))}},
            {"sets": {"a": 5}}, {"ack": [""]}, {"setErrs": {"a": {"description": "d"}}}]
    for i, o in enumerate(objs):
        variant = SSF | (UNSIGNED if i == 3 else 0)
        write("fuzz_commobj", "commobj-%02d" % i, bytes([(variant << 1) | 1]) + jdump(o).encode())
    write("fuzz_commobj", "duplicate-member", bytes([(SSF << 1) | 1]) + b'{"ack":["a"],"ack":["b"]}')
    # the response writer (jsonwrite.c) against json_dumps
    values = [{"sets": {"jti-1": hs256(claims())}, "moreAvailable": False},
              {"err": "invalid_request", "description": "quote \" backslash \\ \u0001 \u001f \u007f /"},
              [1, -2, 2.5, 1e300, -0.0, None, True, "caf\u00e9 \ud83d\ude00"], "top-level string", 7]
    for i, v in enumerate(values):
        write("fuzz_commobj", "writer-%02d" % i, bytes([0x20]) + jdump(v).encode())
    write("fuzz_commobj", "writer-nul", bytes([0x20]) + b'{"a\\u0000b":"x\\u0000y"}')


def request(method, path, body=b"", content_type=None, token=TOKEN, extra=b"", version=b"1.1"):
    if isinstance(body, str):
        body = body.encode()
    h = b"%s %s HTTP/%s\r\nHost: fuzz\r\n" % (method.encode(), path.encode(), version)
    if token:
        h += b"Authorization: Bearer %s\r\n" % token.encode()
    if content_type:
        h += b"Content-Type: %s\r\n" % content_type.encode()
    if body or method == "POST":
        h += b"Content-Length: %d\r\n" % len(body)
    return h + extra + b"\r\n" + body


def http_seeds(malformed):
    push = request("POST", "/streams/fuzz/events", hs256(claims()), "application/secevent+jwt")
    poll = request("POST", "/streams/fuzz/poll", '{"maxEvents":5,"returnImmediately":true}', "application/json")
    pushpull = request("POST", "/streams/fuzz/pushpull",
                       jdump({"sets": {"jti-1": hs256(claims())}, "ack": ["z"]}), "application/json")
    upgrade = request("GET", "/streams/fuzz/pushpull", extra=(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: pushpull\r\n"))
    seeds = {
        "push": push, "poll": poll, "pushpull": pushpull, "upgrade": upgrade,
        "jwks": request("GET", "/jwks.json", token=None),
        "jwks-post": request("POST", "/jwks.json", token=None),
        "pipelined": push + poll + request("GET", "/jwks.json", token=None),
        "no-token": request("POST", "/streams/fuzz/poll", "{}", "application/json", token=None),
        "bad-token": request("POST", "/streams/fuzz/poll", "{}", "application/json", token="wrong"),
        "other-stream": request("POST", "/streams/other/poll", "{}", "application/json"),
        "bad-media": request("POST", "/streams/fuzz/events", hs256(claims()), "text/plain"),
        "bad-set": request("POST", "/streams/fuzz/events", "a.b.c", "application/secevent+jwt; charset=x"),
        "bad-poll": request("POST", "/streams/fuzz/poll", '{"maxEvents":"x"}', "application/json"),
        "get-events": request("GET", "/streams/fuzz/events"),
        "not-found": request("GET", "/nothing?x=1", token=None),
        "http10": request("GET", "/jwks.json", token=None, version=b"1.0"),
        "expect": request("POST", "/streams/fuzz/poll", "{}", "application/json",
                          extra=b"Expect: 100-continue\r\n"),
        "chunked": (b"POST /streams/fuzz/poll HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                    TOKEN.encode() + b"\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        "upgrade-no-protocol": request("GET", "/streams/fuzz/pushpull", extra=(
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")),
        "long-url": request("GET", "/" + "a" * 2100, token=None),
    }
    for name, data in seeds.items():
        write("fuzz_http", name, bytes([SSF, 0]) + data)
    write("fuzz_http", "push-pieces", bytes([SSF, 0x85]) + push + poll)
    write("fuzz_http", "push-disabled", bytes([SSF | DISABLED, 0]) + push)
    # setstream.max_request_bytes at its 1kB minimum: 413 by length and by chunks
    write("fuzz_http", "body-over-limit", bytes([SSF | 0x10, 0]) + request(
        "POST", "/streams/fuzz/poll", jdump({"maxEvents": 1, "pad": "x" * 1100}), "application/json"))
    write("fuzz_http", "chunked-over-limit", bytes([SSF | 0x10, 0x85]) + seeds["chunked"].replace(
        b"2\r\n{}\r\n", b"400\r\n" + b" " * 0x400 + b"\r\n2\r\n{}\r\n"))
    # test_headers_over_16k_431
    write("fuzz_http", "headers-over-16k", bytes([SSF, 0]) + request(
        "GET", "/jwks.json", token=None, extra=b"X-Big: " + b"a" * 17000 + b"\r\n"))
    for i, data in enumerate(malformed):
        write("fuzz_http", "malformed-%02d" % i, bytes([SSF, 0]) + data)


def ws_frame(opcode, payload, fin=True, mask=b"\x11\x22\x33\x44"):
    """A client frame (masked, as RFC 6455 requires of clients)."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_seeds():
    obj = jdump({"sets": {"jti-1": hs256(claims())}, "ack": ["a"],
                 "setErrs": {"b": {"err": "invalid_key", "description": "d"}}})
    seeds = {
        "commobj": ws_frame(1, obj),
        "empty-object": ws_frame(1, "{}"),
        "ack-only": ws_frame(1, '{"ack":["a","b"]}'),
        "two-messages": ws_frame(1, obj) + ws_frame(1, '{"maxResponseEvents":3}'),
        "fragmented": ws_frame(1, obj[:20], fin=False) + ws_frame(0, obj[20:]),
        "ping": ws_frame(9, "hi") + ws_frame(1, "{}"),
        "pong": ws_frame(10, ""),
        "close": ws_frame(8, struct.pack(">H", 1000) + b"bye"),
        "binary": ws_frame(2, "{}"),
        "invalid-json": ws_frame(1, "{not json"),
        "wrong-type": ws_frame(1, '{"sets":[]}'),
        "unmasked": b"\x81\x02{}",
        "nul-in-message": ws_frame(1, b'{"ack":["a"]}\x00{"sets":5}'),
    }
    for name, data in seeds.items():
        write("fuzz_ws", name, bytes([SSF, 0]) + data)
    write("fuzz_ws", "commobj-pieces", bytes([SSF, 0x83]) + seeds["two-messages"])


def main():
    valid = literal(os.path.join(TESTS, "python", "test_set_validation.py"), "VALID_SUBJECTS")
    invalid = literal(os.path.join(TESTS, "python", "test_set_validation.py"), "INVALID_SUBJECTS")
    malformed = parametrized(os.path.join(TESTS, "protocol", "test_listener_http.py"),
                             "test_malformed_request_400_then_close", "data")
    set_seeds(valid, invalid)
    commobj_seeds()
    http_seeds(malformed)
    ws_seeds()


if __name__ == "__main__":
    main()
