#!/usr/bin/python3
"""Scenario pushpull_http: the pushpull HTTP binding, 100 SETs per
Communication Object, RS256, wrk -t2 -c$BENCH_PUSHPULL_CONNS (16) with
bench/pushpull.lua; every answer must ack all 100.  Target >= 33,000
SETs/s."""
import os
import sys

sys.path.insert(0, os.environ.get("BENCH_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lib  # noqa: E402

CONNS = int(os.environ.get("BENCH_PUSHPULL_CONNS", "16"))
PER = 100

speed = lib.openssl_speed("RS256")
out = lib.push_measure("RS256", conns=CONNS, threads=2, lua="pushpull.lua", per_request=PER,
                       label="pushpull HTTP RS256, %d SETs/object, %d conns" % (PER, CONNS))
out.update(limit="openssl %s verify, 2 processes" % speed["openssl"],
           limit_per_s=speed["verify_2"], target=">= 33000 SETs/s")
out["note"] = "latency is per Communication Object of %d SETs; " % PER + out["note"]
lib.result(**out)
