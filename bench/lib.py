#!/usr/bin/python3
"""bench/lib.py: helpers for setstream's benchmark scenarios.

Scenarios (bench/scenarios/*) import this module:

    sys.path.insert(0, os.environ["BENCH_DIR"]); import lib

They run under bench/run.sh, which exports PGHOST, PGPORT, PGUSER,
PGDATABASE, SETSTREAM_URL, SETSTREAM_PORT, BENCH_DIR, BENCH_CACHE,
BENCH_DURATION, BENCH_RUN, BENCH_PGDATA (and BENCH_SESSION, BENCH_LOGFILE).
A scenario prints its results on stdout, one JSON object a line, with
result(); everything else goes to stderr (log()).

The module is also a command line tool for run.sh:

    lib.py limits               print the limit lines of this run
    lib.py report OUT.md FILE   write RESULTS.md from the collected lines
"""
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

BENCH_DIR = os.environ.get("BENCH_DIR") or os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("BENCH_CACHE") or os.path.join(BENCH_DIR, ".cache")
URL = os.environ.get("SETSTREAM_URL", "http://127.0.0.1:8417")
DURATION = float(os.environ.get("BENCH_DURATION", "10"))
RUN = int(os.environ.get("BENCH_RUN", "1"))
SESSION = os.environ.get("BENCH_SESSION", "nosession")
PGDATA = os.environ.get("BENCH_PGDATA", "")
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")

RESULT_FIELDS = ("scenario", "sets_per_s", "p50_ms", "p99_ms", "limit",
                 "limit_per_s", "target", "cpu_pct", "rss_mb", "note")

# Where cached SETs come from and go to (see gen_sets.py).
ISSUER_FMT = "https://bench-transmitter.example/{alg}"
RECEIVER = "https://bench-receiver.example"


