-- The outbox state machine and RFC 8936 poll semantics:
-- pending -> delivered (attempts, delivered_at) -> acked (acked_at), or
-- failed (err, description); acked and failed SETs are never returned again;
-- a delivered, unacknowledged SET is due again after redelivery_interval,
-- byte-identical; maxEvents/moreAvailable; oldest first; acks and setErrs
-- scoped to the stream; maxEvents 0 is acknowledge-only; paused holds,
-- disabled settles and polls empty.
BEGIN;
SELECT plan(67);

CREATE TEMP TABLE tap_jti (name text PRIMARY KEY, stream text, jti text);
CREATE TEMP TABLE tap_poll (n int PRIMARY KEY, r jsonb);

-- sorted jti keys of a poll response's "sets"
CREATE FUNCTION pg_temp.set_keys(r jsonb) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(k ORDER BY k), '{}') FROM jsonb_object_keys(r->'sets') k
$$;
CREATE FUNCTION pg_temp.jtis(VARIADIC names text[]) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(j.jti ORDER BY j.jti), '{}') FROM tap_jti j WHERE j.name = ANY (names)
$$;
CREATE FUNCTION pg_temp.jti(n text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT j.jti FROM tap_jti j WHERE j.name = n $$;
CREATE FUNCTION pg_temp.row_of(n text) RETURNS setstream.outbox
LANGUAGE sql STABLE AS $$
    SELECT o.* FROM setstream.outbox o JOIN tap_jti j ON j.jti = o.jti AND j.stream = o.stream
     WHERE j.name = n
$$;


SELECT setstream.create_stream('tap-ob', 'https://tx.example', ARRAY['https://rx.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-ob2', 'https://tx.example', ARRAY['https://rx.example']) IS NOT NULL AS ok \gset
SELECT setstream.generate_key('tap-ob') IS NOT NULL AS ok \gset
SELECT setstream.generate_key('tap-ob2') IS NOT NULL AS ok \gset

-- emitted one statement at a time, so that seq order is e1 < e2 < e3
INSERT INTO tap_jti VALUES ('e1', 'tap-ob', setstream.emit('tap-ob', 'urn:example:t', '{"n":1}'));
INSERT INTO tap_jti VALUES ('e2', 'tap-ob', setstream.emit('tap-ob', 'urn:example:t', '{"n":2}'));
INSERT INTO tap_jti VALUES ('e3', 'tap-ob', setstream.emit('tap-ob', 'urn:example:t', '{"n":3}'));
INSERT INTO tap_jti VALUES ('x1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":4}'));

-- ---------------------------------------------------------------- pending
SELECT results_eq($$ SELECT state, attempts, delivered_at IS NULL, acked_at IS NULL
                       FROM setstream.outbox WHERE stream = 'tap-ob' ORDER BY seq $$,
                  $$ VALUES ('pending', 0, true, true), ('pending', 0, true, true), ('pending', 0, true, true) $$,
                  'emitted SETs start pending, attempts 0, never delivered');
SELECT is((SELECT array_agg(jti ORDER BY seq) FROM setstream.outbox WHERE stream = 'tap-ob'),
          ARRAY[pg_temp.jti('e1'), pg_temp.jti('e2'), pg_temp.jti('e3')],
          'outbox seq follows emit order');

-- ---------------------------------------------------------------- delivered, maxEvents, moreAvailable, oldest first
INSERT INTO tap_poll VALUES (1, setstream.poll('tap-ob', '{"maxEvents": 2, "returnImmediately": true}'));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('e1', 'e2'), 'maxEvents 2 returns the two oldest SETs')
  FROM tap_poll WHERE n = 1;
SELECT is(r->'moreAvailable', 'true'::jsonb, 'moreAvailable is true while another SET is due')
  FROM tap_poll WHERE n = 1;
SELECT is(r->'sets'->>pg_temp.jti('e1'), (pg_temp.row_of('e1')).token,
          'the poll returns the outbox token under its jti')
  FROM tap_poll WHERE n = 1;
