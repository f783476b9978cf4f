"""A stored SET's claims and header are the jsonb values jsonb_in makes of
its payload and header texts, whichever way it came in.

In a UTF-8 database setstream builds these jsonb values while it parses
the SET for verification (jsonread_load_jsonb); elsewhere it casts the
texts.  Each way, the stored value must equal the cast of the same text,
byte for byte as jsonb prints it: numbers keep their scale (1.50), keys
are sorted and unescaped as jsonb_in does, strings keep every escape's
character.  A number jsonb cannot hold (1e-20000: numeric keeps at most
16383 digits after the point) is refused as invalid_request and stores
nothing.
"""

import json
import time
import uuid

import psycopg2
import pytest

import listener_support as ls
from listener_support import assert_error, b64u_decode, sign, sign_raw

# Values that jsonb_in keeps differently from a naive re-encoding
TRICKY = (
    '{"scale": 1.50, "exp": 1e2, "neg_zero": -0, "small": 1E-5,'
    ' "max": 9223372036854775807, "min": -9223372036854775808,'
    ' "tiny": 0.1e-999, "frac": 0.30000000000000004,'
    ' "escapes": "\\u00e9\\ud83d\\ude00 \u00e9 \\/ \\" \\\\ \\t \\n \\u001f",'
    ' "nested": [[], {}, [1, [2, {"z": null}]], true, false, null],'
    ' "long": "%s", "B": 1, "a2": 2, "": "empty key", "\u00e9t\u00e9": "key",'
    ' "\\u0041": "escaped key"}' % ("x" * 300)
)


def claims_text(stream, jti, extra=TRICKY):
    """The payload text of a valid SET of stream with one extra member."""
    c = stream.claims(jti=jti)
    text = json.dumps(c, separators=(",", ":"))
    return text[:-1] + ',"x":' + extra + "}"


def tricky_set(stream, jti=None, extra=TRICKY, header=None):
    jti = jti or uuid.uuid4().hex
    key, kid = stream.peer_keys["ES256"]
    hdr = {"alg": "ES256", "typ": "secevent+jwt", "kid": kid}
    hdr.update(header or {})
    return jti, sign_raw(key, "ES256", json.dumps(hdr), claims_text(stream, jti, extra))


def assert_stored_as_cast(db, stream, jti, token):
    """claims and header equal the casts of the token's texts, as text too"""
    header_text, payload_text = (b64u_decode(p).decode("utf-8")
                                 for p in token.split(".")[:2])
    row = db.dicts(
        "SELECT claims::text AS claims, %s::jsonb::text AS claims_cast,"
        " claims = %s::jsonb AS claims_equal,"
        " header::text AS header, %s::jsonb::text AS header_cast,"
        " subject = %s::jsonb -> 'sub_id' AS subject_equal,"
        " events = %s::jsonb -> 'events' AS events_equal"
        " FROM setstream.events WHERE stream = %s AND jti = %s",
        (payload_text, payload_text, header_text, payload_text, payload_text,
         stream.name, jti))
    assert len(row) == 1, "the SET %s was not stored" % jti
    row = row[0]
    assert row["claims"] == row["claims_cast"]
    assert row["claims_equal"]
    assert row["header"] == row["header_cast"]
    assert row["subject_equal"] and row["events_equal"]
    # the values the cast keeps that a re-encoding would lose
    assert '"scale": 1.50' in row["claims"]
    assert '"tiny": 0.' in row["claims"]


@pytest.fixture
def stream(streams):
    return streams.create(peer_algs=("ES256",))


def test_pushed_set_claims_are_jsonb_in_of_the_payload(client, db, stream):
    jti, token = tricky_set(stream, header={"zz": [1.0, "\\u00e9"], "a": {}})
    r = client.push(stream, token)
    assert r.status_code == 202, r.text
    assert_stored_as_cast(db, stream, jti, token)


