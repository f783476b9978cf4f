--
-- 05_emit_poll: emit() (the SET it signs and queues, every argument
-- error, paused and disabled streams) and poll() (the RFC 8936 state
-- machine: pending -> delivered -> acked / failed, maxEvents,
-- moreAvailable, ack-only polls, redelivery, acks for unknown jtis or jtis
-- of other streams, every malformed request).
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS setstream;
RESET client_min_messages;
\set SHOW_CONTEXT never

CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text; det text; hin text; st text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        det = PG_EXCEPTION_DETAIL, hin = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg
        || CASE WHEN det <> '' THEN ' [detail: ' || det || ']' ELSE '' END
        || CASE WHEN hin <> '' THEN ' [hint: ' || hin || ']' ELSE '' END;
END $$;
CREATE FUNCTION pg_temp.part(tok text, n int) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_from(decode(rpad(translate(split_part(tok, '.', n), '-_', '+/'),
                                    (length(split_part(tok, '.', n)) + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb
$$;
-- names for the jtis this file emits, so that output shows no uuid
CREATE TEMP TABLE ids (name text PRIMARY KEY, jti text UNIQUE);
CREATE FUNCTION pg_temp.name_of(j text) RETURNS text LANGUAGE sql STABLE
AS $$ SELECT coalesce((SELECT name FROM ids WHERE jti = j), '?') $$;
CREATE FUNCTION pg_temp.jti(n text) RETURNS text LANGUAGE sql STABLE
AS $$ SELECT jti FROM ids WHERE name = n $$;
-- emit and remember the jti under a name
CREATE FUNCTION pg_temp.emit(n text, stream text, event jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql AS $$
DECLARE j text;
BEGIN
    j := setstream.emit(stream, 'https://schemas.openid.net/secevent/ssf/event-type/verification', event);
    IF j IS NOT NULL THEN
        INSERT INTO ids VALUES (n, j);
    END IF;
    RETURN coalesce(n, 'NULL');
END $$;
-- one poll, shown as "sets: <names> more: <bool>"; each token must be the
-- outbox's token for that jti, and the response has exactly the members
-- "sets" and "moreAvailable"
CREATE FUNCTION pg_temp.poll(stream text, req jsonb DEFAULT '{}') RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := setstream.poll(stream, req);
    names text;
    bad int;
BEGIN
    SELECT string_agg(pg_temp.name_of(k), ',' ORDER BY pg_temp.name_of(k) COLLATE "C"),
           count(*) FILTER (WHERE r->'sets'->>k IS DISTINCT FROM
                (SELECT o.token FROM setstream.outbox o WHERE o.stream = poll.stream AND o.jti = k))
      INTO names, bad
      FROM jsonb_object_keys(r->'sets') k;
    RETURN 'sets: ' || coalesce(names, '-') || ' more: ' || coalesce(r->>'moreAvailable', 'ABSENT')
        || CASE WHEN bad > 0 THEN ' (TOKEN MISMATCH)' ELSE '' END
        || CASE WHEN (SELECT array_agg(k ORDER BY k COLLATE "C") FROM jsonb_object_keys(r) k) <> ARRAY['moreAvailable', 'sets']
                THEN ' (MEMBERS ' || (SELECT string_agg(k, ',' ORDER BY k COLLATE "C") FROM jsonb_object_keys(r) k) || ')'
                ELSE '' END;
END $$;
-- the outbox state of named SETs
CREATE FUNCTION pg_temp.states(stream text) RETURNS TABLE (name text, state text, attempts int,
    delivered boolean, acked boolean, failed boolean, err text, description text)
LANGUAGE sql STABLE AS $$
    SELECT i.name, o.state, o.attempts, o.delivered_at IS NOT NULL, o.acked_at IS NOT NULL,
           o.failed_at IS NOT NULL, o.err, o.description
      FROM setstream.outbox o JOIN ids i ON i.jti = o.jti
     WHERE o.stream = states.stream ORDER BY o.seq
$$;

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's05%';
END $$;

SELECT name FROM setstream.create_stream('s05', 'https://db.example/s05', ARRAY['https://rp.example/s05']);
SELECT name FROM setstream.create_stream('s05-multi', 'https://db.example/s05-multi',
    ARRAY['https://rp1.example', 'https://rp2.example']);

-- ------------------------------------------------------------------
-- emit
-- ------------------------------------------------------------------
-- no signing key yet (55000, with a hint)
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}')$$);
SELECT setstream.emit('s05', 'https://example.com/e', '{}');

SELECT setstream.generate_key('s05')->>'kid' AS kid \gset
SELECT setstream.generate_key('s05-multi', 'EdDSA')->>'kid' AS kid_multi \gset

SELECT setstream.emit('s05', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
                      '{"initiating_entity":"policy","reason_admin":{"en":"test"}}') AS jti \gset
-- the jti is a version 4 UUID
SELECT :'jti' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' AS uuid_v4;
-- queued: pending, never delivered
SELECT stream, state, attempts, event_types, delivered_at IS NULL AS not_delivered,
       acked_at IS NULL AS not_acked, err IS NULL AS no_err, created_at IS NOT NULL AS has_created
  FROM setstream.outbox WHERE jti = :'jti';
-- the claims: iss, aud (a string for one audience), sub_id of the stream
-- itself, events; iat an integer close to now, jti the returned one; no
-- sub, no exp, no txn
SELECT claims - 'jti' - 'iat' AS claims,
       claims->>'jti' = :'jti' AS jti_matches,
       jsonb_typeof(claims->'iat') AS iat_type, (claims->>'iat') ~ '^[0-9]+$' AS iat_integer,
       abs((claims->>'iat')::bigint - extract(epoch FROM now())) < 300 AS iat_now
  FROM setstream.outbox WHERE jti = :'jti';
-- the token: header {alg, kid, typ}, payload = the stored claims
SELECT pg_temp.part(token, 1) - 'kid' AS header, pg_temp.part(token, 1)->>'kid' = :'kid' AS kid_matches,
       pg_temp.part(token, 2) = claims AS payload_is_claims,
       array_length(string_to_array(token, '.'), 1) AS parts
  FROM setstream.outbox WHERE jti = :'jti';

-- a subject and a txn
SELECT setstream.emit('s05', 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
                      '{"reason":"hijacking"}', '{"format":"email","email":"alice@example.com"}', 'txn-42') AS jti2 \gset
SELECT claims - 'jti' - 'iat' AS claims, event_types FROM setstream.outbox WHERE jti = :'jti2';
-- every subject format that emit accepts is validated like an inbound one
SELECT setstream.emit('s05', 'https://example.com/e', '{}',
    '{"format":"complex","user":{"format":"iss_sub","iss":"https://idp.example","sub":"u1"},"device":{"format":"opaque","id":"d1"}}') IS NOT NULL AS complex_subject;
-- two audiences: aud is an array; EdDSA signs
SELECT setstream.emit('s05-multi', 'https://example.com/e', '{}') AS jti3 \gset
SELECT claims->'aud' AS aud, pg_temp.part(token, 1)->>'alg' AS alg,
       pg_temp.part(token, 1)->>'kid' = :'kid_multi' AS kid_matches
  FROM setstream.outbox WHERE jti = :'jti3';
-- each emit gets its own jti
SELECT count(DISTINCT jti) = count(*) AS distinct_jtis FROM setstream.outbox WHERE stream LIKE 's05%';

-- emit errors
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'session-revoked', '{}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', '', '{}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/a b', '{}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '[]')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '"x"')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', 'null'::jsonb)$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{"n":1e400}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', '"alice"')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', '{"format":"email","email":"alice"}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', '{"format":"nickname","nickname":"al"}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', '{"format":"opaque","id":"x","extra":1}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', '{"format":"opaque","id":1e400}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', '{}', NULL, '')$$);
SELECT pg_temp.try($$SELECT setstream.emit(NULL, 'https://example.com/e', '{}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', NULL, '{}')$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05', 'https://example.com/e', NULL)$$);
SELECT pg_temp.try($$SELECT setstream.emit('s05-nosuch', 'https://example.com/e', '{}')$$);
SELECT setstream.emit('s05', 'https://example.com/e', '{}', '{"format":"email","email":"alice"}');
-- the failed emits queued nothing
SELECT count(*) AS queued FROM setstream.outbox WHERE stream = 's05';

-- a rolled-back emit leaves nothing
BEGIN;
SELECT setstream.emit('s05', 'https://example.com/e', '{}') IS NOT NULL AS emitted;
SELECT count(*) AS inside FROM setstream.outbox WHERE stream = 's05';
ROLLBACK;
SELECT count(*) AS after_rollback FROM setstream.outbox WHERE stream = 's05';

-- ------------------------------------------------------------------
-- poll: the state machine
-- ------------------------------------------------------------------
SELECT name FROM setstream.create_stream('s05-poll', 'https://db.example/s05-poll', ARRAY['https://rp.example/poll']);
SELECT name FROM setstream.create_stream('s05-other', 'https://db.example/s05-other', ARRAY['https://rp.example/other']);
SELECT setstream.generate_key('s05-poll') IS NOT NULL AS key1, setstream.generate_key('s05-other') IS NOT NULL AS key2;

-- nothing queued
SELECT pg_temp.poll('s05-poll');
SELECT setstream.poll('s05-poll') AS raw_empty_response;

SELECT pg_temp.emit('e1', 's05-poll'), pg_temp.emit('e2', 's05-poll'), pg_temp.emit('e3', 's05-poll');
SELECT * FROM pg_temp.states('s05-poll');

-- maxEvents: the oldest first; moreAvailable says more are due
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 2}');
SELECT * FROM pg_temp.states('s05-poll');
-- delivered SETs are not due again within redelivery_interval (60 s)
SELECT pg_temp.poll('s05-poll');
SELECT pg_temp.poll('s05-poll');
SELECT * FROM pg_temp.states('s05-poll');

-- once redelivery_interval has passed, a delivered SET is due again,
-- byte-identical (the poll helper compares each token with the outbox)
SELECT token AS e1_token FROM setstream.outbox WHERE jti = pg_temp.jti('e1') \gset
SET setstream.redelivery_interval = 0;
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 1}');
SELECT pg_temp.poll('s05-poll');
SELECT token = :'e1_token' AS e1_same_token FROM setstream.outbox WHERE jti = pg_temp.jti('e1');
SELECT * FROM pg_temp.states('s05-poll');
RESET setstream.redelivery_interval;

