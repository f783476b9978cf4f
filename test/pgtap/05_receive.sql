-- receive(): verification and storage of inbound SETs.
-- Round trip: stream A emits, stream B (peer_issuer = A.issuer, B.issuer in
-- A.audience, A's public signing key registered on B) receives A's outbox
-- token; the events row matches the claims; a second receive is idempotent.
-- Errors: wrong peer issuer SE003, audience without B.issuer SE004, revoked
-- or unknown key / bad signature SE002, inbound refused SE006, malformed/profile
-- violations SE001, and the order of the checks.  Profile 'rfc8417' accepts
-- a SET without typ and with sub (HS256 via pgcrypto, alg none when allowed).
BEGIN;
SELECT plan(67);
SET LOCAL client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgcrypto;

CREATE FUNCTION pg_temp.b64u(b bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT rtrim(translate(encode(b, 'base64'), E'+/\n', '-_'), '=') $$;
\ir lib/helpers.sql
-- an HS256 JWS over exactly these header and claims texts
CREATE FUNCTION pg_temp.hs256(header text, claims text, key bytea) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT si || '.' || pg_temp.b64u(hmac(convert_to(si, 'UTF8'), key, 'sha256'))
      FROM (SELECT pg_temp.b64u(convert_to(header, 'UTF8')) || '.' || pg_temp.b64u(convert_to(claims, 'UTF8')) AS si) s
$$;
CREATE FUNCTION pg_temp.unsigned(header text, claims text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT pg_temp.b64u(convert_to(header, 'UTF8')) || '.' || pg_temp.b64u(convert_to(claims, 'UTF8')) || '.'
$$;
-- receive() that reports an error as "ERROR <sqlstate>: <message>" instead of aborting the file
CREATE FUNCTION pg_temp.try_receive(stream text, token text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN setstream.receive(stream, token);
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END
$$;
-- the shared secret of the HS256 tests (32 bytes) and a wrong one
CREATE FUNCTION pg_temp.secret() RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ SELECT convert_to('tap-secret-tap-secret-tap-secret', 'UTF8') $$;
CREATE FUNCTION pg_temp.wrong_secret() RETURNS bytea LANGUAGE sql IMMUTABLE AS $$ SELECT convert_to('tap-wrong!-tap-wrong!-tap-wrong!', 'UTF8') $$;
-- claims of a valid SSF SET from https://p-tx.example to aud, with extra members
CREATE FUNCTION pg_temp.claims(aud text, extra jsonb DEFAULT '{}', drop text[] DEFAULT '{}') RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT ((jsonb_build_object('iss', 'https://p-tx.example', 'aud', aud,
                                'iat', 1700000000, 'jti', 'hs-' || md5(aud || extra::text || drop::text),
                                'sub_id', jsonb_build_object('format', 'opaque', 'id', 'user-1'),
                                'events', jsonb_build_object('urn:example:event', jsonb_build_object('k', 'v')))
             || extra) - drop)::text
$$;

-- ---------------------------------------------------------------- streams
SELECT setstream.create_stream('tap-ra', 'https://a.example', ARRAY['https://x.example', 'https://b.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rb', 'https://b.example', ARRAY['https://a.example'], 'https://a.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rc', 'https://b.example', ARRAY['https://a.example'], 'https://a.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rf', 'https://b.example', ARRAY['https://a.example'], 'https://a.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rd', 'https://b.example', ARRAY['https://a.example'], 'https://someone-else.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-re', 'https://not-listed.example', ARRAY['https://a.example'], 'https://a.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rn', 'https://b.example', ARRAY['https://a.example']) IS NOT NULL AS ok \gset

SELECT setstream.generate_key('tap-ra') AS jwk_a \gset
SELECT (:'jwk_a'::jsonb)->>'kid' AS kid_a \gset

-- The documented way: add_key(B, generate_key(A)) exactly as returned.
SELECT is(setstream.add_key('tap-rc', :'jwk_a'), :'kid_a',
          'add_key(B, generate_key(A)) returns the kid of the JWK');
SELECT is((SELECT kid FROM setstream.keys WHERE stream = 'tap-rc'), :'kid_a',
          'add_key stores the key under the JWK''s kid');
-- Without its kid member the key is named by its RFC 7638 thumbprint, which is
-- also what generate_key uses as kid: the same key either way.
SELECT is(setstream.add_key('tap-rb', (:'jwk_a'::jsonb) - 'kid'), :'kid_a',
          'without "kid", add_key names the key by its RFC 7638 thumbprint (= generate_key''s kid)');
SELECT count(setstream.add_key(s, :'jwk_a')) AS n FROM unnest(ARRAY['tap-rd', 'tap-re', 'tap-rn', 'tap-rf']) s \gset

-- ---------------------------------------------------------------- round trip
SELECT setstream.emit('tap-ra', 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
                      '{"credential_type": "password", "change_type": "update"}',
                      '{"format": "iss_sub", "iss": "https://idp.example", "sub": "u-17"}', 'txn-7') AS jti1 \gset

SELECT is(pg_temp.try_receive('tap-rc', pg_temp.tok(:'jti1')), :'jti1',
          'round trip with the key registered exactly as generate_key returned it');
SELECT is(pg_temp.try_receive('tap-rb', pg_temp.tok(:'jti1')), :'jti1', 'receive returns the SET''s jti');
SELECT is(pg_temp.try_receive('tap-rf', pg_temp.tok(:'jti1')), :'jti1', 'the same SET is received on a second stream');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-rb'), 1, 'one events row is stored');
SELECT results_eq(
    format($$ SELECT stream, jti, iss, aud, iat, txn, toe, subject, event_types, events, token
                FROM setstream.events WHERE stream = 'tap-rb' AND jti = %L $$, :'jti1'),
    format($$ SELECT 'tap-rb'::text, %L::text, 'https://a.example'::text,
                     ARRAY['https://x.example', 'https://b.example'], to_timestamp((o.claims->>'iat')::float8),
                     'txn-7'::text, NULL::timestamptz,
                     '{"format": "iss_sub", "iss": "https://idp.example", "sub": "u-17"}'::jsonb,
                     ARRAY['https://schemas.openid.net/secevent/caep/event-type/credential-change'],
                     o.claims->'events', o.token
                FROM setstream.outbox o WHERE o.jti = %L $$, :'jti1', :'jti1'),
    'the events row matches the SET: stream, jti, iss, aud, iat, txn, toe, subject, event_types, events, token');
SELECT ok((SELECT received_at IS NOT NULL AND received_at <= clock_timestamp() FROM setstream.events WHERE stream = 'tap-rb'),
          'received_at is set');
SELECT is((SELECT claims FROM setstream.events WHERE stream = 'tap-rb'), (SELECT claims FROM setstream.outbox WHERE jti = :'jti1'),
          'events.claims are the SET''s claims');
SELECT is((SELECT header FROM setstream.events WHERE stream = 'tap-rb'),
          jsonb_build_object('alg', 'ES256', 'kid', :'kid_a', 'typ', 'secevent+jwt'),
          'events.header is the JOSE header');

SELECT is(pg_temp.try_receive('tap-rb', pg_temp.tok(:'jti1')), :'jti1', 'receiving the same SET again returns the same jti');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-rb'), 1, '... and it is still stored once');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE jti = :'jti1' AND stream IN ('tap-rb', 'tap-rf')), 2,
          'the same SET received on two streams is stored once per stream');

-- a second SET without txn: no txn stored
SELECT setstream.emit('tap-ra', 'urn:example:event', '{}') AS jti2 \gset
SELECT is(pg_temp.try_receive('tap-rb', pg_temp.tok(:'jti2')), :'jti2', 'a second SET is received');
SELECT results_eq(format($$ SELECT txn, subject, event_types FROM setstream.events WHERE stream = 'tap-rb' AND jti = %L $$, :'jti2'),
                  $$ VALUES (NULL::text, '{"format": "opaque", "id": "tap-ra"}'::jsonb, ARRAY['urn:example:event']) $$,
                  'without txn, events.txn is NULL; subject is the emitted default subject');

-- ---------------------------------------------------------------- issuer, audience, key, status
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rd', pg_temp.tok(:'jti2')),
                 'SE003', 'invalid_issuer: issuer "https://a.example" is not the issuer this stream accepts',
                 'receive on a stream with another peer_issuer -> SE003');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rn', pg_temp.tok(:'jti2')),
                 'SE003', 'invalid_issuer: stream "tap-rn" accepts no inbound SETs: it has no peer_issuer',
                 'receive on a stream without peer_issuer -> SE003');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-re', pg_temp.tok(:'jti2')),
                 'SE004', 'invalid_audience: the SET''s audience does not include "https://not-listed.example"',
                 'receive on a stream whose issuer is not in the SET''s audience -> SE004');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream IN ('tap-rd', 'tap-rn', 'tap-re')), 0,
          'refused SETs are not stored');

