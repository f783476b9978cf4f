"""Small shared helpers for the setstream benchmark scenarios.

Self-contained on purpose (standard library + psycopg2 only), so that the
scenarios do not depend on bench/lib.py.  Everything a scenario reports goes
to stdout as one JSON object per line (result()); everything else goes to
stderr (log()).
"""
import json
import os
import re
import resource
import socket
import sys
import time
import uuid

import psycopg2

CAEP_SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def duration():
    """BENCH_DURATION in seconds (float, default 10)."""
    try:
        d = float(os.environ.get("BENCH_DURATION", "10"))
    except ValueError:
        d = 10.0
    return d if d > 0 else 10.0


def cache_dir():
    d = os.environ.get("BENCH_CACHE")
    if not d:
        d = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
    os.makedirs(d, exist_ok=True)
    return d


def base_url():
    url = os.environ.get("SETSTREAM_URL")
    if url:
        return url.rstrip("/")
    return "http://127.0.0.1:%s" % os.environ.get("SETSTREAM_PORT", "8417")


def host_port():
    m = re.match(r"^https?://([^/:]+|\[[^\]]+\])(?::(\d+))?", base_url())
    if not m:
        raise SystemExit("cannot parse SETSTREAM_URL %r" % base_url())
    return m.group(1).strip("[]"), int(m.group(2) or 80)


def ws_url(stream):
    return "ws" + base_url()[len("http"):] + "/streams/%s/pushpull" % stream


def unique_name(prefix):
    """A stream name of its own for this run: prefix-<pid>-<random>."""
    return "%s-%d-%s" % (prefix, os.getpid(), uuid.uuid4().hex[:8])


def result(scenario, target, sets_per_s=None, p50_ms=None, p99_ms=None,
           limit=None, limit_per_s=None, cpu_pct=None, rss_mb=None, note="",
           private_mb=None, slope_kb_min=None, errors=None):
    def num(v, nd=3):
        return None if v is None else round(float(v), nd)
    line = {
        "scenario": scenario,
        "sets_per_s": num(sets_per_s, 1),
        "p50_ms": num(p50_ms),
        "p99_ms": num(p99_ms),
        "limit": limit,
        "limit_per_s": num(limit_per_s, 1),
        "target": target,
        "cpu_pct": num(cpu_pct, 1),
        "rss_mb": num(rss_mb, 1),
        "note": note,
    }
    if private_mb is not None:  # the listener's own memory (RssAnon + RssFile)
        line["private_mb"] = num(private_mb, 1)
    if slope_kb_min is not None:  # soak: memory growth after warm-up
        line["slope_kb_min"] = num(slope_kb_min, 2)
    if errors is not None:
        line["errors"] = int(errors)
    print(json.dumps(line), flush=True)


def connect(autocommit=True, dbname=None):
    """psycopg2 connection from the PG* environment."""
    kw = {"dbname": dbname} if dbname else {}
    conn = psycopg2.connect(application_name="setstream-bench", **kw)
    conn.autocommit = autocommit
    return conn


def q(conn, sql, args=None):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        if cur.description is None:
            return None
        return cur.fetchall()


def q1(conn, sql, args=None):
    rows = q(conn, sql, args)
    return rows[0][0] if rows else None


def listener_pids(conn):
    return [r[0] for r in q(conn, "SELECT pid FROM pg_stat_activity "
                                  "WHERE backend_type = 'setstream listener' ORDER BY pid")]