-- ack-only poll (maxEvents 0): e1 acked, nothing returned
SELECT pg_temp.poll('s05-poll', jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('e1')), 'maxEvents', 0));
-- setErrs: e2 failed with err and description, e3 with err only
SELECT pg_temp.poll('s05-poll', jsonb_build_object('maxEvents', 0, 'setErrs', jsonb_build_object(
    pg_temp.jti('e2'), jsonb_build_object('err', 'invalid_key', 'description', 'signature does not verify'),
    pg_temp.jti('e3'), jsonb_build_object('err', 'invalid_request'))));
SELECT * FROM pg_temp.states('s05-poll');
-- acked and failed SETs are never delivered again
SET setstream.redelivery_interval = 0;
SELECT pg_temp.poll('s05-poll');
RESET setstream.redelivery_interval;

-- acked and failed are final: a later ack or setErr changes nothing
SELECT acked_at AS e1_acked_at FROM setstream.outbox WHERE jti = pg_temp.jti('e1') \gset
SELECT pg_temp.poll('s05-poll', jsonb_build_object('maxEvents', 0,
    'ack', jsonb_build_array(pg_temp.jti('e1'), pg_temp.jti('e2')),
    'setErrs', jsonb_build_object(pg_temp.jti('e1'), jsonb_build_object('err', 'invalid_issuer'))));
