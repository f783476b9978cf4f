"""Pushes that arrive together are stored together, and still isolated.

The listener stores a loop turn's pushes in one subtransaction and, when
that fails, retries each on its own.  A SET that a user trigger on
setstream.events rejects must get a 5xx (not stored, not acknowledged: the
peer sends it again) while every other SET of the same turn gets 202 and is
stored once.
"""

import threading
import uuid

import pytest
import requests

import listener_support as ls


@pytest.fixture
def rejecting_trigger(db):
    fn = "pt_reject_" + uuid.uuid4().hex[:8]
    db.execute(
        "CREATE FUNCTION public.%s() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.jti LIKE 'bad-%%' THEN RAISE EXCEPTION 'rejected by trigger'; END IF;"
        " RETURN NEW; END $$" % fn)
    db.execute("CREATE TRIGGER %s BEFORE INSERT ON setstream.events"
               " FOR EACH ROW EXECUTE FUNCTION public.%s()" % (fn, fn))
    yield
    db.execute("DROP TRIGGER %s ON setstream.events" % fn)
    db.execute("DROP FUNCTION public.%s()" % fn)


def push_all_at_once(stream, tokens):
    """POST every SET from its own connection, released together."""
    barrier = threading.Barrier(len(tokens))
    statuses = [None] * len(tokens)

    def go(i):
        with requests.Session() as s:
            s.trust_env = False
            barrier.wait(timeout=10)
            r = s.post(ls.URL + "/streams/%s/events" % stream.name, data=tokens[i],
                       headers={"Authorization": "Bearer " + stream.token,
                                "Content-Type": "application/secevent+jwt"},
                       timeout=15)
            statuses[i] = r.status_code

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return statuses


def test_a_rejected_push_does_not_fail_its_turn(db, streams, rejecting_trigger):
    stream = streams.create()
    jtis = [("bad-" if i == 7 else "ok-") + uuid.uuid4().hex for i in range(30)]
    tokens = [stream.set("ES256", jti=j)[1] for j in jtis]

    statuses = push_all_at_once(stream, tokens)

    for jti, status in zip(jtis, statuses):
        if jti.startswith("bad-"):
            assert status >= 500, (jti, status)
        else:
            assert status == 202, (jti, status)
    stored = {r["jti"] for r in db.events(stream.name)}
    assert stored == {j for j in jtis if j.startswith("ok-")}


def test_pushes_together_are_all_stored_once(db, streams):
    stream = streams.create()
    sets = [stream.set("ES256") for _ in range(40)]
    statuses = push_all_at_once(stream, [t for _, t in sets])
    assert statuses == [202] * len(sets)
    assert sorted(r["jti"] for r in db.events(stream.name)) == sorted(j for j, _ in sets)
