"""RFC 8935 push by the sender worker (issue 17): requests and answers.

Each test makes a push stream whose endpoint is a scripted Receiver on
127.0.0.1 (allowed by setstream.outbound_allowed_networks), emits SETs, and
checks what reached the receiver and what the outbox and the stream's
delivery state say afterwards: one test per row of the answer table.
"""

import time

import psycopg2
import pytest

from conftest import answer, wait_for

ACKED = lambda r: r["state"] == "acked"        # noqa: E731
FAILED = lambda r: r["state"] == "failed"      # noqa: E731


def test_push_sends_the_stored_token_with_the_rfc8935_headers(loopback, receiver, pushes, db):
    auth = "Bearer outbound-" + str(time.time())
    s = pushes.create(receiver.url, authorization=auth)
    jti = db.emit(s.name)
    row = pushes.wait_row(s, jti, ACKED, "ack")
    assert receiver.count() == 1
    req = receiver.requests[0]
    assert req["path"] == "/events"
    assert req["body"] == row["token"].encode()          # byte for byte
    assert req["headers"]["content-type"] == "application/secevent+jwt"
    assert req["headers"]["accept"] == "application/json"
    assert req["headers"]["authorization"] == auth
    assert row["attempts"] == 1 and row["last_status"] == 202
    assert row["acked_at"] is not None and row["err"] is None
    d = pushes.delivery(s)
    assert d["state"] == "active" and d["nonconformant_acks"] == 0
