"""GET /metrics on the listener and setstream.metrics() in SQL.

The scrape goes over a real socket and is parsed strictly, by a parser of
the text exposition format (0.0.4) written here and by
python3-prometheus-client's.  The counters must move with traffic (a push,
a refused push, emits, a poll, an ack, a setErrs, a long poll, a WebSocket
session), access must be refused without the token (and /metrics must not
exist with no token configured), the token must stay out of the server
log, and the SQL function must give the same per-stream figures while
showing a role only the streams it may read.
"""

import contextlib
import math
import os
import re
import threading
import time
import types
import uuid

import psycopg2
import pytest

import listener_support as ls
from listener_support import assert_error

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - scripts/deps.sh installs it
    text_string_to_metric_families = None

TOKEN = "metrics-" + uuid.uuid4().hex
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---------------------------------------------------------------------------
# a strict parser of the text exposition format
# ---------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE_RE = re.compile(r"^(%s)(\{((?:%s=%s)(?:,%s=%s)*)?\})? (\S+)$"
                       % (NAME, LABEL, LABEL_VALUE, LABEL, LABEL_VALUE))
PAIR_RE = re.compile(r"(%s)=(%s)" % (LABEL, LABEL_VALUE))
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def unescape(quoted):
    out, s, i = [], quoted[1:-1], 0
    while i < len(s):
        if s[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text), \
        "not a sample value: %r" % text
    return float(text)


class Scrape:
    """A parsed exposition: types, helps and samples {(name, labels): value}
    (labels a frozenset of (name, value) pairs)."""

    def __init__(self, text):
        assert text.endswith("\n"), "the exposition must end with a line feed"
        self.text = text
        self.types, self.helps, self.samples = {}, {}, {}
        done = set()   # families whose samples have ended
        current = None
        for line in text[:-1].split("\n"):
            assert line, "no empty lines in the exposition"
            if line.startswith("#"):
                m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % NAME, line)
                assert m, "bad comment line %r" % line
                kind, fam, rest = m.groups()
                assert fam not in done, "%s comes back after its samples" % fam
                if kind == "HELP":
                    assert fam not in self.helps, "two HELP for %s" % fam
                    assert fam not in self.types, "HELP after TYPE for %s" % fam
                    assert rest, "empty HELP for %s" % fam
                    self.helps[fam] = rest
                else:
                    assert fam not in self.types, "two TYPE for %s" % fam
                    assert rest in TYPES, line
                    self.types[fam] = rest
                if current is not None and current != fam:
                    done.add(current)
                current = fam
                continue
            m = SAMPLE_RE.match(line)
            assert m, "bad sample line %r" % line
            name, _, labeltext, value = m.groups()
            fam = self.family_of(name)
            assert fam is not None, "sample %s has no TYPE before it" % name
            assert fam == current, "sample %s is outside its family's block" % name
            labels = {}
            for lm in PAIR_RE.finditer(labeltext or ""):
                assert lm.group(1) not in labels, "label %s twice: %r" % (lm.group(1), line)
                labels[lm.group(1)] = unescape(lm.group(2))
            key = (name, frozenset(labels.items()))
            assert key not in self.samples, "duplicate sample %r" % line
            self.samples[key] = parse_value(value)
        for fam in self.types:
            assert fam in self.helps, "no HELP for %s" % fam
        self.check_types()

    def family_of(self, name):
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and self.types.get(name[:-len(suffix)]) == "histogram":
                return name[:-len(suffix)]
        return None

    def check_types(self):
        for fam, typ in self.types.items():
            if typ == "counter":
                assert fam.endswith("_total"), "counter %s does not end in _total" % fam
                for (name, _), v in self.samples.items():
                    if name == fam:
                        assert v >= 0 and v == int(v), (name, v)
            if typ == "histogram":
                self.check_histogram(fam)

    def check_histogram(self, fam):
        series = {}
        for (name, labels), v in self.samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append((parse_value(le), v))
        assert series, "histogram %s has no buckets" % fam
        for labels, buckets in series.items():
            bounds = [b for b, _ in buckets]
            assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), \
                "%s: le not increasing: %r" % (fam, bounds)
            assert bounds[-1] == math.inf, "%s: no +Inf bucket" % fam
            counts = [c for _, c in buckets]
            assert counts == sorted(counts), "%s: buckets not cumulative: %r" % (fam, counts)
            count = self.samples[(fam + "_count", labels)]
            assert counts[-1] == count, "%s: +Inf bucket %s != _count %s" % (fam, counts[-1], count)
            assert self.samples[(fam + "_sum", labels)] >= 0

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, "no sample %s%r" % (name, labels)
        return v

    def streams(self):
        return {dict(l)["stream"] for (_, l) in self.samples if "stream" in dict(l)}


