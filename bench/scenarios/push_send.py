#!/usr/bin/python3
"""Scenario push_send: setstream as an RFC 8935 transmitter (issue 17).

A fast local receiver, nginx answering every POST `202` without storing
anything, is pushed to by setstream's sender over TLS, once over HTTP/1.1
keep-alive and once over HTTP/2 (ALPN h2; libcurl multiplexes a stream's
pushes on one connection).  For each: BENCH_PUSH_SEND_SETS SETs (ES256,
signed by emit()) are emitted on a stream whose delivery is `poll`, the
delivery is switched to `push` with push_concurrency BENCH_PUSH_SEND_CONC
(default 64, the most allowed), and the time from that commit until every
outbox row is `acked` gives SETs/s.

The limit, measured in the same run against the same nginx with the same
body (one of the stream's own tokens) and the same number of requests in
flight: wrk (HTTP/1.1 keep-alive, -c CONC) and h2load (HTTP/2, one
connection, -m CONC streams).  The ratio says how much of what the
receiver can take the sender uses.  nginx and h2load come from
`scripts/deps.sh --bench` (nginx-light, nghttp2-client); nginx runs with
a private configuration under a temporary directory, on loopback ports of
its own, and is stopped at the end."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.environ.get("BENCH_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lib  # noqa: E402

CONC = int(os.environ.get("BENCH_PUSH_SEND_CONC", "64"))
SETS = int(os.environ.get("BENCH_PUSH_SEND_SETS", str(3000 * max(1, int(lib.DURATION)))))
STREAM = "bench-push-send"
EVENT = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

NGINX_CONF = """
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log warn;
daemon on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(dir)s/body;
    proxy_temp_path %(dir)s/proxy;
    fastcgi_temp_path %(dir)s/fastcgi;
    uwsgi_temp_path %(dir)s/uwsgi;
    scgi_temp_path %(dir)s/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    ssl_certificate %(dir)s/cert.pem;
    ssl_certificate_key %(dir)s/key.pem;
    server {
        listen 127.0.0.1:%(h1)d ssl;
        location / { return 202; }
    }
    server {
        listen 127.0.0.1:%(h2)d ssl http2;
        location / { return 202; }
    }
}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(d):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", d + "/key.pem",
                    "-out", d + "/cert.pem"], check=True, capture_output=True)
    ports = {"dir": d, "h1": free_port(), "h2": free_port()}
    with open(d + "/nginx.conf", "w") as f:
        f.write(NGINX_CONF % ports)
    # the cluster's processes (user postgres when run as root) read the CA
    os.chmod(d, 0o755)
    os.chmod(d + "/cert.pem", 0o644)
    subprocess.run(["nginx", "-c", d + "/nginx.conf", "-p", d, "-e", d + "/error.log"],
                   check=True, capture_output=True)
    return ports


def stop_nginx(d):
    try:
        with open(d + "/nginx.pid") as f:
            os.kill(int(f.read().strip()), 15)
    except (OSError, ValueError):
        pass


def set_gucs(ca_file):
    lib.sql("ALTER SYSTEM SET setstream.outbound_ca_file = %s", (ca_file,))
    lib.sql("ALTER SYSTEM SET setstream.outbound_allowed_networks = '127.0.0.0/8'")
    lib.sql("SELECT pg_reload_conf()")
    time.sleep(1.5)


def reset_gucs():
    lib.sql("ALTER SYSTEM RESET setstream.outbound_ca_file")
    lib.sql("ALTER SYSTEM RESET setstream.outbound_allowed_networks")
    lib.sql("SELECT pg_reload_conf()")


def sender_pids():
    return [r[0] for r in lib.sql("SELECT pid FROM pg_stat_activity"
                                  " WHERE backend_type = 'setstream sender' ORDER BY pid")]


def acked():
    return lib.sql1("SELECT count(*) FROM setstream.outbox WHERE stream = %s"
                    " AND state = 'acked'", (STREAM,))


def not_acked_states():
    return dict(lib.sql("SELECT state, count(*) FROM setstream.outbox WHERE stream = %s"
                        " AND state <> 'acked' GROUP BY 1", (STREAM,)))


