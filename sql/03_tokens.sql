--
-- 03_tokens: issue_token, check_token, revoke_token (by token and by id):
-- the token format, only a SHA-256 of it stored, and a token of one stream
-- opens no other.
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

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's03%';
END $$;

SELECT name FROM setstream.create_stream('s03-a', 'https://db.example/s03-a', ARRAY['https://rp.example/a']);
SELECT name FROM setstream.create_stream('s03-b', 'https://db.example/s03-b', ARRAY['https://rp.example/b']);

-- ------------------------------------------------------------------
-- issue_token: "sst_" and 43 base64url characters (256 random bits)
-- ------------------------------------------------------------------
SELECT setstream.issue_token('s03-a') AS a1 \gset
SELECT setstream.issue_token('s03-a') AS a2 \gset
SELECT setstream.issue_token('s03-b') AS b1 \gset
-- (tokens are random: they are never printed, only checked)
SELECT :'a1' ~ '^sst_[A-Za-z0-9_-]{43}$' AS a1_ok,
       :'a2' ~ '^sst_[A-Za-z0-9_-]{43}$' AS a2_ok,
       :'b1' ~ '^sst_[A-Za-z0-9_-]{43}$' AS b1_ok,
       :'a1' <> :'a2' AND :'a1' <> :'b1' AND :'a2' <> :'b1' AS all_different;
-- the 43 characters carry 32 bytes
SELECT length(decode(rpad(translate(substr(:'a1', 5), '-_', '+/'), 44, '='), 'base64')) AS random_bytes;

-- ------------------------------------------------------------------
-- only the SHA-256 of each token is stored
-- ------------------------------------------------------------------
SELECT stream, length(token_hash) AS hash_bytes, revoked_at IS NULL AS active,
       created_at IS NOT NULL AS has_created
  FROM setstream.tokens WHERE stream LIKE 's03%' ORDER BY stream, id;
SELECT (SELECT count(*) FROM setstream.tokens WHERE token_hash = sha256(convert_to(:'a1', 'UTF8')) AND stream = 's03-a') AS a1_hash,
       (SELECT count(*) FROM setstream.tokens WHERE token_hash = sha256(convert_to(:'a2', 'UTF8')) AND stream = 's03-a') AS a2_hash,
       (SELECT count(*) FROM setstream.tokens WHERE token_hash = sha256(convert_to(:'b1', 'UTF8')) AND stream = 's03-b') AS b1_hash;
-- no column of any row holds the token, or its random part, in clear
SELECT count(*) AS rows_with_token
  FROM setstream.tokens t
 WHERE strpos(to_jsonb(t)::text, substr(:'a1', 5)) > 0
    OR strpos(to_jsonb(t)::text, substr(:'a2', 5)) > 0
    OR strpos(to_jsonb(t)::text, substr(:'b1', 5)) > 0
    OR strpos(encode(t.token_hash, 'escape'), substr(:'a1', 5)) > 0;
SELECT count(*) AS token_columns
  FROM information_schema.columns
 WHERE table_schema = 'setstream' AND table_name = 'tokens' AND column_name = 'token';

-- ------------------------------------------------------------------
-- check_token
-- ------------------------------------------------------------------
SELECT setstream.check_token('s03-a', :'a1') AS a1_on_a,
       setstream.check_token('s03-a', :'a2') AS a2_on_a,
       setstream.check_token('s03-b', :'b1') AS b1_on_b;
-- a token of one stream opens no other
SELECT setstream.check_token('s03-b', :'a1') AS a1_on_b,
       setstream.check_token('s03-a', :'b1') AS b1_on_a;
-- near misses
SELECT setstream.check_token('s03-a', '') AS empty,
       setstream.check_token('s03-a', substr(:'a1', 5)) AS without_prefix,
       setstream.check_token('s03-a', :'a1' || 'x') AS longer,
       setstream.check_token('s03-a', left(:'a1', -1)) AS shorter,
       setstream.check_token('s03-a', upper(:'a1')) AS upper_case,
       setstream.check_token('s03-a', ' ' || :'a1') AS leading_space,
       setstream.check_token('s03-a', encode(sha256(convert_to(:'a1', 'UTF8')), 'hex')) AS its_hash;