def test_parser_refuses_what_it_must():
    """The strict parser is itself checked: each of these is refused."""
    good = ("# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n")
    Scrape(good)
    bad = [
        good[:-1],                                                      # no final LF
        "a_total 3\n",                                                  # no TYPE
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1.5\n",     # fractional counter
        "# HELP a A.\n# TYPE a counter\na 1\n",                         # counter without _total
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n",  # unquoted label
        good + "a_total{x=\"1\"} 4\n",                                  # duplicate
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
        "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",                # not cumulative
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
        "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",                # +Inf != count
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            Scrape(text)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def write_token_file(text, name="metrics_token"):
    """A file in the cluster's data directory, owned by its owner, mode 0600."""
    pgdata = os.environ["SETSTREAM_PGDATA"]
    path = os.path.join(pgdata, name)
    with open(path, "w") as f:
        f.write(text)
    st = os.stat(pgdata)
    if os.geteuid() == 0:
        os.chown(path, st.st_uid, st.st_gid)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def metrics_on(gucs):
    path = write_token_file("  %s\n" % TOKEN)   # white space around is ignored
    gucs.set(metrics_token_file=path)
    yield TOKEN
    os.unlink(path)


def scrape(client, token=TOKEN):
    r = client.get("/metrics", token=token)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    s = Scrape(r.text)
    if text_string_to_metric_families is not None:
        # a second, independent parser must read it too
        fams = {f.name: f for f in text_string_to_metric_families(r.text)}
        assert fams, "prometheus_client found no metric family"
    return s


def sql_samples(db):
    out = {}
    for name, labels, value in db.rows("SELECT name, labels, value FROM setstream.metrics()"):
        key = (name, frozenset(labels.items()))
        assert key not in out, "duplicate SQL sample %r" % (key,)
        out[key] = value
    return out


def wait_until(cond, what, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# access
# ---------------------------------------------------------------------------

def test_no_token_configured_no_metrics(client, gucs):
    gucs.set(metrics_token_file="")
    assert_error(client.get("/metrics"), 404)
    assert_error(client.get("/metrics", token="anything"), 404)


def test_unreadable_or_empty_token_file_refuses(client, gucs):
    log = ls.ServerLog()
    gucs.set(metrics_token_file="/nonexistent/metrics_token")
    assert_error(client.get("/metrics", token="anything"), 503)
    log.wait_for(r"could not open setstream.metrics_token_file")
    path = write_token_file(" \n", "metrics_token_empty")
    try:
        gucs.set(metrics_token_file=path)
        assert_error(client.get("/metrics", token=""), 503)
        log.wait_for(r"holds no token")
    finally:
        os.unlink(path)


def test_refused_without_the_token(client, metrics_on):
    for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
        r = client.get("/metrics", token=token)
        assert_error(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer"), r.headers
        assert "setstream_" not in r.text
    assert_error(client.post("/metrics", b"", token=TOKEN), 405)
    # the stream tokens do not open it either
    assert client.get("/metrics", token=TOKEN).status_code == 200


def test_a_stream_token_does_not_open_metrics(client, streams, metrics_on):
    s = streams.create()
    assert_error(client.get("/metrics", token=s.token), 401)


def test_token_not_shown_to_other_roles_nor_logged(client, db, gucs):
    log = ls.ServerLog()
    path = write_token_file(TOKEN + "\n", "metrics_token_logged")
    try:
        gucs.set(metrics_token_file=path)   # the reload logs the path
        assert client.get("/metrics", token="wrong").status_code == 401
        assert client.get("/metrics", token=TOKEN).status_code == 200
        log.wait_for(re.escape(path))
    finally:
        os.unlink(path)
    role = "metrics_" + uuid.uuid4().hex[:8]
    db.execute("CREATE ROLE %s LOGIN" % role)
    try:
        conn = psycopg2.connect(dbname=ls.DATABASE, user=role)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_settings "
                            "WHERE name = 'setstream.metrics_token_file'")
                assert cur.fetchone()[0] == 0
                with pytest.raises(psycopg2.Error) as e:
                    cur.execute("SHOW setstream.metrics_token_file")
                assert e.value.pgcode == "42501"
        finally:
            conn.close()
    finally:
        db.execute("DROP ROLE %s" % role)
    time.sleep(0.3)
    assert TOKEN not in log.text()


# ---------------------------------------------------------------------------
# the exposition
# ---------------------------------------------------------------------------

FAMILIES = {
    "setstream_sets_received_total": "counter",
    "setstream_sets_rejected_total": "counter",
    "setstream_sets_emitted_total": "counter",
    "setstream_sets_delivered_total": "counter",
    "setstream_sets_acked_total": "counter",
    "setstream_sets_failed_total": "counter",
    "setstream_outbox_backlog": "gauge",
    "setstream_outbox_oldest_due_age_seconds": "gauge",
    "setstream_metrics_streams_omitted": "gauge",
    "setstream_listeners": "gauge",
    "setstream_listener_connections_total": "counter",
    "setstream_listener_open_connections": "gauge",
    "setstream_listener_requests_total": "counter",
    "setstream_listener_websocket_sessions_total": "counter",
    "setstream_listener_websocket_sessions": "gauge",
    "setstream_listener_long_polls_waiting": "gauge",
    "setstream_listener_request_duration_seconds": "histogram",
    "setstream_delivery_latency_seconds": "histogram",
}


def test_every_family_typed(client, streams, metrics_on):
    streams.create()
    s = scrape(client)
    assert s.types == FAMILIES
    assert s.value("setstream_listeners") >= 1
    assert s.value("setstream_listener_open_connections") >= 1  # this very scrape


def test_counters_move_with_traffic(client, db, streams, metrics_on):
    s = streams.create(signing_alg="ES256")
    before = scrape(client)
    assert s.name in before.streams()
    for fam in ("setstream_sets_received_total", "setstream_sets_emitted_total",
                "setstream_sets_delivered_total", "setstream_sets_acked_total",
                "setstream_sets_failed_total", "setstream_outbox_backlog"):
        assert before.value(fam, stream=s.name) == 0, fam
    for code in ("invalid_request", "invalid_key", "invalid_issuer", "invalid_audience",
                 "authentication_failed", "access_denied", "invalid_state"):
        assert before.value("setstream_sets_rejected_total", stream=s.name, err=code) == 0

    def req(route, status, scr):
        return scr.get("setstream_listener_requests_total", route=route, status=status) or 0

    def dur(route, scr):
        return scr.value("setstream_listener_request_duration_seconds_count", route=route)

    # a push accepted, a push refused (bad signature: invalid_key)
    jti, token = s.set()
    assert client.push(s, token).status_code == 202
    other_key = ls.peer_key("ES256", variant=1)
    bad = ls.sign(other_key, "ES256", s.claims(), s.peer_keys["ES256"][1])
    assert_error(client.push(s, bad), 400, "invalid_key")

    # two emits, then due: backlog 2, the oldest due SET has an age
    e1 = db.emit(s.name)
    e2 = db.emit(s.name)
    time.sleep(0.05)
    mid = scrape(client)
    assert mid.value("setstream_sets_received_total", stream=s.name) == 1
    assert mid.value("setstream_sets_rejected_total", stream=s.name, err="invalid_key") == 1
    assert mid.value("setstream_sets_emitted_total", stream=s.name) == 2
    assert mid.value("setstream_outbox_backlog", stream=s.name) == 2
    assert mid.value("setstream_outbox_oldest_due_age_seconds", stream=s.name) > 0
    assert req("events", "202", mid) == req("events", "202", before) + 1
    assert req("events", "400", mid) == req("events", "400", before) + 1
    assert dur("events", mid) == dur("events", before) + 2

    # a poll takes both: delivered, latency observed; still backlog (unacked)
    lat_before = mid.value("setstream_delivery_latency_seconds_count")
    r = client.poll(s)
    assert r.status_code == 200 and set(r.json()["sets"]) == {e1, e2}
    polled = scrape(client)
    assert polled.value("setstream_sets_delivered_total", stream=s.name) == 2
    assert polled.value("setstream_delivery_latency_seconds_count") == lat_before + 2
    assert polled.value("setstream_delivery_latency_seconds_sum") > \
        mid.value("setstream_delivery_latency_seconds_sum")
    assert polled.value("setstream_outbox_backlog", stream=s.name) == 2
    # delivered, not yet due again: nothing is due
    assert polled.value("setstream_outbox_oldest_due_age_seconds", stream=s.name) == 0
    assert req("poll", "200", polled) == req("poll", "200", mid) + 1

    # ack one, fail the other
    r = client.poll(s, {"returnImmediately": True, "maxEvents": 0, "ack": [e1],
                        "setErrs": {e2: {"err": "invalid_key", "description": "x"}}})
    assert r.status_code == 200, r.text
    after = scrape(client)
    assert after.value("setstream_sets_acked_total", stream=s.name) == 1
    assert after.value("setstream_sets_failed_total", stream=s.name) == 1
    assert after.value("setstream_outbox_backlog", stream=s.name) == 0
    assert after.value("setstream_sets_delivered_total", stream=s.name) == 2  # no redelivery
    assert after.value("setstream_listener_connections_total") >= \
        before.value("setstream_listener_connections_total")
    assert req("metrics", "200", after) >= req("metrics", "200", before) + 3


def test_emit_rolled_back_is_not_counted(client, db, streams, metrics_on):
    s = streams.create(signing_alg="ES256")
    conn = ls.connect_db(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb)", (s.name, ls.SESSION_REVOKED))
            cur.execute("SAVEPOINT a")
            cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb)", (s.name, ls.SESSION_REVOKED))
            cur.execute("ROLLBACK TO SAVEPOINT a")
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT setstream.emit(%s, %s, '{}'::jsonb)", (s.name, ls.SESSION_REVOKED))
        conn.rollback()
    finally:
        conn.close()
    assert scrape(client).value("setstream_sets_emitted_total", stream=s.name) == 1


def test_long_poll_and_websocket_gauges(client, db, streams, metrics_on):
    import wsutil
    s = streams.create(signing_alg="ES256")
    before = scrape(client)
    answered = []
    t = threading.Thread(target=lambda: answered.append(
        ls.Client().poll(s, {"returnImmediately": False}, timeout=30)))
    t.start()
    try:
        db.wait_parked(s.name)
        assert scrape(client).value("setstream_listener_long_polls_waiting") >= 1
    finally:
        db.emit(s.name)
        t.join(30)
    assert answered and answered[0].status_code == 200

    ws = wsutil.RawWs()
    try:
        resp = ws.handshake(types.SimpleNamespace(path="/streams/%s/pushpull" % s.name,
                                                  token=s.token))
        assert resp.status == 101, resp
        wait_until(lambda: scrape(client).value("setstream_listener_websocket_sessions") >= 1,
                   "an open WebSocket session")
        during = scrape(client)
        assert during.value("setstream_listener_websocket_sessions_total") == \
            before.value("setstream_listener_websocket_sessions_total") + 1
        assert during.get("setstream_listener_requests_total", route="pushpull", status="101") >= 1
    finally:
        ws.close()
    wait_until(lambda: scrape(client).value("setstream_listener_websocket_sessions") ==
               before.value("setstream_listener_websocket_sessions"),
               "the WebSocket session to close")


def test_stream_limit(client, streams, gucs, metrics_on):
    made = {streams.create().name for _ in range(3)}
    gucs.set(metrics_max_streams=2)
    s = scrape(client)
    shown = s.streams()
    assert len(shown) == 2
    assert s.value("setstream_metrics_streams_omitted") >= 1
    total = len(shown) + s.value("setstream_metrics_streams_omitted")
    assert total >= len(made)
    # every shown stream has its whole set of samples
    for name in shown:
        assert s.get("setstream_sets_emitted_total", stream=name) is not None


# ---------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------

def test_sql_agrees_with_the_scrape(client, db, streams, metrics_on):
    s = streams.create(signing_alg="ES256")
    jti, token = s.set()
    assert client.push(s, token).status_code == 202
    db.emit(s.name)
    client.poll(s)
    db.emit(s.name)
    http = scrape(client)
    sql = sql_samples(db)
    http_names = {n for (n, _) in http.samples}
    sql_names = {n for (n, _) in sql}
    assert http_names == sql_names
    mine = {k: v for k, v in http.samples.items() if ("stream", s.name) in k[1]}
    assert mine
    for key, value in mine.items():
        if key[0] == "setstream_outbox_oldest_due_age_seconds":
            assert sql[key] >= value  # read a moment later
        else:
            assert sql[key] == value, key
    # and the scrape's own route label set is the SQL's
    assert {k for k in http.samples if k[0] == "setstream_listener_request_duration_seconds_bucket"} \
        == {k for k in sql if k[0] == "setstream_listener_request_duration_seconds_bucket"}


def test_sql_shows_only_readable_streams(db, streams):
    readable = streams.create()
    hidden = streams.create()
    emit_only = streams.create()
    role = "metrics_" + uuid.uuid4().hex[:8]
    db.execute("CREATE ROLE %s LOGIN" % role)
    try:
        db.execute("SELECT setstream.grant_stream(%s, %s::regrole, '{read}')", (readable.name, role))
        db.execute("SELECT setstream.grant_stream(%s, %s::regrole, '{emit}')", (emit_only.name, role))
        conn = psycopg2.connect(dbname=ls.DATABASE, user=role)
        conn.autocommit = True
        try:
            shown = {labels["stream"] for _, labels, _ in ls.Db(conn).rows(
                "SELECT name, labels, value FROM setstream.metrics()") if "stream" in labels}
            listener_wide = ls.Db(conn).val(
                "SELECT count(*) FROM setstream.metrics() WHERE name = 'setstream_listeners'")
        finally:
            conn.close()
        assert shown == {readable.name}
        assert listener_wide == 1
    finally:
        with contextlib.suppress(Exception):
            db.execute("SELECT setstream.revoke_stream(%s, %s::regrole)", (readable.name, role))
            db.execute("SELECT setstream.revoke_stream(%s, %s::regrole)", (emit_only.name, role))
        db.execute("DROP OWNED BY %s" % role)
        db.execute("DROP ROLE %s" % role)


# ---------------------------------------------------------------------------
# the Grafana dashboard (scripts/grafana/setstream-dashboard.json)
# ---------------------------------------------------------------------------

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "..", "..", "scripts", "grafana", "setstream-dashboard.json")


def test_grafana_dashboard_names_existing_metrics(client, streams, metrics_on):
    import json
    with open(DASHBOARD) as f:
        dash = json.load(f)  # valid JSON
    assert dash["title"] and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    assert len(exprs) >= 10
    streams.create()
    names_scraped = {n for (n, _) in scrape(client).samples}
    used = set()
    for e in exprs:
        assert e.count("(") == e.count(")"), e
        for name in re.findall(r"\bsetstream_[a-z0-9_]+", e):
            assert name in names_scraped, "the dashboard queries %s, which /metrics lacks" % name
            used.add(name)
    # every family is on the dashboard
    for fam, typ in FAMILIES.items():
        wanted = fam + "_bucket" if typ == "histogram" else fam
        assert wanted in used, "the dashboard shows no %s" % wanted
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
