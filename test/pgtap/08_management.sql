-- Stream and key management: create/alter/status/drop with their errors
-- (42704 unknown stream, 42710 duplicates, 22023 bad arguments), add_key's
-- accepted and refused JWKs, RFC 7638 thumbprint kids, generate_key algs.
BEGIN;
SELECT plan(62);

CREATE TEMP TABLE jwks_fixture (name text PRIMARY KEY, jwk jsonb);
INSERT INTO jwks_fixture VALUES
 -- RFC 7638 section 3.1 (thumbprint NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs)
 ('rsa2048', '{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256"}'),
 -- RFC 7515 appendix A.3, public part (thumbprint oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U)
 ('ec256', '{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}'),
 -- RFC 8037 appendix A.2 (thumbprint kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k)
 ('ed25519', '{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'),
 -- a 1024-bit RSA modulus
 ('rsa1024', '{"kty":"RSA","n":"vWxLuIjAyXuLPalI5POMHH3eI9_bqIYSFroc1HMmadlU0nd0JfoYuEVE7GF4W-l240VFfw1sW209j6ZuuqVI1P8DwqQVP2pWH7HItAvPV_gaYswtwCZeQ67lnqxr6iQTKTAjmPS1x4SgtjRz7Z_X-Mfnv71tQNnnHfBVV5s8lZk","e":"AQAB"}'),
 ('oct32', '{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}'),
 ('oct16', '{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZg"}');
CREATE FUNCTION pg_temp.fx(n text) RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT jwk FROM jwks_fixture WHERE name = n $$;

-- ---------------------------------------------------------------- create_stream
SELECT results_eq($$ SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
                       FROM setstream.create_stream('tap-m1', 'https://m1.example', ARRAY['https://peer.example']) $$,
                  $$ VALUES ('tap-m1', 'https://m1.example', ARRAY['https://peer.example'], NULL::text, 'ssf', false, 'enabled') $$,
                  'create_stream returns the new row with defaults: no peer_issuer, profile ssf, signed only, enabled');
SELECT is((SELECT count(*)::int FROM setstream.streams WHERE name = 'tap-m1'), 1, 'the stream is stored');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m1', 'https://x.example', ARRAY['https://y.example']) $$,
                 '42710', 'stream "tap-m1" already exists', 'a duplicate stream name -> 42710');
SELECT throws_ok($$ SELECT setstream.create_stream('bad name', 'https://x.example', ARRAY['https://y.example']) $$,
                 '22023', 'invalid stream name "bad name"', 'a stream name with a space -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('a/b', 'https://x.example', ARRAY['https://y.example']) $$,
                 '22023', 'invalid stream name "a/b"', 'a stream name with a slash (it is a URL segment) -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('', 'https://x.example', ARRAY['https://y.example']) $$,
                 '22023', 'invalid stream name ""', 'an empty stream name -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m2', '', ARRAY['https://y.example']) $$,
                 '22023', 'issuer must be a non-empty string', 'an empty issuer -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m2', 'https://x.example', '{}') $$,
                 '22023', 'audience must be a non-empty array of non-empty strings', 'an empty audience -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m2', 'https://x.example', ARRAY['https://y.example', NULL]) $$,
                 '22023', 'audience must be a non-empty array of non-empty strings', 'a NULL audience element -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m2', 'https://x.example', ARRAY['https://y.example'], '') $$,
                 '22023', 'peer_issuer must be NULL or a non-empty string', 'an empty peer_issuer -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m2', 'https://x.example', ARRAY['https://y.example'], NULL, 'oidc') $$,
                 '22023', 'unknown profile "oidc"', 'an unknown profile -> 22023');
SELECT is((SELECT count(*)::int FROM setstream.streams WHERE name = 'tap-m2'), 0, 'refused streams are not created');
SELECT results_eq($$ SELECT profile, allow_unsigned, peer_issuer FROM setstream.create_stream(
                          name => 'tap-m3', issuer => 'https://m3.example', audience => ARRAY['https://p.example'],
                          peer_issuer => 'https://p.example', profile => 'rfc8417', allow_unsigned => true) $$,
                  $$ VALUES ('rfc8417', true, 'https://p.example') $$, 'create_stream with named arguments sets every option');
SELECT is((SELECT peer_jwks_uri FROM setstream.create_stream('tap-m4', 'https://m4.example', ARRAY['https://p.example'],
                                                               peer_jwks_uri => 'https://p.example/jwks.json')),
          'https://p.example/jwks.json', 'create_stream stores peer_jwks_uri');
SELECT is((SELECT peer_jwks_uri FROM setstream.create_stream('tap-m5', 'https://m5.example', ARRAY['https://p.example'],
                                                               peer_jwks_uri => '')),
          NULL, 'create_stream: an empty peer_jwks_uri is none');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-m6', 'https://x.example', ARRAY['https://y.example'],
                                                   peer_jwks_uri => 'file:///etc/passwd') $$,
                 '22023', 'peer_jwks_uri must be an http or https URL', 'create_stream: a peer_jwks_uri that is not a URL -> 22023');

