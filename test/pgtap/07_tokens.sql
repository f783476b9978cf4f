-- Bearer tokens: issue_token returns "sst_" + 43 base64url characters
-- (256 random bits); only the SHA-256 is stored; check_token is true for
-- the token's own stream only, false after revoke and for garbage; several
-- tokens of one stream are valid together.
BEGIN;
SELECT plan(26);

SELECT setstream.create_stream('tap-tk1', 'https://t1.example', ARRAY['https://peer.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-tk2', 'https://t2.example', ARRAY['https://peer.example']) IS NOT NULL AS ok \gset

SELECT setstream.issue_token('tap-tk1') AS t1 \gset
SELECT setstream.issue_token('tap-tk1') AS t2 \gset
SELECT setstream.issue_token('tap-tk2') AS u1 \gset

SELECT ok(:'t1' ~ '^sst_[A-Za-z0-9_-]{43}$', 'issue_token returns sst_ followed by 43 base64url characters');
SELECT isnt(:'t1'::text, :'t2'::text, 'two tokens of a stream differ');
SELECT is((SELECT count(*)::int FROM setstream.tokens WHERE stream = 'tap-tk1'), 2, 'each issued token has a row');
SELECT is((SELECT count(*)::int FROM setstream.tokens WHERE stream = 'tap-tk1'
              AND token_hash IN (sha256(convert_to(:'t1', 'UTF8')), sha256(convert_to(:'t2', 'UTF8')))),
          2, 'tokens.token_hash is the SHA-256 of the token');
SELECT is((SELECT count(*)::int FROM setstream.tokens t
            WHERE strpos(row_to_json(t)::text, substr(:'t1', 5)) > 0
               OR strpos(row_to_json(t)::text, substr(:'t2', 5)) > 0
               OR strpos(row_to_json(t)::text, substr(:'u1', 5)) > 0),
          0, 'the clear-text token is stored nowhere in setstream.tokens');

SELECT is(setstream.check_token('tap-tk1', :'t1'), true, 'check_token: a token is valid for its stream');
SELECT is(setstream.check_token('tap-tk1', :'t2'), true, 'check_token: a second token of the same stream is valid too');
SELECT is(setstream.check_token('tap-tk2', :'u1'), true, 'check_token: the other stream''s token is valid for it');
SELECT is(setstream.check_token('tap-tk2', :'t1'), false, 'check_token: a token of one stream opens no other stream');
SELECT is(setstream.check_token('tap-tk1', :'u1'), false, 'check_token: ... in either direction');
SELECT is(setstream.check_token('tap-tk1', 'garbage'), false, 'check_token: garbage is false');
SELECT is(setstream.check_token('tap-tk1', ''), false, 'check_token: the empty string is false');
SELECT is(setstream.check_token('tap-tk1', substr(:'t1', 5)), false, 'check_token: the token without its sst_ prefix is false');
SELECT is(setstream.check_token('tap-tk1', left(:'t1', -1)), false, 'check_token: a truncated token is false');
SELECT is(setstream.check_token('tap-tk1', :'t1' || 'x'), false, 'check_token: a token with a trailing character is false');
SELECT is(setstream.check_token('tap-tk1', upper(:'t1')), false, 'check_token: tokens are case-sensitive');
SELECT is(setstream.check_token('tap-tk1', encode(sha256(convert_to(:'t1', 'UTF8')), 'hex')), false,
          'check_token: the stored hash itself is not a token');

-- revoke by token
SELECT setstream.revoke_token('tap-tk1', :'t1') IS NULL AS revoked \gset
SELECT is(setstream.check_token('tap-tk1', :'t1'), false, 'check_token: false after revoke_token(stream, token)');
SELECT is(setstream.check_token('tap-tk1', :'t2'), true, 'revoking one token leaves the other valid');
SELECT ok((SELECT revoked_at IS NOT NULL FROM setstream.tokens WHERE token_hash = sha256(convert_to(:'t1', 'UTF8'))),
          'the revoked token has revoked_at');
SELECT throws_ok(format('SELECT setstream.revoke_token(%L, %L)', 'tap-tk1', :'t1'), '42704', NULL,
                 'revoking an already revoked token -> 42704');
SELECT throws_ok(format('SELECT setstream.revoke_token(%L, %L)', 'tap-tk2', :'t2'), '42704', NULL,
                 'a token cannot be revoked through another stream');
SELECT is(setstream.check_token('tap-tk1', :'t2'), true, '... and stays valid');

-- revoke by id
SELECT setstream.revoke_token('tap-tk1', (SELECT id FROM setstream.tokens WHERE token_hash = sha256(convert_to(:'t2', 'UTF8')))) IS NULL AS revoked \gset
SELECT is(setstream.check_token('tap-tk1', :'t2'), false, 'check_token: false after revoke_token(stream, id)');
SELECT is(setstream.check_token('tap-tk2', :'u1'), true, 'revoking tap-tk1''s tokens leaves tap-tk2''s token valid');

SELECT throws_ok($$ SELECT setstream.issue_token('tap-tk-none') $$, '42704', 'stream "tap-tk-none" does not exist',
                 'issue_token for an unknown stream -> 42704');

SELECT * FROM finish();
ROLLBACK;