def test_pushpull_sets_claims_are_jsonb_in_of_the_payload(client, db, stream):
    sets = dict(tricky_set(stream) for _ in range(5))
    r = client.pushpull(stream, {"sets": sets, "maxEvents": 0})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["ack"]) == sorted(sets)
    for jti, token in sets.items():
        assert_stored_as_cast(db, stream, jti, token)


def test_sets_stored_one_by_one_after_a_trigger_refuses_one(client, db, stream):
    """A trigger that raises for one SET fails the turn's batch statement;
    the others are stored one at a time (the single-row statement)."""
    sets = dict(tricky_set(stream) for _ in range(3))
    bad = next(iter(sets))
    fn = "pt_refuse_" + uuid.uuid4().hex[:8]
    db.execute(
        "CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.jti = '%s' THEN RAISE EXCEPTION 'refused'; END IF;"
        " RETURN NEW; END $$" % (fn, bad))
    db.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events"
               " FOR EACH ROW EXECUTE FUNCTION public.%s()" % (fn, fn))
    try:
        r = client.pushpull(stream, {"sets": sets, "maxEvents": 0})
        assert r.status_code == 200, r.text
        assert sorted(r.json()["ack"]) == sorted(j for j in sets if j != bad)
    finally:
        db.execute("DROP TRIGGER %s ON setstream.events" % fn)
        db.execute("DROP FUNCTION public.%s()" % fn)
    for jti, token in sets.items():
        if jti != bad:
            assert_stored_as_cast(db, stream, jti, token)


def test_receive_stores_claims_as_jsonb_in_of_the_payload(db, stream):
    jti, token = tricky_set(stream)
    assert db.val("SELECT setstream.receive(%s, %s)", (stream.name, token)) == jti
    assert_stored_as_cast(db, stream, jti, token)


@pytest.mark.parametrize("number", ["1e-20000", "1." + "0" * 17000],
                         ids=["exponent", "digits"])
def test_number_jsonb_cannot_hold_is_refused(client, db, stream, number):
    jti, token = tricky_set(stream, extra='{"n": %s}' % number)
    r = client.push(stream, token)
    assert_error(r, 400, "invalid_request")
    assert "jsonb cannot hold" in r.json()["description"]
    # through pushpull too, next to a SET that is stored
    good_jti, good = tricky_set(stream)
    r = client.pushpull(stream, {"sets": {jti: token, good_jti: good},
                                 "maxEvents": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ack"] == [good_jti]
    assert body["setErrs"][jti]["err"] == "invalid_request"
    assert [e["jti"] for e in db.events(stream.name)] == [good_jti]
    # and through receive(), with the SQLSTATE of invalid_request
    with pytest.raises(psycopg2.Error) as e:
        db.val("SELECT setstream.receive(%s, %s)", (stream.name, token))
    assert "jsonb cannot hold" in str(e.value)
    assert db.event_count(stream.name) == 1


def test_latin1_database_casts_the_texts(db):
    """Where the database is not UTF-8, nothing is built while parsing: the
    texts are cast, as before (jsonb_of).  Plain ASCII claims, as LATIN1
    cannot hold every character of TRICKY."""
    name = "pt_latin1_" + uuid.uuid4().hex[:8]
    db.execute("CREATE DATABASE %s ENCODING 'LATIN1' LC_COLLATE 'C'"
               " LC_CTYPE 'C' TEMPLATE template0" % name)
    try:
        conn = psycopg2.connect(dbname=name)
        conn.autocommit = True
        try:
            other = ls.Db(conn)
            other.execute("CREATE EXTENSION setstream")
            s = ls.StreamFactory(other).create(peer_algs=("ES256",), token=False)
            extra = TRICKY.split(', "escapes"')[0] + "}"
            jti, token = tricky_set(s, extra=extra)
            assert other.val("SELECT setstream.receive(%s, %s)", (s.name, token)) == jti
            assert_stored_as_cast(other, s, jti, token)
        finally:
            conn.close()
    finally:
        for _ in range(50):
            try:
                db.execute("DROP DATABASE %s" % name)
                break
            except psycopg2.errors.ObjectInUse:
                time.sleep(0.1)
