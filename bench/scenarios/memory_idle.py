#!/usr/bin/python3
"""memory_idle: listener memory with 1,000 idle connections and 100 waiting
long polls.

Opens BENCH_IDLE_CONNS (1000) TCP connections to the listener that send
nothing, and BENCH_IDLE_POLLS (100) long polls (POST /streams/X/poll {} with
a token; poll_timeout is 30 s by default) that are kept waiting, then reads
VmRSS (and RssAnon, RssShmem) of the listener process(es).  The measurement
ends well within setstream.idle_timeout (60 s by default) and poll_timeout.

The listener keeps the open-files limit the postmaster was started with
(often a soft limit of 1024), so it may not hold 1,100 connections: the
result then says so (CHECK FAILED, with /proc/<pid>/limits).  With
BENCH_IDLE_PRLIMIT=1 the scenario first raises the listener's soft limit to
its hard limit with prlimit (as the postgres OS user when run as root), to
measure the memory anyway; the note says when it did.

Target: <= 64 MB RSS.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True   # no __pycache__ in bench/
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lib_extra as L  # noqa: E402

SCENARIO = "memory_idle"
TARGET = "<= 64 MB listener RSS (private: RssAnon + RssFile; shared buffers not counted) with 1000 idle connections + 100 waiting long polls"
N_IDLE = int(os.environ.get("BENCH_IDLE_CONNS", "1000"))
N_POLLS = int(os.environ.get("BENCH_IDLE_POLLS", "100"))


def mem(pids):
    out = {}
    for key in ("VmRSS", "RssAnon", "RssShmem", "RssFile"):
        vals = [L.proc_status_kb(p, key) for p in pids]
        vals = [v for v in vals if v is not None]
        out[key] = sum(vals) / 1024.0 if vals else None
    return out


def listener_counts(conn, stream):
    row = L.q(conn, "SELECT l.connections, coalesce((SELECT long_polls FROM setstream.stream_counters() "
                    "WHERE stream = %s), 0) FROM setstream.listener_stats() l", (stream,))[0]
    return row[0], row[1]


def wait_counts(conn, stream, want_conns, want_polls, timeout):
    end = time.monotonic() + timeout
    while True:
        c, p = listener_counts(conn, stream)
        if (c >= want_conns and p >= want_polls) or time.monotonic() >= end:
            return c, p
        time.sleep(0.1)


def raise_listener_nofile(pids):
    """prlimit the listeners' soft RLIMIT_NOFILE up to their hard limit."""
    import subprocess
    done = []
    for pid in pids:
        try:
            with open("/proc/%d/limits" % pid) as f:
                hard = next(line.split()[4] for line in f if line.startswith("Max open files"))
            cmd = ["prlimit", "--pid", str(pid), "--nofile=%s:%s" % (hard, hard)]
            if os.geteuid() == 0:
                owner = os.stat("/proc/%d" % pid).st_uid
                import pwd
                cmd = ["runuser", "-u", pwd.getpwuid(owner).pw_name, "--"] + cmd
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            done.append("pid %d -> %s%s" % (pid, hard, "" if r.returncode == 0 else " FAILED: " + r.stderr.strip()))
        except (OSError, StopIteration, subprocess.SubprocessError, KeyError) as e:
            done.append("pid %d: %s" % (pid, e))
    return "; ".join(done)