-- ---------------------------------------------------------------- alter_stream, status
SELECT results_eq($$ SELECT issuer, audience, peer_issuer, profile, allow_unsigned
                       FROM setstream.alter_stream('tap-m1', peer_issuer => 'https://peer.example') $$,
                  $$ VALUES ('https://m1.example', ARRAY['https://peer.example'], 'https://peer.example', 'ssf', false) $$,
                  'alter_stream changes what it is given and leaves the NULL arguments unchanged');
SELECT results_eq($$ SELECT audience, profile FROM setstream.alter_stream('tap-m1', audience => ARRAY['https://a1.example', 'https://a2.example'], profile => 'rfc8417') $$,
                  $$ VALUES (ARRAY['https://a1.example', 'https://a2.example'], 'rfc8417') $$,
                  'alter_stream changes audience and profile');
SELECT throws_ok($$ SELECT setstream.alter_stream('tap-m1', profile => 'nope') $$, '22023', 'unknown profile "nope"',
                 'alter_stream validates like create_stream');
SELECT is((SELECT status FROM setstream.set_stream_status('tap-m1', 'paused')), 'paused', 'set_stream_status paused');
SELECT is((SELECT status FROM setstream.disable_stream('tap-m1')), 'disabled', 'disable_stream');
SELECT is((SELECT status FROM setstream.enable_stream('tap-m1')), 'enabled', 'enable_stream');
SELECT throws_ok($$ SELECT setstream.set_stream_status('tap-m1', 'off') $$, '22023', 'unknown stream status "off"',
                 'an unknown status -> 22023');

-- ---------------------------------------------------------------- unknown stream -> 42704 everywhere
SELECT throws_ok($$ SELECT setstream.alter_stream('tap-none', issuer => 'https://x.example') $$, '42704', 'stream "tap-none" does not exist', 'alter_stream: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.set_stream_status('tap-none', 'paused') $$, '42704', 'stream "tap-none" does not exist', 'set_stream_status: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.drop_stream('tap-none') $$, '42704', 'stream "tap-none" does not exist', 'drop_stream: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.add_key('tap-none', '{"kty":"oct","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}') $$, '42704', 'stream "tap-none" does not exist', 'add_key: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.generate_key('tap-none') $$, '42704', 'stream "tap-none" does not exist', 'generate_key: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.revoke_key('tap-none', 'k') $$, '42704', 'stream "tap-none" does not exist', 'revoke_key: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.revoke_token('tap-none', 'sst_x') $$, '42704', 'stream "tap-none" does not exist', 'revoke_token: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.receive('tap-none', 'a.b.c') $$, '42704', 'stream "tap-none" does not exist', 'receive: unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.ingest('tap-none', '{}') $$, '42704', 'stream "tap-none" does not exist', 'ingest: unknown stream -> 42704');

-- ---------------------------------------------------------------- add_key: accepted keys and kids
SELECT is(setstream.add_key('tap-m1', pg_temp.fx('rsa2048')), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
          'without kid, an RSA key is named by its RFC 7638 thumbprint (RFC 7638 example)');
SELECT is(setstream.add_key('tap-m1', pg_temp.fx('ed25519')), 'kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k',
          'without kid, an Ed25519 key is named by its RFC 7638 thumbprint (RFC 8037 example)');
SELECT is(setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"use": "sig", "alg": "ES256"}'), 'oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U',
          'an EC P-256 key with use sig and alg ES256 is accepted');
SELECT is(setstream.add_key('tap-m1', pg_temp.fx('oct32') || '{"alg": "HS256"}'), 'XOBEfwKZzZgziWfq7yZzhEKNQfihBMioCzRbNmqUH0Y',
          'a 32-byte oct key is accepted');
SELECT results_eq($$ SELECT kid, purpose, kty, alg FROM setstream.keys WHERE stream = 'tap-m1' ORDER BY created_at $$,
                  $$ VALUES ('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs', 'verify', 'RSA', 'RS256'),
                            ('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k', 'verify', 'OKP', NULL),
                            ('oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U', 'verify', 'EC', 'ES256'),
                            ('XOBEfwKZzZgziWfq7yZzhEKNQfihBMioCzRbNmqUH0Y', 'verify', 'oct', 'HS256') $$,
                  'added keys are stored as verification keys with kty and alg');
SELECT is((SELECT jwk->>'kid' FROM setstream.keys WHERE stream = 'tap-m1' AND kty = 'RSA'), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
          'keys.jwk carries the kid');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('rsa2048')) $$, '42710',
                 'stream "tap-m1" already has a key with kid "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"',
                 'the same key twice -> 42710');
SELECT is(setstream.add_key('tap-m3', pg_temp.fx('rsa2048')), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
          'the same key may be registered on another stream');

-- explicit kid
SELECT is(setstream.add_key('tap-m3', pg_temp.fx('oct32') || '{"kid": "2011-04-29"}'), '2011-04-29',
          'add_key returns the JWK''s own kid when it has one');
