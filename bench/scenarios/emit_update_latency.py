#!/usr/bin/python3
"""emit_update_latency: what emit_trigger adds to a one-row UPDATE.

pgbench -n -c 1 -T BENCH_DURATION with the custom script
    \\set id random(1, 10000)
    UPDATE <table> SET n = n + 1 WHERE id = :id;
once on a table without a trigger and once on a table with AFTER UPDATE FOR
EACH ROW ... setstream.emit_trigger(stream, '...session-revoked', 'email',
'email') (ES256), each transaction committed with synchronous_commit = on.
Reports pgbench's "latency average" for both, their ratio, and p50/p99 of
the trigger run from pgbench's per-transaction log (-l).

Target: latency with the trigger <= 2x the latency without.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402

SCENARIO = "emit_update_latency"
# with one client, tps = 1 / latency: "latency <= 2x" is "tps >= 50% of the
# tps without the trigger" (sets_per_s / limit_per_s, as bench/lib.py checks)
TARGET = ("UPDATE latency with emit_trigger <= 2x without, i.e. tps >= 50% of the tps "
          "without the trigger (pgbench -c 1, ES256)")
ROWS = 10000


def pgbench_path():
    for p in ("/usr/lib/postgresql/15/bin/pgbench", shutil.which("pgbench") or ""):
        if p and os.access(p, os.X_OK):
            return p
    return None


def run_pgbench(pgbench, table, seconds, workdir, tag):
    script = os.path.join(workdir, "script-%s.sql" % tag)
    with open(script, "w") as f:
        f.write("\\set id random(1, %d)\nUPDATE %s SET n = n + 1 WHERE id = :id;\n" % (ROWS, table))
    prefix = os.path.join(workdir, "log-" + tag)
    cmd = [pgbench, "-n", "-c", "1", "-T", str(max(1, int(round(seconds)))), "-f", script,
           "-l", "--log-prefix=%s" % prefix, os.environ.get("PGDATABASE", "postgres")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=seconds + 60)
    text = out.stdout + out.stderr
    if out.returncode != 0:
        raise RuntimeError("pgbench failed (%d): %s" % (out.returncode, text[-500:]))
    m_lat = re.search(r"latency average = ([\d.]+) ms", text)
    m_tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", text)
    m_n = re.search(r"number of transactions actually processed: (\d+)", text)
    m_fail = re.search(r"number of failed transactions: (\d+)", text)
    lat = []
    for name in os.listdir(workdir):
        if name.startswith("log-" + tag + "."):
            with open(os.path.join(workdir, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]) / 1000.0)
    return {
        "lat_avg": float(m_lat.group(1)) if m_lat else None,
        "tps": float(m_tps.group(1)) if m_tps else None,
        "n": int(m_n.group(1)) if m_n else 0,
        "failed": int(m_fail.group(1)) if m_fail else 0,
        "p50": L.percentile(lat, 50),
        "p99": L.percentile(lat, 99),
        "logged": len(lat),
    }


def main():
    dur = L.duration()
    pgbench = pgbench_path()
    if pgbench is None:
        L.result(SCENARIO, TARGET, note="pgbench not found (Debian postgresql-15 ships it)")
        return 1
    conn = L.connect()
    s = L.Stream(conn, "bench-upd", vacuum=True)
    suffix = os.getpid()
    plain, trig = "bench_upd_plain_%d" % suffix, "bench_upd_trig_%d" % suffix
    workdir = tempfile.mkdtemp(prefix="setstream-bench-upd-")
    try:
        L.q(conn, "SELECT setstream.generate_key(%s, 'ES256')", (s.name,))
        for t in (plain, trig):
            L.q(conn, "CREATE TABLE %s (id integer PRIMARY KEY, n integer NOT NULL DEFAULT 0, "
                      "email text NOT NULL)" % t)
            L.q(conn, "INSERT INTO %s (id, email) SELECT g, 'user' || g || '@bench.example' "
                      "FROM generate_series(1, %d) g" % (t, ROWS))
            L.q(conn, "VACUUM ANALYZE %s" % t)
        L.q(conn, "CREATE TRIGGER emit AFTER UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION "
                  "setstream.emit_trigger('%s', '%s', 'email', 'email')" % (trig, s.name, L.CAEP_SESSION_REVOKED))
        L.log("pgbench -c 1 -T %.0f without, then with the trigger ..." % dur)
        a = run_pgbench(pgbench, plain, dur, workdir, "plain")
        b = run_pgbench(pgbench, trig, dur, workdir, "trig")
        emitted = L.q1(conn, "SELECT count(*) FROM setstream.outbox WHERE stream = %s", (s.name,))
        ratio = b["lat_avg"] / a["lat_avg"] if a["lat_avg"] and b["lat_avg"] else None
        note = ("latency average without %.3f ms, with %.3f ms, ratio %.2f; tps without %.0f, with %.0f; "
                "p50/p99 without %.3f/%.3f ms; transactions %d/%d, failed %d/%d; SETs queued %d"
                % (a["lat_avg"] or 0, b["lat_avg"] or 0, ratio or 0, a["tps"] or 0, b["tps"] or 0,
                   a["p50"] or 0, a["p99"] or 0, a["n"], b["n"], a["failed"], b["failed"], emitted))
        ok = (ratio is not None and a["n"] > 0 and b["n"] > 0 and a["failed"] == 0 and b["failed"] == 0
              and emitted == b["n"])
        if not ok:
            note = "CHECK FAILED: " + note
        L.result(SCENARIO, TARGET, sets_per_s=b["tps"] if ok else None,
                 p50_ms=b["p50"] if ok else None, p99_ms=b["p99"] if ok else None,
                 limit="same UPDATE without the trigger (tps, pgbench -c 1)",
                 limit_per_s=a["tps"], note=note)
        return 0 if ok else 1
    except Exception as e:  # noqa: BLE001
        L.result(SCENARIO, TARGET, note="CHECK FAILED: %s" % str(e)[:500])
        return 1
    finally:
        for t in (plain, trig):
            try:
                L.q(conn, "DROP TABLE IF EXISTS %s" % t)
            except Exception:  # noqa: BLE001
                pass
        s.drop()
        conn.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