def log(*args):
    print("[%s]" % time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


def result(**fields):
    """Print one result line (JSON) on stdout; missing fields are null."""
    line = {k: fields.pop(k, None) for k in RESULT_FIELDS}
    line.update(fields)
    print(json.dumps(line), flush=True)
    return line


# ---------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------

def connect(autocommit=True):
    import psycopg2
    conn = psycopg2.connect("", application_name="setstream-bench")
    conn.autocommit = autocommit
    return conn


_conn = None


def sql(query, args=None, conn=None):
    """Run one statement (autocommit); return all rows, or [] when none."""
    global _conn
    if conn is None:
        if _conn is None or _conn.closed:
            _conn = connect()
        conn = _conn
    with conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else []


def sql1(query, args=None, conn=None):
    rows = sql(query, args, conn)
    return rows[0][0] if rows else None


def drop_stream_if_exists(name):
    if sql1("SELECT 1 FROM setstream.streams WHERE name = %s", (name,)):
        sql("SELECT setstream.drop_stream(%s)", (name,))


def make_stream(name, peer=True, alg="ES256", issuer=None, audience=None,
                peer_issuer=None, peer_jwk=None, profile="ssf"):
    """Create stream NAME afresh (dropping an old one) with a bearer token.

    peer=True: a receiving stream.  Its peer signs with PEER_JWK (a public
    JWK dict; when None a new key pair for ALG is made with jwcrypto and
    returned as info["peer_key"], so that the caller can sign SETs with
    sign_set()).  peer=False: a transmitting stream; this database gets a
    signing key for ALG (generate_key), returned as info["jwk"].

    Returns a dict: name, token, issuer, audience, peer_issuer, url
    (SETSTREAM_URL/streams/NAME), headers (the Authorization header), and
    peer_key / jwk.
    """
    issuer = issuer or "https://%s.receiver.example" % name
    audience = audience or ["https://%s.peer.example" % name]
    info = {"name": name, "issuer": issuer, "audience": audience, "alg": alg}
    drop_stream_if_exists(name)
    if peer:
        peer_issuer = peer_issuer or audience[0]
        sql("SELECT setstream.create_stream(%s, %s, %s, %s, %s)",
            (name, issuer, audience, peer_issuer, profile))
        if peer_jwk is None:
            info["peer_key"] = new_jwk(alg)
            peer_jwk = json.loads(info["peer_key"].export_public())
            peer_jwk["alg"] = alg
        info["kid"] = sql1("SELECT setstream.add_key(%s, %s::jsonb)",
                           (name, json.dumps(peer_jwk)))
        info["peer_issuer"] = peer_issuer
    else:
        sql("SELECT setstream.create_stream(%s, %s, %s, NULL, %s)",
            (name, issuer, audience, profile))
        info["jwk"] = sql1("SELECT setstream.generate_key(%s, %s)", (name, alg))
        info["peer_issuer"] = None
    info["token"] = sql1("SELECT setstream.issue_token(%s)", (name,))
    info["url"] = "%s/streams/%s" % (URL, name)
    info["headers"] = {"Authorization": "Bearer " + info["token"]}
    return info


def new_jwk(alg):
    from jwcrypto import jwk
    if alg.startswith(("RS", "PS")):
        return jwk.JWK.generate(kty="RSA", size=2048)
    if alg == "EdDSA":
        return jwk.JWK.generate(kty="OKP", crv="Ed25519")
    crv = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
    return jwk.JWK.generate(kty="EC", crv=crv)


def sign_set(info, jti, subject=None, event_type=None, event=None):
    """A SET for stream INFO (from make_stream(peer=True)) signed by its peer."""
    from jwcrypto import jws
    claims = {
        "iss": info["peer_issuer"], "aud": info["issuer"], "jti": jti,
        "iat": int(time.time()),
        "sub_id": subject or {"format": "email", "email": "user@example.com"},
        "events": {event_type or "https://schemas.openid.net/secevent/caep/event-type/session-revoked":
                   event or {"event_timestamp": int(time.time())}},
    }
    key = info["peer_key"]
    s = jws.JWS(json.dumps(claims, separators=(",", ":")))
    s.add_signature(key, None, json.dumps({"alg": info["alg"], "kid": key.thumbprint(),
                                           "typ": "secevent+jwt"}))
    return s.serialize(compact=True)


def listener_pids():
    return [r[0] for r in sql("SELECT pid FROM pg_stat_activity"
                              " WHERE backend_type = 'setstream listener' ORDER BY pid")]


def postmaster_pid():
    with open(os.path.join(PGDATA, "postmaster.pid")) as f:
        return int(f.readline())


def cluster_pids():
    """The postmaster and every process it started."""
    try:
        pm = postmaster_pid()
    except (OSError, ValueError):
        return []
    pids = [pm]
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pm:
                pids.append(int(stat.split("/")[2]))
        except (OSError, ValueError, IndexError):
            pass
    return pids


def wait_listener(timeout=60):
    """Wait until GET /jwks.json answers 200."""
    import requests
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(URL + "/jwks.json", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("the listener at %s did not answer /jwks.json within %ss"
                       % (URL, timeout))


def pg_ctl(*args):
    cmd = [os.path.join(PGBIN, "pg_ctl"), "-D", PGDATA] + list(args)
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, cwd="/", stdout=subprocess.DEVNULL)


def restart_cluster(settings=None, reset=()):
    """ALTER SYSTEM SET each of SETTINGS (dict), RESET each name of RESET,
    restart the cluster, and wait for the listener."""
    global _conn
    for name, value in (settings or {}).items():
        sql("ALTER SYSTEM SET %s = %s" % (name, _literal(value)))
    for name in reset:
        sql("ALTER SYSTEM RESET %s" % name)
    if _conn is not None:
        _conn.close()
        _conn = None
    logfile = os.environ.get("BENCH_LOGFILE") or os.path.join(os.path.dirname(PGDATA), "logfile")
    pg_ctl("-l", logfile, "-m", "fast", "-w", "-t", "120", "restart")
    wait_listener()


def with_workers(measure, counts=(1, 2)):
    """For each count of COUNTS: restart the cluster with setstream.workers
    = count, check that as many listeners run, and call measure(count);
    returns {count: its result}.  The setting is restored afterwards."""
    results = {}
    try:
        for workers in counts:
            log("restarting with setstream.workers = %d" % workers)
            restart_cluster({"setstream.workers": workers})
            pids = listener_pids()
            if len(pids) != workers:
                raise RuntimeError("expected %d listener processes, found %s" % (workers, pids))
            results[workers] = measure(workers)
    finally:
        log("restoring setstream.workers")
        restart_cluster(reset=["setstream.workers"])
    return results


def _literal(value):
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def checkpoint():
    sql("CHECKPOINT")


# ---------------------------------------------------------------------
# CPU and memory of processes during a measurement
# ---------------------------------------------------------------------

def _ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_busy():
    """Ticks all CPUs spent busy (not idle, not iowait) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]


def wait_quiet(threshold=None, max_wait=None):
    """Wait (up to BENCH_QUIET_WAIT s, default 20) until the machine's CPUs
    are busy less than BENCH_QUIET_PCT (default 25%, of one core) over a
    second: other processes on a shared machine skew a measurement.
    Returns the last busy % seen."""
    threshold = float(threshold if threshold is not None else os.environ.get("BENCH_QUIET_PCT", "25"))
    max_wait = float(max_wait if max_wait is not None else os.environ.get("BENCH_QUIET_WAIT", "20"))
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        m0, t0 = _machine_busy(), time.monotonic()
        time.sleep(1.0)
        busy = 100.0 * (_machine_busy() - m0) / CLK_TCK / (time.monotonic() - t0)
        if busy < threshold or time.monotonic() >= deadline:
            if told or busy >= threshold:
                log("machine busy %.0f%% before the measurement%s"
                    % (busy, "" if busy < threshold else " (waited %.0f s; measuring anyway)" % max_wait))
            return busy
        if not told:
            log("other processes keep the machine busy (%.0f%% CPU); waiting up to %.0f s"
                % (busy, max_wait))
            told = True


def _status_kb(pid, keys=("VmRSS", "RssAnon")):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0])
    return out


class ProcSampler:
    """CPU (utime+stime) and memory (VmRSS, RssAnon) of the listener
    processes, and the CPU of the whole cluster, between start() and
    stop().  RSS is the largest sum seen (sampled every 0.2 s)."""

    def __init__(self, pids=None):
        self.pids = pids if pids is not None else listener_pids()
        self.all = cluster_pids()

    def _sum_ticks(self, pids):
        t = 0
        for p in pids:
            try:
                t += _ticks(p)
            except OSError:
                pass
        return t

    def _sample_mem(self):
        rss = anon = 0
        for p in self.pids:
            try:
                s = _status_kb(p)
            except OSError:
                continue
            rss += s.get("VmRSS", 0)
            anon += s.get("RssAnon", 0)
        self.rss = max(self.rss, rss)
        self.anon = max(self.anon, anon)

    def _loop(self):
        while not self._stop.wait(0.2):
            self._sample_mem()

    def start(self):
        self.rss = self.anon = 0
        self._sample_mem()
        self.t0 = time.monotonic()
        self.c0 = self._sum_ticks(self.pids)
        self.a0 = self._sum_ticks(self.all)
        self.self0 = os.times()
        self.m0 = _machine_busy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        wall = time.monotonic() - self.t0
        c1 = self._sum_ticks(self.pids)
        a1 = self._sum_ticks(self.all)
        t1 = os.times()
        m1 = _machine_busy()
        self._stop.set()
        self._thread.join()
        self._sample_mem()
        # children = wrk or other clients this process ran and waited for
        client = ((t1.children_user + t1.children_system + t1.user + t1.system)
                  - (self.self0.children_user + self.self0.children_system
                     + self.self0.user + self.self0.system))
        pg = 100.0 * (a1 - self.a0) / CLK_TCK / wall
        busy = 100.0 * (m1 - self.m0) / CLK_TCK / wall
        return {
            "wall_s": wall,
            "machine_busy_pct": round(busy, 1),
            "others_cpu_pct": round(max(0.0, busy - pg - 100.0 * client / wall), 1),
            "cpu_pct": round(100.0 * (c1 - self.c0) / CLK_TCK / wall, 1),
            "pg_cpu_pct": round(pg, 1),
            "client_cpu_pct": round(100.0 * client / wall, 1),
            "rss_mb": round(self.rss / 1024.0, 1),
            "rss_anon_mb": round(self.anon / 1024.0, 1),
            "listeners": len(self.pids),
        }


def cpu_note(m):
    return ("listener RssAnon %.1f MB; CPU (100%% = one core): whole cluster %.0f%%,"
            " load generator %.0f%%, other processes on the machine %.0f%%"
            % (m["rss_anon_mb"], m["pg_cpu_pct"], m["client_cpu_pct"], m["others_cpu_pct"]))


def proc_cpu_rss(pids, seconds):
    """Sample PIDS for SECONDS; returns ProcSampler.stop()'s dict."""
    s = ProcSampler(pids).start()
    time.sleep(seconds)
    return s.stop()


# ---------------------------------------------------------------------
# Limits: OpenSSL's own rate, plain SQL
# ---------------------------------------------------------------------

OPENSSL_NAMES = {
    "RS256": ("rsa2048", r"^rsa\s+2048 bits"),
    "PS256": ("rsa2048", r"^rsa\s+2048 bits"),
    "ES256": ("ecdsap256", r"^\s*256 bits ecdsa \(nistp256\)"),
    "ES384": ("ecdsap384", r"^\s*384 bits ecdsa \(nistp384\)"),
    "ES512": ("ecdsap521", r"^\s*521 bits ecdsa \(nistp521\)"),
    "EdDSA": ("ed25519", r"^\s*253 bits EdDSA \(Ed25519\)"),
}


def _openssl_run(name, pattern, procs, seconds):
    """(sign/s, verify/s, CPU % the openssl processes got, CPU % of others)"""
    cmd = ["openssl", "speed", "-seconds", str(seconds)]
    if procs > 1:
        cmd += ["-multi", str(procs)]
    t0, m0, w0 = os.times(), _machine_busy(), time.monotonic()
    out = subprocess.run(cmd + [name], check=True, capture_output=True, text=True).stdout
    t1, m1, wall = os.times(), _machine_busy(), time.monotonic() - w0
    got = 100.0 * ((t1.children_user + t1.children_system)
                   - (t0.children_user + t0.children_system)) / wall
    others = max(0.0, 100.0 * (m1 - m0) / CLK_TCK / wall - got)
    for line in out.splitlines():
        if re.search(pattern, line):
            nums = re.findall(r"[\d.]+", line.split("bits", 1)[1].split(")")[-1])
            return float(nums[-2]), float(nums[-1]), round(got, 1), round(others, 1)
    raise RuntimeError("could not parse `%s`:\n%s" % (" ".join(cmd + [name]), out))


def openssl_speed(alg):
    """OpenSSL's sign/verify rate for ALG: {"sign_1", "verify_1", "sign_2",
    "verify_2"} (per second, 1 process and 2 processes on 2 cores).

    Measured once per run of run.sh (cached for the run in BENCH_CACHE)."""
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, "limits-%s-run%d.json" % (SESSION, RUN))
    cached = {}
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
    if alg in cached:
        return cached[alg]
    name, pattern = OPENSSL_NAMES[alg]
    wait_quiet()
    log("openssl speed %s (1 process, then 2)" % name)
    s1, v1, c1, o1 = _openssl_run(name, pattern, 1, 2)
    s2, v2, c2, o2 = _openssl_run(name, pattern, 2, 3)
    cached[alg] = {"openssl": name, "sign_1": s1, "verify_1": v1, "sign_2": s2, "verify_2": v2,
                   "cpu_1": c1, "others_1": o1, "cpu_2": c2, "others_2": o2}
    with open(path + ".tmp", "w") as f:
        json.dump(cached, f)
    os.replace(path + ".tmp", path)
    return cached[alg]


