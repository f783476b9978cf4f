--
-- 06_ingest: ingest() of pushpull Communication Objects: each SET verified
-- and stored on its own (stored or duplicate -> "ack", invalid ->
-- "setErrs", rejected by a user trigger -> neither), a key that is not the
-- SET's jti, ack/setErrs applied to the outbox, outbound SETs up to
-- maxResponseEvents, paused/disabled streams, and malformed objects.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS setstream;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
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
CREATE FUNCTION pg_temp.b64u(bytea) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT rtrim(translate(encode($1, 'base64'), E'+/\n', '-_'), '=') $$;
CREATE FUNCTION pg_temp.b64u(text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.b64u(convert_to($1, 'UTF8')) $$;
CREATE FUNCTION pg_temp.secret() RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT convert_to('s06: the secret shared with the peer', 'UTF8') $$;
CREATE FUNCTION pg_temp.hs(header text, claims text, secret bytea DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.b64u(header) || '.' || pg_temp.b64u(claims) || '.' ||
           pg_temp.b64u(hmac(convert_to(pg_temp.b64u(header) || '.' || pg_temp.b64u(claims), 'UTF8'),
                             coalesce(secret, pg_temp.secret()), 'sha256'))
$$;
-- a valid SET for s06 with the given jti, claims patched
CREATE FUNCTION pg_temp.set(jti text, patch jsonb DEFAULT '{}', secret bytea DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt"}',
        (jsonb_build_object(
            'iss', 'https://peer.example/s06', 'aud', 'https://db.example/s06',
            'iat', 1700000000, 'jti', jti,
            'sub_id', jsonb_build_object('format', 'opaque', 'id', 'user-' || jti),
            'events', jsonb_build_object('https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}'::jsonb))
         || patch)::text, secret)
$$;
-- names for outbound jtis (uuids) so the output shows none
CREATE TEMP TABLE ids (name text PRIMARY KEY, jti text UNIQUE);
CREATE FUNCTION pg_temp.emit(n text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ids VALUES (n, setstream.emit('s06', 'https://example.com/event/out', jsonb_build_object('n', n)));
    RETURN n;
END $$;
CREATE FUNCTION pg_temp.jti(n text) RETURNS text LANGUAGE sql STABLE
AS $$ SELECT jti FROM ids WHERE name = n $$;
-- ingest, and show the response one row per item:
--   members | <top-level members>
--   ack     | <jti>
--   setErrs | <key> | <err>: <description>
--   sets    | <name> | token matches the outbox or not
CREATE FUNCTION pg_temp.ingest(stream text, body jsonb)
RETURNS TABLE (part text, key text, detail text) LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := setstream.ingest(stream, body);
BEGIN
    RETURN QUERY
    SELECT * FROM (
        SELECT 'members'::text, (SELECT string_agg(k, ',' ORDER BY k COLLATE "C") FROM jsonb_object_keys(r) k), NULL::text
        UNION ALL
        SELECT 'ack', a, NULL FROM jsonb_array_elements_text(r->'ack') a
        UNION ALL
        SELECT 'setErrs', e.key, (e.value->>'err') || ': ' || (e.value->>'description')
          FROM jsonb_each(r->'setErrs') e
        UNION ALL
        SELECT 'sets', coalesce((SELECT name FROM ids WHERE jti = s.key), '?'),
               CASE WHEN s.value #>> '{}' = (SELECT o.token FROM setstream.outbox o
                                             WHERE o.stream = ingest.stream AND o.jti = s.key)
                    THEN 'token as queued' ELSE 'TOKEN MISMATCH' END
          FROM jsonb_each(CASE WHEN jsonb_typeof(r->'sets') = 'object' THEN r->'sets' ELSE '{}' END) s
    ) x (p, k, d)
    ORDER BY x.p, x.k COLLATE "C";
END $$;
CREATE FUNCTION pg_temp.states() RETURNS TABLE (name text, state text, attempts int, err text, description text)
LANGUAGE sql STABLE AS $$
    SELECT i.name, o.state, o.attempts, o.err, o.description
      FROM setstream.outbox o JOIN ids i ON i.jti = o.jti
     WHERE o.stream = 's06' ORDER BY o.seq
$$;

DROP TRIGGER IF EXISTS s06_reject ON setstream.events;
DROP FUNCTION IF EXISTS public.s06_reject();
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's06%';
END $$;

SELECT name FROM setstream.create_stream('s06', 'https://db.example/s06',
    ARRAY['https://peer.example/s06'], 'https://peer.example/s06');
SELECT setstream.add_key('s06', jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(pg_temp.secret()))) IS NOT NULL AS key_added;
SELECT setstream.generate_key('s06') IS NOT NULL AS signing_key;

-- a user trigger on setstream.events: refuses two SETs, one of them with
-- the SQLSTATE of an RFC 8935 error code
CREATE FUNCTION public.s06_reject() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stream = 's06' AND NEW.jti = 'in-boom' THEN
        RAISE EXCEPTION 'the application refuses %', NEW.jti;
    ELSIF NEW.stream = 's06' AND NEW.jti = 'in-state' THEN
        RAISE EXCEPTION 'verification state does not match' USING ERRCODE = 'SE007';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER s06_reject BEFORE INSERT ON setstream.events
    FOR EACH ROW EXECUTE FUNCTION public.s06_reject();

-- in-dup was received before
SELECT setstream.receive('s06', pg_temp.set('in-dup')) AS received_before;

-- ------------------------------------------------------------------
-- one Communication Object, good and bad SETs mixed
-- ------------------------------------------------------------------
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object('sets', jsonb_build_object(
    'in-1',       pg_temp.set('in-1'),
    'in-2',       pg_temp.set('in-2', '{"txn":"t-2"}'),
    'in-dup',     pg_temp.set('in-dup'),
    'in-badiss',  pg_temp.set('in-badiss', '{"iss":"https://evil.example"}'),
    'in-badsig',  pg_temp.set('in-badsig', '{}', convert_to(repeat('x', 32), 'UTF8')),
    'in-badaud',  pg_temp.set('in-badaud', '{"aud":"https://someone.example"}'),
    'in-sub',     pg_temp.set('in-sub', '{"sub":"u"}'),
    'wrong-key',  pg_temp.set('in-3'),
    'in-garbage', 'not a SET',
    'in-boom',    pg_temp.set('in-boom'),
    'in-state',   pg_temp.set('in-state'))));
