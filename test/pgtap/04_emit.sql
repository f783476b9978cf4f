-- emit(): the SET it signs and queues.  jti is a UUID v4; the compact JWS
-- decodes to header {alg, kid, typ: secevent+jwt} with the stream's newest
-- active signing key, and claims {iss, aud, iat, jti, sub_id, events[, txn]}
-- without sub or exp; aud is a string for one audience, an array for more.
-- A revoked key is not used; no key -> 55000.  A rolled back emit leaves no
-- outbox row.  emit_trigger builds the subject from the row.
BEGIN;
SELECT plan(51);

\ir lib/helpers.sql
CREATE FUNCTION pg_temp.part(token text, n int) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT pg_temp.b64u_json(split_part(token, '.', n)) $$;

SELECT setstream.create_stream('tap-em', 'https://tx.example/issuer', ARRAY['https://rx.example/aud']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-em2', 'https://tx.example/issuer', ARRAY['https://rx1.example', 'https://rx2.example', 'https://rx3.example']) IS NOT NULL AS ok \gset

-- ---------------------------------------------------------------- no signing key
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'urn:example:t', '{}') $$,
                 '55000', 'stream "tap-em" has no signing key', 'emit without a signing key -> 55000');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-em'), 0,
          'a failed emit queues nothing');

SELECT setstream.generate_key('tap-em')->>'kid' AS kid1 \gset
SELECT setstream.generate_key('tap-em2', 'EdDSA')->>'kid' AS kid_ed \gset

-- ---------------------------------------------------------------- the SET
SELECT setstream.emit('tap-em', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
                      '{"initiating_entity": "policy", "event_timestamp": 1700000000}',
                      '{"format": "email", "email": "alice@example.com"}', 'txn-42') AS jti1 \gset

SELECT ok(:'jti1' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
          'emit returns a lower-case UUID version 4 (RFC 4122 variant) as jti');
SELECT is(:'jti1'::uuid::text, :'jti1', 'the jti is a canonical UUID');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-em' AND jti = :'jti1'), 1,
          'emit queues exactly one outbox row under that jti');
SELECT results_eq($$ SELECT state, attempts, event_types FROM setstream.outbox WHERE jti = $$ || quote_literal(:'jti1'),
                  $$ VALUES ('pending', 0, ARRAY['https://schemas.openid.net/secevent/caep/event-type/session-revoked']) $$,
                  'the outbox row is pending, attempts 0, with the event type');
SELECT ok(pg_temp.tok(:'jti1') ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$',
          'the token is a JWS compact serialization: three non-empty base64url parts, no padding');

SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 1),
          jsonb_build_object('alg', 'ES256', 'kid', :'kid1', 'typ', 'secevent+jwt'),
          'header is exactly {"alg":"ES256","kid":<the stream''s signing key>,"typ":"secevent+jwt"}');
SELECT is((SELECT kid FROM setstream.keys WHERE stream = 'tap-em' AND purpose = 'sign'),
          pg_temp.part(pg_temp.tok(:'jti1'), 1)->>'kid', 'the header kid is the kid of the stream''s signing key');

SELECT is((SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(pg_temp.part(pg_temp.tok(:'jti1'), 2)) k),
          ARRAY['aud', 'events', 'iat', 'iss', 'jti', 'sub_id', 'txn'],
          'claims are exactly iss, aud, iat, jti, sub_id, events, txn');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'iss', '"https://tx.example/issuer"'::jsonb, 'iss is the stream issuer');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'aud', '"https://rx.example/aud"'::jsonb,
          'aud is a string when the stream has one audience');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->>'jti', :'jti1', 'the jti claim is the returned jti');
SELECT is(jsonb_typeof(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'iat'), 'number', 'iat is a number');
SELECT ok((pg_temp.part(pg_temp.tok(:'jti1'), 2)->>'iat') ~ '^[0-9]+$', 'iat is an integer NumericDate');
SELECT ok(abs((pg_temp.part(pg_temp.tok(:'jti1'), 2)->>'iat')::numeric - extract(epoch FROM clock_timestamp())) < 300,
          'iat is the current time');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'sub_id', '{"format": "email", "email": "alice@example.com"}'::jsonb,
          'sub_id is the given subject');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'events',
          '{"https://schemas.openid.net/secevent/caep/event-type/session-revoked": {"initiating_entity": "policy", "event_timestamp": 1700000000}}'::jsonb,
          'events is {event_type: event}');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 2)->'txn', '"txn-42"'::jsonb, 'txn is included when given');
