"""Issue 11, item 8: strings a peer controls are escaped in every log line.

A SET's jti (the key of "sets" in a Communication Object) was written
unescaped into a WARNING when the SET could not be stored, and the error
message of a failed request (which may quote peer input, here through a
trigger on setstream.events) into a LOG line: a newline in it started a
forged line in the server log.  Now control characters, quotes and
backslashes are written as escapes.
"""

import os
import time
import uuid

import pytest

from listener_support import jdump

LOGFILE = os.environ.get("SETSTREAM_LOGFILE")


@pytest.fixture
def quoting_trigger(db):
    fn = "sec_quote_" + uuid.uuid4().hex[:8]
    db.execute(
        "CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.jti LIKE 'forge-%%' THEN RAISE EXCEPTION 'rejected %%', NEW.jti; END IF;"
        " RETURN NEW; END $$" % fn)
    db.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events"
               " FOR EACH ROW EXECUTE FUNCTION public.%s()" % (fn, fn))
    yield
    db.execute("DROP TRIGGER %s ON setstream.events" % fn)
    db.execute("DROP FUNCTION public.%s()" % fn)


def log_lines_after(offset, marker, timeout=5.0):
    """Lines of the server log past offset; waits until marker shows up."""
    deadline = time.monotonic() + timeout
    while True:
        with open(LOGFILE, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        if marker in text or time.monotonic() > deadline:
            return text.split("\n")
        time.sleep(0.1)


@pytest.mark.skipif(not LOGFILE, reason="SETSTREAM_LOGFILE is not set")
@pytest.mark.parametrize("route", ["pushpull", "events"])
def test_peer_strings_cannot_forge_log_lines(db, streams, client, quoting_trigger, route):
    s = streams.create()
    tag = uuid.uuid4().hex
    forged = "FORGED-%s LOG:  the peer wrote this line" % tag
    jti = "forge-%s\n%s\r\"\\" % (tag, forged)
    _, token = s.set(jti=jti)
    offset = os.path.getsize(LOGFILE)
    if route == "pushpull":
        r = client.pushpull(s, jdump({"sets": {jti: token}}))
        assert r.status_code == 200, r.text
        assert jti not in r.json().get("ack", []), r.text
    else:
        r = client.push(s, token)
        assert r.status_code >= 500, r.text
    lines = log_lines_after(offset, tag)
    mentioned = [ln for ln in lines if tag in ln]
    assert mentioned, "the failure was not logged"
    for ln in mentioned:
        assert not ln.startswith("FORGED-"), "a peer forged a log line: %r" % ln
        assert "\\n" + "FORGED-" + tag in ln, ln
