-- The poll client's configuration (set_source, issue 17): the sources row,
-- the owner-only credential store, arguments, and rights.  (What the
-- sender does with them is tested by test/outbound/test_poll_client.py.)
BEGIN;
SELECT plan(27);

SET LOCAL client_min_messages = warning;

\ir lib/helpers.sql

DO $$ BEGIN PERFORM setstream.create_stream('src', 'https://b.example/', ARRAY['https://x.example/'],
                                            'https://a.example/'); END $$;

SELECT lives_ok($$SELECT setstream.set_source('src', 'poll', 'https://a.example/poll', 'Bearer s3cr3t-src')$$,
                'poll with an endpoint and credentials');
SELECT is((SELECT row(method, endpoint_url, state, failures, received, rejected)::text
             FROM setstream.sources WHERE stream = 'src'),
          '(poll,https://a.example/poll,active,0,0,0)', 'the sources row');
SELECT is((SELECT authorization_header FROM setstream.source_secrets WHERE stream = 'src'),
          'Bearer s3cr3t-src', 'the header is kept in source_secrets');
SELECT is((SELECT count(*)::int FROM setstream.sources s WHERE s::text LIKE '%s3cr3t%'),
          0, 'and not in sources');
SELECT is((SELECT setstream.set_source('src', 'poll', 'https://a.example/poll')::text LIKE '%s3cr3t%'),
          false, 'set_source returns no secret');
SELECT is((SELECT count(*)::int FROM setstream.source_secrets WHERE stream = 'src'),
          0, 'set_source without a header removes the old one');
SELECT lives_ok($$SELECT setstream.set_source('src', 'urn:ietf:rfc:8936', 'http://a.example/p')$$,
                'the poll URN');
SELECT is((SELECT row(method, endpoint_url)::text FROM setstream.sources WHERE stream = 'src'),
          '(poll,http://a.example/p)', 'is poll, with the new endpoint');

SELECT throws_ok($$SELECT setstream.set_source('src', 'push', 'https://a.example/')$$,
                 '22023', NULL, 'push is not a source method');
SELECT throws_ok($$SELECT setstream.set_source('src', NULL, 'https://a.example/')$$,
                 '22023', NULL, 'a method is needed');
SELECT throws_ok($$SELECT setstream.set_source('src', 'poll', NULL)$$,
                 '22023', NULL, 'poll needs an endpoint_url');
SELECT throws_ok($$SELECT setstream.set_source('src', 'poll', 'ftp://a.example/')$$,
                 '22023', NULL, 'http or https only');
SELECT throws_ok($$SELECT setstream.set_source('src', 'poll', 'https://a.example/', E'Bearer x\r\nHost: evil')$$,
                 '22023', NULL, 'no line break in the header');
SELECT throws_ok($$SELECT setstream.set_source('src', 'none', 'https://a.example/')$$,
                 '22023', NULL, 'none takes no endpoint');
SELECT throws_ok($$SELECT setstream.set_source('no-such-stream', 'poll', 'https://a.example/')$$,
                 '42704', NULL, 'an unknown stream');

-- set_source again lifts a suspension
UPDATE setstream.sources SET state = 'suspended', suspended_reason = 'http_403: HTTP 403',
       failures = 3 WHERE stream = 'src';
SELECT lives_ok($$SELECT setstream.set_source('src', 'poll', 'http://a.example/p')$$, 'set_source again');
SELECT is((SELECT row(state, suspended_reason, backoff_until, failures)::text
             FROM setstream.sources WHERE stream = 'src'), '(active,,,0)', 'active again');
SELECT throws_ok($$UPDATE setstream.sources SET state = 'backoff' WHERE stream = 'src'$$,
                 '23514', NULL, 'backoff needs backoff_until');

-- a role with every right on another stream sees neither the row nor the secret
CREATE ROLE setstream_tap_src;
DO $$
BEGIN
    PERFORM setstream.allow_stream_creation('setstream_tap_src');
    PERFORM setstream.set_source('src', 'poll', 'https://a.example/poll', 'Bearer s3cr3t-src');
END
$$;
SELECT is(pg_temp.as_role('setstream_tap_src', 'SELECT count(*)::text FROM setstream.sources'),
          '0', 'sources of streams a role holds no right on are invisible');
SELECT is(pg_temp.as_role('setstream_tap_src', 'SELECT count(*)::text FROM setstream.source_secrets'),
          'ERROR 42501: permission denied for table source_secrets',
          'source_secrets is the extension owner''s alone');
SELECT matches(pg_temp.as_role('setstream_tap_src',
                            $q$SELECT setstream.set_source('src', 'poll', 'https://evil.example/')::text$q$),
            '^ERROR 42704: stream "src" does not exist', 'set_source on a stream a role holds no right on: it does not exist for it');

-- grant_stream gives manage set_source, and any right the row
CREATE ROLE setstream_tap_src_mgr;
CREATE ROLE setstream_tap_src_rd;
DO $$
BEGIN
    PERFORM setstream.grant_stream('src', 'setstream_tap_src_mgr', '{manage}');
    PERFORM setstream.grant_stream('src', 'setstream_tap_src_rd', '{read}');
END
$$;
SELECT is(pg_temp.as_role('setstream_tap_src_mgr',
                          $q$SELECT (setstream.set_source('src', 'poll', 'https://m.example/')).name$q$),
          'src', 'manage may call set_source');
SELECT is(pg_temp.as_role('setstream_tap_src_rd', 'SELECT endpoint_url FROM setstream.sources'),
          'https://m.example/', 'read sees the source');
SELECT matches(pg_temp.as_role('setstream_tap_src_rd',
                               $q$SELECT setstream.set_source('src', 'none', NULL)::text$q$),
               '^ERROR 42501', 'read may not call set_source');

-- none stops it, and forgets the header
SELECT lives_ok($$SELECT setstream.set_source('src', 'none', NULL)$$, 'none');
SELECT is((SELECT count(*)::int FROM setstream.sources WHERE stream = 'src'), 0, 'the source is gone');
SELECT is((SELECT count(*)::int FROM setstream.source_secrets WHERE stream = 'src'), 0,
          'and its header');

SELECT * FROM finish();
ROLLBACK;