def send_measure(url, label):
    """Emit SETS on a poll stream, switch it to push to URL, time until all
    are acked; returns (a result dict, one stored token for the limit)."""
    lib.make_stream(STREAM, peer=False, alg="ES256")
    lib.sql("SELECT count(setstream.emit(%s, %s, jsonb_build_object('subject', i)))"
            " FROM generate_series(1, %s) i", (STREAM, EVENT, SETS))
    token = lib.sql1("SELECT token FROM setstream.outbox WHERE stream = %s LIMIT 1", (STREAM,))
    lib.checkpoint()
    lib.wait_quiet()
    sampler = lib.ProcSampler(sender_pids()).start()
    t0 = time.monotonic()
    lib.sql("SELECT setstream.set_delivery(%s, 'push', %s, 'Bearer bench', %s)",
            (STREAM, url, CONC))
    deadline = t0 + max(120, SETS / 200.0)
    done = 0
    while time.monotonic() < deadline:
        done = acked()
        if done >= SETS:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    m = sampler.stop()
    errors = SETS - done
    states = not_acked_states() if errors else {}
    failures = lib.sql1("SELECT failures FROM setstream.deliveries WHERE stream = %s", (STREAM,))
    # attempts beyond the first: pushes that failed and were made again
    retried = lib.sql1("SELECT coalesce(sum(attempts - 1), 0) FROM setstream.outbox"
                       " WHERE stream = %s AND attempts > 1", (STREAM,))
    if retried:
        lib.log("failed attempts: %s" % lib.sql("SELECT last_status, last_error, count(*)"
                                                " FROM setstream.outbox WHERE stream = %s"
                                                " AND attempts > 1 GROUP BY 1, 2", (STREAM,)))
    if errors:
        lib.log("delivery: %s" % lib.sql("SELECT state, failures, suspended_reason"
                                         " FROM setstream.deliveries WHERE stream = %s",
                                         (STREAM,)))
        lib.log("errors: %s" % lib.sql("SELECT last_status, last_error, count(*)"
                                       " FROM setstream.outbox WHERE stream = %s"
                                       " AND state <> 'acked' GROUP BY 1, 2", (STREAM,)))
    lib.sql("SELECT setstream.drop_stream(%s)", (STREAM,))
    out = dict(scenario=label, sets_per_s=round(done / elapsed, 1), errors=errors,
               cpu_pct=m["cpu_pct"], rss_mb=m["rss_mb"], others_cpu_pct=m["others_cpu_pct"],
               note="%d SETs, push_concurrency %d, %.2f s from set_delivery to the last ack;"
                    " sender CPU %.0f%%, whole cluster %.0f%%, other processes %.0f%%;"
                    " failed attempts %s%s"
                    % (SETS, CONC, elapsed, m["cpu_pct"], m["pg_cpu_pct"],
                       m["others_cpu_pct"], retried,
                       "; not acked: %s, delivery failures %s" % (states, failures)
                       if errors else ""))
    return out, token


def wrk_limit(url, body_file):
    """wrk, HTTP/1.1 keep-alive, CONC connections, posting the token"""
    lib.wait_quiet()
    env = dict(os.environ, BENCH_BODY_FILE=body_file)
    cmd = ["wrk", "-t2", "-c%d" % CONC, "-d%ds" % max(1, round(lib.DURATION)),
           "-s", os.path.join(lib.BENCH_DIR, "post_file.lua"), url]
    lib.log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env,
                       timeout=lib.DURATION + 120)
    sys.stderr.write(p.stdout + p.stderr)
    for line in p.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError("wrk gave no rate: %s" % p.stdout[-1000:])


def h2load_limit(url, body_file):
    """h2load, HTTP/2 over TLS, one connection, CONC streams in flight"""
    lib.wait_quiet()
    cmd = ["h2load", "-c1", "-m%d" % CONC, "-D%d" % max(1, round(lib.DURATION)),
           "-d", body_file, "-H", "Content-Type: application/secevent+jwt", url]
    lib.log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=lib.DURATION + 120)
    sys.stderr.write(p.stdout + p.stderr)
    for line in p.stdout.splitlines():
        if line.startswith("finished in"):
            # "finished in 10.00s, 41234.50 req/s, 3.2MB/s"
            return float(line.split(",")[1].split()[0])
    raise RuntimeError("h2load gave no rate: %s" % p.stdout[-1000:])


def main():
    for tool in ("nginx", "h2load", "wrk"):
        if shutil.which(tool) is None:
            raise RuntimeError("%s is missing: run scripts/deps.sh --bench" % tool)
    d = tempfile.mkdtemp(prefix="setstream-bench-nginx.")
    try:
        ports = start_nginx(d)
        set_gucs(d + "/cert.pem")
        h1 = "https://127.0.0.1:%d/events" % ports["h1"]
        h2 = "https://127.0.0.1:%d/events" % ports["h2"]
        protos = os.environ.get("BENCH_PUSH_SEND_PROTOS", "h1 h2").split()
        for proto, url in (("HTTP/1.1 keep-alive", h1), ("HTTP/2", h2)):
            if {"HTTP/2": "h2"}.get(proto, "h1") not in protos:
                continue
            out, token = send_measure(url, "push send ES256 to nginx 202, %s, concurrency %d"
                                      % (proto, CONC))
            body = d + "/body.jwt"
            with open(body, "w") as f:
                f.write(token)
            if proto == "HTTP/2":
                limit = h2load_limit(url, body)
                out["limit"] = "the same nginx driven by h2load (1 connection, %d streams)" % CONC
            else:
                limit = wrk_limit(url, body)
                out["limit"] = "the same nginx driven by wrk (%d connections)" % CONC
            out["limit_per_s"] = round(limit, 1)
            out["ratio"] = round(out["sets_per_s"] / limit, 3) if limit else None
            out["target"] = "(none: issue 17 asks for the figure next to its limit)"
            lib.result(**out)
    finally:
        reset_gucs()
        stop_nginx(d)
        time.sleep(0.5)
        shutil.rmtree(d, ignore_errors=True)


main()