SELECT * FROM pg_temp.states('s05-poll');
SELECT acked_at = :'e1_acked_at' AS e1_acked_at_kept FROM setstream.outbox WHERE jti = pg_temp.jti('e1');

-- acks and setErrs for unknown jtis, or for another stream's SETs, are ignored
SELECT pg_temp.emit('o1', 's05-other'), pg_temp.emit('o2', 's05-other');
SELECT pg_temp.poll('s05-other');
SELECT pg_temp.poll('s05-poll', jsonb_build_object(
    'ack', jsonb_build_array('no-such-jti', pg_temp.jti('o1')),
    'setErrs', jsonb_build_object(pg_temp.jti('o2'), jsonb_build_object('err', 'invalid_key'),
                                  'unknown', jsonb_build_object('err', 'invalid_key'))));
SELECT * FROM pg_temp.states('s05-other');

-- an ack for a pending SET (never delivered) is taken too
SELECT pg_temp.emit('e4', 's05-poll'), pg_temp.emit('e5', 's05-poll'), pg_temp.emit('e6', 's05-poll');
-- ack and fetch in one poll: the acks are applied first
SELECT pg_temp.poll('s05-poll', jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('e4')), 'maxEvents', 1));
SELECT * FROM pg_temp.states('s05-poll') WHERE name IN ('e4', 'e5', 'e6');

