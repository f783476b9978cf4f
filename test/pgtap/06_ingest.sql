-- ingest(): one pushpull Communication Object in, one out.
-- Each SET is verified and stored in its own subtransaction: stored (or a
-- duplicate) -> "ack"; invalid -> "setErrs" {err, description}; a SET whose
-- user trigger on setstream.events raises -> neither (the peer resends), and
-- its neighbours are unaffected.  ack/setErrs apply to the stream's outbox;
-- outbound SETs are returned up to maxResponseEvents.
BEGIN;
SELECT plan(34);
SET LOCAL client_min_messages = error;   -- the WARNING for the trigger-rejected SET is expected

\ir lib/helpers.sql
CREATE FUNCTION pg_temp.sorted(a jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM jsonb_array_elements_text(a) x $$;
CREATE FUNCTION pg_temp.sorted(VARIADIC a text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$ SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM unnest(a) x $$;
CREATE FUNCTION pg_temp.state(j text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT state FROM setstream.outbox WHERE jti = j $$;
CREATE TEMP TABLE tap_resp (n int PRIMARY KEY, r jsonb);

-- A and A2 share the issuer; B knows A's key only; Z is another issuer.
SELECT setstream.create_stream('tap-ia', 'https://a.example', ARRAY['https://b.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-ia2', 'https://a.example', ARRAY['https://b.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-iz', 'https://z.example', ARRAY['https://b.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-ib', 'https://b.example', ARRAY['https://a.example'], 'https://a.example') IS NOT NULL AS ok \gset
SELECT setstream.add_key('tap-ib', setstream.generate_key('tap-ia')) AS kid_a \gset
SELECT setstream.generate_key('tap-ia2')->>'kid' AS kid_a2 \gset
SELECT setstream.generate_key('tap-iz') IS NOT NULL AS ok \gset
SELECT setstream.generate_key('tap-ib') IS NOT NULL AS ok \gset

-- ---------------------------------------------------------------- mixed batch
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": "good"}') AS good \gset
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": "bad"}') AS bad \gset
SELECT setstream.emit('tap-ia2', 'urn:example:event', '{"n": "wrong key"}') AS wk \gset
SELECT setstream.emit('tap-iz', 'urn:example:event', '{"n": "wrong iss"}') AS wi \gset
-- "bad" carries the signature of "good": same key, wrong signature
SELECT split_part(pg_temp.tok(:'bad'), '.', 1) || '.' || split_part(pg_temp.tok(:'bad'), '.', 2) || '.'
       || split_part(pg_temp.tok(:'good'), '.', 3) AS bad_tok \gset

INSERT INTO tap_resp VALUES (1, setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object(
    :'good', pg_temp.tok(:'good'), :'bad', :'bad_tok', :'wk', pg_temp.tok(:'wk'), :'wi', pg_temp.tok(:'wi'),
    'not-a-jti', 'garbage'))));
SELECT is(r->'ack', jsonb_build_array(:'good'), 'mixed batch: "ack" holds exactly the good SET') FROM tap_resp WHERE n = 1;
SELECT is(r->'setErrs', jsonb_build_object(
        :'bad', jsonb_build_object('err', 'invalid_key', 'description', 'the SET''s signature does not verify'),
        :'wk', jsonb_build_object('err', 'invalid_key', 'description', format('no active key with kid "%s" on this stream', :'kid_a2')),
        :'wi', jsonb_build_object('err', 'invalid_issuer', 'description', 'issuer "https://z.example" is not the issuer this stream accepts'),
        'not-a-jti', jsonb_build_object('err', 'invalid_request', 'description', 'the SET is not a JWS compact serialization (header.payload.signature)')),
    'mixed batch: "setErrs" holds each bad SET with its RFC 8935 code and description') FROM tap_resp WHERE n = 1;
SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r) k), ARRAY['ack', 'setErrs'],
          'with no outbound SET due, the response has only "ack" and "setErrs"') FROM tap_resp WHERE n = 1;
SELECT is((SELECT array_agg(jti) FROM setstream.events WHERE stream = 'tap-ib'), ARRAY[:'good'],
          'only the good SET is stored');
SELECT is((SELECT token FROM setstream.events WHERE stream = 'tap-ib' AND jti = :'good'), pg_temp.tok(:'good'),
          'it is stored byte-exact');

-- a duplicate is acknowledged again and stored once
SELECT is(setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object(:'good', pg_temp.tok(:'good')))),
          jsonb_build_object('ack', jsonb_build_array(:'good'), 'setErrs', '{}'::jsonb),
          'a SET sent again is acknowledged again');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-ib' AND jti = :'good'), 1, '... and stored once');