-- stored: the acknowledged ones, each once; not in-3 (under another
-- key), not the two the trigger refused
SELECT jti, txn, count(*) FROM setstream.events WHERE stream = 's06' GROUP BY jti, txn ORDER BY jti COLLATE "C";
-- what is stored is what receive() would store
SELECT jti, iss, aud, subject, event_types FROM setstream.events WHERE stream = 's06' AND jti = 'in-1';
-- sent again: now all acknowledged but the refused ones and the invalid ones
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object('sets', jsonb_build_object(
    'in-1', pg_temp.set('in-1'), 'in-2', pg_temp.set('in-2', '{"txn":"t-2"}'),
    'in-boom', pg_temp.set('in-boom'), 'in-4', pg_temp.set('in-4'))));
-- once the application accepts it, in-boom is stored on its next delivery
DROP TRIGGER s06_reject ON setstream.events;
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object('sets', jsonb_build_object(
    'in-boom', pg_temp.set('in-boom'), 'in-state', pg_temp.set('in-state'))));
SELECT count(*) AS stored FROM setstream.events WHERE stream = 's06' AND jti IN ('in-boom', 'in-state');

-- an empty object, and an empty "sets": nothing to do
SELECT * FROM pg_temp.ingest('s06', '{}');
SELECT setstream.ingest('s06', '{"sets": {}}') AS raw_response;

-- ------------------------------------------------------------------
-- ack and setErrs for this database's SETs; outbound SETs
-- ------------------------------------------------------------------
SELECT pg_temp.emit('o1'), pg_temp.emit('o2'), pg_temp.emit('o3');
-- the response carries the pending SETs
SELECT * FROM pg_temp.ingest('s06', '{}');
SELECT * FROM pg_temp.states();
-- delivered ones are not sent again within redelivery_interval
SELECT * FROM pg_temp.ingest('s06', '{}');
-- ack o1, o2 failed; unknown jtis ignored
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object(
    'ack', jsonb_build_array(pg_temp.jti('o1'), 'unknown-jti'),
    'setErrs', jsonb_build_object(pg_temp.jti('o2'), '{"err":"invalid_audience","description":"not for us"}'::jsonb,
                                  'unknown-jti', '{"err":"invalid_key"}'::jsonb)));
SELECT * FROM pg_temp.states();
-- acks, SETs in and SETs out in one object
SELECT pg_temp.emit('o4');
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object(
    'ack', jsonb_build_array(pg_temp.jti('o3')),
    'sets', jsonb_build_object('in-5', pg_temp.set('in-5'))));
SELECT * FROM pg_temp.states();
-- maxResponseEvents
SELECT pg_temp.emit('o5'), pg_temp.emit('o6'), pg_temp.emit('o7');
SELECT * FROM pg_temp.ingest('s06', '{"maxResponseEvents": 1}');
SELECT * FROM pg_temp.ingest('s06', '{"maxResponseEvents": 0}');
SELECT * FROM pg_temp.ingest('s06', '{"maxResponseEvents": 5.0}');
SELECT * FROM pg_temp.states() WHERE name IN ('o5', 'o6', 'o7');
-- redelivery, byte-identical
SET setstream.redelivery_interval = 0;
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object('maxResponseEvents', 1,
    'ack', jsonb_build_array(pg_temp.jti('o4'), pg_temp.jti('o5'))));