def bulk_insert_rate(n_rows, stream=None, conn=None):
    """Rows/s of one plain INSERT ... SELECT of N_ROWS rows of
    setstream.events (those of STREAM when given; repeated with other jtis
    when there are fewer) into an equivalent table: same columns, defaults,
    indexes, constraints and foreign key, committed with the cluster's
    synchronous_commit.  Returns (rows_per_s, rows)."""
    c = conn or connect()
    try:
        sql("DROP TABLE IF EXISTS public.bench_events_copy", conn=c)
        sql("DROP TABLE IF EXISTS public.bench_events_src", conn=c)
        sql("CREATE TABLE public.bench_events_copy (LIKE setstream.events INCLUDING ALL)", conn=c)
        sql("ALTER TABLE public.bench_events_copy ADD FOREIGN KEY (stream)"
            " REFERENCES setstream.streams (name) ON DELETE CASCADE ON UPDATE CASCADE", conn=c)
        where = "WHERE stream = %s" if stream else ""
        have = sql1("SELECT count(*) FROM setstream.events " + where,
                    (stream,) if stream else None, conn=c)
        if have == 0:
            raise RuntimeError("setstream.events is empty: nothing to copy")
        reps = -(-n_rows // have)
        # the source, read once into a table of its own (not timed)
        sql("CREATE UNLOGGED TABLE public.bench_events_src AS"
            " SELECT e.stream, CASE WHEN g = 1 THEN e.jti ELSE e.jti || '.' || g END AS jti,"
            " e.iss, e.aud, e.iat, e.txn, e.toe, e.subject, e.event_types, e.events,"
            " e.claims, e.header, e.token, e.received_at"
            " FROM setstream.events e, generate_series(1, %s) g " + where +
            " LIMIT %s", ((reps,) + ((stream,) if stream else ()) + (n_rows,)), conn=c)
        sql("VACUUM ANALYZE public.bench_events_src", conn=c)
        sql("CHECKPOINT", conn=c)
        t0 = time.monotonic()
        with c.cursor() as cur:
            cur.execute("INSERT INTO public.bench_events_copy SELECT * FROM public.bench_events_src")
            rows = cur.rowcount
        wall = time.monotonic() - t0
        return rows / wall, rows
    finally:
        try:
            sql("DROP TABLE IF EXISTS public.bench_events_copy", conn=c)
            sql("DROP TABLE IF EXISTS public.bench_events_src", conn=c)
        finally:
            if conn is None:
                c.close()


# ---------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------

def run_wrk(lua, url, args, threads=2, conns=64, duration=None, timeout="10s"):
    """Run wrk with bench/LUA; returns the JSON its done() prints (WRKJSON
    line) plus "text" (wrk's own report, also logged to stderr)."""
    duration = duration or DURATION
    cmd = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % max(1, round(duration)),
           "--latency", "--timeout", timeout, "-s", os.path.join(BENCH_DIR, lua), url,
           "--"] + [str(a) for a in args]
    log("$ " + " ".join(cmd[:-len(args)] if args else cmd) + " -- ...")
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=duration + 600)
    data = None
    text = []
    for line in proc.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[8:])
        else:
            text.append(line)
    sys.stderr.write("\n".join(text) + "\n" + proc.stderr)
    if proc.returncode != 0 or data is None:
        raise RuntimeError("wrk failed (exit %d): %s" % (proc.returncode, proc.stderr[-2000:]))
    data["text"] = "\n".join(text)
    return data


