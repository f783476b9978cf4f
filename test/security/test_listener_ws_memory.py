"""Issue 11, item 7: an authenticated WebSocket peer cannot grow the
listener's memory without bound.

* A peer that floods pings and never reads the pongs: wslay queued a pong
  per ping, so 80,000 pings grew the listener linearly.  Now a session
  whose queued output is over its cap (64 messages or 1 MiB) is not read
  from any more, and one that stays over it for half of
  setstream.idle_timeout is closed.
* A peer that never reads while SETs are emitted for it: up to 1,000 SETs
  were queued again every setstream.redelivery_interval.  Now more SETs are
  taken only once what was sent before has left.
* A peer that sends large messages faster than the turns take them: the
  inbox held up to 64 messages (64 x setstream.max_request_bytes).  Now it
  holds at most 16 messages and max_request_bytes bytes.

Memory is the listener process's peak resident set (VmHWM, reset through
/proc/<pid>/clear_refs before each attack).
"""

import os
import socket
import struct
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "protocol"))
import wsutil  # noqa: E402

import listener_support as ls  # noqa: E402

MIB = 1024 * 1024
# Under the sanitizer mode ASan keeps freed memory in quarantine (and pads
# every allocation): RSS then measures churn, not what is kept.  The ping
# flood churns a pong per ping however few are queued at a time, so its
# memory bound is checked without ASan only; that the listener stops
# reading and closes the peer is checked in both modes.
SANITIZE = bool(os.environ.get("SETSTREAM_SANITIZE"))


def listener_pid(db):
    pids = [r[0] for r in db.rows(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'setstream listener'")]
    assert len(pids) == 1, pids
    return pids[0]


def reset_peak(pid):
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
    except OSError as e:
        pytest.skip("cannot reset the listener's peak RSS: %s" % e)


def kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


def frame(opcode, payload):
    """A client frame with an all-zero mask (payload sent as is: fast)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + b"\0\0\0\0" + payload


def small_window_ws(stream, timeout=5):
    """A WebSocket whose socket buffers are small: the peer barely reads."""
    ws = wsutil.RawWs(timeout=timeout)
    ws.sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    sock.settimeout(timeout)
    sock.connect((ls.HOST, ls.PORT))
    ws.sock = sock
    assert ws.handshake(stream).status == 101
    return ws


def send_until_blocked(sock, data, budget_s):
    """Send data in pieces until done, the server stops reading (a send
    blocks for 2 s), or budget_s pass.  Returns the bytes sent."""
    sock.settimeout(2)
    sent = 0
    deadline = time.monotonic() + budget_s
    view = memoryview(data)
    try:
        while sent < len(data) and time.monotonic() < deadline:
            sent += sock.send(view[sent:sent + 65536])
    except (socket.timeout, BlockingIOError):
        pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


@pytest.fixture
def wstreams(listener):
    f = wsutil.Streams(listener)
    yield f
    f.drop_all()


def closed_by_server(sock, within):
    """Does the server close (or reset) the connection within `within` s?
    What it still sends is read and dropped."""
    deadline = time.monotonic() + within
    sock.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_ping_flood_without_reading_pongs(listener, wstreams, gucs):
    gucs.set(idle_timeout=4000)
    s = wstreams.create()
    pid = listener_pid(listener)
    ws = small_window_ws(s)
    try:
        reset_peak(pid)
        base = kib(pid, "VmRSS")
        pings = frame(0x9, b"p" * 125) * 80000        # 10.5 MB of pings
        sent = send_until_blocked(ws.sock, pings, budget_s=20)
        grown = kib(pid, "VmHWM") - base
        if not SANITIZE:
            assert grown < 4 * 1024, \
                "the listener grew by %d KiB for %d bytes of pings" % (grown, sent)
        assert sent < len(pings), "the listener read every ping of a peer that reads nothing"
        # a peer that stays over its output cap is closed
        assert closed_by_server(ws.sock, 6), "the listener kept a peer that reads nothing"
    finally:
        ws.close()


def test_peer_that_never_reads_sets(listener, wstreams, gucs):
    """The first batch of SETs is taken and queued; after that, however
    often they fall due again (every second here), nothing more is queued
    while the peer reads nothing: the listener does not grow."""
    gucs.set(idle_timeout=60000, redelivery_interval=500)
    s = wstreams.create()
    pid = listener_pid(listener)
    ws = small_window_ws(s)
    try:
        listener.execute(
            "SELECT setstream.emit(%s, %s, jsonb_build_object('pad', repeat('x', 1500), 'n', i), "
            "%s::jsonb) FROM generate_series(1, 600) i",
            (s.name, wsutil.SESSION_REVOKED, ls.jdump(wsutil.SUBJECT)))

        def keep_alive(seconds):
            # the peer speaks (so it is not idle), but reads nothing
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                ws.sock.settimeout(2)
                ws.sock.sendall(frame(0x1, b'{"ack":[]}'))
                time.sleep(0.25)

        keep_alive(2.5)                 # the first batch is queued
        reset_peak(pid)
        base = kib(pid, "VmHWM")
        keep_alive(8)                   # redelivery is due 8 times over
        grown = kib(pid, "VmHWM") - base
        assert grown < 3 * 1024, \
            "the listener grew by %d KiB in 8 s queueing SETs again for a peer " \
            "that reads nothing" % grown
    finally:
        ws.close()


def test_inbox_bounded(listener, wstreams, gucs):
    gucs.set(max_request_bytes=MIB)
    s = wstreams.create()
    pid = listener_pid(listener)
    ws = small_window_ws(s, timeout=10)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MIB)
    try:
        reset_peak(pid)
        base = kib(pid, "VmRSS")
        body = b'{"ack":[]' + b" " * (MIB - 200) + b"}"
        data = frame(0x1, body) * 40                   # 40 MiB of messages
        sent = send_until_blocked(ws.sock, data, budget_s=30)
        grown = kib(pid, "VmHWM") - base
        assert sent > 8 * MIB, "the listener read only %d bytes" % sent
        # under ASan freed memory stays in quarantine: the peak then measures
        # what was read, not what was kept (as for the ping flood above)
        if not SANITIZE:
            assert grown < 12 * 1024, \
                "the listener grew by %d KiB for 1 MiB messages" % grown
    finally:
        ws.close()
