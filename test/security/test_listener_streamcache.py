"""Issue 11, item 3: the listener's stream cache under more streams than it
holds, and under a flood of stream names that do not exist.

The listener keeps a pointer to a stream's cached copy from authentication
(outside any transaction) to the loop turn's transaction.  The cache used to
be dropped whole when it reached 4096 entries, inside the short transaction
that loads streams, and freed at its commit: requests prepared earlier in
the turn then read freed memory (a crash under the sanitizer mode), and
requests whose stream had been loaded just before the wrap got a 503.
Unknown names filled the same cache, so a flood of them (no credentials
needed) made it wrap at will.

Now unknown names are bounded on their own, a full cache evicts single
entries (never one in use in the turn), and nothing retired is freed before
the turn ends.  Every request here must be answered as if the cache were
infinite: 200 for a stream's own token, 401 for a name that does not exist.
"""

import concurrent.futures
import uuid

import pytest

from listener_support import RawConn, jdump

NSTREAMS = 4300       # more than the cache's 4096 streams
THREADS = 16


def poll_request(name, token):
    return ("POST", "/streams/%s/poll" % name,
            [("Authorization", "Bearer " + token),
             ("Content-Type", "application/json")],
            jdump({"returnImmediately": True}))


def run_requests(jobs, threads=THREADS):
    """jobs: list of (request args, wanted status); returns the mismatches."""
    chunks = [jobs[i::threads] for i in range(threads)]

    def worker(chunk):
        bad = []
        conn = None
        for args, want in chunk:
            for attempt in range(2):
                try:
                    if conn is None:
                        conn = RawConn(timeout=20)
                    resp = conn.request(*args)
                    break
                except (ConnectionError, OSError):
                    # the listener may close a keep-alive connection (idle
                    # eviction): one new connection, then it counts
                    conn = None
                    if attempt == 1:
                        raise
            if resp.status != want:
                bad.append((args[1], want, resp.status, resp.body[:200]))
            if resp.header("Connection") == "close":
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        return bad

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return [b for chunk_bad in pool.map(worker, chunks) for b in chunk_bad]


def create_streams(db, prefix, n):
    """n streams named prefix1..prefixn, each with a token: [(name, token)]"""
    db.execute(
        "SELECT setstream.create_stream(%s || i, 'https://db.example.com/x', "
        "ARRAY['https://r.example.com/x'], 'https://idp.example.com/x') "
        "FROM generate_series(1, %s) i", (prefix, n))
    rows = db.rows("SELECT %s || i, setstream.issue_token(%s || i) "
                   "FROM generate_series(1, %s) i", (prefix, prefix, n))
    assert len(rows) == n
    return rows


@pytest.fixture
def many_streams(listener):
    prefix = "sc-" + uuid.uuid4().hex[:8] + "-"
    rows = create_streams(listener, prefix, NSTREAMS)
    yield rows
    listener.execute("DELETE FROM setstream.streams WHERE name LIKE %s", (prefix + "%",))


def test_more_streams_than_the_cache_holds(many_streams):
    """Every one of 4300 streams, polled round after round by concurrent
    peers, answers 200: no spurious 503 when the cache is full, and no
    request reads a stream that was evicted under it."""
    jobs = [(poll_request(name, token), 200) for name, token in many_streams]
    for _ in range(3):
        bad = run_requests(jobs)
        assert bad == [], "%d of %d polls failed, e.g. %r" % (len(bad), len(jobs), bad[:5])


def test_unknown_names_do_not_evict_streams_in_use(gucs, listener):
    """A flood of unknown stream names (10000, no credentials needed) while
    300 real streams are polled: the real ones always answer 200, the
    unknown ones always 401."""
    gucs.set(auth_failure_limit=0)  # the flood comes from one address
    prefix = "sc-" + uuid.uuid4().hex[:8] + "-"
    rows = create_streams(listener, prefix, 300)
    try:
        jobs = []
        for i in range(10000):
            jobs.append((poll_request("nx-" + uuid.uuid4().hex, "nothing"), 401))
            if i % 8 == 0:
                name, token = rows[(i // 8) % len(rows)]
                jobs.append((poll_request(name, token), 200))
        bad = run_requests(jobs)
        assert bad == [], "%d of %d requests failed, e.g. %r" % (len(bad), len(jobs), bad[:5])
    finally:
        listener.execute("DELETE FROM setstream.streams WHERE name LIKE %s", (prefix + "%",))