def proc_cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (None when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def proc_status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def backend_pid(conn):
    return q1(conn, "SELECT pg_backend_pid()")


def rss_mb(pids):
    vals = [proc_status_kb(p, "VmRSS") for p in pids]
    vals = [v for v in vals if v is not None]
    return sum(vals) / 1024.0 if vals else None


class CpuMeter:
    """CPU use of some processes over an interval, in % of one core."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.start()

    def _ticks(self):
        t = [proc_cpu_ticks(p) for p in self.pids]
        return sum(x for x in t if x is not None)

    def start(self):
        self.t0 = time.monotonic()
        self.c0 = self._ticks()

    def pct(self):
        dt = time.monotonic() - self.t0
        if dt <= 0 or not self.pids:
            return None
        return (self._ticks() - self.c0) / CLK_TCK / dt * 100.0


class SelfCpu:
    """This process's own CPU (all threads), in % of one core."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.c0 = time.process_time()

    def pct(self):
        dt = time.monotonic() - self.t0
        return (time.process_time() - self.c0) / dt * 100.0 if dt > 0 else None


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a list; None when empty."""
    if not values:
        return None
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stream:
    """A stream of this run: created on enter, dropped on exit.

    vacuum=True: after the drop, VACUUM ANALYZE the outbox and events tables,
    so that the rows this scenario made and deleted leave neither dead tuples
    nor skewed planner statistics to the scenarios that follow.
    """

    def __init__(self, conn, prefix, issuer=None, audience=None, peer_issuer=None, vacuum=False):
        self.conn = conn
        self.vacuum = vacuum
        self.name = unique_name(prefix)
        self.issuer = issuer or "https://bench.example/%s" % self.name
        self.audience = audience or ["https://receiver.example/%s" % self.name]
        self.peer_issuer = peer_issuer
        q(conn, "SELECT setstream.create_stream(%s, %s, %s, %s)",
          (self.name, self.issuer, self.audience, self.peer_issuer))

    def drop(self):
        try:
            if self.conn.closed:
                self.conn = connect()
            if not self.conn.autocommit:
                self.conn.rollback()
            q(self.conn, "SELECT setstream.drop_stream(%s)", (self.name,))
            if self.vacuum:
                q(self.conn, "VACUUM (ANALYZE) setstream.outbox")
                q(self.conn, "VACUUM (ANALYZE) setstream.events")
        except Exception as e:  # noqa: BLE001 -- best effort clean-up
            log("could not drop stream %s: %s" % (self.name, e))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.drop()
        return False


class HttpConn:
    """A minimal keep-alive HTTP/1.1 client over one TCP socket (loopback)."""

    def __init__(self, host=None, port=None, timeout=60.0):
        if host is None:
            host, port = host_port()
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send_request(self, method, path, body=b"", headers=None):
        h = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (self.host, self.port),
             "Content-Length: %d" % len(body)]
        for k, v in (headers or {}).items():
            h.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(h) + "\r\n\r\n").encode() + body)

    def _fill(self):
        chunk = self.sock.recv(262144)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def request(self, method, path, body=b"", headers=None):
        self.send_request(method, path, body, headers)
        return self.read_response()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def openssl_speed(alg_args, seconds=3):
    """Run `openssl speed -seconds N <alg_args>` (one core); return its stdout."""
    import subprocess
    try:
        out = subprocess.run(["openssl", "speed", "-seconds", str(seconds)] + alg_args,
                             capture_output=True, text=True, timeout=seconds * 10 + 30)
        return out.stdout
    except (OSError, subprocess.SubprocessError) as e:
        log("openssl speed failed: %s" % e)
        return ""


def openssl_rates(alg_args, seconds=3):
    """(sign/s, verify/s) from the last table line of `openssl speed`."""
    out = openssl_speed(alg_args, seconds)
    for line in reversed(out.splitlines()):
        nums = re.findall(r"(\d+(?:\.\d+)?)", line)
        if len(nums) >= 4 and ("bits" in line or "nistp" in line or "ecdsa" in line.lower()):
            return float(nums[-2]), float(nums[-1])
    return None, None


# ---------------------------------------------------------------------------
# Commit-to-delivery latency (latency_ws.py, latency_longpoll.py)
# ---------------------------------------------------------------------------
def paced_emitter(stream, rate, seconds, threads=8):
    """Emit SETs on `stream`, one per autocommit transaction, paced at `rate`/s
    over `seconds`, from `threads` sessions sharing one schedule.

    Returns (commits, errors, elapsed): commits maps jti -> (t_commit,
    commit_latency_s) where t_commit is time.monotonic() right after the
    commit returned.
    """
    import threading
    commits = {}
    errors = []
    lock = threading.Lock()
    state = {"i": 0}
    total = int(rate * seconds)
    conns = [connect() for _ in range(threads)]
    t0 = time.monotonic() + 0.2

    def worker(conn):
        cur = conn.cursor()
        cur.execute("PREPARE bench_emit(text, text) AS SELECT setstream.emit($1, $2, '{}'::jsonb, "
                    "jsonb_build_object('format', 'email', 'email', 'latency@bench.example'))")
        while True:
            with lock:
                i = state["i"]
                if i >= total or len(errors) > 10:
                    return
                state["i"] = i + 1
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                t_start = time.monotonic()
                cur.execute("EXECUTE bench_emit(%s, %s)", (stream, CAEP_SESSION_REVOKED))
                jti = cur.fetchone()[0]
                t_commit = time.monotonic()
                commits[jti] = (t_commit, t_commit - t_start)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

    ths = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    elapsed = time.monotonic() - t0
    for c in conns:
        c.close()
    return commits, errors, elapsed


def latency_report(scenario, target, commits, arrivals, errors, emit_elapsed,
                   listener_cpu, rss, extra_note="", fail_msg=None):
    """Print the result line of a latency scenario.  arrivals: jti -> t."""
    lat = [(arrivals[j] - c[0]) * 1000.0 for j, c in commits.items() if j in arrivals]
    commit_ms = [c[1] * 1000.0 for c in commits.values()]
    missing = len([j for j in commits if j not in arrivals])
    unknown = len([j for j in arrivals if j not in commits])
    delivered_rate = len(lat) / emit_elapsed if emit_elapsed > 0 else None
    note = ("emitted %d at %.0f/s (emit+commit p50 %.2f ms, p99 %.2f ms), delivered %d, "
            "missing %d, unexpected %d, negative latencies %d, max %.2f ms"
            % (len(commits), len(commits) / emit_elapsed if emit_elapsed > 0 else 0,
               percentile(commit_ms, 50) or 0, percentile(commit_ms, 99) or 0,
               len(lat), missing, unknown, len([x for x in lat if x < 0]),
               max(lat) if lat else 0))
    if lat:
        # the trend: p99 per second of the run, by commit time
        t_first = min(c[0] for c in commits.values())
        buckets = {}
        for j, c in commits.items():
            if j in arrivals:
                buckets.setdefault(int(c[0] - t_first), []).append((arrivals[j] - c[0]) * 1000.0)
        note += "; p99 per second: [%s]" % ", ".join(
            "%.1f" % percentile(buckets[k], 99) for k in sorted(buckets))
    if errors:
        note += "; emit errors: %d (%s)" % (len(errors), errors[0][:200])
    if extra_note:
        note += "; " + extra_note
    ok = fail_msg is None and lat and not errors and missing == 0
    if not ok:
        note = "CHECK FAILED: %s%s" % ((fail_msg + "; ") if fail_msg else "", note)
    result(scenario, target, sets_per_s=delivered_rate if ok else None,
           p50_ms=percentile(lat, 50) if ok else None,
           p99_ms=percentile(lat, 99) if ok else None,
           cpu_pct=listener_cpu, rss_mb=rss, note=note)
    return 0 if ok else 1


def commit_probe(seconds=1.0):
    """Commits/s and p50 latency (ms) of one session doing the smallest
    durable transaction (a transactional WAL message: a flushed commit)."""
    conn = connect()
    lat = []
    try:
        cur = conn.cursor()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            cur.execute("SELECT pg_logical_emit_message(true, 'setstream-bench', '')")
            cur.fetchone()
            lat.append(time.monotonic() - t)
    finally:
        conn.close()
    if not lat:
        return None, None
    return len(lat) / sum(lat), percentile(lat, 50) * 1000.0


def wait_for_count(counter, want, timeout):
    """Wait until a multiprocessing.Value reaches `want` (or timeout s)."""
    end = time.monotonic() + timeout
    while counter.value < want and time.monotonic() < end:
        time.sleep(0.02)
    return counter.value


def wait_acked(conn, stream, want, timeout=3.0, exclude_jti=None):
    """Outbox rows of `stream` in state acked, waiting (bounded) for `want`."""
    end = time.monotonic() + timeout
    while True:
        n = q1(conn, "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'acked'"
                     " AND jti IS DISTINCT FROM %s", (stream, exclude_jti))
        if n >= want or time.monotonic() >= end:
            return n
        time.sleep(0.05)


def outbox_stats_note(conn):
    """What the planner knows about setstream.outbox (delivery plans depend
    on it, so results can depend on what ran before)."""
    row = q(conn, "SELECT c.reltuples::bigint, c.relpages, s.n_live_tup, s.n_dead_tup, "
                  "greatest(s.last_analyze, s.last_autoanalyze) "
                  "FROM pg_class c JOIN pg_stat_all_tables s ON s.relid = c.oid "
                  "WHERE c.oid = 'setstream.outbox'::regclass")[0]
    return ("outbox at start: reltuples %s, relpages %s, live %s, dead %s, last analyze %s"
            % (row[0], row[1], row[2], row[3], row[4].strftime("%H:%M:%S") if row[4] else "never"))
