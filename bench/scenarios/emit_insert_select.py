#!/usr/bin/python3
"""emit_insert_select: signing and queueing SETs from a row trigger.

INSERT INTO <table> SELECT ... FROM generate_series(1, N) on a table with
AFTER INSERT FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger(stream,
'...session-revoked', 'email', 'email'): one statement, one backend, N SETs
signed and queued in the outbox.  First line: ES256 (N = BENCH_EMIT_ROWS,
100,000); second line: RS256 (N = BENCH_EMIT_ROWS_RS256, 30,000: RSA signing
is ~15x slower, the rate is what counts).

Limit: the same INSERT without the trigger (rows/s).  The note also gives
OpenSSL's sign rate on one core (`openssl speed -seconds 3 ecdsap256` /
`rsa2048`) and the bound the two make together (1 / (1/insert + 1/sign)).

Target: >= 20,000 SETs/s (ES256).
"""
import os
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402

SCENARIO = "emit_insert_select"
N_ES = int(os.environ.get("BENCH_EMIT_ROWS", "100000"))
N_RS = int(os.environ.get("BENCH_EMIT_ROWS_RS256", "30000"))
TABLE_DDL = "CREATE TABLE %s (id integer NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
INSERT = "INSERT INTO %s (id, email) SELECT g, 'user' || g || '@bench.example' FROM generate_series(1, %d) g"


def timed_insert(conn, table, n, pid):
    cpu = L.CpuMeter([pid])
    t = time.monotonic()
    L.q(conn, INSERT % (table, n))      # autocommit: includes the commit
    dt = time.monotonic() - t
    return dt, cpu.pct()


def run_alg(conn, alg, n, plain_rate, sign_rate, pid, tables):
    scenario = SCENARIO if alg == "ES256" else "%s_%s" % (SCENARIO, alg.lower())
    target = (">= 20000 SETs/s (ES256, one INSERT ... SELECT of %d rows with emit_trigger)" % n
              if alg == "ES256" else "(none: RS256 for comparison, %d rows)" % n)
    s = L.Stream(conn, "bench-emit-%s" % alg.lower(), vacuum=True)
    table = "bench_emit_%s_%d" % (alg.lower(), os.getpid())
    tables.append(table)
    try:
        L.q(conn, "SELECT setstream.generate_key(%s, %s)", (s.name, alg))
        L.q(conn, TABLE_DDL % table)
        L.q(conn, "CREATE TRIGGER emit AFTER INSERT ON %s FOR EACH ROW EXECUTE FUNCTION "
                  "setstream.emit_trigger('%s', '%s', 'email', 'email')" % (table, s.name, L.CAEP_SESSION_REVOKED))
        L.q(conn, "CHECKPOINT")
        dt, cpu = timed_insert(conn, table, n, pid)
        rows = L.q1(conn, "SELECT count(*) FROM %s" % table)
        queued = L.q1(conn, "SELECT count(*) FROM setstream.outbox WHERE stream = %s AND state = 'pending'",
                      (s.name,))
        alg_ok = L.q1(conn, "SELECT count(*) FROM (SELECT token FROM setstream.outbox WHERE stream = %s "
                            "LIMIT 1) t WHERE convert_from(decode(translate(split_part(token, '.', 1), '-_', '+/') "
                            "|| repeat('=', (4 - length(split_part(token, '.', 1)) %% 4) %% 4), 'base64'), "
                            "'UTF8')::jsonb->>'alg' = %s", (s.name, alg))
        rate = n / dt
        bound = 1.0 / (1.0 / plain_rate + 1.0 / sign_rate) if plain_rate and sign_rate else None
        note = ("%d rows in %.2f s (%.1f us/row; plain INSERT %.1f us/row); %d SETs queued; "
                "openssl %s sign/s on 1 core %.0f; bound insert+sign %.0f/s; backend CPU %.0f%%"
                % (n, dt, dt / n * 1e6, 1e6 / plain_rate if plain_rate else 0, queued,
                   "ecdsap256" if alg == "ES256" else "rsa2048", sign_rate or 0, bound or 0, cpu or 0))
        ok = rows == n and queued == n and alg_ok == 1
        if not ok:
            note = "CHECK FAILED: table rows %d, queued %d, alg check %s; %s" % (rows, queued, alg_ok, note)
        L.result(scenario, target, sets_per_s=rate if ok else None,
                 limit="plain INSERT ... SELECT rows/s (no trigger)", limit_per_s=plain_rate,
                 cpu_pct=cpu, note=note)
        return ok
    finally:
        try:
            L.q(conn, "DROP TABLE IF EXISTS %s" % table)
        except Exception as e:  # noqa: BLE001
            L.log("drop table: %s" % e)
        s.drop()


def main():
    conn = L.connect()
    pid = L.backend_pid(conn)
    tables = []
    try:
        es_sign, _ = L.openssl_rates(["ecdsap256"], 3)
        rs_sign, _ = L.openssl_rates(["rsa2048"], 3)
        plain = "bench_plain_%d" % os.getpid()
        tables.append(plain)
        L.q(conn, TABLE_DDL % plain)
        L.q(conn, "CHECKPOINT")
        dt, _ = timed_insert(conn, plain, N_ES, pid)
        plain_rate = N_ES / dt
        L.q(conn, "DROP TABLE %s" % plain)
        L.log("plain INSERT: %.0f rows/s; openssl sign/s: ES256 %s, RS256 %s" % (plain_rate, es_sign, rs_sign))
        ok1 = run_alg(conn, "ES256", N_ES, plain_rate, es_sign, pid, tables)
        ok2 = run_alg(conn, "RS256", N_RS, plain_rate, rs_sign, pid, tables)
        return 0 if ok1 and ok2 else 1
    finally:
        for t in tables:
            try:
                L.q(conn, "DROP TABLE IF EXISTS %s" % t)
            except Exception:  # noqa: BLE001
                pass
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