SELECT is(jsonb_typeof(r->'sets'), 'object', '"sets" is a JSON object') FROM tap_poll WHERE n = 1;
SELECT results_eq($$ SELECT (pg_temp.row_of(n)).state, (pg_temp.row_of(n)).attempts,
                            (pg_temp.row_of(n)).delivered_at IS NOT NULL
                       FROM unnest(ARRAY['e1', 'e2', 'e3']) n $$,
                  $$ VALUES ('delivered', 1, true), ('delivered', 1, true), ('pending', 0, false) $$,
                  'delivered SETs have attempts 1 and delivered_at; the third stays pending');

INSERT INTO tap_poll VALUES (2, setstream.poll('tap-ob', '{"maxEvents": 2}'));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('e3'),
          'the next poll returns only the remaining SET (delivered ones are not due within the interval)')
  FROM tap_poll WHERE n = 2;
SELECT is(r->'moreAvailable', 'false'::jsonb, 'moreAvailable is false when nothing else is due')
  FROM tap_poll WHERE n = 2;
INSERT INTO tap_poll VALUES (3, setstream.poll('tap-ob', '{}'));
SELECT is(r, '{"sets": {}, "moreAvailable": false}'::jsonb,
          'with everything delivered and the interval not elapsed, the poll is empty')
  FROM tap_poll WHERE n = 3;
SELECT is(setstream.poll('tap-ob'), '{"sets": {}, "moreAvailable": false}'::jsonb,
          'poll(stream) without a request works as poll(stream, ''{}'')');

-- ---------------------------------------------------------------- acked
INSERT INTO tap_poll VALUES (4, setstream.poll('tap-ob',
    jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('e1')), 'maxEvents', 0, 'returnImmediately', true)));
SELECT is(r->'sets', '{}'::jsonb, 'an acknowledge-only poll returns no SETs') FROM tap_poll WHERE n = 4;
SELECT is((pg_temp.row_of('e1')).state, 'acked', 'ack moves delivered -> acked');
SELECT ok((pg_temp.row_of('e1')).acked_at IS NOT NULL, 'an acked SET has acked_at');
SELECT is((pg_temp.row_of('e1')).attempts, 1, 'ack does not count as a delivery attempt');

-- ---------------------------------------------------------------- failed
INSERT INTO tap_poll VALUES (5, setstream.poll('tap-ob', jsonb_build_object('maxEvents', 0, 'setErrs',
    jsonb_build_object(pg_temp.jti('e2'), jsonb_build_object('err', 'invalid_key', 'description', 'unknown kid')))));
SELECT is((pg_temp.row_of('e2')).state, 'failed', 'setErrs moves delivered -> failed');
SELECT is((pg_temp.row_of('e2')).err, 'invalid_key', 'a failed SET keeps the receiver''s err');
SELECT is((pg_temp.row_of('e2')).description, 'unknown kid', 'a failed SET keeps the receiver''s description');
SELECT is((pg_temp.row_of('e2')).acked_at, NULL, 'a failed SET has no acked_at');

-- ---------------------------------------------------------------- redelivery
SET LOCAL setstream.redelivery_interval = 0;
INSERT INTO tap_poll VALUES (6, setstream.poll('tap-ob', '{}'));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('e3'),
          'after the interval only the delivered, unacknowledged SET is returned again (not acked, not failed)')
  FROM tap_poll WHERE n = 6;
SELECT is(p6.r->'sets'->>pg_temp.jti('e3'), p2.r->'sets'->>pg_temp.jti('e3'),
          'the redelivered SET is byte-identical to its first delivery')
  FROM tap_poll p6, tap_poll p2 WHERE p6.n = 6 AND p2.n = 2;
SELECT is((pg_temp.row_of('e3')).attempts, 2, 'redelivery increments attempts to 2');
SELECT is((pg_temp.row_of('e3')).state, 'delivered', 'a redelivered SET stays delivered');
SELECT is((pg_temp.row_of('e1')).state, 'acked', 'the acked SET stayed acked after the interval');
SELECT is((pg_temp.row_of('e2')).state, 'failed', 'the failed SET stayed failed after the interval');
SELECT is((pg_temp.row_of('e1')).attempts, 1,
          'the acked SET was not delivered again');
SELECT is((pg_temp.row_of('e2')).attempts, 1, 'the failed SET was not delivered again');