-- maxEvents larger than what is due; integral reals are integers
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 100}');
SET setstream.redelivery_interval = 0;
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 1.0}');
-- setstream.max_poll_events caps maxEvents and the default
SET setstream.max_poll_events = 1;
SELECT pg_temp.poll('s05-poll');
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 5}');
RESET setstream.max_poll_events;
-- unknown members, and snake_case spellings, are ignored
SELECT pg_temp.poll('s05-poll', '{"max_events": 1, "foo": [1, 2], "returnImmediately": true}');
-- returnImmediately false: the SQL poll still answers at once
SELECT clock_timestamp() AS t0 \gset
SELECT pg_temp.poll('s05-poll', jsonb_build_object('returnImmediately', false,
    'ack', (SELECT jsonb_agg(jti) FROM ids WHERE name IN ('e5', 'e6'))));
SELECT clock_timestamp() - :'t0'::timestamptz < interval '5 seconds' AS answered_at_once;
RESET setstream.redelivery_interval;
SELECT * FROM pg_temp.states('s05-poll') WHERE name IN ('e4', 'e5', 'e6');

-- moreAvailable tells whether SETs are still due after this request: a SET
-- acknowledged by the very same request is not one of them
SELECT pg_temp.emit('m1', 's05-poll');
SELECT pg_temp.poll('s05-poll', jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('m1'))));
SELECT * FROM pg_temp.states('s05-poll') WHERE name = 'm1';
SELECT pg_temp.poll('s05-poll');
-- an ack-only poll (maxEvents 0) too tells whether SETs are due
SELECT pg_temp.emit('m2', 's05-poll'), pg_temp.emit('m3', 's05-poll');
SELECT pg_temp.poll('s05-poll', jsonb_build_object('maxEvents', 0, 'ack', jsonb_build_array(pg_temp.jti('m2'))));
SELECT pg_temp.poll('s05-poll', jsonb_build_object('maxEvents', 0, 'ack', jsonb_build_array(pg_temp.jti('m3'))));
SELECT pg_temp.poll('s05-poll', '{"maxEvents": 0}');
SELECT * FROM pg_temp.states('s05-poll') WHERE name IN ('m2', 'm3');

-- a poll is part of its transaction: rolled back, nothing was delivered
SELECT pg_temp.emit('e7', 's05-poll');
BEGIN;
SELECT pg_temp.poll('s05-poll');
SELECT * FROM pg_temp.states('s05-poll') WHERE name = 'e7';
ROLLBACK;
SELECT * FROM pg_temp.states('s05-poll') WHERE name = 'e7';
SELECT pg_temp.poll('s05-poll');
SELECT * FROM pg_temp.states('s05-poll') WHERE name = 'e7';