-- the key in "sets" must be the SET's jti
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": "rekeyed"}') AS rk \gset
SELECT is(setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object('some-other-key', pg_temp.tok(:'rk')))),
          jsonb_build_object('ack', '[]'::jsonb, 'setErrs', jsonb_build_object('some-other-key',
              jsonb_build_object('err', 'invalid_request', 'description', 'the key of this SET in "sets" is not its jti'))),
          'a SET filed under a key that is not its jti -> setErrs invalid_request');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE jti = :'rk'), 0, '... and it is not stored');

SELECT is(setstream.ingest('tap-ib', '{}'), '{"ack": [], "setErrs": {}}'::jsonb,
          'an empty Communication Object gets {"ack": [], "setErrs": {}}');

-- ---------------------------------------------------------------- a user trigger that rejects one SET
CREATE FUNCTION pg_temp.reject_txn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.txn = 'reject-me' THEN
        RAISE EXCEPTION 'business rule says no';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tap_reject BEFORE INSERT ON setstream.events FOR EACH ROW EXECUTE FUNCTION pg_temp.reject_txn();

SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": 1}', NULL, 'fine-1') AS t1 \gset
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": 2}', NULL, 'reject-me') AS t2 \gset
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": 3}', NULL, 'fine-3') AS t3 \gset
INSERT INTO tap_resp VALUES (2, setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object(
    :'t1', pg_temp.tok(:'t1'), :'t2', pg_temp.tok(:'t2'), :'t3', pg_temp.tok(:'t3')))));
SELECT is(pg_temp.sorted(r->'ack'), pg_temp.sorted(:'t1', :'t3'),
          'trigger: the SETs the trigger let through are acknowledged') FROM tap_resp WHERE n = 2;
SELECT is(r->'setErrs', '{}'::jsonb, 'trigger: the rejected SET is not in setErrs') FROM tap_resp WHERE n = 2;
SELECT ok(NOT (r->'ack' ? :'t2'), 'trigger: the rejected SET is not acknowledged') FROM tap_resp WHERE n = 2;
SELECT is((SELECT array_agg(txn ORDER BY txn) FROM setstream.events WHERE jti IN (:'t1', :'t2', :'t3')),
          ARRAY['fine-1', 'fine-3'], 'trigger: its neighbours are stored, the rejected SET is not');
DROP TRIGGER tap_reject ON setstream.events;
SELECT is(setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object(:'t2', pg_temp.tok(:'t2'))))->'ack',
          jsonb_build_array(:'t2'), 'sent again once the trigger allows it, the SET is stored and acknowledged');

-- ---------------------------------------------------------------- outbound: ack, setErrs, maxResponseEvents
SELECT setstream.emit('tap-ib', 'urn:example:out', '{"n": 1}') AS b1 \gset
SELECT setstream.emit('tap-ib', 'urn:example:out', '{"n": 2}') AS b2 \gset
SELECT setstream.emit('tap-ib', 'urn:example:out', '{"n": 3}') AS b3 \gset
INSERT INTO tap_resp VALUES (3, setstream.ingest('tap-ib', '{"maxResponseEvents": 1}'));
SELECT is(r->'sets', jsonb_build_object(:'b1', pg_temp.tok(:'b1')),
          'maxResponseEvents 1 returns the oldest outbound SET with its token') FROM tap_resp WHERE n = 3;
SELECT is((r->'ack', r->'setErrs')::text, ('[]'::jsonb, '{}'::jsonb)::text,
          'the response still carries empty "ack" and "setErrs"') FROM tap_resp WHERE n = 3;
SELECT results_eq(format('SELECT state, attempts FROM setstream.outbox WHERE jti = %L', :'b1'),
                  $$ VALUES ('delivered', 1) $$, 'the returned SET is marked delivered');