-- setErrs on an acked SET, ack on a failed SET: no change
SELECT setstream.poll('tap-ob', jsonb_build_object('maxEvents', 0,
    'ack', jsonb_build_array(pg_temp.jti('e2')),
    'setErrs', jsonb_build_object(pg_temp.jti('e1'), jsonb_build_object('err', 'invalid_request')))) IS NOT NULL AS ok \gset
SELECT results_eq($$ SELECT (pg_temp.row_of('e1')).state, (pg_temp.row_of('e1')).err $$,
                  $$ VALUES ('acked', NULL::text) $$, 'setErrs on an acked SET does nothing');
SELECT results_eq($$ SELECT (pg_temp.row_of('e2')).state, (pg_temp.row_of('e2')).acked_at IS NULL,
                            (pg_temp.row_of('e2')).err $$,
                  $$ VALUES ('failed', true, 'invalid_key') $$, 'ack of a failed SET does nothing');

-- unknown jtis are ignored
SELECT lives_ok($$ SELECT setstream.poll('tap-ob', '{"maxEvents": 0, "ack": ["no-such-jti"],
                     "setErrs": {"other-unknown": {"err": "invalid_key"}}}') $$,
                'ack and setErrs for unknown jtis are ignored');

-- ---------------------------------------------------------------- other streams
SELECT setstream.poll('tap-ob', jsonb_build_object('maxEvents', 0, 'ack', jsonb_build_array(pg_temp.jti('x1')))) IS NOT NULL AS ok \gset
SELECT is((pg_temp.row_of('x1')).state, 'pending', 'an ack on one stream does nothing to a jti of another stream');
SELECT setstream.poll('tap-ob', jsonb_build_object('maxEvents', 0, 'setErrs',
    jsonb_build_object(pg_temp.jti('x1'), jsonb_build_object('err', 'invalid_key')))) IS NOT NULL AS ok \gset
SELECT results_eq($$ SELECT (pg_temp.row_of('x1')).state, (pg_temp.row_of('x1')).err $$,
                  $$ VALUES ('pending', NULL::text) $$,
                  'setErrs on one stream does nothing to a jti of another stream');
SELECT is(pg_temp.set_keys(setstream.poll('tap-ob2', '{}')), pg_temp.jtis('x1'),
          'each stream polls only its own SETs');

-- ---------------------------------------------------------------- ordering, limits
SET LOCAL setstream.redelivery_interval = '1h';
INSERT INTO tap_jti VALUES ('o1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"o1"}'));
INSERT INTO tap_jti VALUES ('o2', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"o2"}'));
INSERT INTO tap_jti VALUES ('o3', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"o3"}'));
INSERT INTO tap_jti VALUES ('o4', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"o4"}'));
INSERT INTO tap_poll VALUES (10, setstream.poll('tap-ob2', '{"maxEvents": 1}'));
INSERT INTO tap_poll VALUES (11, setstream.poll('tap-ob2', '{"maxEvents": 1}'));
INSERT INTO tap_poll VALUES (12, setstream.poll('tap-ob2', '{"maxEvents": 1}'));
INSERT INTO tap_poll VALUES (13, setstream.poll('tap-ob2', '{"maxEvents": 1}'));
SELECT is((SELECT array_agg(pg_temp.set_keys(r)::text ORDER BY n) FROM tap_poll WHERE n BETWEEN 10 AND 13),
          ARRAY[pg_temp.jtis('o1')::text, pg_temp.jtis('o2')::text, pg_temp.jtis('o3')::text, pg_temp.jtis('o4')::text],
          'maxEvents 1 hands out SETs oldest first (by seq)');
SELECT is((SELECT array_agg(r->'moreAvailable' ORDER BY n) FROM tap_poll WHERE n BETWEEN 10 AND 13),
          ARRAY['true', 'true', 'true', 'false']::jsonb[],
          'moreAvailable is true exactly while further SETs are due');