-- bad signatures
SELECT setstream.emit('tap-ra', 'urn:example:event', '{"n": 3}') AS jti3 \gset
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rb',
                        split_part(pg_temp.tok(:'jti3'), '.', 1) || '.' || split_part(pg_temp.tok(:'jti3'), '.', 2) || '.' ||
                        split_part(pg_temp.tok(:'jti2'), '.', 3)),
                 'SE002', 'invalid_key: the SET''s signature does not verify',
                 'a SET carrying another SET''s signature -> SE002');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rb',
                        split_part(pg_temp.tok(:'jti3'), '.', 1) || '.' ||
                        pg_temp.b64u(convert_to(((SELECT claims FROM setstream.outbox WHERE jti = :'jti3') || '{"txn": "forged"}')::text, 'UTF8')) || '.' ||
                        split_part(pg_temp.tok(:'jti3'), '.', 3)),
                 'SE002', 'invalid_key: the SET''s signature does not verify',
                 'a SET whose claims were changed after signing -> SE002');

-- a key B does not know: A rotates to a new key
SELECT setstream.generate_key('tap-ra')->>'kid' AS kid_a2 \gset
SELECT setstream.emit('tap-ra', 'urn:example:event', '{"n": 4}') AS jti4 \gset
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rb', pg_temp.tok(:'jti4')),
                 'SE002', format('invalid_key: no active key with kid "%s" on this stream', :'kid_a2'),
                 'a SET signed with a key the stream does not have -> SE002');

