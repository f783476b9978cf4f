"""pushpull WebSocket binding, inbound: the peer sends Communication Objects
{"sets": {jti: SET}} on the socket; the server answers with a message that
acknowledges ("ack") every SET it stored and rejects the others in
"setErrs" with RFC 8935 codes, and only after the commit that stored them.
A SET whose user trigger on setstream.events raises is neither acked nor
rejected (the peer sends it again).
"""

import asyncio
import os
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wsutil  # noqa: E402
from wsutil import Peer, connect, peer_key, run  # noqa: E402

# fixtures of wsutil, used by name
ws_db = wsutil.ws_db
ws_streams = wsutil.ws_streams


@pytest.fixture
def stream(ws_streams):
    return ws_streams.create(signing=False)


def bad_sets(stream):
    """(label, expected err, jti key, token) of SETs the server must reject."""
    out = []
    jti, tok = stream.set(iss="https://evil.example.com/")
    out.append(("wrong iss", "invalid_issuer", jti, tok))
    jti, tok = stream.set("ES256", key=peer_key("ES256", variant=1))
    out.append(("bad signature", "invalid_key", jti, tok))
    jti, tok = stream.set("ES256", kid="no-such-kid")
    out.append(("unknown kid", "invalid_key", jti, tok))
    jti, tok = stream.set("RS256", aud="https://someone-else.example.com/")
    out.append(("wrong aud", "invalid_audience", jti, tok))
    jti, tok = stream.set(sub_id=None)
    out.append(("no sub_id", "invalid_request", jti, tok))
    jti, tok = stream.set(header={"typ": "JWT"})
    out.append(("typ JWT", "invalid_request", jti, tok))
    out.append(("not a JWS", "invalid_request", str(uuid.uuid4()), "not.a-jws"))
    return out


def test_good_and_bad_sets_ack_and_seterrs(ws_db, stream):
    good = [stream.set("ES256"), stream.set("RS256")]
    bad = bad_sets(stream)
    sets = dict(good)
    sets.update({key: tok for _, _, key, tok in bad})

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.send({"sets": sets})
            await peer.wait_answered(sets)
            return peer

    peer = run(go())
    assert sorted(peer.acks) == sorted(j for j, _ in good)
    assert len(peer.acks) == len(set(peer.acks))
    assert set(peer.set_errs) == {key for _, _, key, _ in bad}
    for label, err, key, _ in bad:
        e = peer.set_errs[key]
        assert e["err"] == err, (label, e)
        assert isinstance(e.get("description"), str) and e["description"], (label, e)
    stored = ws_db.events(stream.name)
    assert set(stored) == {j for j, _ in good}
    for jti, tok in good:
        assert stored[jti]["token"] == tok  # byte-exact
        assert stored[jti]["iss"] == stream.peer_issuer


def test_key_not_jti_invalid_request(ws_db, stream):
    jti, tok = stream.set()
    other_key = str(uuid.uuid4())
    good_jti, good_tok = stream.set()

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.send({"sets": {other_key: tok, good_jti: good_tok}})
            await peer.wait_answered([other_key, good_jti])
            return peer

    peer = run(go())
    assert peer.acks == [good_jti]
    assert set(peer.set_errs) == {other_key}
    assert peer.set_errs[other_key]["err"] == "invalid_request"
    assert jti not in peer.acks
    assert set(ws_db.events(stream.name)) == {good_jti}


def test_ack_only_after_commit(ws_db, stream):
    """A deferred constraint trigger sleeps at commit time: an ack sent
    before the commit would arrive before the rows are visible (and
    before the sleep is over)."""
    suffix = uuid.uuid4().hex[:8]
    fn = "public.ws_test_slow_commit_%s" % suffix
    trg = "ws_test_slow_commit_%s" % suffix
    ws_db.execute("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$BEGIN PERFORM pg_sleep(0.6); RETURN NULL; END$$" % fn)
    ws_db.execute("CREATE CONSTRAINT TRIGGER %s AFTER INSERT ON setstream.events "
                  "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                  "WHEN (NEW.stream = '%s') EXECUTE FUNCTION %s()"
                  % (trg, stream.name, fn))
    try:
        jti, tok = stream.set()
        check = {}

        async def go():
            async with connect(stream) as ws:
                peer = Peer(ws)
                t0 = time.monotonic()
                await peer.send_sets((jti, tok))
                await peer.wait_answered([jti])
                check["elapsed"] = time.monotonic() - t0
                # right after the ack: the SET is committed and visible
                check["stored"] = ws_db.events(stream.name)
                return peer

        peer = run(go())
        assert peer.acks == [jti]
        assert jti in check["stored"], "acked before its commit was visible"
        assert check["stored"][jti]["token"] == tok
        assert check["elapsed"] >= 0.55, \
            "the ack came %.3fs after sending, before the commit finished" % check["elapsed"]
    finally:
        ws_db.execute("DROP TRIGGER IF EXISTS %s ON setstream.events" % trg)
        ws_db.execute("DROP FUNCTION IF EXISTS %s()" % fn)