SELECT is((SELECT array_agg(kid ORDER BY kid) FROM setstream.keys WHERE stream = 'tap-m3'),
          ARRAY['2011-04-29', 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs'],
          'the key is stored under the JWK''s own kid');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m3', pg_temp.fx('ed25519') || '{"kid": "2011-04-29"}') $$, '42710',
                 'stream "tap-m3" already has a key with kid "2011-04-29"', 'a duplicate explicit kid -> 42710');

-- ---------------------------------------------------------------- add_key: refused keys (22023)
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('rsa1024')) $$, '22023',
                 'invalid JWK: RSA key of 1024 bits is too weak; at least 2048 bits are required', 'an RSA key under 2048 bits -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('oct16')) $$, '22023',
                 'invalid JWK: oct key of 16 bytes is too weak; HMAC keys need at least 32 bytes', 'an oct key under 32 bytes -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"crv": "P-192"}') $$, '22023',
                 'invalid JWK: EC curve "P-192" is not supported (use P-256, P-384 or P-521)', 'an unsupported EC curve -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"crv": "P-384"}') $$, '22023',
                 'invalid JWK: EC key coordinates "x" and "y" must be 48 bytes of base64url for P-384', 'EC coordinates of the wrong size -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"y": "4Etl6SRW2YilurN5XfgrbfqC3aVFSd8aZTUhGgSumEk"}') $$, '22023',
                 'invalid JWK: the key cannot be used', 'an EC point not on the curve -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ed25519') || '{"crv": "X25519"}') $$, '22023',
                 'invalid JWK: OKP curve "X25519" is not supported (use Ed25519)', 'an OKP curve other than Ed25519 -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', '{"kty": "foo", "x": "y"}') $$, '22023',
                 'invalid JWK: JWK key type "foo" is not supported (use RSA, EC, OKP or oct)', 'an unknown kty -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', '{"x": "y"}') $$, '22023',
                 'invalid JWK: a JWK must be a JSON object with a string member "kty"', 'a JWK without kty -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"use": "enc"}') $$, '22023',
                 'invalid JWK: JWK member "use" must be "sig" for a SET verification key', 'use enc -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"alg": "RS256"}') $$, '22023',
                 'invalid JWK: algorithm "RS256" does not fit this EC key', 'an alg of another key type -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"alg": "ES384"}') $$, '22023',
                 'invalid JWK: algorithm "ES384" does not fit this EC key', 'an alg of another curve -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('oct32') || '{"alg": "RS256"}') $$, '22023',
                 'invalid JWK: algorithm "RS256" does not fit this oct key', 'a public-key alg on an oct key -> 22023');
SELECT throws_ok($$ SELECT setstream.add_key('tap-m1', pg_temp.fx('ec256') || '{"kid": ""}') $$, '22023',
                 'invalid JWK: JWK member "kid" must be a string of 1 to 255 characters', 'an empty kid -> 22023');
SELECT is((SELECT count(*)::int FROM setstream.keys WHERE stream = 'tap-m1'), 4, 'no refused key was stored');

-- ---------------------------------------------------------------- generate_key
SELECT throws_ok($$ SELECT setstream.generate_key('tap-m1', 'HS256') $$, '22023',
                 'cannot generate a key for algorithm "HS256"', 'generate_key refuses HS256 (no shared secrets are generated)');
SELECT setstream.generate_key('tap-m1', 'ES512') AS gen512 \gset
SELECT results_eq(format($$ SELECT purpose, kty, alg, jwk FROM setstream.keys WHERE stream = 'tap-m1' AND kid = %L $$, (:'gen512'::jsonb)->>'kid'),
                  format($$ VALUES ('sign', 'EC', 'ES512', %L::jsonb) $$, :'gen512'),
                  'generate_key stores a signing key whose public JWK is what it returned');

-- ---------------------------------------------------------------- drop_stream cascades
SELECT setstream.issue_token('tap-m1') IS NOT NULL AS ok \gset
SELECT setstream.emit('tap-m1', 'urn:example:t', '{}') IS NOT NULL AS ok \gset
SELECT lives_ok($$ SELECT setstream.drop_stream('tap-m1') $$, 'drop_stream drops a stream');
SELECT is((SELECT count(*)::int FROM (
              SELECT name FROM setstream.streams WHERE name = 'tap-m1'
              UNION ALL SELECT stream FROM setstream.keys WHERE stream = 'tap-m1'
              UNION ALL SELECT stream FROM setstream.key_secrets WHERE stream = 'tap-m1'
              UNION ALL SELECT stream FROM setstream.tokens WHERE stream = 'tap-m1'
              UNION ALL SELECT stream FROM setstream.outbox WHERE stream = 'tap-m1'
              UNION ALL SELECT stream FROM setstream.events WHERE stream = 'tap-m1') x),
          0, 'drop_stream removes its keys, secrets, tokens, outbox and events');
SELECT is((SELECT count(*)::int FROM setstream.keys WHERE stream = 'tap-m3'), 2, 'other streams keep their keys');

SELECT * FROM finish();
ROLLBACK;