-- revoke the registered key on B
SELECT setstream.revoke_key('tap-rb', :'kid_a') IS NULL AS revoked \gset
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rb', pg_temp.tok(:'jti3')),
                 'SE002', format('invalid_key: no active key with kid "%s" on this stream', :'kid_a'),
                 'after revoke_key on B, a SET signed with that key -> SE002');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-rb' AND jti = :'jti3'), 0,
          'it is not stored');

SELECT setstream.set_inbound('tap-rf', 'refuse') IS NOT NULL AS ok \gset
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rf', pg_temp.tok(:'jti3')),
                 'SE006', 'access_denied: the stream refuses inbound SETs', 'receive on a stream refusing inbound SETs -> SE006');
SELECT setstream.set_inbound('tap-rf', 'accept') IS NOT NULL AS ok \gset
SELECT setstream.set_stream_status('tap-rf', 'paused') IS NOT NULL AS ok \gset
SELECT is(pg_temp.try_receive('tap-rf', pg_temp.tok(:'jti3')), :'jti3', 'a paused stream still accepts inbound SETs');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-nowhere', pg_temp.tok(:'jti3')),
                 '42704', 'stream "tap-nowhere" does not exist', 'receive on an unknown stream -> 42704');

-- ---------------------------------------------------------------- every signing algorithm round-trips
SELECT setstream.create_stream('tap-alg-a', 'https://alg-a.example', ARRAY['https://alg-b.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-alg-b', 'https://alg-b.example', ARRAY['https://alg-a.example'], 'https://alg-a.example') IS NOT NULL AS ok \gset
CREATE TEMP TABLE alg_rt (alg text PRIMARY KEY, jti text);
CREATE FUNCTION pg_temp.alg_round_trip(a text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    j text;
BEGIN
    PERFORM setstream.add_key('tap-alg-b', setstream.generate_key('tap-alg-a', a));
    j := setstream.emit('tap-alg-a', 'urn:example:event', jsonb_build_object('alg', a));
    RETURN setstream.receive('tap-alg-b', (SELECT token FROM setstream.outbox WHERE jti = j)) = j;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT is(pg_temp.alg_round_trip('ES384'), 'true', 'ES384 SETs round-trip');
SELECT is(pg_temp.alg_round_trip('ES512'), 'true', 'ES512 SETs round-trip');
SELECT is(pg_temp.alg_round_trip('EdDSA'), 'true', 'EdDSA SETs round-trip');
SELECT is(pg_temp.alg_round_trip('RS256'), 'true', 'RS256 SETs round-trip');
SELECT is(pg_temp.alg_round_trip('PS256'), 'true', 'PS256 SETs round-trip');
SELECT is(pg_temp.alg_round_trip('ES256'), 'true', 'ES256 SETs round-trip');

-- ---------------------------------------------------------------- HS256 and alg none (pgcrypto)
-- tap-rs: SSF profile; tap-rp: rfc8417 + allow_unsigned; tap-rq: rfc8417, signed only
SELECT setstream.create_stream('tap-rs', 'https://s-rx.example', ARRAY['https://p-tx.example'], 'https://p-tx.example') IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rp', 'https://p-rx.example', ARRAY['https://p-tx.example'], 'https://p-tx.example', 'rfc8417', true) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-rq', 'https://q-rx.example', ARRAY['https://p-tx.example'], 'https://p-tx.example', profile => 'rfc8417') IS NOT NULL AS ok \gset
SELECT count(setstream.add_key(s, jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(pg_temp.secret())))) AS n
  FROM unnest(ARRAY['tap-rs', 'tap-rp', 'tap-rq']) s \gset

SELECT is(pg_temp.try_receive('tap-rs', pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example'), pg_temp.secret())),
          (pg_temp.claims('https://s-rx.example')::jsonb)->>'jti', 'an HS256 SET made with pgcrypto is accepted (SSF)');
SELECT is(pg_temp.try_receive('tap-rs', pg_temp.hs256('{"alg":"HS256","typ":"application/SecEvent+JWT"}',
                                                    pg_temp.claims('https://s-rx.example', '{"txn": "case"}'), pg_temp.secret())),
          (pg_temp.claims('https://s-rx.example', '{"txn": "case"}')::jsonb)->>'jti',
          'typ is compared case-insensitively, "application/" prefix allowed');
SELECT is((SELECT token FROM setstream.events WHERE stream = 'tap-rs' AND txn = 'case'),
          pg_temp.hs256('{"alg":"HS256","typ":"application/SecEvent+JWT"}', pg_temp.claims('https://s-rx.example', '{"txn": "case"}'), pg_temp.secret()),
          'events.token is the SET byte-exact');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"n": 1}'), pg_temp.wrong_secret())),
                 'SE002', 'invalid_key: the SET''s signature does not verify', 'HS256 with the wrong secret -> SE002');