SELECT is((SELECT claims FROM setstream.outbox WHERE jti = :'jti1'), pg_temp.part(pg_temp.tok(:'jti1'), 2),
          'outbox.claims equals the signed payload');
SELECT ok(length(split_part(pg_temp.tok(:'jti1'), '.', 3)) = 86,
          'an ES256 signature is 64 bytes (86 base64url characters, JWS r||s form)');

-- defaults: subject = the stream (opaque id), no txn; several audiences -> array
SELECT setstream.emit('tap-em2', 'urn:example:stream-updated', '{}') AS jti2 \gset
SELECT is(pg_temp.part(pg_temp.tok(:'jti2'), 2)->'sub_id', '{"format": "opaque", "id": "tap-em2"}'::jsonb,
          'without a subject, sub_id is {"format":"opaque","id":<stream name>}');
SELECT ok(NOT (pg_temp.part(pg_temp.tok(:'jti2'), 2) ? 'txn'), 'txn is absent when not given');
SELECT ok(NOT (pg_temp.part(pg_temp.tok(:'jti2'), 2) ?| ARRAY['sub', 'exp']), 'no sub and no exp claim');
SELECT ok(NOT (pg_temp.part(pg_temp.tok(:'jti1'), 2) ?| ARRAY['sub', 'exp']), 'no sub and no exp claim (with subject and txn)');
SELECT is(pg_temp.part(pg_temp.tok(:'jti2'), 2)->'aud',
          '["https://rx1.example", "https://rx2.example", "https://rx3.example"]'::jsonb,
          'aud is an array, in the stream''s order, when there are several audiences');
SELECT is(pg_temp.part(pg_temp.tok(:'jti2'), 1),
          jsonb_build_object('alg', 'EdDSA', 'kid', :'kid_ed', 'typ', 'secevent+jwt'),
          'an EdDSA stream signs with alg EdDSA and its kid');
SELECT is(pg_temp.part(pg_temp.tok(:'jti2'), 2)->'events', '{"urn:example:stream-updated": {}}'::jsonb,
          'an empty event payload is kept as {}');

-- named notation of the contract
SELECT lives_ok($$ SELECT setstream.emit(stream => 'tap-em', event_type => 'urn:example:t', event => '{}',
                                          subject => '{"format":"opaque","id":"u1"}', txn => 't') $$,
                'emit accepts named arguments');

-- two emits -> two distinct jtis
SELECT isnt(setstream.emit('tap-em', 'urn:example:t', '{}'), setstream.emit('tap-em', 'urn:example:t', '{}'),
            'two emits get two different jtis');

-- ---------------------------------------------------------------- key rotation
SELECT setstream.generate_key('tap-em', 'ES384')->>'kid' AS kid2 \gset
SELECT setstream.emit('tap-em', 'urn:example:t', '{}') AS jti3 \gset
SELECT is(pg_temp.part(pg_temp.tok(:'jti3'), 1)->>'kid', :'kid2', 'the newest signing key is used');
SELECT is(pg_temp.part(pg_temp.tok(:'jti3'), 1)->>'alg', 'ES384', 'with its alg');
SELECT is(pg_temp.part(pg_temp.tok(:'jti1'), 1)->>'kid', :'kid1', 'a SET queued earlier keeps its signature');

SELECT throws_ok(format('SELECT setstream.revoke_key(%L, %L)', 'tap-em', :'kid2'),
                 '55006', NULL, 'revoke_key of a key that signed an unsettled SET -> 55006');
SELECT setstream.revoke_key('tap-em', :'kid2', force => true) IS NULL AS revoked \gset
SELECT setstream.emit('tap-em', 'urn:example:t', '{}') AS jti4 \gset
SELECT is(pg_temp.part(pg_temp.tok(:'jti4'), 1)->>'kid', :'kid1', 'after revoking the newest key, the previous one signs');
SELECT is(pg_temp.part(pg_temp.tok(:'jti4'), 1)->>'alg', 'ES256', 'with its own alg');

SELECT setstream.revoke_key('tap-em', :'kid1', force => true) IS NULL AS revoked \gset
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'urn:example:t', '{}') $$,
                 '55000', 'stream "tap-em" has no signing key', 'with every signing key revoked, emit -> 55000');
