#!/usr/bin/python3
"""Scenario push: RFC 8935 push, one SET per request, 64 keep-alive
connections (wrk -t2 -c64, bench/push.lua), distinct pre-generated SETs.
RS256 (target >= 20,000 SETs/s) and ES256 (target >= 50% of OpenSSL's
ES256 verify rate on both cores).  BENCH_PUSH_ALGS narrows the list."""
import os
import sys

sys.path.insert(0, os.environ.get("BENCH_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lib  # noqa: E402

CONNS = int(os.environ.get("BENCH_PUSH_CONNS", "64"))

for alg in os.environ.get("BENCH_PUSH_ALGS", "RS256 ES256").split():
    speed = lib.openssl_speed(alg)
    out = lib.push_measure(alg, conns=CONNS, threads=2,
                           label="push %s, 1 SET/request, %d conns" % (alg, CONNS))
    out.update(limit="openssl %s verify, 2 processes" % speed["openssl"],
               limit_per_s=speed["verify_2"],
               target=">= 20000 SETs/s" if alg == "RS256" else ">= 50% of limit")
    lib.result(**out)
