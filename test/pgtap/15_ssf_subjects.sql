-- SSF subjects and the emit filter (issue 13, 0.4.0): add_subject and
-- remove_subject (arguments, what is stored, rights), and what emit
-- delivers to a stream with events_requested or subjects.  (The
-- listener's endpoints: test/ssf/test_update_subjects.py.)
BEGIN;
SELECT plan(20);

SET LOCAL client_min_messages = warning;

\ir lib/helpers.sql

DO $$ BEGIN
    PERFORM setstream.create_stream('tap-sub', 'https://b.example/', ARRAY['https://x.example/']);
    PERFORM setstream.generate_key('tap-sub', 'ES256');
END $$;

SELECT lives_ok($$SELECT setstream.add_subject('tap-sub',
                  '{"format": "email", "email": "alice@example.com"}')$$, 'add a subject');
SELECT is((SELECT row(subject, included, verified)::text FROM setstream.stream_subjects
            WHERE stream = 'tap-sub'),
          row('{"email": "alice@example.com", "format": "email"}'::jsonb, true, true)::text,
          'added, verified by default');
SELECT lives_ok($$SELECT setstream.add_subject('tap-sub',
                  '{"email": "alice@example.com", "format": "email"}', false)$$,
                'added again (members in another order), not verified');
SELECT is((SELECT array_agg(verified) FROM setstream.stream_subjects WHERE stream = 'tap-sub'),
          '{f}'::boolean[], 'one row, its verified changed');

-- bad input: a precise error, nothing changed
CREATE TEMP TABLE before AS SELECT * FROM setstream.stream_subjects;
SELECT throws_ok($$SELECT setstream.add_subject('tap-sub', '{"format": "email"}')$$, '22023',
                 NULL, 'an email subject needs email');
SELECT throws_like($$SELECT setstream.add_subject('tap-sub', '{"format": "email"}')$$,
                   'invalid subject identifier: %', 'says what is wrong');
SELECT throws_ok($$SELECT setstream.add_subject('tap-sub', '"alice"')$$, '22023',
                 'invalid subject identifier: the subject must be a JSON object',
                 'a subject is an object');
SELECT throws_ok($$SELECT setstream.remove_subject('tap-sub', '{"email": "a@b.example"}')$$,
                 '22023', NULL, 'a subject has a format');
SELECT throws_ok($$SELECT setstream.add_subject('tap-sub', NULL)$$, '22004',
                 'subject must not be NULL', 'no NULL subject');
SELECT throws_ok($$SELECT setstream.add_subject('tap-none',
                   '{"format": "opaque", "id": "x"}')$$, '42704', NULL, 'no such stream');
SELECT set_eq($$SELECT * FROM setstream.stream_subjects$$, $$SELECT * FROM before$$,
              'the refused calls changed nothing');

-- remove: under default_subjects ALL (the default) the removal is kept
SELECT lives_ok($$SELECT setstream.remove_subject('tap-sub',
                  '{"format": "email", "email": "alice@example.com"}')$$, 'remove');
SELECT is((SELECT array_agg(included) FROM setstream.stream_subjects WHERE stream = 'tap-sub'),
          '{f}'::boolean[], 'kept as removed');

-- the emit filter: the removed subject is left out, others and the
-- stream itself are not; SSF's own event types never
SELECT is(setstream.emit('tap-sub', 'urn:example:e', '{}',
                         '{"format": "email", "email": "alice@example.com"}'), NULL,
          'a removed subject: emit returns NULL');
SELECT isnt(setstream.emit('tap-sub', 'urn:example:e', '{}',
                           '{"format": "email", "email": "bob@example.com"}'), NULL,
            'another subject is emitted');
UPDATE setstream.streams SET events_requested =
    '{https://schemas.openid.net/secevent/caep/event-type/session-revoked,urn:example:e}'
 WHERE name = 'tap-sub';
SELECT is(setstream.emit('tap-sub', 'urn:example:e', '{}'), NULL,
          'a type not in events_delivered (not supported) is not emitted');
SELECT isnt(setstream.emit('tap-sub',
                           'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
                           '{}'), NULL, 'a type in events_delivered is');
SELECT isnt(setstream.emit('tap-sub',
                           'https://schemas.openid.net/secevent/ssf/event-type/verification',
                           '{}'), NULL, 'verification always is');

-- rights: the manage right
CREATE ROLE tap_sub_e NOLOGIN;
SELECT setstream.grant_stream('tap-sub', 'tap_sub_e', '{emit}');
SELECT is(pg_temp.as_role('tap_sub_e', $$SELECT setstream.add_subject('tap-sub',
            '{"format": "opaque", "id": "x"}')$$),
          'ERROR 42501: permission denied for function add_subject',
          'emit right alone: no add_subject');
CREATE ROLE tap_sub_m NOLOGIN;
SELECT setstream.grant_stream('tap-sub', 'tap_sub_m', '{manage}');
SELECT is(pg_temp.as_role('tap_sub_m', $$SELECT 'ok' FROM setstream.add_subject('tap-sub',
            '{"format": "opaque", "id": "x"}')$$), 'ok', 'the manage right: add_subject');

SELECT * FROM finish();
ROLLBACK;
