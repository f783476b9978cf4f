-- Privileges and private key material: key_secrets is readable by the
-- extension owner only, nothing is granted to PUBLIC, and no private key
-- member (nor an oct secret) ever appears in keys.jwk, generate_key's
-- result or jwks().  A role that may use the other tables can still sign,
-- verify and register secrets: the C code reads key_secrets as the owner.
BEGIN;
SELECT plan(34);

SET LOCAL client_min_messages = warning;

\ir lib/helpers.sql

CREATE TEMP TABLE private_members (m text);
INSERT INTO private_members VALUES ('d'), ('p'), ('q'), ('dp'), ('dq'), ('qi'), ('oth'), ('k');

-- ---------------------------------------------------------------- PUBLIC
SELECT is((SELECT count(*)::int
             FROM pg_class c,
                  aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
            WHERE c.relnamespace = 'setstream'::regnamespace
              AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
              AND a.grantee = 0),
          0, 'no table, view or sequence of schema setstream grants anything to PUBLIC');

CREATE ROLE setstream_tap_nobody;

SELECT is((SELECT count(*)::int
             FROM pg_class c
            WHERE c.relnamespace = 'setstream'::regnamespace
              AND c.relkind IN ('r', 'p', 'v', 'm')
              AND has_table_privilege('setstream_tap_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE')),
          0, 'a fresh role has no privilege on any setstream table');

SELECT is(has_table_privilege('setstream_tap_nobody', 'setstream.key_secrets', 'SELECT'), false,
          'a fresh role cannot SELECT setstream.key_secrets');

-- Even with USAGE on the schema and SELECT on every other table.
GRANT USAGE ON SCHEMA setstream TO setstream_tap_nobody;
GRANT SELECT ON setstream.streams, setstream.keys, setstream.tokens, setstream.events,
                setstream.outbox TO setstream_tap_nobody;
SELECT is(pg_temp.as_role('setstream_tap_nobody', 'SELECT count(*)::text FROM setstream.key_secrets'),
          'ERROR 42501: permission denied for table key_secrets',
          'a role with schema usage and SELECT on the other tables still cannot read key_secrets');
SELECT is(pg_temp.as_role('setstream_tap_nobody', 'SELECT count(*)::text FROM setstream.keys'),
          '0', 'the same role can read setstream.keys (the check above is about key_secrets only)');

-- ---------------------------------------------------------------- generated keys
SELECT setstream.create_stream('tap-priv-a', 'https://a.example', ARRAY['https://b.example']) IS NOT NULL AS created \gset
SELECT setstream.create_stream('tap-priv-b', 'https://b.example', ARRAY['https://a.example'],
                               'https://a.example') IS NOT NULL AS created \gset

CREATE TEMP TABLE gen (alg text, jwk jsonb);
INSERT INTO gen
SELECT alg, setstream.generate_key('tap-priv-a', alg)
  FROM unnest(ARRAY['ES256', 'ES384', 'ES512', 'EdDSA', 'RS256', 'PS256']) alg;

SELECT is((SELECT array_agg(g.alg ORDER BY g.alg) FROM gen g
            WHERE EXISTS (SELECT 1 FROM private_members p WHERE g.jwk ? p.m)),
          NULL, 'generate_key returns no private member (d, p, q, dp, dq, qi, oth, k) for any alg');
SELECT is((SELECT array_agg(g.alg ORDER BY g.alg) FROM gen g
            WHERE g.jwk->>'alg' = g.alg AND g.jwk->>'use' = 'sig' AND coalesce(g.jwk->>'kid', '') <> ''),
          ARRAY['ES256', 'ES384', 'ES512', 'EdDSA', 'PS256', 'RS256'],
          'generate_key returns the public JWK with kid, alg and use = sig');
