"""Fixtures of the ssf suite: setstream as an SSF transmitter (issue 13).

The tests talk to the real listener over real sockets, as the OpenID SSF
conformance suite does, and look at the database with psycopg2.  The
listener helpers (Db, Client, RawConn, StreamFactory, Gucs) are those of
test/protocol, loaded from its conftest.py as the module
`listener_support`.

Every test makes its own receivers and streams (unique names) and drops
them; setstream.public_url and setstream.issuer are set for the test and
put back after it.
"""

import contextlib
import importlib.util
import os
import sys
import uuid

import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTOCOL = os.path.join(os.path.dirname(_HERE), "protocol", "conftest.py")

if "listener_support" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("listener_support", _PROTOCOL)
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["listener_support"] = _mod
    _spec.loader.exec_module(_mod)

from listener_support import (  # noqa: E402,F401  (fixtures re-exported)
    URL, DATABASE, Db, connect_db, listener, db, streams, client, raw, gucs)


class Receivers:
    """Makes receivers, their tokens and streams of theirs; drops them."""

    def __init__(self, db, streams):
        self.db = db
        self.streams = streams
        self.made = []

    def create(self, audience=None, max_streams=None):
        name = "rcv-" + uuid.uuid4().hex[:12]
        self.db.execute("SELECT setstream.create_receiver(%s, %s::text[], %s)",
                        (name, audience, max_streams))
        self.made.append(name)
        return name

    def token(self, receiver, scopes=("ssf.read", "ssf.manage")):
        return self.db.val("SELECT setstream.issue_receiver_token(%s, %s::text[])",
                           (receiver, list(scopes)))

    def stream(self, receiver, status=None):
        s = self.streams.create(token=False, status=status)
        self.db.execute("SELECT setstream.set_stream_receiver(%s, %s)", (s.name, receiver))
        return s

    def cleanup(self):
        self.streams.drop_all()
        for name in self.made:
            with contextlib.suppress(Exception):
                self.db.execute("UPDATE setstream.streams SET receiver = NULL "
                                "WHERE receiver = %s", (name,))
                self.db.execute("DELETE FROM setstream.receivers WHERE name = %s", (name,))


@pytest.fixture
def receivers(listener, streams):
    r = Receivers(listener, streams)
    yield r
    r.cleanup()


@pytest.fixture
def transmitter(gucs):
    """setstream.public_url = the listener's URL; the issuer is that too"""
    gucs.set(public_url=URL + "/", issuer=URL)
    return gucs
