--
-- 01_streams: create_stream, alter_stream, set_stream_status,
-- disable_stream, enable_stream, drop_stream, and every validation error
-- of the stream management functions.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS setstream;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- try(sql): run a statement; 'ok', or "SQLSTATE: message [detail] [hint]".
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

-- leftovers of an earlier run against the same database
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's01%';
END $$;

-- ------------------------------------------------------------------
-- create_stream: defaults and explicit arguments
-- ------------------------------------------------------------------
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status,
       created_at IS NOT NULL AS has_created_at
  FROM setstream.create_stream('s01-basic', 'https://db.example/s01',
                               ARRAY['https://rp.example/s01']);

SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.create_stream('s01.full_~-2', 'https://db.example/full',
                               ARRAY['https://a.example', 'https://b.example'],
                               peer_issuer => 'https://idp.example',
                               profile => 'rfc8417',
                               allow_unsigned => true);

-- allow_unsigned => NULL means false (the column is NOT NULL)
SELECT name, allow_unsigned
  FROM setstream.create_stream('s01-nullflag', 'https://db.example/n',
                               ARRAY['https://rp.example'], NULL, 'ssf', NULL);

-- names: 1 to 128 characters of [A-Za-z0-9._~-], first a letter or digit
SELECT name FROM setstream.create_stream('s01' || repeat('x', 125), 'https://i', ARRAY['a']);
SELECT length(name) FROM setstream.streams WHERE name LIKE 's01xx%';

SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.streams WHERE name LIKE 's01%' ORDER BY name COLLATE "C";

-- ------------------------------------------------------------------
-- create_stream: every validation error
-- ------------------------------------------------------------------
-- duplicate name (42710)
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-basic', 'https://x', ARRAY['https://y'])$$);
-- a failed create leaves the existing stream unchanged
SELECT issuer, audience FROM setstream.streams WHERE name = 's01-basic';

-- invalid names (22023)
SELECT pg_temp.try($$SELECT setstream.create_stream('', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream(NULL, 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('-s01', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('.s01', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01/a', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01 a', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01%', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01é', 'https://x', ARRAY['a'])$$);
SELECT pg_temp.try(format($$SELECT setstream.create_stream(%L, 'https://x', ARRAY['a'])$$,
                          's01' || repeat('x', 126)));

-- issuer (22023)
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', NULL, ARRAY['a'])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', '', ARRAY['a'])$$);

-- audience (22023)
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', NULL)$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY[]::text[])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a', NULL])$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a', ''])$$);

-- peer_issuer (22023)
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a'], '')$$);