INSERT INTO tap_jti VALUES ('m1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"m1"}'));
INSERT INTO tap_jti VALUES ('m2', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"m2"}'));
INSERT INTO tap_jti VALUES ('m3', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"m3"}'));
SET LOCAL setstream.max_poll_events = 2;
INSERT INTO tap_poll VALUES (20, setstream.poll('tap-ob2', '{}'));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('m1', 'm2'),
          'without maxEvents, setstream.max_poll_events caps the batch (oldest first)')
  FROM tap_poll WHERE n = 20;
SELECT is(r->'moreAvailable', 'true'::jsonb, 'moreAvailable is true when the cap left a SET behind')
  FROM tap_poll WHERE n = 20;
INSERT INTO tap_poll VALUES (21, setstream.poll('tap-ob2', '{"maxEvents": 5}'));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('m3'), 'maxEvents above max_poll_events returns what is due')
  FROM tap_poll WHERE n = 21;
RESET setstream.max_poll_events;

-- ---------------------------------------------------------------- maxEvents 0: acknowledge only
INSERT INTO tap_jti VALUES ('z1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"z1"}'));
INSERT INTO tap_jti VALUES ('z2', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"z2"}'));
INSERT INTO tap_poll VALUES (30, setstream.poll('tap-ob2',
    jsonb_build_object('maxEvents', 0, 'ack', jsonb_build_array(pg_temp.jti('m3')))));
SELECT is(r->'sets', '{}'::jsonb, 'maxEvents 0 returns no SETs although two are pending')
  FROM tap_poll WHERE n = 30;
SELECT is((pg_temp.row_of('m3')).state, 'acked', 'maxEvents 0 still applies the ack');
SELECT results_eq($$ SELECT (pg_temp.row_of(n)).state, (pg_temp.row_of(n)).attempts FROM unnest(ARRAY['z1', 'z2']) n $$,
                  $$ VALUES ('pending', 0), ('pending', 0) $$,
                  'maxEvents 0 delivers nothing: the pending SETs stay pending');
SELECT is(r->'moreAvailable', 'true'::jsonb,
          'maxEvents 0 with SETs still due answers moreAvailable true')
  FROM tap_poll WHERE n = 30;

-- moreAvailable sees the acks of the very same request
SELECT setstream.create_stream('tap-ob3', 'https://tx.example', ARRAY['https://rx.example']) IS NOT NULL AS ok \gset
SELECT setstream.generate_key('tap-ob3') IS NOT NULL AS ok \gset
INSERT INTO tap_jti VALUES ('y1', 'tap-ob3', setstream.emit('tap-ob3', 'urn:example:t', '{"n":"y1"}'));
INSERT INTO tap_jti VALUES ('y2', 'tap-ob3', setstream.emit('tap-ob3', 'urn:example:t', '{"n":"y2"}'));
SELECT is(setstream.poll('tap-ob3', jsonb_build_object('maxEvents', 0, 'ack', pg_temp.jtis('y1', 'y2'))),
          '{"sets": {}, "moreAvailable": false}'::jsonb,
          'maxEvents 0 acknowledging every pending SET answers moreAvailable false');
INSERT INTO tap_jti VALUES ('y3', 'tap-ob3', setstream.emit('tap-ob3', 'urn:example:t', '{"n":"y3"}'));
INSERT INTO tap_jti VALUES ('y4', 'tap-ob3', setstream.emit('tap-ob3', 'urn:example:t', '{"n":"y4"}'));
INSERT INTO tap_poll VALUES (31, setstream.poll('tap-ob3', jsonb_build_object('maxEvents', 1, 'ack', pg_temp.jtis('y4'))));
SELECT is(pg_temp.set_keys(r), pg_temp.jtis('y3'), 'a poll that acks the newer pending SET returns the older one')
  FROM tap_poll WHERE n = 31;
SELECT is(r->'moreAvailable', 'false'::jsonb, '... and moreAvailable does not count the SET acked in the same request')
  FROM tap_poll WHERE n = 31;

