#!/usr/bin/python3
"""bench/callgrind.py: the driver of bench/callgrind.sh.

    callgrind.py prepare STATE.json     pre-signed SETs (gen_sets), two
                                        receiving streams, a transmitting
                                        one with (1 + CG_POLLS) x 1000 SETs
                                        emitted; writes STATE
    callgrind.py measure STATE.json DIR the cluster runs under callgrind:
                                        warm up, measure push, pushpull and
                                        poll in the listener, print Ir per
                                        SET

Each path: a warm-up (its stream cache entry, prepared statements, first
allocations), a marker (GET /jwks.json: the listener dumps and zeroes its
counts, callgrind --dump-before=store_jwks), the measured requests one at
a time on one keep-alive connection, and a marker again: that dump holds
the measured requests (and the end of the first marker's request).  The listener does its transactions
itself, so its Ir includes verification, the executor and the commit.
"""
import http.client
import json
import os
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import gen_sets  # noqa: E402

ALG = os.environ.get("CG_ALG", "RS256")
N_PUSH = int(os.environ.get("CG_PUSH", "300"))
N_OBJ = int(os.environ.get("CG_PUSHPULL_OBJECTS", "5"))
N_POLLS = int(os.environ.get("CG_POLLS", "3"))
PER = 100
POLL_MAX = 1000
WARM_PUSH = 20
WARM_OBJ = 1
WARM_POLLS = 1


def prepare(state_path):
    need = WARM_PUSH + N_PUSH + (WARM_OBJ + N_OBJ) * PER
    path, meta = gen_sets.ensure(ALG, need)
    state = {"sets": path, "need": need}
    for kind in ("push", "pushpull"):
        info = lib.receiver_for("cg_%s" % kind, meta)
        state[kind] = {"name": info["name"], "token": info["token"]}
    # a transmitting stream whose outbox holds the SETs the polls drain
    info = lib.make_stream("cg_poll", peer=False, alg="ES256")
    lib.sql("SELECT count(setstream.emit('cg_poll',"
            " 'https://schemas.openid.net/secevent/caep/event-type/credential-change',"
            " jsonb_build_object('change_type', 'update', 'credential_type', 'password',"
            " 'event_timestamp', 1700000000 + g),"
            " jsonb_build_object('format', 'email', 'email', 'user' || g || '@example.com')))"
            " FROM generate_series(1, %s) g", ((WARM_POLLS + N_POLLS) * POLL_MAX,))
    state["poll"] = {"name": info["name"], "token": info["token"]}
    with open(state_path, "w") as f:
        json.dump(state, f)


def load_sets(path, n):
    out = []
    with open(path) as f:
        for line in f:
            jti, tok = line.rstrip("\n").split("\t", 1)
            out.append((jti, tok))
            if len(out) == n:
                break
    return out


class Client:
    def __init__(self):
        u = urllib.parse.urlparse(lib.URL)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def post(self, path, token, ctype, body):
        self.conn.request("POST", path, body=body,
                          headers={"Authorization": "Bearer " + token,
                                   "Content-Type": ctype})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data

    def get(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        return r.status, r.read()


def listener_pid():
    for _ in range(600):
        try:
            pids = lib.listener_pids()
            if pids:
                return pids[0]
        except Exception:  # noqa: BLE001
            pass
        time.sleep(1)
    raise RuntimeError("no listener")


def dumps_of(directory, pid):
    return set(f for f in os.listdir(directory) if f.startswith("callgrind.out.%d." % pid))


def marker(client, directory, pid):
    """GET /jwks.json: the listener dumps its counts (--dump-before=
    store_jwks); returns the path of the new dump."""
    before = dumps_of(directory, pid)
    st, _ = client.get("/jwks.json")
    if st != 200:
        raise RuntimeError("GET /jwks.json answered %d" % st)
    for _ in range(100):
        new = dumps_of(directory, pid) - before
        if new:
            return os.path.join(directory, new.pop())
        time.sleep(0.1)
    raise RuntimeError("no new dump of pid %d in %s" % (pid, directory))


def parse_dump(path):
    """(total Ir, self Ir of setstream.so) of one callgrind dump.  "totals"
    is the sum of every self cost of the dump (its "summary" line is off
    in dumps that --dump-before makes).  A cost line right after "calls="
    is the inclusive cost of that call, not a self cost."""
    total = None
    own = 0
    names = {}
    ob = None
    after_calls = False
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                total = int(line.split()[1])
                continue
            m = re.match(r"(c?ob)=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3).strip()
                if m.group(1) == "ob":
                    ob = names.get(m.group(2))
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if line[:1] in "0123456789+-*":
                if after_calls:
                    after_calls = False
                    continue
                if ob and ob.endswith("/setstream.so"):
                    own += int(line.split()[-1])
    return total, own


def measure(state_path, directory):
    with open(state_path) as f:
        state = json.load(f)
    lib.wait_listener(timeout=600)
    pid = listener_pid()
    sets = load_sets(state["sets"], state["need"])
    it = iter(sets)
    client = Client()
    push_path = "/streams/%s/events" % state["push"]["name"]
    pp_path = "/streams/%s/pushpull" % state["pushpull"]["name"]

    def push(n):
        for _ in range(n):
            _, tok = next(it)
            st, body = client.post(push_path, state["push"]["token"],
                                   "application/secevent+jwt", tok)
            if st != 202:
                raise RuntimeError("push answered %d: %r" % (st, body[:200]))

    def pushpull(n):
        for _ in range(n):
            batch = [next(it) for _ in range(PER)]
            body = json.dumps({"sets": {j: t for j, t in batch}})
            st, data = client.post(pp_path, state["pushpull"]["token"],
                                   "application/json", body)
            ans = json.loads(data) if st == 200 else None
            if ans is None or ans.get("setErrs") or len(ans.get("ack", [])) != PER:
                raise RuntimeError("pushpull answered %d: %r" % (st, data[:300]))

    poll_path = "/streams/%s/poll" % state["poll"]["name"]
    acks = []

    def poll(n):
        """n polls of maxEvents 1000, each acknowledging the last one's SETs
        (RFC 8936 section 2.4: the drain of bench/scenarios/poll_drain.py)"""
        nonlocal acks
        for _ in range(n):
            body = json.dumps({"maxEvents": POLL_MAX, "returnImmediately": True,
                               "ack": acks})
            st, data = client.post(poll_path, state["poll"]["token"],
                                   "application/json", body)
            ans = json.loads(data) if st == 200 else None
            if ans is None or len(ans.get("sets", {})) != POLL_MAX:
                raise RuntimeError("poll answered %d: %r" % (st, data[:300]))
            acks = list(ans["sets"])

    results = {}
    for label, fn, warm, n, sets_per in (("push", push, WARM_PUSH, N_PUSH, 1),
                                         ("pushpull", pushpull, WARM_OBJ, N_OBJ, PER),
                                         ("poll", poll, WARM_POLLS, N_POLLS, POLL_MAX)):
        fn(warm)
        marker(client, directory, pid)
        fn(n)
        total, own = parse_dump(marker(client, directory, pid))
        results[label] = {"sets": n * sets_per, "ir_per_set": round(total / (n * sets_per)),
                          "setstream_so_ir_per_set": round(own / (n * sets_per))}
        print("%-9s %6d SETs  listener Ir/SET %10d  setstream.so self Ir/SET %8d"
              % (label, n * sets_per, results[label]["ir_per_set"],
                 results[label]["setstream_so_ir_per_set"]))
    with open(os.path.join(directory, "result.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "prepare":
        prepare(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