INSERT INTO tap_resp VALUES (4, setstream.ingest('tap-ib', jsonb_build_object('maxResponseEvents', 0,
    'ack', jsonb_build_array(:'b1', :'good'),
    'setErrs', jsonb_build_object(:'b2', jsonb_build_object('err', 'invalid_request', 'description', 'bad sub_id')))));
SELECT is(pg_temp.state(:'b1'), 'acked', 'ingest applies "ack" to the outbox');
SELECT results_eq(format('SELECT state, err, description FROM setstream.outbox WHERE jti = %L', :'b2'),
                  $$ VALUES ('failed', 'invalid_request', 'bad sub_id') $$, 'ingest applies "setErrs" to the outbox');
SELECT ok(NOT (r ? 'sets'), 'maxResponseEvents 0 returns no outbound SETs') FROM tap_resp WHERE n = 4;
SELECT is(pg_temp.state(:'good'), 'pending', 'an ack of another stream''s jti leaves that stream''s outbox alone');

INSERT INTO tap_resp VALUES (5, setstream.ingest('tap-ib', '{}'));
SELECT is(r->'sets', jsonb_build_object(:'b3', pg_temp.tok(:'b3')),
          'without maxResponseEvents the due SETs are returned; acked and failed ones are not') FROM tap_resp WHERE n = 5;

SELECT setstream.emit('tap-ib', 'urn:example:out', '{"n": 4}', NULL, 'no-desc') AS b4 \gset
SELECT ok(setstream.ingest('tap-ib', jsonb_build_object('maxResponseEvents', 0,
    'setErrs', jsonb_build_object(:'b4', jsonb_build_object('err', 'invalid_key')))) IS NOT NULL, 'setErrs without description is accepted');
SELECT results_eq(format('SELECT state, err, description FROM setstream.outbox WHERE jti = %L', :'b4'),
                  $$ VALUES ('failed', 'invalid_key', NULL::text) $$, 'a setErrs entry without description fails the SET with description NULL');

-- paused: inbound accepted, nothing outbound
SELECT setstream.emit('tap-ib', 'urn:example:out', '{"n": 5}') AS b5 \gset
SELECT setstream.emit('tap-ia', 'urn:example:event', '{"n": "paused"}') AS pz \gset
SELECT setstream.set_stream_status('tap-ib', 'paused') IS NOT NULL AS ok \gset
SELECT is(setstream.ingest('tap-ib', jsonb_build_object('sets', jsonb_build_object(:'pz', pg_temp.tok(:'pz')))),
          jsonb_build_object('ack', jsonb_build_array(:'pz'), 'setErrs', '{}'::jsonb),
          'a paused stream accepts inbound SETs and returns no outbound ones');
SELECT is(pg_temp.state(:'b5'), 'pending', 'the paused stream holds its outbound SET');

-- ---------------------------------------------------------------- malformed objects and status
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '{"sets": []}') $$,
                 'SE001', 'invalid_request: "sets" must be an object of jti to SET strings', '"sets" not an object -> SE001');
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '{"sets": {"a": 1}}') $$,
                 'SE001', 'invalid_request: every value in "sets" must be a SET as a string', 'a non-string SET -> SE001');
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '{"ack": {}}') $$,
                 'SE001', 'invalid_request: "ack" must be an array of jti strings', '"ack" not an array -> SE001');
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '{"setErrs": {"x": "y"}}') $$,
                 'SE001', 'invalid_request: each "setErrs" entry must be an object with a string "err"', 'a malformed setErrs entry -> SE001');
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '{"maxResponseEvents": -1}') $$,
                 'SE001', 'invalid_request: "maxResponseEvents" must be a non-negative integer', 'negative maxResponseEvents -> SE001');
SELECT throws_ok($$ SELECT setstream.ingest('tap-ib', '[{"sets": {}}]') $$,
                 'SE001', 'invalid_request: the Communication Object is not a JSON object', 'a non-object -> SE001');
SELECT setstream.disable_stream('tap-ib') IS NOT NULL AS ok \gset
SELECT is(setstream.ingest('tap-ib', '{}'), '{"ack": [], "setErrs": {}}'::jsonb,
          'ingest on a disabled stream: nothing to send back, no error');

SELECT * FROM finish();
ROLLBACK;
