-- The SSF receiver (issue 13, subscribe): the ssf_receiver trigger on
-- setstream.events (verification sub_id and state, stream-updated), and
-- what is owner-only.  (subscribe's HTTP exchanges: test/ssf and
-- test/t/021.)
BEGIN;
SELECT plan(14);

SET LOCAL client_min_messages = warning;

CREATE TEMP TABLE made AS SELECT setstream.create_stream('tap-sub', 'https://rp.example/aud', '{https://t.example}',
                               'https://t.example');
INSERT INTO setstream.subscriptions (stream, transmitter_issuer, delivery, remote_stream_id,
                                     aud, configuration_endpoint, jwks_uri,
                                     verification_state, verification_expires_at)
VALUES ('tap-sub', 'https://t.example', 'poll', 'remote-1', '{https://rp.example/aud}',
        'https://t.example/ssf/streams', 'https://t.example/jwks.json',
        'st-1', now() + interval '1 minute');

-- an inbound SET of the stream (as the store writes it), events and sub_id given
CREATE FUNCTION pg_temp.ev(jti text, events jsonb, sub_id jsonb) RETURNS void
LANGUAGE sql AS $$
INSERT INTO setstream.events (stream, jti, iss, aud, iat, subject, event_types, events,
                              claims, header, token)
VALUES ('tap-sub', jti, 'https://t.example', '{https://rp.example/aud}', now(), sub_id,
        ARRAY(SELECT jsonb_object_keys(events)), events,
        jsonb_strip_nulls(jsonb_build_object('jti', jti, 'events', events, 'sub_id', sub_id)),
        '{"alg":"ES256"}', 'x.y.z')
$$;

SELECT throws_ok($$SELECT pg_temp.ev('v1',
    '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "st-1"}}',
    '{"format": "opaque", "id": "another"}')$$, 'SE001', NULL,
    'verification: a sub_id other than the remote stream id is invalid_request');
SELECT throws_ok($$SELECT pg_temp.ev('v2',
    '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "st-x"}}',
    '{"format": "opaque", "id": "remote-1"}')$$, 'SE007', NULL,
    'verification: a state we did not send is invalid_state');
SELECT is((SELECT verified_at FROM setstream.subscriptions), NULL, 'not verified by those');
SELECT lives_ok($$SELECT pg_temp.ev('v3',
    '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "st-1"}}',
    '{"format": "opaque", "id": "remote-1"}')$$, 'verification with our state: stored');
SELECT isnt((SELECT verified_at FROM setstream.subscriptions), NULL, 'and verified');
SELECT lives_ok($$SELECT pg_temp.ev('v4',
    '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {}}',
    '{"format": "opaque", "id": "remote-1"}')$$, 'verification without state: stored');
SELECT lives_ok($$SELECT pg_temp.ev('v5',
    '{"https://schemas.openid.net/secevent/sse/event-type/verification": {}}', NULL)$$,
    'legacy URI, no sub_id: stored');
UPDATE setstream.subscriptions SET verification_expires_at = now() - interval '1 second';
SELECT throws_ok($$SELECT pg_temp.ev('v6',
    '{"https://schemas.openid.net/secevent/ssf/event-type/verification": {"state": "st-1"}}',
    '{"format": "opaque", "id": "remote-1"}')$$, 'SE007', NULL,
    'an expired state is invalid_state');
SELECT lives_ok($$SELECT pg_temp.ev('u1',
    '{"https://schemas.openid.net/secevent/ssf/event-type/stream-updated": {"status": "disabled", "reason": "bye"}}',
    '{"format": "opaque", "id": "remote-1"}')$$, 'stream-updated: stored');
SELECT is((SELECT transmitter_status || '/' || transmitter_status_reason
             FROM setstream.subscriptions), 'disabled/bye', 'and its status recorded');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-sub'), 4,
          'the four accepted SETs stored');

-- owner-only and not for PUBLIC
SELECT ok(NOT has_table_privilege('public', 'setstream.subscription_secrets', 'SELECT'),
          'subscription_secrets: not readable by PUBLIC');
SELECT ok(NOT has_function_privilege('public',
              'setstream.subscribe(text, text, text, text[], jsonb)', 'EXECUTE'),
          'subscribe: not for PUBLIC');
SELECT ok(NOT has_function_privilege('public',
              'setstream._ssf_call(text, text, text, text, boolean)', 'EXECUTE'),
          '_ssf_call: not for PUBLIC');

SELECT * FROM finish();
ROLLBACK;
