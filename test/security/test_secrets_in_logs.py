"""Issue 11, finding 8: secrets in the server log.

An error in a statement whose text holds a secret puts the secret into the
server log (log_min_error_statement).  setstream offers forms that keep the
secret out of the statement text: a token is revoked by id or by its
SHA-256 (revoke_token_hash), and keys and tokens are passed as bound
parameters (psycopg 3 binds server-side; psql 16 has \\bind), which the log
does not show unless log_parameter_max_length_on_error is raised.
"""

import base64
import hashlib
import os
import uuid

import psycopg
import pytest

from listener_support import DATABASE

LOGFILE = os.environ.get("SETSTREAM_LOGFILE")


def log_text():
    with open(LOGFILE, "rb") as f:
        return f.read().decode("utf-8", "replace")


@pytest.fixture
def bound():
    """A psycopg 3 connection: parameters are bound, never in the text."""
    conn = psycopg.connect(dbname=DATABASE, autocommit=True,
                           options="-c log_min_error_statement=error")
    yield conn
    conn.close()


def run_error(conn, sql, params):
    with pytest.raises(psycopg.Error) as e:
        conn.execute(sql, params)
    return e.value


@pytest.mark.skipif(not LOGFILE, reason="SETSTREAM_LOGFILE is not set (scripts/test.sh sets it)")
def test_revoke_by_hash_keeps_the_token_out_of_the_log(streams, bound, db):
    s = streams.create()
    digest = hashlib.sha256(s.token.encode()).hexdigest()
    before = len(log_text())
    bound.execute("SELECT setstream.revoke_token_hash(%s, %s)", (s.name, digest))
    assert db.val("SELECT count(*) FROM setstream.tokens WHERE stream = %s AND revoked_at IS NULL",
                  (s.name,)) == 0
    # revoking it again is an error, logged with its statement
    e = run_error(bound, "SELECT setstream.revoke_token_hash(%s, %s)", (s.name, digest))
    assert e.sqlstate == "42704"
    e = run_error(bound, "SELECT setstream.revoke_token_hash(%s, %s)", (s.name, "not-hex"))
    assert e.sqlstate == "22023"
    logged = log_text()[before:]
    assert "revoke_token_hash" in logged, "the failing statements were not logged at all"
    assert s.token not in logged


@pytest.mark.skipif(not LOGFILE, reason="SETSTREAM_LOGFILE is not set (scripts/test.sh sets it)")
def test_bound_secrets_are_not_logged_on_error(streams, bound):
    s = streams.create(token=False)
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    jwk = '{"kty":"oct","k":"%s"}' % secret
    before = len(log_text())
    missing = "nosuch-" + uuid.uuid4().hex[:8]
    e = run_error(bound, "SELECT setstream.add_key(%s, %s::jsonb)", (missing, jwk))
    assert e.sqlstate == "42704"
    bound.execute("SELECT setstream.add_key(%s, %s::jsonb)", (s.name, jwk))
    e = run_error(bound, "SELECT setstream.add_key(%s, %s::jsonb)", (s.name, jwk))
    assert e.sqlstate == "42710"     # the same kid again
    assert secret not in str(e) and secret not in (e.diag.message_detail or "")
    token = "sst_" + base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    e = run_error(bound, "SELECT setstream.check_token(%s, %s) AND 1/0 = 1", (s.name, token))
    logged = log_text()[before:]
    assert "setstream.add_key($1, $2::jsonb)" in logged, "the failing statements were not logged"
    assert secret not in logged
    assert token not in logged