# ---------------------------------------------------------------------
# Receiving streams for pre-generated SETs
# ---------------------------------------------------------------------

def receiver_for(name, meta):
    """A fresh stream NAME that accepts the SETs of gen_sets meta META:
    its issuer is their aud, its peer_issuer their iss, its verification
    key their signer's public key.  Fresh, so that no SET is a duplicate."""
    return make_stream(name, peer=True, alg=meta["alg"], issuer=RECEIVER,
                       audience=[meta["issuer"]], peer_issuer=meta["issuer"],
                       peer_jwk=meta["jwk"])


def clear_events():
    """Empty setstream.events (the bench cluster is ours) and vacuum."""
    sql("TRUNCATE setstream.events")


def stored(name):
    return sql1("SELECT count(*) FROM setstream.events WHERE stream = %s", (name,))


def counters(name):
    row = sql("SELECT received, rejected FROM setstream.stream_counters() WHERE stream = %s",
              (name,))
    return (row[0][0], row[0][1]) if row else (0, {})


def push_measure(alg, conns=64, threads=2, label=None, duration=None, lua="push.lua",
                 per_request=1, insert_limit=True, name=None):
    """Push pre-generated SETs of ALG at a fresh stream with wrk; verify
    what was stored.  Returns a dict ready for result() (without limit)."""
    import gen_sets
    duration = duration or DURATION
    need = gen_sets.needed(alg, duration)
    path, meta = gen_sets.ensure(alg, need)
    count = meta["count"]
    name = name or "bench_%s_%s_r%d" % (lua.split(".")[0], alg.lower(), RUN)
    clear_events()
    if lua == "pushpull.lua":
        # every Communication Object also looks for due outbound SETs: start
        # from an empty outbox, whatever earlier scenarios left there
        sql("TRUNCATE setstream.outbox")
    info = receiver_for(name, meta)
    checkpoint()
    quiet = wait_quiet()
    path_url = "/streams/%s/%s" % (name, "events" if lua == "push.lua" else "pushpull")
    rcv0, _ = counters(name)
    sampler = ProcSampler().start()
    w = run_wrk(lua, URL, [path_url, info["token"], path, count, threads, per_request],
                threads=threads, conns=conns, duration=duration)
    m = sampler.stop()
    # requests wrk abandoned at the end are still processed: wait until the
    # stored count stops moving (and matches the received counter)
    n_stored, last, deadline = -1, time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now_stored = stored(name)
        rcv1, rejected = counters(name)
        if now_stored != n_stored:
            n_stored, last = now_stored, time.monotonic()
        elif time.monotonic() - last >= 0.75 and (w["wrapped"] or rcv1 - rcv0 == n_stored):
            break
    secs = w["duration_us"] / 1e6
    ok_requests = w["requests"] - w["status"] - w.get("bad", 0)
    sets_ok = ok_requests * per_request
    errors = []
    if w["status"]:
        errors.append("%d non-2xx responses" % w["status"])
    if w.get("bad"):
        errors.append("%d responses with setErrs or without acks" % w["bad"])
    sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
    if sock:
        errors.append("socket errors: connect %d read %d write %d timeout %d"
                      % (w["connect"], w["read"], w["write"], w["timeout"]))
    if rejected:
        errors.append("rejected by setstream: %s" % json.dumps(rejected))
    distinct_sent = min(w["sent"] * per_request, count)
    # every acknowledged SET is stored; nothing beyond what was sent
    if w["wrapped"] == 0 and not (sets_ok <= n_stored <= w["sent"] * per_request):
        errors.append("stored %d SETs, but %d were acknowledged and %d sent"
                      % (n_stored, sets_ok, w["sent"] * per_request))
    if w["wrapped"] and n_stored > count:
        errors.append("stored %d SETs but only %d distinct exist" % (n_stored, count))
    note = ["%d requests in %.1f s, %d SETs stored" % (w["requests"], secs, n_stored)]
    if w["wrapped"]:
        note.append("the %d pre-generated SETs ran out: %d later SETs were repeats"
                    " (duplicates take a cheaper path)" % (count, w["sent"] * per_request - count))
    note.append(cpu_note(m))
    out = dict(scenario=label, sets_per_s=round(sets_ok / secs, 1),
               p50_ms=round(w["p50_us"] / 1000.0, 2), p99_ms=round(w["p99_us"] / 1000.0, 2),
               cpu_pct=m["cpu_pct"], rss_mb=m["rss_mb"], errors=len(errors),
               error_detail="; ".join(errors) or None, stored=n_stored,
               received_counter=rcv1 - rcv0, pg_cpu_pct=m["pg_cpu_pct"],
               client_cpu_pct=m["client_cpu_pct"], rss_anon_mb=m["rss_anon_mb"],
               listeners=m["listeners"], distinct_sets=distinct_sent,
               others_cpu_pct=m["others_cpu_pct"], busy_before_pct=round(quiet, 1))
    if insert_limit and n_stored > 0:
        rate, rows = bulk_insert_rate(n_stored, stream=name)
        out["limit2"] = "bulk INSERT ... SELECT of the same %d rows into an equivalent table" % rows
        out["limit2_per_s"] = round(rate, 1)
    out["note"] = "; ".join(note)
    clear_events()
    drop_stream_if_exists(name)
    return out