-- profile (22023, with a hint)
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a'], NULL, 'jwt')$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a'], NULL, 'SSF')$$);
SELECT pg_temp.try($$SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a'], NULL, NULL)$$);

-- none of the failed calls created anything
SELECT count(*) FROM setstream.streams WHERE name = 's01-e';

-- the plain error display, with its DETAIL and HINT
SELECT setstream.create_stream('bad name', 'https://x', ARRAY['a']);
SELECT setstream.create_stream('s01-e', 'https://x', ARRAY['a'], NULL, 'jwt');
SELECT setstream.create_stream('s01-basic', 'https://x', ARRAY['a']);

-- ------------------------------------------------------------------
-- alter_stream: NULL leaves a setting unchanged
-- ------------------------------------------------------------------
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.alter_stream('s01-basic');
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.alter_stream('s01-basic', issuer => 'https://db.example/s01-v2');
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.alter_stream('s01-basic', audience => ARRAY['https://rp1', 'https://rp2'],
                              peer_issuer => 'https://idp.example/s01');
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.alter_stream('s01-basic', profile => 'rfc8417', allow_unsigned => true);
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.alter_stream('s01-basic', profile => 'ssf', allow_unsigned => false);
-- the stored row agrees with what alter_stream returned
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.streams WHERE name = 's01-basic';

-- alter_stream errors
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-nosuch', issuer => 'https://x')$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream(NULL)$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', issuer => '')$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', audience => ARRAY[]::text[])$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', audience => ARRAY[NULL]::text[])$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', audience => ARRAY[''])$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', peer_issuer => '')$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s01-basic', profile => 'oidc')$$);
-- nothing changed by the failed calls
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.streams WHERE name = 's01-basic';

-- ------------------------------------------------------------------
-- status: set_stream_status, disable_stream, enable_stream
-- ------------------------------------------------------------------
SELECT name, status FROM setstream.set_stream_status('s01-basic', 'paused');
SELECT name, status FROM setstream.disable_stream('s01-basic');
SELECT status FROM setstream.streams WHERE name = 's01-basic';
SELECT name, status FROM setstream.enable_stream('s01-basic');
SELECT name, status FROM setstream.set_stream_status('s01-basic', 'disabled');
SELECT name, status FROM setstream.set_stream_status('s01-basic', 'enabled');
-- a status change leaves the other settings alone
SELECT name, issuer, audience, peer_issuer, profile, allow_unsigned, status
  FROM setstream.streams WHERE name = 's01-basic';

SELECT pg_temp.try($$SELECT setstream.set_stream_status('s01-basic', 'stopped')$$);
SELECT pg_temp.try($$SELECT setstream.set_stream_status('s01-basic', 'Enabled')$$);
SELECT pg_temp.try($$SELECT setstream.set_stream_status('s01-basic', NULL)$$);
SELECT pg_temp.try($$SELECT setstream.set_stream_status('s01-nosuch', 'paused')$$);
SELECT pg_temp.try($$SELECT setstream.disable_stream('s01-nosuch')$$);
SELECT pg_temp.try($$SELECT setstream.enable_stream('s01-nosuch')$$);
SELECT status FROM setstream.streams WHERE name = 's01-basic';
SELECT setstream.set_stream_status('s01-basic', 'stopped');

-- ------------------------------------------------------------------
-- drop_stream
-- ------------------------------------------------------------------
SELECT setstream.drop_stream('s01-nullflag');
SELECT count(*) FROM setstream.streams WHERE name = 's01-nullflag';
SELECT pg_temp.try($$SELECT setstream.drop_stream('s01-nullflag')$$);
SELECT pg_temp.try($$SELECT setstream.drop_stream(NULL)$$);
-- a NULL stream name is an invalid argument (22023) wherever a stream is
-- looked up by name in SQL; the C functions are STRICT (NULL in, NULL out)
SELECT pg_temp.try($$SELECT setstream.set_stream_status(NULL, 'enabled')$$);
SELECT pg_temp.try($$SELECT setstream.disable_stream(NULL)$$);
SELECT pg_temp.try($$SELECT setstream.revoke_token(NULL, 'sst_x')$$);
SELECT pg_temp.try($$SELECT setstream.revoke_key(NULL, 'kid')$$);
SELECT setstream.issue_token(NULL) IS NULL AS issue_token_strict;
SELECT setstream.drop_stream('s01-nosuch');

-- dropping a stream drops its keys, tokens, events and outbox
SELECT setstream.generate_key('s01-basic') ? 'kid' AS generated;
SELECT length(setstream.issue_token('s01-basic')) AS token_length;
SELECT setstream.emit('s01-basic', 'https://schemas.openid.net/secevent/ssf/event-type/verification', '{}') IS NOT NULL AS emitted;
SELECT (SELECT count(*) FROM setstream.keys WHERE stream = 's01-basic') AS keys,
       (SELECT count(*) FROM setstream.key_secrets WHERE stream = 's01-basic') AS secrets,
       (SELECT count(*) FROM setstream.tokens WHERE stream = 's01-basic') AS tokens,
       (SELECT count(*) FROM setstream.outbox WHERE stream = 's01-basic') AS outbox;
SELECT setstream.drop_stream('s01-basic');
SELECT (SELECT count(*) FROM setstream.keys WHERE stream = 's01-basic') AS keys,
       (SELECT count(*) FROM setstream.key_secrets WHERE stream = 's01-basic') AS secrets,
       (SELECT count(*) FROM setstream.tokens WHERE stream = 's01-basic') AS tokens,
       (SELECT count(*) FROM setstream.outbox WHERE stream = 's01-basic') AS outbox;

-- a name can be used again once its stream is gone
SELECT name, issuer FROM setstream.create_stream('s01-basic', 'https://again', ARRAY['a']);

-- ------------------------------------------------------------------
-- error_code: the RFC 8935 code of each setstream SQLSTATE
-- ------------------------------------------------------------------
SELECT s AS sqlstate, setstream.error_code(s) AS code
  FROM unnest(ARRAY['SE001', 'SE002', 'SE003', 'SE004', 'SE005', 'SE006',
                    'SE007', 'SE008', '42704', '']) AS s;
SELECT setstream.error_code(NULL) IS NULL AS null_for_null;

-- clean up
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's01%';
END $$;
SELECT count(*) FROM setstream.streams WHERE name LIKE 's01%';