SELECT is((SELECT array_agg(g.alg ORDER BY g.alg) FROM gen g
            WHERE (g.jwk->>'kty', coalesce(g.jwk->>'crv', '')) IN
                  (('EC', 'P-256'), ('EC', 'P-384'), ('EC', 'P-521'), ('OKP', 'Ed25519'), ('RSA', ''))),
          ARRAY['ES256', 'ES384', 'ES512', 'EdDSA', 'PS256', 'RS256'],
          'generated keys have the key type and curve of their alg');
SELECT is((SELECT count(*)::int FROM setstream.keys k
            WHERE EXISTS (SELECT 1 FROM private_members p WHERE k.jwk ? p.m)),
          0, 'no row of setstream.keys holds a private member');
SELECT is((SELECT count(*)::int FROM setstream.keys k JOIN gen g ON k.jwk = g.jwk
            WHERE k.stream = 'tap-priv-a' AND k.purpose = 'sign'),
          6, 'keys.jwk is exactly the public JWK that generate_key returned');
SELECT is(setstream.generate_key('tap-priv-a') - 'kid' - 'x' - 'y',
          '{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig"}'::jsonb,
          'generate_key defaults to ES256');

-- the private scalars are kept (owner-only) and appear in no other table
SELECT is((SELECT count(*)::int FROM setstream.key_secrets s JOIN gen g ON s.kid = g.jwk->>'kid'
            WHERE s.stream = 'tap-priv-a' AND s.jwk::jsonb ? 'd'),
          6, 'every generated key has its private half in key_secrets');
SELECT is((SELECT count(*)::int
             FROM setstream.key_secrets s,
                  (SELECT 'streams' t, row_to_json(x)::text r FROM setstream.streams x
                   UNION ALL SELECT 'keys', row_to_json(x)::text FROM setstream.keys x
                   UNION ALL SELECT 'tokens', row_to_json(x)::text FROM setstream.tokens x
                   UNION ALL SELECT 'events', row_to_json(x)::text FROM setstream.events x
                   UNION ALL SELECT 'outbox', row_to_json(x)::text FROM setstream.outbox x) rows
            WHERE strpos(rows.r, s.jwk::jsonb->>'d') > 0),
          0, 'no private scalar "d" appears in streams, keys, tokens, events or outbox');

-- ---------------------------------------------------------------- jwks()
SELECT is((SELECT count(*)::int FROM jsonb_array_elements(setstream.jwks()->'keys') j
            WHERE EXISTS (SELECT 1 FROM private_members p WHERE j ? p.m)),
          0, 'jwks() holds no private member');
SELECT ok((SELECT bool_and(setstream.jwks()->'keys' @> jsonb_build_array(g.jwk)) FROM gen g),
          'jwks() serves the public JWK of every active signing key');

-- oct secrets: stored for verification, never shown
SELECT setstream.add_key('tap-priv-b', '{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXMh"}') AS oct_kid \gset
SELECT is((SELECT jwk ? 'k' FROM setstream.keys WHERE stream = 'tap-priv-b' AND kid = :'oct_kid'),
          false, 'keys.jwk of an oct key has no "k"');