def test_acked_sets_visible_immediately(ws_db, stream):
    """Every ack, checked the moment it arrives, names committed rows."""
    pairs = [stream.set("ES256" if i % 2 else "RS256") for i in range(10)]
    seen = {}

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            for jti, tok in pairs:
                await peer.send_sets((jti, tok))
            want = {j for j, _ in pairs}
            deadline = time.monotonic() + 10
            while not want <= set(peer.acks):
                assert time.monotonic() < deadline, peer.messages
                msg = await peer.recv(deadline - time.monotonic())
                if msg.get("ack"):
                    stored = ws_db.events(stream.name)
                    for j in msg["ack"]:
                        seen[j] = j in stored
            return peer

    peer = run(go())
    assert sorted(peer.acks) == sorted(j for j, _ in pairs)
    assert peer.set_errs == {}
    assert all(seen.values()), seen


def test_user_trigger_rejecting_one_jti_neither_acked_nor_seterr(ws_db, stream):
    suffix = uuid.uuid4().hex[:8]
    fn = "public.ws_test_reject_%s" % suffix
    trg = "ws_test_reject_%s" % suffix
    victim, victim_tok = stream.set()
    ws_db.execute("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$"
                  "BEGIN IF NEW.stream = TG_ARGV[0] AND NEW.jti = TG_ARGV[1] THEN "
                  "RAISE EXCEPTION 'rejected by the test trigger'; END IF; "
                  "RETURN NEW; END$$" % fn)
    ws_db.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events FOR EACH ROW "
                  "EXECUTE FUNCTION %s('%s', '%s')" % (trg, fn, stream.name, victim))
    try:
        good = [stream.set("ES256"), stream.set("RS256")]
        bad_jti, bad_tok = stream.set(iss="https://evil.example.com/")

        async def go():
            async with connect(stream) as ws:
                peer = Peer(ws)
                await peer.send({"sets": dict(good + [(victim, victim_tok),
                                                      (bad_jti, bad_tok)])})
                await peer.wait_answered([j for j, _ in good] + [bad_jti])
                # nothing more about the victim arrives
                await peer.quiet(0.5)
                return peer

        peer = run(go())
        assert sorted(peer.acks) == sorted(j for j, _ in good)
        assert set(peer.set_errs) == {bad_jti}
        assert peer.set_errs[bad_jti]["err"] == "invalid_issuer"
        assert victim not in peer.acks and victim not in peer.set_errs
        assert set(ws_db.events(stream.name)) == {j for j, _ in good}
    finally:
        ws_db.execute("DROP TRIGGER IF EXISTS %s ON setstream.events" % trg)
        ws_db.execute("DROP FUNCTION IF EXISTS %s()" % fn)

    # the peer sends it again once the trigger is gone: now it is acked
    async def again():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.send_sets((victim, victim_tok))
            await peer.wait_answered([victim])
            return peer

    peer = run(again())
    assert peer.acks == [victim]
    assert victim in ws_db.events(stream.name)


def test_sets_in_several_messages_all_acked(ws_db, stream):
    batches = [[stream.set("ES256") for _ in range(3)],
               [stream.set("RS256")],
               [stream.set("ES256"), stream.set("RS256")]]
    all_jtis = [j for b in batches for j, _ in b]

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            for b in batches:
                await peer.send({"sets": dict(b)})
            await peer.wait_answered(all_jtis)
            await peer.quiet(0.3)
            return peer

    peer = run(go())
    assert sorted(peer.acks) == sorted(all_jtis)  # each exactly once
    assert peer.set_errs == {}
    assert set(ws_db.events(stream.name)) == set(all_jtis)


def test_duplicate_set_acked_again_stored_once(ws_db, stream):
    jti, tok = stream.set()

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await peer.send_sets((jti, tok))
            await peer.until(lambda: len(peer.acks) >= 1, what="first ack")
            await peer.send_sets((jti, tok))
            await peer.until(lambda: len(peer.acks) >= 2, what="second ack")
            return peer

    peer = run(go())
    assert peer.acks == [jti, jti]
    assert peer.set_errs == {}
    assert ws_db.val("SELECT count(*) FROM setstream.events WHERE stream = %s",
                     (stream.name,)) == 1


def test_messages_interleave_on_one_connection(ws_db, stream):
    """Several Communication Objects sent back to back without waiting:
    answered on the same connection, nothing lost."""
    pairs = [stream.set() for _ in range(30)]

    async def go():
        async with connect(stream) as ws:
            peer = Peer(ws)
            await asyncio.gather(*(peer.send_sets(p) for p in pairs))
            await peer.wait_answered([j for j, _ in pairs])
            return peer

    peer = run(go())
    assert sorted(peer.acks) == sorted(j for j, _ in pairs)
    assert len(ws_db.events(stream.name)) == 30