# ---------------------------------------------------------------------
# Command line: limits, report
# ---------------------------------------------------------------------

def _machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    model = sh("lscpu | sed -n 's/^Model name: *//p' | head -1")
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    try:
        pgv = sql1("SELECT version()")
        settings = sql("SELECT name, current_setting(name), NULL FROM pg_settings WHERE name IN"
                       " ('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections',"
                       " 'wal_level', 'max_wal_size', 'setstream.workers', 'setstream.port', 'setstream.pipelined_flush', 'commit_delay',"
                       " 'setstream.max_connections', 'setstream.max_poll_events',"
                       " 'setstream.listen_addresses', 'checkpoint_timeout', 'wal_sync_method')"
                       " ORDER BY name")
    except Exception as e:  # noqa: BLE001
        pgv, settings = "unavailable (%s)" % e, []
    return {
        "cpu": "%s, %s CPUs (%s)" % (model, sh("nproc"), sh("lscpu | sed -n 's/^Hypervisor vendor: *//p'") or "bare metal"),
        "memory": mem,
        "kernel": sh("uname -srm"),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "postgresql": pgv,
        "openssl": sh("openssl version"),
        "wrk": sh("wrk -v 2>&1 | head -1 | cut -d' ' -f1-2"),
        "disk": sh("df -h --output=source,fstype,size \"${BENCH_PGDATA:-/}\" | tail -1"),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "settings": settings,
    }