SELECT is((SELECT count(*)::int FROM setstream.keys
            WHERE strpos(jwk::text, 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXMh') > 0),
          0, 'the oct secret appears nowhere in setstream.keys');
SELECT is((SELECT s.jwk::jsonb->>'k' FROM setstream.key_secrets s
            WHERE s.stream = 'tap-priv-b' AND s.kid = :'oct_kid'),
          'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXMh', 'the oct secret is kept in key_secrets');
SELECT is(strpos(setstream.jwks()::text, 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXMh'), 0,
          'jwks() does not serve oct secrets');
SELECT ok(NOT (setstream.jwks()->'keys' @> jsonb_build_array(jsonb_build_object('kid', :'oct_kid'))),
          'jwks() serves no verification key');

-- revoked signing keys leave jwks()
SELECT setstream.revoke_key('tap-priv-a', (SELECT jwk->>'kid' FROM gen WHERE alg = 'EdDSA')) IS NULL AS revoked \gset
SELECT ok(NOT (setstream.jwks()->'keys' @> (SELECT jsonb_build_array(jsonb_build_object('kid', jwk->>'kid')) FROM gen WHERE alg = 'EdDSA')),
          'a revoked signing key is no longer in jwks()');
SELECT ok((setstream.jwks()->'keys' @> (SELECT jsonb_build_array(jsonb_build_object('kid', jwk->>'kid')) FROM gen WHERE alg = 'ES384')),
          'the other signing keys stay in jwks()');

-- add_key refuses private material
SELECT throws_ok($$
    SELECT setstream.add_key('tap-priv-b', jsonb_build_object('kty', 'EC', 'crv', 'P-256',
        'x', 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
        'y', 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
        'd', 'jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI'))
$$, '22023', 'invalid JWK: the JWK holds private key material (member "d"); register the public key only',
   'add_key refuses an EC JWK with "d"');
SELECT throws_ok($$
    SELECT setstream.add_key('tap-priv-b', (SELECT jwk FROM gen WHERE alg = 'RS256') - 'kid'
        || '{"p": "AAAA"}')
$$, '22023', 'invalid JWK: the JWK holds private key material (member "p"); register the public key only',
   'add_key refuses an RSA JWK with "p"');
SELECT is((SELECT count(*)::int FROM setstream.keys WHERE stream = 'tap-priv-b'), 1,
          'a refused JWK is not stored');

-- ---------------------------------------------------------------- a non-owner role that uses the API
CREATE ROLE setstream_tap_app;
-- the grants of a role that creates and uses streams of its own (README, Privileges)
SELECT setstream.allow_stream_creation('setstream_tap_app') IS NULL AS allowed \gset

SELECT is(pg_temp.as_role('setstream_tap_app', $q$
    SELECT setstream.create_stream('tap-priv-c', 'https://c.example', ARRAY['https://d.example'])::text IS NOT NULL
$q$), 'true', 'a role without access to key_secrets can create a stream');
SELECT is(pg_temp.as_role('setstream_tap_app', $q$
    SELECT (setstream.generate_key('tap-priv-c') ? 'd')::text
$q$), 'false', 'that role can generate a signing key (its private half stored as the owner)');
SELECT is((SELECT count(*)::int FROM setstream.key_secrets WHERE stream = 'tap-priv-c'), 1,
          'the private half of that key went to key_secrets');
SELECT pg_temp.as_role('setstream_tap_app', $q$
    SELECT setstream.emit('tap-priv-c', 'urn:example:event', '{}')
$q$) AS emitted \gset
SELECT is((SELECT jti FROM setstream.outbox WHERE stream = 'tap-priv-c'), :'emitted',
          'that role can emit (signing reads key_secrets as the owner)');
SELECT pg_temp.as_role('setstream_tap_app', $q$
    SELECT setstream.add_key('tap-priv-c', '{"kty":"oct","k":"b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0zMmJ5dGVzIQ"}')
$q$) AS added \gset
SELECT is((SELECT kid FROM setstream.keys WHERE stream = 'tap-priv-c' AND kty = 'oct'), :'added',
          'that role can register an oct secret');
SELECT is((SELECT count(*)::int FROM setstream.key_secrets WHERE stream = 'tap-priv-c'), 2,
          'the oct secret went to key_secrets');
SELECT is(pg_temp.as_role('setstream_tap_app', 'SELECT count(*)::text FROM setstream.key_secrets'),
          'ERROR 42501: permission denied for table key_secrets',
          'that role still cannot read key_secrets');
SELECT is(pg_temp.as_role('setstream_tap_app', $q$
    SELECT jsonb_path_exists(setstream.jwks(), '$.keys[*] ? (exists(@.d) || exists(@.k))')::text
$q$), 'false', 'jwks() called by that role serves no private member');
SELECT is(pg_temp.as_role('setstream_tap_app', 'SELECT current_user::text'), 'setstream_tap_app',
          'the helper really switches role (sanity check of the tests above)');

SELECT * FROM finish();
ROLLBACK;
