-- SSF status semantics (issue 13) from SQL: stream-updated SETs queued by
-- set_stream_status on SSF streams only, kept through a disable;
-- verify_stream; _control_event's limits; the grants.  (Delivery of them
-- over the listener: test/ssf/test_status_semantics.py.)
BEGIN;
SELECT plan(24);

SET LOCAL client_min_messages = warning;

SELECT setstream.create_stream('tap-ssf', 'https://tx.example/', '{https://rp.example/}');
SELECT setstream.generate_key('tap-ssf', 'ES256');
SELECT setstream.create_stream('tap-plain', 'https://tx.example/', '{https://rp.example/}');
SELECT setstream.generate_key('tap-plain', 'ES256');
SELECT setstream.create_receiver('tap-ssf-r');
SELECT setstream.set_stream_receiver('tap-ssf', 'tap-ssf-r');

CREATE TEMP VIEW updates AS
SELECT o.stream, o.state, o.claims -> 'events'
           -> 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated' AS event,
       o.claims -> 'sub_id' AS sub_id
  FROM setstream.outbox o
 WHERE o.event_types = '{https://schemas.openid.net/secevent/ssf/event-type/stream-updated}'
 ORDER BY o.seq;

-- a stream without a receiver: no stream-updated SET
SELECT setstream.set_stream_status('tap-plain', 'paused');
SELECT is((SELECT count(*)::int FROM updates WHERE stream = 'tap-plain'), 0,
          'no stream-updated SET for a stream without a receiver');

-- an SSF stream: one per change, none when nothing changes
SELECT setstream.set_stream_status('tap-ssf', 'paused');
SELECT setstream.set_stream_status('tap-ssf', 'paused');
SELECT is((SELECT array_agg(event) FROM updates WHERE stream = 'tap-ssf'),
          ARRAY['{"status": "paused", "reason": "changed by the transmitter''s administrator"}'::jsonb],
          'pausing queues one stream-updated SET, with status and reason');
SELECT is((SELECT sub_id FROM updates WHERE stream = 'tap-ssf' LIMIT 1),
          '{"format": "opaque", "id": "tap-ssf"}'::jsonb, 'about the stream itself');

-- disabled: other SETs fail, stream-updated ones stay queued
SELECT setstream.set_stream_status('tap-ssf', 'enabled');
CREATE TEMP TABLE e AS
SELECT setstream.emit('tap-ssf', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
                      '{}') AS jti;
SELECT setstream.disable_stream('tap-ssf');
SELECT is((SELECT err FROM setstream.outbox WHERE jti = (SELECT jti FROM e)), 'stream_disabled',
          'a disable fails the queued SETs');
SELECT is((SELECT array_agg(state) FROM updates WHERE stream = 'tap-ssf'),
          '{pending,pending,pending}'::text[], 'but not the stream-updated ones');
SELECT is((SELECT event FROM updates WHERE stream = 'tap-ssf' OFFSET 2),
          '{"status": "disabled", "reason": "changed by the transmitter''s administrator"}'::jsonb,
          'the last says disabled');

-- verify_stream
SELECT is(setstream.verify_stream('tap-ssf', 'x'), NULL, 'nothing on a disabled stream');
SELECT setstream.enable_stream('tap-ssf');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-ssf'
             AND event_types = '{https://schemas.openid.net/secevent/ssf/event-type/verification}'
             AND claims -> 'events' -> 'https://schemas.openid.net/secevent/ssf/event-type/verification'
                 = '{}'::jsonb), 1,
          're-enabling a disabled SSF stream queues a verification without state');
CREATE TEMP TABLE v AS SELECT setstream.verify_stream('tap-ssf', 'st-1') AS jti;
SELECT is((SELECT claims -> 'events' FROM setstream.outbox WHERE jti = (SELECT jti FROM v)),
          '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "st-1"}}'::jsonb,
          'verify_stream echoes state');
CREATE TEMP TABLE v2 AS SELECT setstream.verify_stream('tap-plain') AS jti;
SELECT is((SELECT claims -> 'events' -> 'https://schemas.openid.net/secevent/ssf/event-type/verification'
             FROM setstream.outbox WHERE jti = (SELECT jti FROM v2)), '{}'::jsonb,
          'without state: an empty event');
SELECT setstream.create_stream('tap-nokey', 'https://tx.example/', '{https://rp.example/}');
SELECT throws_ok($$SELECT setstream.verify_stream('tap-nokey')$$, '55000', NULL,
                 'no signing key: 55000');
SELECT throws_ok($$SELECT setstream._control_event('tap-ssf', 'https://example.com/x', '{}')$$,
                 '22023', NULL, '_control_event queues SSF stream events only');

-- grants: the manage right, not PUBLIC
SELECT ok(NOT has_function_privilege('public', 'setstream.verify_stream(text, text)', 'EXECUTE'),
          'verify_stream is not PUBLIC''s');
SELECT ok(NOT has_function_privilege('public', 'setstream._control_event(text, text, jsonb)',
                                     'EXECUTE'), '_control_event is not PUBLIC''s');
SELECT ok(NOT has_function_privilege('public',
                                     'setstream._set_stream_status(text, text, text, boolean)',
                                     'EXECUTE'), '_set_stream_status is not PUBLIC''s');

-- a suspended delivery pauses an enabled SSF stream, once, and a resume
-- enables it again; a stream without a receiver keeps its status
SELECT setstream.create_stream('tap-sus', 'https://tx.example/', '{https://rp.example/}');
SELECT setstream.generate_key('tap-sus', 'ES256');
SELECT setstream.set_stream_receiver('tap-sus', 'tap-ssf-r');
SELECT setstream.set_delivery('tap-sus', 'push', 'https://rp.example/push');
SELECT setstream.set_delivery('tap-plain', 'push', 'https://rp.example/push');
SELECT setstream.set_stream_status('tap-plain', 'enabled');
UPDATE setstream.deliveries SET state = 'suspended', suspended_reason = 'http_403: refused'
 WHERE stream IN ('tap-sus', 'tap-plain');
SELECT is(setstream._delivery_suspended('tap-sus'), true, 'the suspension pauses the SSF stream');
SELECT is((SELECT status FROM setstream.streams WHERE name = 'tap-sus'), 'paused', 'paused');
SELECT is((SELECT array_agg(event) FROM updates WHERE stream = 'tap-sus'),
          ARRAY['{"status": "paused", "reason": "delivery suspended: http_403: refused"}'::jsonb],
          'with a stream-updated SET naming the suspension');
SELECT is(setstream._delivery_suspended('tap-sus'), false, 'once per suspension');
SELECT is(setstream._delivery_suspended('tap-plain'), false, 'not a stream without a receiver');
SELECT is((SELECT status FROM setstream.streams WHERE name = 'tap-plain'), 'enabled',
          'which stays enabled');
SELECT setstream.resume_delivery('tap-sus');
SELECT is((SELECT status FROM setstream.streams WHERE name = 'tap-sus'), 'enabled',
          'resume_delivery enables it again');
SELECT is((SELECT array_agg(event ->> 'reason') FROM updates WHERE stream = 'tap-sus'),
          ARRAY['delivery suspended: http_403: refused', 'delivery resumed'],
          'announced too');
SELECT ok(NOT has_function_privilege('public', 'setstream._delivery_suspended(text)', 'EXECUTE'),
          '_delivery_suspended is not PUBLIC''s');

SELECT * FROM finish();
ROLLBACK;