def cmd_limits():
    """Limit lines for run.sh: OpenSSL's rates for RS256 and ES256."""
    for alg in ("RS256", "ES256"):
        s = openssl_speed(alg)
        for op in ("verify", "sign"):
            for n in (1, 2):
                result(scenario="limit: openssl speed %s %s, %d process%s"
                       % (s["openssl"], op, n, "es" if n > 1 else ""),
                       sets_per_s=s["%s_%d" % (op, n)],
                       cpu_pct=s.get("cpu_%d" % n), others_cpu_pct=s.get("others_%d" % n),
                       note="%s %s/s of OpenSSL %s; the openssl processes got %s%% CPU"
                       " (100%% = one core), other processes %s%%"
                       % (alg, op, "on both cores" if n > 1 else "on one core",
                          s.get("cpu_%d" % n), s.get("others_%d" % n)))


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _fmt(x, nd=1):
    if x is None:
        return "–"
    if isinstance(x, float) and x >= 1000:
        return "{:,.0f}".format(x)
    return ("{:,.%df}" % nd).format(x) if isinstance(x, (int, float)) else str(x)


def _spread(xs, nd=1):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return _fmt(xs[0], nd)
    return "%s [%s–%s]" % (_fmt(statistics.median(xs), nd), _fmt(min(xs), nd), _fmt(max(xs), nd))