-- an unknown stream answers false (no error that tells streams apart)
SELECT setstream.check_token('s03-nosuch', :'a1') AS unknown_stream;
SELECT setstream.check_token(NULL, :'a1') IS NULL AS null_stream,
       setstream.check_token('s03-a', NULL) IS NULL AS null_token;

-- ------------------------------------------------------------------
-- revoke_token(stream, token) and revoke_token(stream, id)
-- ------------------------------------------------------------------
SELECT setstream.revoke_token('s03-a', :'a1');
SELECT setstream.check_token('s03-a', :'a1') AS a1_after_revoke,
       setstream.check_token('s03-a', :'a2') AS a2_still;
SELECT count(*) FILTER (WHERE revoked_at IS NOT NULL) AS revoked,
       count(*) FILTER (WHERE revoked_at IS NULL) AS active
  FROM setstream.tokens WHERE stream = 's03-a';
-- revoked twice, a token of another stream, an unknown token (42704)
SELECT pg_temp.try(format('SELECT setstream.revoke_token(%L, %L::text)', 's03-a', :'a1'));
SELECT pg_temp.try(format('SELECT setstream.revoke_token(%L, %L::text)', 's03-a', :'b1'));
SELECT pg_temp.try($$SELECT setstream.revoke_token('s03-a', 'sst_nosuchtoken'::text)$$);
SELECT pg_temp.try(format('SELECT setstream.revoke_token(%L, %L::text)', 's03-nosuch', :'b1'));
-- the failed attempt on s03-a left b1 alone
SELECT setstream.check_token('s03-b', :'b1') AS b1_still;

-- by id
SELECT id AS a2_id FROM setstream.tokens
 WHERE stream = 's03-a' AND token_hash = sha256(convert_to(:'a2', 'UTF8')) \gset
SELECT id AS b1_id FROM setstream.tokens
 WHERE stream = 's03-b' AND token_hash = sha256(convert_to(:'b1', 'UTF8')) \gset
-- the id of another stream's token does not revoke it
SELECT pg_temp.try(format('SELECT setstream.revoke_token(%L, %s::bigint)', 's03-a', :b1_id))
       = format('42704: stream "s03-a" has no active token %s', :b1_id) AS refused;
SELECT setstream.check_token('s03-b', :'b1') AS b1_still;
SELECT setstream.revoke_token('s03-a', :a2_id::bigint);
SELECT setstream.check_token('s03-a', :'a2') AS a2_after_revoke;
SELECT pg_temp.try(format('SELECT setstream.revoke_token(%L, %s::bigint)', 's03-a', :a2_id))
       = format('42704: stream "s03-a" has no active token %s', :a2_id) AS refused_twice;
SELECT pg_temp.try($$SELECT setstream.revoke_token('s03-a', -1::bigint)$$);
SELECT pg_temp.try($$SELECT setstream.revoke_token('s03-nosuch', 1::bigint)$$);
SELECT setstream.revoke_token('s03-a', 0::bigint);

-- a stream without active tokens accepts none; a new token works at once
SELECT setstream.check_token('s03-a', :'a1') OR setstream.check_token('s03-a', :'a2') AS any_open;
SELECT setstream.issue_token('s03-a') AS a3 \gset
SELECT setstream.check_token('s03-a', :'a3') AS fresh_token;

-- issue_token errors; STRICT on NULL
SELECT pg_temp.try($$SELECT setstream.issue_token('s03-nosuch')$$);
SELECT setstream.issue_token(NULL) IS NULL AS null_stream;

-- a token issued in a rolled-back transaction never works
BEGIN;
SELECT setstream.issue_token('s03-b') AS rolled_back \gset
SELECT setstream.check_token('s03-b', :'rolled_back') AS inside;
ROLLBACK;
SELECT setstream.check_token('s03-b', :'rolled_back') AS after_rollback;

-- dropping the stream drops its tokens
SELECT setstream.drop_stream('s03-b');
SELECT count(*) FROM setstream.tokens WHERE stream = 's03-b';
SELECT setstream.check_token('s03-b', :'b1') AS b1_after_drop;

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's03%';
END $$;
