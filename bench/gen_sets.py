#!/usr/bin/python3
"""bench/gen_sets.py: pre-generate distinct, validly signed SETs.

setstream signs them itself, in C: a transmitter stream gets a signing
key (generate_key), and setstream.emit() is called from
`SELECT count(setstream.emit(...)) FROM generate_series(...)` on two
connections at once (both cores).  The signed tokens are copied out of the
outbox, the transmitter stream is dropped, and the SETs are cached in
BENCH_CACHE:

    sets-<ALG>-<COUNT>.tsv    one SET a line: <jti> TAB <compact JWS>
    sets-<ALG>-<COUNT>.json   alg, count, issuer (their iss), audience (their
                              aud), jwk (the signer's public key), kid

A stream that receives them (lib.receiver_for) has issuer = their aud,
peer_issuer = their iss, and the public key; each run uses a fresh stream,
so none of them is a duplicate.  The cache outlives the cluster: nothing
in a SET depends on the database that signed it (setstream checks no
freshness of iat).

    gen_sets.py ALG COUNT     make sure the cache holds COUNT SETs of ALG
"""
import glob
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

EVENT_TYPE = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CHUNK = 5000

# SETs a measurement may need, per second of BENCH_DURATION: above what
# setstream can reach on 2 cores (the RS256 verify limit of OpenSSL is
# ~100k/s, ES256's ~40k/s, and the database has its share too).
RATE_CEILING = {"RS256": 40000, "ES256": 30000}


def needed(alg, duration):
    n = int(duration * RATE_CEILING.get(alg, 30000) * 1.1)
    return max(50000, -(-n // 50000) * 50000)


def find(alg, count):
    """The smallest cache of ALG with at least COUNT SETs, or None."""
    best = None
    for meta_path in glob.glob(os.path.join(lib.CACHE, "sets-%s-*.json" % alg)):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue
        tsv = meta_path[:-5] + ".tsv"
        if meta.get("count", 0) >= count and os.path.exists(tsv):
            if best is None or meta["count"] < best[1]["count"]:
                best = (tsv, meta)
    return best


def generate(alg, count):
    name = "benchgen_%s" % alg.lower()
    issuer = lib.ISSUER_FMT.format(alg=alg)
    lib.log("generating %d %s SETs with setstream.emit() on 2 connections" % (count, alg))
    info = lib.make_stream(name, peer=False, alg=alg, issuer=issuer, audience=[lib.RECEIVER])
    t0 = time.monotonic()
    errors = []

    def worker(first, last):
        try:
            c = lib.connect()
            for lo in range(first, last + 1, CHUNK):
                hi = min(last, lo + CHUNK - 1)
                lib.sql("SELECT count(setstream.emit(%s, %s,"
                        " jsonb_build_object('event_timestamp', 1700000000 + g,"
                        "   'initiating_entity', 'policy',"
                        "   'reason_admin', jsonb_build_object('en', 'benchmark')),"
                        " jsonb_build_object('format', 'email', 'email', 'user' || g || '@example.com')))"
                        " FROM generate_series(%s, %s) g",
                        (name, EVENT_TYPE, lo, hi), conn=c)
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    half = count // 2
    threads = [threading.Thread(target=worker, args=(1, half)),
               threading.Thread(target=worker, args=(half + 1, count))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = time.monotonic() - t0
    lib.log("signed %d %s SETs in %.1f s (%.0f/s)" % (count, alg, wall, count / wall))

    os.makedirs(lib.CACHE, exist_ok=True)
    base = os.path.join(lib.CACHE, "sets-%s-%d" % (alg, count))
    c = lib.connect()
    with open(base + ".tsv.tmp", "w") as f, c.cursor() as cur:
        cur.copy_expert("COPY (SELECT jti, token FROM setstream.outbox WHERE stream = '%s'"
                        " ORDER BY seq) TO STDOUT" % name, f)
    c.close()
    with open(base + ".tsv.tmp") as f:
        n = sum(1 for _ in f)
    if n != count:
        raise RuntimeError("expected %d SETs in the outbox, found %d" % (count, n))
    jwk = info["jwk"]
    meta = {"alg": alg, "count": count, "issuer": issuer, "audience": [lib.RECEIVER],
            "jwk": jwk, "kid": jwk.get("kid"), "event_type": EVENT_TYPE,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "sign_rate_per_s": round(count / wall, 1)}
    lib.drop_stream_if_exists(name)
    # the deleted outbox rows would otherwise slow down every later poll
    lib.sql("VACUUM ANALYZE setstream.outbox")
    os.replace(base + ".tsv.tmp", base + ".tsv")
    with open(base + ".json", "w") as f:
        json.dump(meta, f, indent=1)
    return base + ".tsv", meta


def ensure(alg, count):
    """(path of the .tsv, meta) of a cache with at least COUNT SETs of ALG."""
    found = find(alg, count)
    if found:
        return found
    return generate(alg, count)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    path, meta = ensure(sys.argv[1], int(sys.argv[2]))
    print(path)