def _target_met(target, sets, ratio, p99=None, private_mb=None, slope=None, errors=0):
    if not target:
        return ""
    m = re.search(r"slope after warm-up\s*<=\s*([\d.]+)\s*KB/min", target)
    if m and slope is not None:
        return "yes" if slope <= float(m.group(1)) and not errors else "**no**"
    m = re.search(r"p99\s*<=\s*([\d.]+)\s*ms", target)
    if m and p99 is not None:
        return "yes" if p99 <= float(m.group(1)) else "**no**"
    m = re.search(r"<=\s*([\d.]+)\s*MB", target)
    if m and private_mb is not None:
        return "yes" if private_mb <= float(m.group(1)) else "**no**"
    m = re.search(r">=\s*([\d.,]+)\s*SETs/s", target)
    if m and sets is not None:
        return "yes" if sets >= float(m.group(1).replace(",", "")) else "**no**"
    m = re.search(r">=\s*([\d.]+)\s*%", target)
    if m and ratio is not None:
        return "yes" if ratio * 100 >= float(m.group(1)) else "**no**"
    m = re.search(r">=\s*([\d.]+)\s*x", target)
    if m and ratio is not None:
        return "yes" if ratio >= float(m.group(1)) else "**no**"
    return "?"


def summarize(lines):
    """Group result lines by scenario (in order of appearance)."""
    groups = {}
    for r in lines:
        groups.setdefault(r["scenario"], []).append(r)
    rows = []
    for name, rs in groups.items():
        sets = [r.get("sets_per_s") for r in rs]
        lim = _med([r.get("limit_per_s") for r in rs])
        lim2 = _med([r.get("limit2_per_s") for r in rs])
        med = _med(sets)
        ratio = med / lim if med is not None and lim else None
        ratios = [r.get("ratio") for r in rs if r.get("ratio") is not None]
        if ratios:  # the scenario's own per-run ratios (e.g. workers 2 vs 1)
            ratio = statistics.median(ratios)
        ratio2 = med / lim2 if med is not None and lim2 else None
        rows.append({
            "scenario": name, "runs": len(rs), "sets": _spread(sets, 1), "sets_med": med,
            "ratio_spread": _spread(ratios, 2) if len(ratios) > 1 else None,
            "p50": _spread([r.get("p50_ms") for r in rs], 2),
            "p99": _spread([r.get("p99_ms") for r in rs], 2),
            "limit": rs[-1].get("limit"), "limit_per_s": lim, "ratio": ratio,
            "limit2": rs[-1].get("limit2"), "limit2_per_s": lim2, "ratio2": ratio2,
            "target": rs[-1].get("target"),
            "met": _target_met(rs[-1].get("target"), med, ratio,
                               _med([r.get("p99_ms") for r in rs]),
                               _med([r.get("private_mb") for r in rs]),
                               max((r["slope_kb_min"] for r in rs
                                    if r.get("slope_kb_min") is not None), default=None),
                               sum(int(r.get("errors") or 0) for r in rs)),
            "cpu": _med([r.get("cpu_pct") for r in rs]),
            "rss": _med([r.get("rss_mb") for r in rs]),
            "errors": sum(int(r.get("errors") or 0) for r in rs),
            "others": _med([r.get("others_cpu_pct") for r in rs]),
            "raw": rs,
        })
    return rows