SELECT throws_ok($$ SELECT setstream.revoke_key('tap-em', 'no-such-kid') $$,
                 '42704', NULL, 'revoke_key of an unknown kid -> 42704');

-- ---------------------------------------------------------------- rolled back emit
SELECT setstream.generate_key('tap-em') IS NOT NULL AS ok \gset
SELECT count(*) AS before FROM setstream.outbox WHERE stream = 'tap-em' \gset
SAVEPOINT before_emit;
SELECT setstream.emit('tap-em', 'urn:example:t', '{}') AS rb_jti \gset
ROLLBACK TO SAVEPOINT before_emit;
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE jti = :'rb_jti'), 0,
          'a rolled back emit leaves no outbox row');
SELECT is((SELECT count(*) FROM setstream.outbox WHERE stream = 'tap-em'), :'before'::bigint,
          'the outbox has as many rows as before the rolled back emit');
SELECT is(setstream.poll('tap-em', '{"maxEvents": 100}')->'sets' ? :'rb_jti', false,
          'a rolled back SET is never delivered');

-- ---------------------------------------------------------------- argument errors
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'not a uri', '{}') $$,
                 '22023', 'event type "not a uri" is not a URI', 'an event type that is not a URI -> 22023');
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'urn:example:t', '[1]') $$,
                 '22023', 'the event payload must be a JSON object', 'a non-object event -> 22023');
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'urn:example:t', '{}', '{"format": "email"}') $$,
                 '22023', NULL, 'an invalid subject identifier -> 22023');
SELECT throws_ok($$ SELECT setstream.emit('tap-em', 'urn:example:t', '{}', '{"format": "nonsense", "id": "x"}') $$,
                 '22023', NULL, 'an unknown subject format -> 22023');
SELECT throws_ok($$ SELECT setstream.emit('tap-nowhere', 'urn:example:t', '{}') $$,
                 '42704', 'stream "tap-nowhere" does not exist', 'emit on an unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.emit(NULL, 'urn:example:t', '{}') $$,
                 '22004', NULL, 'emit with a NULL stream -> 22004');

-- ---------------------------------------------------------------- emit_trigger
CREATE TEMP TABLE tap_users (id int, email text, payload jsonb);
CREATE TRIGGER tap_users_emit AFTER INSERT OR UPDATE ON tap_users FOR EACH ROW
    EXECUTE FUNCTION setstream.emit_trigger('tap-em2', 'https://schemas.openid.net/secevent/risc/event-type/account-disabled',
                                            'email', 'email', 'payload');
SELECT count(*) AS before2 FROM setstream.outbox WHERE stream = 'tap-em2' \gset
INSERT INTO tap_users VALUES (1, 'bob@example.com', '{"reason": "hijacking"}'), (2, 'carol@example.com', NULL);
SELECT is((SELECT count(*) FROM setstream.outbox WHERE stream = 'tap-em2'), :'before2'::bigint + 2,
          'emit_trigger queues one SET per inserted row');
SELECT results_eq($$ SELECT claims->'sub_id', claims->'events'
                       FROM setstream.outbox WHERE stream = 'tap-em2' AND claims->'sub_id'->>'format' = 'email'
                      ORDER BY seq $$,
                  $$ VALUES ('{"format": "email", "email": "bob@example.com"}'::jsonb,
                             '{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {"reason": "hijacking"}}'::jsonb),
                            ('{"format": "email", "email": "carol@example.com"}'::jsonb,
                             '{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": {}}'::jsonb) $$,
                  'emit_trigger: subject {"format":"email","email":NEW.email}, payload from the column ({} when NULL)');
UPDATE tap_users SET email = 'bob2@example.com' WHERE id = 1;
SELECT is((SELECT claims->'sub_id' FROM setstream.outbox WHERE stream = 'tap-em2' ORDER BY seq DESC LIMIT 1),
          '{"format": "email", "email": "bob2@example.com"}'::jsonb, 'on UPDATE the new row builds the subject');
SAVEPOINT before_trigger_rollback;
INSERT INTO tap_users VALUES (3, 'dave@example.com', NULL);
ROLLBACK TO SAVEPOINT before_trigger_rollback;
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE claims->'sub_id'->>'email' = 'dave@example.com'), 0,
          'a rolled back row change leaves no SET');

SELECT * FROM finish();
ROLLBACK;