-- ---------------------------------------------------------------- request validation (SE001)
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"maxEvents": -1}') $$,
                 'SE001', 'invalid_request: "maxEvents" must be a non-negative integer', 'negative maxEvents -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"maxEvents": 1.5}') $$,
                 'SE001', 'invalid_request: "maxEvents" must be a non-negative integer', 'fractional maxEvents -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"maxEvents": "2"}') $$,
                 'SE001', 'invalid_request: "maxEvents" must be a non-negative integer', 'string maxEvents -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"returnImmediately": "yes"}') $$,
                 'SE001', 'invalid_request: "returnImmediately" must be a boolean', 'non-boolean returnImmediately -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"ack": "abc"}') $$,
                 'SE001', 'invalid_request: "ack" must be an array of jti strings', 'ack not an array -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"ack": [1]}') $$,
                 'SE001', 'invalid_request: "ack" must be an array of jti strings', 'ack with a number -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"setErrs": []}') $$,
                 'SE001', 'invalid_request: "setErrs" must be an object of jti to {"err", "description"}', 'setErrs not an object -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '{"setErrs": {"j": {"description": "x"}}}') $$,
                 'SE001', 'invalid_request: each "setErrs" entry must be an object with a string "err"', 'setErrs entry without err -> SE001');
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', '[]') $$,
                 'SE001', 'invalid_request: the poll request is not a JSON object', 'a non-object request -> SE001');
-- a rejected request applies nothing
SELECT throws_ok($$ SELECT setstream.poll('tap-ob2', jsonb_build_object('maxEvents', -1, 'ack', jsonb_build_array(pg_temp.jti('z1')))) $$,
                 'SE001', NULL, 'an invalid request that carries an ack is refused');
SELECT is((pg_temp.row_of('z1')).state, 'pending', '... and its ack is not applied');
-- unknown and snake_case members are ignored
SELECT is(pg_temp.set_keys(setstream.poll('tap-ob2', '{"max_events": 1, "foo": 1}')), pg_temp.jtis('z1', 'z2'),
          'unknown members (including snake_case max_events) are ignored');

-- ---------------------------------------------------------------- paused and disabled
SELECT setstream.set_stream_status('tap-ob2', 'paused') IS NOT NULL AS ok \gset
INSERT INTO tap_jti VALUES ('p1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"p1"}'));
SELECT is((pg_temp.row_of('p1')).state, 'pending', 'emit on a paused stream queues the SET');
SELECT is(setstream.poll('tap-ob2', '{}')->'sets', '{}'::jsonb, 'a paused stream returns no SETs');
SELECT is((pg_temp.row_of('p1')).state, 'pending', 'the paused stream holds the SET (still pending)');
SELECT setstream.enable_stream('tap-ob2') IS NOT NULL AS ok \gset
SELECT is(pg_temp.set_keys(setstream.poll('tap-ob2', '{}')), pg_temp.jtis('p1'),
          'once re-enabled the held SET is returned');

INSERT INTO tap_jti VALUES ('d1', 'tap-ob2', setstream.emit('tap-ob2', 'urn:example:t', '{"n":"d1"}'));
SELECT setstream.disable_stream('tap-ob2') IS NOT NULL AS ok \gset
SELECT is(row((pg_temp.row_of('d1')).state, (pg_temp.row_of('d1')).err)::text, '(failed,stream_disabled)',
          'disabling settles a pending SET: failed, stream_disabled');
SELECT is(row((pg_temp.row_of('p1')).state, (pg_temp.row_of('p1')).err)::text, '(failed,stream_disabled)',
          'and a delivered one not acknowledged');
SELECT is(setstream.poll('tap-ob2', '{}'), '{"sets": {}, "moreAvailable": false}'::jsonb,
          'poll on a disabled stream answers no SETs (RFC 8936 2.5, SSF)');
SELECT is(setstream.emit('tap-ob2', 'urn:example:t', '{}'), NULL, 'emit on a disabled stream returns NULL');
SELECT is((SELECT count(*)::int FROM setstream.outbox o WHERE o.stream = 'tap-ob2'
              AND NOT EXISTS (SELECT 1 FROM tap_jti j WHERE j.jti = o.jti)),
          0, 'emit on a disabled stream queues nothing');
SELECT throws_ok($$ SELECT setstream.poll('tap-nonexistent', '{}') $$,
                 '42704', 'stream "tap-nonexistent" does not exist', 'poll on an unknown stream -> 42704');

SELECT * FROM finish();
ROLLBACK;