def table(rows):
    out = ["| scenario | runs | SETs/s median [min–max] | p50 ms | p99 ms | limit | limit /s | ratio "
           "| bulk INSERT rows/s (ratio) | target | met | listener CPU % | listener RSS MB | errors "
           "| other load CPU % |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ins = "–"
        if r["limit2_per_s"]:
            ins = "%s (%.2f)" % (_fmt(r["limit2_per_s"]), r["ratio2"] or 0)
        out.append("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
            r["scenario"], r["runs"], r["sets"], r["p50"], r["p99"], r["limit"] or "–",
            _fmt(r["limit_per_s"]),
            r["ratio_spread"] or ("%.2f" % r["ratio"] if r["ratio"] is not None else "–"),
            ins, r["target"] or "–", r["met"] or "–", _fmt(r["cpu"]), _fmt(r["rss"]),
            r["errors"], _fmt(r["others"])))
    return "\n".join(out)


def cmd_report(out_md, results_file, failures_file=None):
    lines = []
    with open(results_file) as f:
        for line in f:
            line = line.strip()
            if line:
                lines.append(json.loads(line))
    failures = []
    if failures_file and os.path.exists(failures_file):
        with open(failures_file) as f:
            failures = [x.rstrip("\n") for x in f if x.strip()]
    rows = summarize(lines)
    m = _machine()
    runs = os.environ.get("BENCH_RUNS", "?")
    md = ["# setstream benchmark results", "",
          "Written by `bench/run.sh` (see bench/README.md); do not edit by hand.", "",
          "## Machine", "",
          "| | |", "|---|---|"]
    for k in ("cpu", "memory", "kernel", "os", "disk", "postgresql", "openssl", "wrk", "date"):
        md.append("| %s | %s |" % (k, m[k]))
    md += ["", "## Settings", "",
           "* Runs of every scenario: %s; seconds per measurement: %s (`BENCH_RUNS`, `BENCH_DURATION`)."
           % (runs, os.environ.get("BENCH_DURATION", "10")),
           "* Scenarios run: %s." % (os.environ.get("BENCH_SCENARIOS") or "all"),
           "* Cluster (private, loopback only): " + ", ".join(
               "`%s = %s%s`" % (n, s, u or "") for n, s, u in m["settings"]) + ".",
           "* The load generator (wrk, or the Python poll client) runs on the same 2 cores"
           " as PostgreSQL and competes with it for CPU: its CPU share is in each run's note"
           " (\"load generator CPU\"). A dedicated client machine would give setstream more.",
           "* The listener's CPU is utime+stime of the `setstream listener` processes over the"
           " measurement (100% = one core); RSS is their largest VmRSS sum (it counts the shared"
           " buffers they touched; RssAnon, their private memory, is in the notes).",
           "* Latencies are per HTTP request as the client saw them (wrk: closed loop).",
           "* Limits are measured in the same run: `openssl speed` for the algorithm"
           " (1 process and `-multi 2`), and, for the receiving scenarios, one plain"
           " `INSERT ... SELECT` of the same rows into a table like `setstream.events`"
           " (same indexes and foreign key) under the same `synchronous_commit = on`.",
           "", "## Results", "", table(rows), ""]
    if failures:
        md += ["## Scenario failures", ""] + ["* %s" % x for x in failures] + [""]
    md += ["## Raw runs", ""]
    for r in rows:
        md.append("### %s" % r["scenario"])
        md.append("")
        for raw in r["raw"]:
            extra = {k: v for k, v in raw.items() if k not in ("scenario",)}
            md.append("* run %s: `%s`" % (raw.get("run", "?"), json.dumps(extra)))
        md.append("")
    with open(out_md, "w") as f:
        f.write("\n".join(md))
    print(table(rows))
    if failures:
        print("\nscenario failures:\n" + "\n".join("  " + x for x in failures))


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "limits":
        cmd_limits()
    elif len(sys.argv) >= 4 and sys.argv[1] == "report":
        cmd_report(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