-- rfc8417 profile: no typ, sub instead of sub_id, exp tolerated
SELECT is(pg_temp.try_receive('tap-rq', pg_temp.hs256('{"alg":"HS256"}',
              pg_temp.claims('https://q-rx.example', '{"sub": "user-1", "exp": 4102444800}', ARRAY['sub_id']), pg_temp.secret())),
          (pg_temp.claims('https://q-rx.example', '{"sub": "user-1", "exp": 4102444800}', ARRAY['sub_id'])::jsonb)->>'jti',
          'profile rfc8417 accepts an HS256 SET without typ, with sub and exp');
SELECT is((SELECT subject FROM setstream.events WHERE stream = 'tap-rq'), NULL::jsonb,
          'a SET without sub_id is stored with subject NULL');
SELECT is(pg_temp.try_receive('tap-rp', pg_temp.unsigned('{"alg":"none"}',
              pg_temp.claims('https://p-rx.example', '{"sub": "user-2"}', ARRAY['sub_id']))),
          (pg_temp.claims('https://p-rx.example', '{"sub": "user-2"}', ARRAY['sub_id'])::jsonb)->>'jti',
          'profile rfc8417 with allow_unsigned accepts an unsigned SET (alg none, no typ, sub)');
SELECT is(pg_temp.try_receive('tap-rq', pg_temp.hs256('{"alg":"HS256"}',
              pg_temp.claims('https://q-rx.example', '{"n": 2}', ARRAY['aud']), pg_temp.secret())),
          (pg_temp.claims('https://q-rx.example', '{"n": 2}', ARRAY['aud'])::jsonb)->>'jti',
          'profile rfc8417 accepts a SET without aud');
