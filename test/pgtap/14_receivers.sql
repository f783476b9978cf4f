-- SSF receivers (issue 13): create_receiver, issue_receiver_token,
-- set_stream_receiver: arguments, what is stored (hashes only), and
-- rights.  (What the listener does with them: test/ssf.)
BEGIN;
SELECT plan(20);

SET LOCAL client_min_messages = warning;

\ir lib/helpers.sql

SELECT is(setstream.create_receiver('tap-r', '{https://rp.example/}', 2)
              OPERATOR(pg_catalog.-) 'owner',
          '{"name": "tap-r", "audience": ["https://rp.example/"], "max_streams": 2}'::jsonb,
          'create_receiver returns the receiver');
SELECT is((SELECT owner::text FROM setstream.receivers WHERE name = 'tap-r'), current_user::text,
          'owned by its creator');
SELECT throws_ok($$SELECT setstream.create_receiver('tap-r')$$, '42710', NULL,
                 'a name is taken once');
SELECT throws_ok($$SELECT setstream.create_receiver('bad name')$$, '22023', NULL,
                 'names as stream names');
SELECT throws_ok($$SELECT setstream.create_receiver('tap-x', NULL, 0)$$, '22023', NULL,
                 'max_streams at least 1');
SELECT throws_ok($$SELECT setstream.create_receiver('tap-x', '{""}')$$, '22023', NULL,
                 'no empty audience');
SELECT is((SELECT count(*)::int FROM setstream.receivers WHERE name LIKE 'tap-%'), 1,
          'the refused ones made nothing');

CREATE TEMP TABLE tok AS SELECT setstream.issue_receiver_token('tap-r') AS t;
SELECT matches((SELECT t FROM tok), '^ssr_[A-Za-z0-9_-]{43}$', 'a 256-bit token');
SELECT is((SELECT token_hash FROM setstream.receiver_tokens WHERE receiver = 'tap-r'),
          (SELECT sha256(convert_to(t, 'UTF8')) FROM tok), 'only its SHA-256 is kept');
SELECT is((SELECT scopes FROM setstream.receiver_tokens WHERE receiver = 'tap-r'),
          '{ssf.read,ssf.manage}'::text[], 'both scopes by default');
SELECT throws_ok($$SELECT setstream.issue_receiver_token('tap-r', '{ssf.admin}')$$, '22023',
                 'unknown receiver token scope "ssf.admin"', 'unknown scope');
SELECT throws_ok($$SELECT setstream.issue_receiver_token('tap-r', '{}')$$, '22023', NULL,
                 'no scope');
SELECT throws_ok($$SELECT setstream.issue_receiver_token('tap-none')$$, '42704', NULL,
                 'no such receiver');
SELECT lives_ok($$SELECT setstream.issue_receiver_token('tap-r', '{ssf.read}')$$, 'read only');
SELECT is((SELECT count(*)::int FROM setstream.receiver_tokens WHERE receiver = 'tap-r'), 2,
          'two tokens now');

DO $$ BEGIN PERFORM setstream.create_stream('tap-s', 'https://b.example/', ARRAY['https://x.example/']); END $$;
SELECT lives_ok($$SELECT setstream.set_stream_receiver('tap-s', 'tap-r')$$, 'attach');
SELECT is((SELECT receiver FROM setstream.streams WHERE name = 'tap-s'), 'tap-r', 'attached');

-- rights: a role allowed to create streams makes receivers of its own
CREATE ROLE tap_rcv_a NOLOGIN;
SELECT setstream.allow_stream_creation('tap_rcv_a');
SELECT is(pg_temp.as_role('tap_rcv_a', $$SELECT setstream.issue_receiver_token('tap-r')$$),
          'ERROR 42704: receiver "tap-r" does not exist', 'another role''s receiver is not there');
SELECT is(pg_temp.as_role('tap_rcv_a', $$SELECT count(*) FROM setstream.receiver_tokens$$),
          'ERROR 42501: permission denied for table receiver_tokens', 'tokens: the owner''s alone');
SELECT is(pg_temp.as_role('tap_rcv_a',
                          $$SELECT setstream.create_receiver('tap-a') ->> 'owner'$$),
          'tap_rcv_a', 'its own receiver');

SELECT * FROM finish();
ROLLBACK;