def main():
    conn = L.connect()
    pids = L.listener_pids(conn)
    if not pids:
        L.result(SCENARIO, TARGET, note="no setstream listener is running")
        return 1
    prlimit_note = ""
    if os.environ.get("BENCH_IDLE_PRLIMIT") == "1":
        prlimit_note = "; listener open-files soft limit raised by the benchmark (prlimit): " + \
            raise_listener_nofile(pids)
    nofile = L.raise_nofile(N_IDLE + N_POLLS + 256)
    if nofile < N_IDLE + N_POLLS + 64:
        L.result(SCENARIO, TARGET, note="RLIMIT_NOFILE is %d, too low for %d connections"
                 % (nofile, N_IDLE + N_POLLS))
        return 1
    max_conns = L.q1(conn, "SHOW setstream.max_connections")
    idle_timeout = L.q1(conn, "SHOW setstream.idle_timeout")
    poll_timeout = L.q1(conn, "SHOW setstream.poll_timeout")
    host, port = L.host_port()
    s = L.Stream(conn, "bench-mem")
    socks = []
    try:
        token = L.q1(conn, "SELECT setstream.issue_token(%s)", (s.name,))
        base_conns, _ = listener_counts(conn, s.name)
        time.sleep(0.5)          # the cache reload after issue_token settles
        before = mem(pids)
        t0 = time.monotonic()
        # the long polls first, so that they are parked even if the listener
        # cannot take every idle connection
        body = b"{}"
        req = ("POST /streams/%s/poll HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (s.name, host, port, token, len(body))).encode() + body
        for i in range(N_POLLS):
            sk = socket.create_connection((host, port), timeout=10)
            sk.sendall(req)
            socks.append(sk)
        c, p = wait_counts(conn, s.name, base_conns + N_POLLS, N_POLLS, 10)
        L.log("%d long polls sent, %d waiting" % (N_POLLS, p))
        for i in range(N_IDLE):
            sk = socket.create_connection((host, port), timeout=10)
            socks.append(sk)
            if i % 200 == 199:
                time.sleep(0.05)   # let the listener accept (backlog 1024)
        c, p = wait_counts(conn, s.name, base_conns + N_IDLE + N_POLLS, N_POLLS, 10)
        cpu = L.CpuMeter(pids)
        time.sleep(1.0)
        cpu_wait = cpu.pct()
        c, p = listener_counts(conn, s.name)
        after = mem(pids)
        # nothing may have been answered or closed yet
        answered = 0
        for sk in socks:
            sk.setblocking(False)
            try:
                data = sk.recv(1)
                answered += 1 if data or data == b"" else 0
            except BlockingIOError:
                pass
            except OSError:
                answered += 1
        elapsed = time.monotonic() - t0
        note = ("private memory (RssAnon + RssFile) %.1f MB, VmRSS %.1f MB of which %.1f MB are shared "
                "buffers the listener has touched; " % (after["RssAnon"] + after["RssFile"], after["VmRSS"],
                                                         after["RssShmem"]))
        note += ("listener connections %d (of %d opened; %d before), waiting long polls %d; "
                "before: VmRSS %.1f MB, RssAnon %.1f MB, RssShmem %.1f MB; after: RssAnon %.1f MB, "
                "RssShmem %.1f MB, RssFile %.1f MB; +%.1f KB RSS per connection; answered/closed early %d; "
                "%.0f s into idle_timeout %s / poll_timeout %s; max_connections %s; %d listener process(es)"
                % (c - base_conns, N_IDLE + N_POLLS, base_conns, p, before["VmRSS"], before["RssAnon"],
                   before["RssShmem"], after["RssAnon"], after["RssShmem"], after["RssFile"],
                   (after["VmRSS"] - before["VmRSS"]) * 1024.0 / (N_IDLE + N_POLLS),
                   answered, elapsed, idle_timeout, poll_timeout, max_conns, len(pids))) + prlimit_note
        ok = (c - base_conns >= N_IDLE + N_POLLS) and p >= N_POLLS and answered == 0
        if not ok:
            limits = []
            for pid in pids:
                try:
                    with open("/proc/%d/limits" % pid) as f:
                        for line in f:
                            if line.startswith("Max open files"):
                                limits.append("pid %d: %s" % (pid, " ".join(line.split()[3:5])))
                except OSError:
                    pass
                try:
                    limits[-1] += ", %d fds open now" % len(os.listdir("/proc/%d/fd" % pid))
                except (OSError, IndexError):
                    pass
            note = ("CHECK FAILED: the listener holds %d of the %d connections; its open-files "
                    "limit (soft hard): %s; listener CPU while they wait %.0f%%; "
                    % (c - base_conns, N_IDLE + N_POLLS, "; ".join(limits), cpu_wait or 0)) + note
        L.result(SCENARIO, TARGET, rss_mb=after["VmRSS"], cpu_pct=cpu_wait, note=note,
                 private_mb=after["RssAnon"] + after["RssFile"])
        return 0 if ok else 1
    finally:
        for sk in socks:
            try:
                sk.close()
            except OSError:
                pass
        time.sleep(0.3)
        s.drop()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