-- columns derived from the claims: aud string -> one-element array, toe, several event types
SELECT is(pg_temp.try_receive('tap-rq', pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}',
              pg_temp.claims('https://q-rx.example', '{"toe": 1690000000, "txn": "derived", "events": {"urn:example:one": {}, "urn:example:two": {"a": 1}}}'),
              pg_temp.secret())),
          (pg_temp.claims('https://q-rx.example', '{"toe": 1690000000, "txn": "derived", "events": {"urn:example:one": {}, "urn:example:two": {"a": 1}}}')::jsonb)->>'jti',
          'a SET with toe and two events is received');
SELECT results_eq($$ SELECT aud, iat, toe, (SELECT array_agg(t ORDER BY t) FROM unnest(event_types) t), events
                       FROM setstream.events WHERE stream = 'tap-rq' AND txn = 'derived' $$,
                  $$ VALUES (ARRAY['https://q-rx.example'], to_timestamp(1700000000), to_timestamp(1690000000),
                             ARRAY['urn:example:one', 'urn:example:two'],
                             '{"urn:example:one": {}, "urn:example:two": {"a": 1}}'::jsonb) $$,
                  'events row: a string aud becomes a one-element array; iat, toe and every event type are kept');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rq',
                        pg_temp.unsigned('{"alg":"none"}', pg_temp.claims('https://q-rx.example', '{"n": 3}'))),
                 'SE002', 'invalid_key: unsigned SETs (alg "none") are not accepted on this stream',
                 'alg none on a stream without allow_unsigned -> SE002');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rp',
                        rtrim(pg_temp.unsigned('{"alg":"none"}', pg_temp.claims('https://p-rx.example', '{"n": 4}')), '.')),
                 'SE001', NULL, 'an unsigned SET without the trailing "." -> SE001');

-- SSF profile rules (all correctly signed)
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256"}', pg_temp.claims('https://s-rx.example', '{"n": 5}'), pg_temp.secret())),
                 'SE001', 'invalid_request: the JOSE header has no "typ"; the SSF profile requires "secevent+jwt"',
                 'SSF: a SET without typ -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"JWT"}', pg_temp.claims('https://s-rx.example', '{"n": 6}'), pg_temp.secret())),
                 'SE001', 'invalid_request: the JOSE header "typ" is "JWT", not "secevent+jwt"',
                 'SSF: typ JWT -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"sub": "user-1"}'), pg_temp.secret())),
                 'SE001', 'invalid_request: claim "sub" must not be present under the SSF profile; use "sub_id"',
                 'SSF: a SET with sub -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"exp": 4102444800}'), pg_temp.secret())),
                 'SE001', 'invalid_request: claim "exp" must not be present in a SET under the SSF profile',
                 'SSF: a SET with exp -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{}', ARRAY['sub_id']), pg_temp.secret())),
                 'SE001', 'invalid_request: claim "sub_id" is required under the SSF profile',
                 'SSF: a SET without sub_id -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"sub_id": {"format": "email"}}'), pg_temp.secret())),
                 'SE001', NULL, 'SSF: an invalid sub_id -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{}', ARRAY['aud']), pg_temp.secret())),
                 'SE004', 'invalid_audience: the SET has no "aud"; it must name "https://s-rx.example"',
                 'SSF: a SET without aud -> SE004');