RESET setstream.redelivery_interval;

-- ------------------------------------------------------------------
-- paused and disabled streams
-- ------------------------------------------------------------------
SELECT status FROM setstream.set_stream_status('s06', 'paused');
SELECT pg_temp.emit('o8');
-- paused: inbound SETs are stored, acks applied, nothing sent out
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object(
    'ack', jsonb_build_array(pg_temp.jti('o6')),
    'sets', jsonb_build_object('in-paused', pg_temp.set('in-paused'))));
SELECT * FROM pg_temp.states() WHERE name IN ('o6', 'o8');
-- refusing inbound: each SET is a setErr access_denied, none is stored
SELECT inbound FROM setstream.set_inbound('s06', 'refuse');
SELECT setstream.ingest('s06',
    jsonb_build_object('sets', jsonb_build_object('in-refused', pg_temp.set('in-refused')))) AS refused;
SELECT count(*) AS stored_while_refusing FROM setstream.events WHERE jti = 'in-refused';
SELECT inbound FROM setstream.set_inbound('s06', 'accept');
-- disabled: inbound SETs are taken, nothing goes out
SELECT status FROM setstream.disable_stream('s06');
SELECT pg_temp.try(format('SELECT setstream.ingest(%L, %L)', 's06',
    jsonb_build_object('sets', jsonb_build_object('in-disabled', pg_temp.set('in-disabled')))));
SELECT pg_temp.try($$SELECT setstream.ingest('s06', '[]')$$);
SELECT count(*) AS stored_while_disabled FROM setstream.events WHERE jti = 'in-disabled';
SELECT status FROM setstream.enable_stream('s06');
SELECT * FROM pg_temp.ingest('s06', '{}');

-- ------------------------------------------------------------------
-- malformed Communication Objects (invalid_request, SE001)
-- ------------------------------------------------------------------
CREATE TEMP TABLE bad_obj (n serial, body jsonb);
INSERT INTO bad_obj (body) VALUES
    ('[]'), ('"sets"'), ('null'),
    ('{"sets": []}'), ('{"sets": "x"}'), ('{"sets": {"a": 1}}'), ('{"sets": {"a": null}}'),
    ('{"sets": {"a": {"jwt": "x"}}}'),
    ('{"ack": "x"}'), ('{"ack": [1]}'), ('{"ack": [""]}'),
    ('{"setErrs": []}'), ('{"setErrs": {"a": "invalid_key"}}'), ('{"setErrs": {"a": {}}}'),
    ('{"setErrs": {"a": {"err": "invalid_key", "description": false}}}'),
    ('{"maxResponseEvents": -1}'), ('{"maxResponseEvents": 0.5}'), ('{"maxResponseEvents": "1"}'),
    ('{"maxResponseEvents": 1e400}');
SELECT n, left(body::text, 64) AS body, pg_temp.try(format('SELECT setstream.ingest(%L, %L)', 's06', body)) AS result
  FROM bad_obj ORDER BY n;
-- a malformed object applies nothing: neither its acks nor its SETs
SELECT pg_temp.try(format('SELECT setstream.ingest(%L, %L)', 's06', jsonb_build_object(
    'ack', jsonb_build_array(pg_temp.jti('o7')),
    'sets', jsonb_build_object('in-6', pg_temp.set('in-6')),
    'maxResponseEvents', -1)));
SELECT * FROM pg_temp.states() WHERE name = 'o7';
SELECT count(*) AS in_6 FROM setstream.events WHERE jti = 'in-6';
-- members of a poll request mean nothing here
SELECT * FROM pg_temp.ingest('s06', '{"maxEvents": -1, "returnImmediately": "x"}');
-- the plain error display
SELECT setstream.ingest('s06', '{"sets": []}');
-- unknown stream; STRICT on NULL
SELECT pg_temp.try($$SELECT setstream.ingest('s06-nosuch', '{}')$$);
SELECT setstream.ingest(NULL, '{}') IS NULL AS null_stream, setstream.ingest('s06', NULL) IS NULL AS null_body;

-- an ingest is part of its transaction
BEGIN;
SELECT * FROM pg_temp.ingest('s06', jsonb_build_object(
    'ack', jsonb_build_array(pg_temp.jti('o7')),
    'sets', jsonb_build_object('in-rolled-back', pg_temp.set('in-rolled-back'))));
ROLLBACK;
SELECT count(*) AS rolled_back FROM setstream.events WHERE jti = 'in-rolled-back';
SELECT * FROM pg_temp.states() WHERE name = 'o7';

SELECT jti FROM setstream.events WHERE stream = 's06' ORDER BY jti COLLATE "C";

DROP FUNCTION public.s06_reject();
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's06%';
END $$;
