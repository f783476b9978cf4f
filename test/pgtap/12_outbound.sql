-- Outbound delivery (issue 17): set_delivery's bookkeeping, the owner-only
-- credential store, and the operator actions resume_delivery / redeliver.
-- (What the sender does with them is tested by test/outbound.)
BEGIN;
SELECT plan(24);

SET LOCAL client_min_messages = warning;

\ir lib/helpers.sql

DO $$ BEGIN PERFORM setstream.create_stream('ob', 'https://a.example/', ARRAY['https://b.example/']); END $$;

SELECT lives_ok($$SELECT setstream.set_delivery('ob', 'push', 'https://r.example/events', 'Bearer s3cr3t-tap')$$,
                'push with an endpoint and credentials');
SELECT is((SELECT row(method, endpoint_url, push_concurrency, state)::text
             FROM setstream.deliveries WHERE stream = 'ob'),
          '(push,https://r.example/events,4,active)', 'the delivery row');
SELECT is((SELECT authorization_header FROM setstream.delivery_secrets WHERE stream = 'ob'),
          'Bearer s3cr3t-tap', 'the header is kept in delivery_secrets');
SELECT is((SELECT count(*)::int FROM setstream.deliveries d WHERE d::text LIKE '%s3cr3t%'),
          0, 'and not in deliveries');
SELECT lives_ok($$SELECT setstream.set_delivery('ob', 'push', 'https://r.example/events')$$,
                'push without credentials');
SELECT is((SELECT count(*)::int FROM setstream.delivery_secrets WHERE stream = 'ob'),
          0, 'the old header is removed');
SELECT throws_ok($$SELECT setstream.set_delivery('ob', 'pushpull-ws')$$,
                 '22023', NULL, 'pushpull-ws needs an endpoint_url');
SELECT throws_ok($$SELECT setstream.set_delivery('ob', 'pushpull')$$,
                 '22023', NULL, 'pushpull needs an endpoint_url');
SELECT lives_ok($$SELECT setstream.set_delivery('ob', 'pushpull', 'https://r.example/pp', 'Bearer x')$$,
                'pushpull (we initiate) with an endpoint and credentials');
SELECT is((SELECT method || ' ' || endpoint_url FROM setstream.deliveries WHERE stream = 'ob'),
          'pushpull https://r.example/pp', 'is pushpull, to that endpoint');
SELECT lives_ok($$SELECT setstream.set_delivery('ob', 'push', 'https://r.example/events')$$,
                'back to push');
SELECT throws_ok($$SELECT setstream.set_delivery('ob', 'smoke-signals')$$,
                 '22023', NULL, 'an unknown method');
SELECT throws_ok($$SELECT setstream.set_delivery('ob', 'push')$$,
                 '22023', NULL, 'push needs an endpoint_url');
SELECT throws_ok($$SELECT setstream.set_delivery('ob', 'push', 'https://r.example/', E'Bearer x\r\nHost: evil')$$,
                 '22023', NULL, 'no line break in the header');
SELECT lives_ok($$SELECT setstream.set_delivery('ob', 'urn:ietf:rfc:8936')$$, 'the poll URN');
SELECT is((SELECT method FROM setstream.deliveries WHERE stream = 'ob'), 'poll', 'is poll');

-- resume_delivery clears a suspension
UPDATE setstream.deliveries SET method = 'push', endpoint_url = 'https://r.example/',
       state = 'suspended', suspended_reason = 'http_403: HTTP 403' WHERE stream = 'ob';
SELECT lives_ok($$SELECT setstream.resume_delivery('ob')$$, 'resume_delivery');
SELECT is((SELECT row(state, suspended_reason, backoff_until)::text
             FROM setstream.deliveries WHERE stream = 'ob'), '(active,,)', 'active again');
SELECT throws_ok($$UPDATE setstream.deliveries SET state = 'backoff' WHERE stream = 'ob'$$,
                 '23514', NULL, 'backoff needs backoff_until');

-- redeliver puts a failed SET back to pending; an acked one stays
INSERT INTO setstream.outbox (stream, jti, event_types, claims, token, state, attempts,
                              failed_at, err, acked_at)
VALUES ('ob', 'j-failed', '{e}', '{}', 't1', 'failed', 1, now(), 'invalid_request', NULL),
       ('ob', 'j-acked', '{e}', '{}', 't2', 'acked', 1, NULL, NULL, now());
SELECT is(setstream.redeliver('ob', ARRAY['j-failed', 'j-acked', 'j-unknown']), 1::bigint,
          'redeliver counts the SETs it put back');
SELECT is((SELECT row(state, err, failed_at)::text FROM setstream.outbox WHERE jti = 'j-failed'),
          '(pending,,)', 'the failed SET is pending again');
SELECT is((SELECT state FROM setstream.outbox WHERE jti = 'j-acked'), 'acked', 'the acked one is not');

-- a role with every right on another stream sees neither the row nor the secret
CREATE ROLE setstream_tap_ob;
DO $$
BEGIN
    PERFORM setstream.allow_stream_creation('setstream_tap_ob');
    PERFORM setstream.set_delivery('ob', 'push', 'https://r.example/events', 'Bearer s3cr3t-tap');
END
$$;
SELECT is(pg_temp.as_role('setstream_tap_ob', 'SELECT count(*)::text FROM setstream.deliveries'),
          '0', 'deliveries of streams a role holds no right on are invisible');
SELECT is(pg_temp.as_role('setstream_tap_ob', 'SELECT count(*)::text FROM setstream.delivery_secrets'),
          'ERROR 42501: permission denied for table delivery_secrets',
          'delivery_secrets is the extension owner''s alone');

SELECT * FROM finish();
ROLLBACK;