-- malformed SETs
SELECT throws_ok($$ SELECT setstream.receive('tap-rs', 'not-a-jwt') $$, 'SE001', NULL, 'garbage -> SE001');
SELECT throws_ok($$ SELECT setstream.receive('tap-rs', 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d') $$,
                 'SE001', 'invalid_request: encrypted (JWE) SETs are not supported; send a signed SET', 'a JWE (5 parts) -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt","crit":["exp"],"exp":1}', pg_temp.claims('https://s-rx.example', '{"n": 7}'), pg_temp.secret())),
                 'SE001', 'invalid_request: the JOSE header has "crit" extensions, which are not supported', 'a crit header -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}',
                                      rtrim(pg_temp.claims('https://s-rx.example', '{"n": 8}'), '}') || ', "iss": "https://p-tx.example"}', pg_temp.secret())),
                 'SE001', NULL, 'a duplicate member name in the claims -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt","alg":"HS256"}', pg_temp.claims('https://s-rx.example', '{"n": 9}'), pg_temp.secret())),
                 'SE001', NULL, 'a duplicate member name in the header -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}',
                                      replace(pg_temp.claims('https://s-rx.example', '{"n": 10}'), '{"k": "v"}', '{"k": "v", "k": "w"}'), pg_temp.secret())),
                 'SE001', NULL, 'a duplicate member name inside an event payload -> SE001');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"events": {}}'), pg_temp.secret())),
                 'SE001', 'invalid_request: claim "events" must be a JSON object with at least one event', 'empty events -> SE001');

-- the order of the checks: claims < issuer < key < audience < profile
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://s-rx.example', '{"iat": "yesterday", "iss": "https://evil.example"}'), pg_temp.wrong_secret())),
                 'SE001', 'invalid_request: claim "iat" is missing or not a NumericDate',
                 'a bad claim type is reported before a wrong issuer and a bad signature (SE001)');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://wrong-aud.example', '{"iss": "https://evil.example"}'), pg_temp.wrong_secret())),
                 'SE003', 'invalid_issuer: issuer "https://evil.example" is not the issuer this stream accepts',
                 'a wrong issuer is reported before a bad signature and a wrong audience (SE003)');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://wrong-aud.example', '{"sub": "x"}'), pg_temp.wrong_secret())),
                 'SE002', 'invalid_key: the SET''s signature does not verify',
                 'a bad signature is reported before a wrong audience and a profile violation (SE002)');
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rs',
                        pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('https://wrong-aud.example', '{"sub": "x"}'), pg_temp.secret())),
                 'SE004', 'invalid_audience: the SET''s audience does not include "https://s-rx.example"',
                 'a wrong audience is reported before a profile violation (SE004)');

-- alg confusion: HS256 under the kid of an EC public key
SELECT throws_ok(format('SELECT setstream.receive(%L, %L)', 'tap-rf',
                        pg_temp.hs256(jsonb_build_object('alg', 'HS256', 'typ', 'secevent+jwt', 'kid', :'kid_a')::text,
                                      replace(replace(pg_temp.claims('https://b.example'), 'https://p-tx.example', 'https://a.example'), 'hs-', 'conf-'),
                                      convert_to((:'jwk_a'::jsonb)::text, 'UTF8'))),
                 'SE002', 'invalid_key: algorithm "HS256" is not allowed for the key named by kid',
                 'HS256 keyed with the bytes of an EC public key -> SE002');

-- ---------------------------------------------------------------- a role without access to key_secrets verifies too
CREATE ROLE setstream_tap_rx;
GRANT USAGE ON SCHEMA setstream TO setstream_tap_rx;
SELECT setstream.grant_stream('tap-rs', 'setstream_tap_rx', '{receive,read}') IS NULL AS granted \gset
SET LOCAL ROLE setstream_tap_rx;
SELECT pg_temp.try_receive('tap-rs', pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt"}',
                         pg_temp.claims('https://s-rx.example', '{"txn": "as-role"}'), pg_temp.secret())) AS role_jti \gset
RESET ROLE;
SELECT is(:'role_jti', (pg_temp.claims('https://s-rx.example', '{"txn": "as-role"}')::jsonb)->>'jti',
          'a role that cannot read key_secrets can still receive an HS256 SET');
SELECT is((SELECT count(*)::int FROM setstream.events WHERE stream = 'tap-rs' AND jti = :'role_jti' AND txn = 'as-role'), 1,
          '... and it is stored');

SELECT * FROM finish();
ROLLBACK;