-- ------------------------------------------------------------------
-- poll: malformed requests (invalid_request, SE001); nothing applied
-- ------------------------------------------------------------------
SELECT pg_temp.emit('e8', 's05-poll');
CREATE TEMP TABLE bad_poll (n serial, req jsonb);
INSERT INTO bad_poll (req) VALUES
    ('[]'), ('"poll"'), ('null'), ('1'),
    ('{"maxEvents": -1}'), ('{"maxEvents": 1.5}'), ('{"maxEvents": "2"}'), ('{"maxEvents": true}'),
    ('{"maxEvents": null}'), ('{"maxEvents": 1e400}'),
    ('{"returnImmediately": "yes"}'), ('{"returnImmediately": 1}'), ('{"returnImmediately": null}'),
    ('{"ack": "jti"}'), ('{"ack": {"jti": true}}'), ('{"ack": [1]}'), ('{"ack": [""]}'), ('{"ack": [null]}'),
    ('{"setErrs": []}'), ('{"setErrs": "x"}'), ('{"setErrs": {"j": "invalid_key"}}'),
    ('{"setErrs": {"j": {}}}'), ('{"setErrs": {"j": {"err": ""}}}'), ('{"setErrs": {"j": {"err": 1}}}'),
    ('{"setErrs": {"j": {"description": "no err"}}}'),
    ('{"setErrs": {"j": {"err": "invalid_key", "description": 5}}}');
SELECT n, left(req::text, 64) AS request, pg_temp.try(format('SELECT setstream.poll(%L, %L)', 's05-poll', req)) AS result
  FROM bad_poll ORDER BY n;
-- an ack in a malformed request is not applied, and nothing was delivered
SELECT pg_temp.try(format('SELECT setstream.poll(%L, %L)', 's05-poll',
    jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('e8')), 'maxEvents', -1)));
SELECT * FROM pg_temp.states('s05-poll') WHERE name = 'e8';
-- the plain error display
SELECT setstream.poll('s05-poll', '{"maxEvents": -1}');
-- unknown stream; STRICT on NULL
SELECT pg_temp.try($$SELECT setstream.poll('s05-nosuch')$$);
SELECT setstream.poll(NULL) IS NULL AS null_stream, setstream.poll('s05-poll', NULL) IS NULL AS null_request;

-- ------------------------------------------------------------------
-- paused and disabled streams
-- ------------------------------------------------------------------
-- paused: emit queues, poll delivers nothing but still applies acks
SELECT status FROM setstream.set_stream_status('s05-poll', 'paused');
SELECT pg_temp.emit('p1', 's05-poll'), pg_temp.emit('p2', 's05-poll');
SELECT * FROM pg_temp.states('s05-poll') WHERE name IN ('p1', 'p2', 'e8');
SELECT pg_temp.poll('s05-poll', jsonb_build_object('ack', jsonb_build_array(pg_temp.jti('p2'))));
SELECT * FROM pg_temp.states('s05-poll') WHERE name IN ('p1', 'p2', 'e8');
SELECT status FROM setstream.enable_stream('s05-poll');
SELECT pg_temp.poll('s05-poll');
-- disabled: emit returns NULL and queues nothing; poll answers no SETs
-- (malformed requests are still refused)
SELECT status FROM setstream.disable_stream('s05-poll');
SELECT setstream.emit('s05-poll', 'https://example.com/e', '{}') IS NULL AS emit_null;
SELECT pg_temp.emit('d1', 's05-poll') AS nothing_emitted;
SELECT count(*) AS queued_while_disabled FROM setstream.outbox o
 WHERE o.stream = 's05-poll' AND NOT EXISTS (SELECT 1 FROM ids WHERE ids.jti = o.jti);
SELECT setstream.poll('s05-poll') AS poll_while_disabled;
SELECT pg_temp.try($$SELECT setstream.poll('s05-poll', '{"maxEvents": -1}')$$);
SELECT status FROM setstream.enable_stream('s05-poll');
SELECT pg_temp.poll('s05-poll');

SELECT name, state, attempts FROM pg_temp.states('s05-poll');

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's05%';
END $$;
SELECT count(*) FROM setstream.outbox WHERE stream LIKE 's05%';
