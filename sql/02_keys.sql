--
-- 02_keys: add_key for every key type and every rejection, RFC 7638
-- thumbprints as kids, generate_key for every algorithm (public JWK only,
-- and a SET it signs verifies on a peer stream), jwks(), revoke_key, and
-- the privacy of setstream.key_secrets.
--
-- The public JWKs below were generated once with python3-jwcrypto; the
-- thumbprints next to them are jwcrypto's, an independent implementation.
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
CREATE FUNCTION pg_temp.unb64u(text) RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT decode(rpad(translate($1, '-_', '+/'),
                         (length($1) + 3) / 4 * 4, '='), 'base64') $$;
CREATE FUNCTION pg_temp.hs256(header text, claims text, secret bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.b64u(header) || '.' || pg_temp.b64u(claims) || '.' ||
           pg_temp.b64u(hmac(convert_to(pg_temp.b64u(header) || '.' ||
                                        pg_temp.b64u(claims), 'UTF8'),
                             secret, 'sha256'))
$$;
-- RFC 7638 thumbprint, computed here independently of the extension
CREATE FUNCTION pg_temp.thumbprint(j jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.b64u(sha256(convert_to(CASE j->>'kty'
        WHEN 'RSA' THEN format('{"e":"%s","kty":"RSA","n":"%s"}', j->>'e', j->>'n')
        WHEN 'EC'  THEN format('{"crv":"%s","kty":"EC","x":"%s","y":"%s"}', j->>'crv', j->>'x', j->>'y')
        WHEN 'OKP' THEN format('{"crv":"%s","kty":"OKP","x":"%s"}', j->>'crv', j->>'x')
        WHEN 'oct' THEN format('{"k":"%s","kty":"oct"}', j->>'k')
    END, 'UTF8')))
$$;

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's02%';
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'regress_setstream_s02') THEN
        EXECUTE 'DROP OWNED BY regress_setstream_s02';
        EXECUTE 'DROP ROLE regress_setstream_s02';
    END IF;
END $$;

\set rsa '{"e":"AQAB","kty":"RSA","n":"0aec1v9OcZA13x79npVdnvqOqgQ9O-aVe6exqQ4LSgYgveDn86xPTapumKI_aio-vSOw3zfCXrmSJfQAEwzWHMHO4hpIZzEpW4lcTVG-u7jp47dysJEc5fSYeAdBfcF9syAS3N609DtfBbFEY2GnLYhenYCNWVPINJoLTly1I1cGmqOkdhmeKhQRNrIhqJoZVB2hH1h5-3-QZYTWebdy8-AmQXL6VVGIrGmsbmChVxqXdokkJyrOyOmm1pGC52c69-jBFFuo8YnpwcUqvr9IfRZoY5GDoUdudOqCr4OyPkaU0XXIbl0_yp7fWw_hcBkjDitcaCa4FSCJ9tZ-_AWilw"}'
\set rsa1024 '{"e":"AQAB","kty":"RSA","n":"vRT-PvtfWjDfnTeB33IBjl6Spv2gj6Q7tF8dMVJ-mnbW3MKd8pcpd7IZJU4nqtyZKE7CSzVLUwYHjDleeq3Fay3ZiF8q8OjsfLQldI8txC3djPdcXh3mBQHQLlLXoVhf2zPMA_Yqcu9ILZlzOlo-w9Cngn24YMidRZ1Z1jLcfXc"}'
\set p256 '{"crv":"P-256","kty":"EC","x":"7GhvN4huzmzviiVdI74wFq2Ya1BjsAZVeAqO97OEZU0","y":"aGDhke6ADepJDtGEB9EhzEUoTG_BWiDT5mOSzzjXHIE"}'
\set p384 '{"crv":"P-384","kty":"EC","x":"MGS-6idYVJSNrx3du1Z-S5fD3LPXWHH1HQnvlONesqDnllwDPuVfrXSHxxnGCp9r","y":"nw2ms6VdEsfjZNvKzxGZTFT8HYVxk5wI3qZA28hNotPcx9ddtaPZaE6tSaSTT2oR"}'
\set p521 '{"crv":"P-521","kty":"EC","x":"AM-edyJZ14gXZ70fyjasksXTopwQ6AnOmAG5oXMvCLR0qbMa_8C1FtH0yD2BAPLJAsNO3-7dvi_jZbNwVZUgBl40","y":"AKuSpW_otKMSUUytJ2NFSuxMxZ3TZboJNdjTAAv0y8LGGv2mJjE4O5Mz5o-fFUKbbEaen0vN2W6Xj57qfz72cCmB"}'
\set ed '{"crv":"Ed25519","kty":"OKP","x":"l9XIMW-7SE362hotifW_lTIrYX5OMlGjMb7X5soP494"}'
-- the P-256 key above with one bit of y changed: a point off the curve
\set offcurve '{"crv":"P-256","kty":"EC","x":"7GhvN4huzmzviiVdI74wFq2Ya1BjsAZVeAqO97OEZU0","y":"aGDhke6ADepJDtGEB9EhzEUoTG_BWiDT5mOSzzjXHAE"}'
-- the P-256 and Ed25519 keys above with their private parts
\set p256priv '{"crv":"P-256","d":"XBetoFV5OXRMG30mYla_qedfcJQMks5IOwxPjHRkOJ8","kty":"EC","x":"7GhvN4huzmzviiVdI74wFq2Ya1BjsAZVeAqO97OEZU0","y":"aGDhke6ADepJDtGEB9EhzEUoTG_BWiDT5mOSzzjXHIE"}'
\set edpriv '{"crv":"Ed25519","d":"qvLK8ZyOOsQJMMkukS-BuXAbbIeRbzmb0XnbJFGYhRo","kty":"OKP","x":"l9XIMW-7SE362hotifW_lTIrYX5OMlGjMb7X5soP494"}'
-- RFC 7638 section 3.1: the example RSA key (its "kid" left out)
\set rfc7638 '{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256"}'
-- a 32-byte HMAC secret
\set secret 'setstream-02-secret-of-32-bytes!'

SELECT length(:'secret') AS secret_bytes;
SELECT name FROM setstream.create_stream('s02', 'https://db.example/s02',
    ARRAY['https://rp.example/s02'], 'https://idp.example/s02');

-- ------------------------------------------------------------------
-- add_key: each key type; the kid is the RFC 7638 thumbprint
-- ------------------------------------------------------------------
SELECT setstream.add_key('s02', :'rsa') AS rsa_kid;
SELECT setstream.add_key('s02', :'p256') AS p256_kid;
SELECT setstream.add_key('s02', :'p384') AS p384_kid;
SELECT setstream.add_key('s02', :'p521') AS p521_kid;
SELECT setstream.add_key('s02', :'ed') AS ed25519_kid;
-- the same kids as jwcrypto's, and as the thumbprint computed in SQL
SELECT k.kid, k.kty, k.kid = t.want AS jwcrypto_agrees,
       k.kid = pg_temp.thumbprint(k.jwk) AS sql_agrees
  FROM setstream.keys k
  JOIN (VALUES ('-GMG5Gx29SokSzlUzWuKQiruMKd9Xwq0LN0TyK1Uyps'),
               ('lVfhygLgzZb1sKXi2XDhP6D6Wmg7ZlPYDRWOxYMkE4I'),
               ('fuwsDV1foEMb0K6X1fGXRCrKXS9aHmTB-I3VSxYvg8s'),
               ('VY2zMmwXKXn9rnHsxS-exvrFylhXn-8Ql0Mj9-3uMEM'),
               ('WtzddgdfnGfBiNPMRXqNw7FduxcJExL4A89Wtj9_60A')) AS t (want)
    ON k.kid = t.want
 WHERE k.stream = 's02'
 ORDER BY k.kid COLLATE "C";

-- RFC 7638 section 3.1: the example key's thumbprint is
-- NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs; "alg" does not enter it
SELECT kid, kid = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' AS is_rfc_value
  FROM setstream.add_key('s02', :'rfc7638') AS kid;

-- oct: the thumbprint covers "k"; a given kid is kept as it is
SELECT setstream.add_key('s02', jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(:'secret'::bytea)))
       = pg_temp.thumbprint(jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(:'secret'::bytea)))
       AS oct_thumbprint_kid;
SELECT setstream.add_key('s02', jsonb_build_object('kty', 'oct', 'kid', 'hs-s02',
                                                   'k', pg_temp.b64u(:'secret'::bytea))) AS oct_kid;
-- explicit kids and algs on the other key types
SELECT setstream.add_key('s02', :'rsa'::jsonb || '{"kid":"rsa-rs256","alg":"RS256","use":"sig"}') AS kid;
SELECT setstream.add_key('s02', :'rsa'::jsonb || '{"kid":"rsa-ps512","alg":"PS512"}') AS kid;
SELECT setstream.add_key('s02', :'p256'::jsonb || '{"kid":"ec-es256","alg":"ES256"}') AS kid;
SELECT setstream.add_key('s02', :'p384'::jsonb || '{"kid":"ec-es384","alg":"ES384"}') AS kid;
SELECT setstream.add_key('s02', :'p521'::jsonb || '{"kid":"ec-es512","alg":"ES512"}') AS kid;
SELECT setstream.add_key('s02', :'ed'::jsonb || '{"kid":"ed-eddsa","alg":"EdDSA"}') AS kid;
SELECT setstream.add_key('s02', jsonb_build_object('kty', 'oct', 'kid', 'hs-s02-512', 'alg', 'HS512',
    'k', pg_temp.b64u(convert_to(repeat(:'secret', 2), 'UTF8')))) AS kid;
SELECT setstream.add_key('s02', :'rsa'::jsonb || jsonb_build_object('kid', repeat('k', 255))) = repeat('k', 255) AS kid_255;

-- what is stored: purpose verify, kty, alg; the JWK carries its kid and,
-- for oct keys, no secret
SELECT kid, purpose, kty, alg, jwk->>'kid' = kid AS jwk_kid, jwk ? 'k' AS has_k,
       revoked_at IS NULL AS active
  FROM setstream.keys WHERE stream = 's02' AND length(kid) < 100 ORDER BY kid COLLATE "C";
-- the secret is in key_secrets, only for the oct keys
SELECT s.kid, k.kty, s.jwk::jsonb ? 'k' AS has_k,
       length(pg_temp.unb64u(s.jwk::jsonb->>'k')) AS secret_bytes,
       pg_temp.unb64u(s.jwk::jsonb->>'k') = convert_to(:'secret', 'UTF8') AS is_secret
  FROM setstream.key_secrets s JOIN setstream.keys k USING (stream, kid)
 WHERE s.stream = 's02' ORDER BY s.kid COLLATE "C";

-- the same kid on another stream is fine
SELECT name FROM setstream.create_stream('s02-other', 'https://db.example/s02-other',
    ARRAY['https://rp.example'], 'https://idp.example/s02');
SELECT setstream.add_key('s02-other', :'p256') AS kid;
SELECT setstream.add_key('s02-other', jsonb_build_object('kty', 'oct', 'kid', 'hs-s02',
                                                          'k', pg_temp.b64u(:'secret'::bytea))) AS kid;

-- ------------------------------------------------------------------
-- add_key: duplicate kids (42710)
-- ------------------------------------------------------------------
SELECT pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02', :'p256'));
SELECT pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02',
    jsonb_build_object('kty', 'oct', 'kid', 'hs-s02', 'k', pg_temp.b64u(convert_to(repeat('z', 40), 'UTF8')))));
SELECT pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02', :'ed'::jsonb || '{"kid":"ec-es256"}'));

-- ------------------------------------------------------------------
-- add_key: every rejection (22023, "invalid JWK: ...")
-- ------------------------------------------------------------------
CREATE TEMP TABLE bad_jwk (n serial, what text, jwk jsonb);
INSERT INTO bad_jwk (what, jwk) VALUES
    ('not an object',        '[]'),
    ('empty object',         '{}'),
    ('kty not a string',     '{"kty": 1}'),
    ('unknown kty',          '{"kty": "foo", "k": "AAAA"}'),
    ('kty case',             '{"kty": "ec", "crv": "P-256"}'),
    ('alg not a string',     :'p256'::jsonb || '{"alg": 256}'),
    ('use enc',              :'p256'::jsonb || '{"use": "enc"}'),
    ('use not a string',     :'p256'::jsonb || '{"use": true}'),
    ('empty kid',            :'p256'::jsonb || '{"kid": ""}'),
    ('kid of 256',           :'p256'::jsonb || jsonb_build_object('kid', repeat('k', 256))),
    ('kid not a string',     :'p256'::jsonb || '{"kid": 7}'),
    ('EC private d',         :'p256priv'),
    ('OKP private d',        :'edpriv'),
    ('RSA private p',        :'rsa'::jsonb || '{"p": "AQAB"}'),
    ('RSA private qi',       :'rsa'::jsonb || '{"qi": "AQAB"}'),
    ('RSA private oth',      :'rsa'::jsonb || '{"oth": []}'),
    ('RSA no e',             :'rsa'::jsonb - 'e'),
    ('RSA n not base64url',  :'rsa'::jsonb || '{"n": "not+base64/"}'),
    ('RSA 1024 bits',        :'rsa1024'),
    ('RSA over 16384 bits',  :'rsa'::jsonb || jsonb_build_object('n', pg_temp.b64u(decode(repeat('ff', 2049), 'hex')))),
    ('RSA even exponent',    :'rsa'::jsonb || '{"e": "AQAA"}'),
    ('RSA exponent 1',       :'rsa'::jsonb || '{"e": "AQ"}'),
    ('RSA exponent 9 bytes', :'rsa'::jsonb || '{"e": "AQAAAAAAAAAB"}'),
    ('EC no crv',            :'p256'::jsonb - 'crv'),
    ('EC P-192',             '{"kty": "EC", "crv": "P-192", "x": "u1KpFo5hvOdXmkGFZnVNrnCbwwUoZm_W", "y": "Gu1d7ehbcOb3QD_DsmknSi6Lc8VN_Z7u"}'),
    ('EC secp256k1',         :'p256'::jsonb || '{"crv": "secp256k1"}'),
    ('EC P-256, P-384 size', :'p384'::jsonb || '{"crv": "P-256"}'),
    ('EC no y',              :'p256'::jsonb - 'y'),
    ('OKP X25519',           :'ed'::jsonb || '{"crv": "X25519"}'),
    ('OKP Ed448',            :'ed'::jsonb || '{"crv": "Ed448"}'),
    ('OKP no crv',           :'ed'::jsonb - 'crv'),
    ('OKP short x',          :'ed'::jsonb || '{"x": "AAAA"}'),
    ('oct no k',             '{"kty": "oct"}'),
    ('oct k not base64url',  '{"kty": "oct", "k": "abc+def/ghi="}'),
    ('oct 31 bytes',         jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(convert_to(repeat('s', 31), 'UTF8')))),
    ('oct empty k',          '{"kty": "oct", "k": ""}'),
    ('EC P-256 alg ES384',   :'p256'::jsonb || '{"alg": "ES384"}'),
    ('EC P-521 alg ES256',   :'p521'::jsonb || '{"alg": "ES256"}'),
    ('EC alg none',          :'p256'::jsonb || '{"alg": "none"}'),
    ('RSA alg ES256',        :'rsa'::jsonb || '{"alg": "ES256"}'),
    ('RSA alg HS256',        :'rsa'::jsonb || '{"alg": "HS256"}'),
    ('RSA alg rs256',        :'rsa'::jsonb || '{"alg": "rs256"}'),
    ('OKP alg ES256',        :'ed'::jsonb || '{"alg": "ES256"}'),
    ('oct alg RS256',        jsonb_build_object('kty', 'oct', 'alg', 'RS256', 'k', pg_temp.b64u(:'secret'::bytea))),
    ('oct 32 bytes HS384',   jsonb_build_object('kty', 'oct', 'alg', 'HS384', 'k', pg_temp.b64u(:'secret'::bytea))),
    ('oct 48 bytes HS512',   jsonb_build_object('kty', 'oct', 'alg', 'HS512', 'k', pg_temp.b64u(convert_to(repeat('s', 48), 'UTF8')))),
    ('EC point off curve',   :'offcurve'),
    ('unreadable number',    '{"kty": "oct", "x": 1e400}');
SELECT n, what, pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02', jwk)) AS result
  FROM bad_jwk ORDER BY n;
-- the plain error display of one of them
SELECT setstream.add_key('s02', :'offcurve');
-- unknown stream, NULL arguments (add_key is STRICT)
SELECT pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02-nosuch', :'p256'));
SELECT setstream.add_key(NULL, :'p256') IS NULL AS null_stream,
       setstream.add_key('s02', NULL) IS NULL AS null_jwk;
-- the rejected keys left nothing behind
SELECT count(*) AS keys, count(*) FILTER (WHERE jwk ? 'd') AS with_d
  FROM setstream.keys WHERE stream = 's02';

-- ------------------------------------------------------------------
-- the registered keys verify SETs; revoke_key takes a key out of use
-- ------------------------------------------------------------------
\set claims '{"iss":"https://idp.example/s02","aud":"https://db.example/s02","iat":1700000000,"jti":"s02-1","sub_id":{"format":"opaque","id":"u1"},"events":{"https://schemas.openid.net/secevent/ssf/event-type/verification":{}}}'
SELECT setstream.receive('s02', pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt","kid":"hs-s02"}',
                                              :'claims', :'secret'::bytea)) AS jti;
SELECT setstream.revoke_key('s02', 'hs-s02');
SELECT kid, revoked_at IS NOT NULL AS revoked FROM setstream.keys
 WHERE stream = 's02' AND kid = 'hs-s02';
-- a SET naming the revoked key is refused
SELECT pg_temp.try(format('SELECT setstream.receive(%L, %L)', 's02',
    pg_temp.hs256('{"alg":"HS256","typ":"secevent+jwt","kid":"hs-s02"}',
                  replace(:'claims', 's02-1', 's02-2'), :'secret'::bytea)));
-- ... while the same secret under its thumbprint kid still verifies
SELECT setstream.receive('s02', pg_temp.hs256(
    format('{"alg":"HS256","typ":"secevent+jwt","kid":"%s"}',
           pg_temp.thumbprint(jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(:'secret'::bytea)))),
    replace(:'claims', 's02-1', 's02-3'), :'secret'::bytea)) AS jti;
-- the other stream's key of the same kid is not affected
SELECT stream, kid, revoked_at IS NULL AS active FROM setstream.keys
 WHERE kid = 'hs-s02' ORDER BY stream COLLATE "C";
-- revoke_key errors (42704)
SELECT pg_temp.try($$SELECT setstream.revoke_key('s02', 'hs-s02')$$);
SELECT pg_temp.try($$SELECT setstream.revoke_key('s02', 'no-such-kid')$$);
SELECT pg_temp.try($$SELECT setstream.revoke_key('s02-nosuch', 'hs-s02')$$);
-- a revoked kid stays taken
SELECT pg_temp.try(format('SELECT setstream.add_key(%L, %L)', 's02',
    jsonb_build_object('kty', 'oct', 'kid', 'hs-s02', 'k', pg_temp.b64u(:'secret'::bytea))));

-- ------------------------------------------------------------------
-- generate_key: every algorithm; the result is the public JWK only
-- ------------------------------------------------------------------
SELECT name FROM setstream.create_stream('s02-tx', 'https://db.example/s02-tx',
    ARRAY['https://peer.example/s02'], 'https://peer.example/s02');
SELECT name FROM setstream.create_stream('s02-rx', 'https://peer.example/s02',
    ARRAY['https://db.example/s02-tx'], 'https://db.example/s02-tx');

-- For one algorithm: generate a signing key on s02-tx, register its public
-- JWK on s02-rx, emit a SET on s02-tx and receive it on s02-rx.
CREATE FUNCTION pg_temp.round_trip(alg text, OUT pub jsonb, OUT header jsonb,
                                   OUT received boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_jti text;
    tok text;
BEGIN
    IF alg IS NULL THEN
        pub := setstream.generate_key('s02-tx');
    ELSE
        pub := setstream.generate_key('s02-tx', alg);
    END IF;
    PERFORM setstream.add_key('s02-rx', pub);
    v_jti := setstream.emit('s02-tx', 'https://schemas.openid.net/secevent/ssf/event-type/verification',
                          jsonb_build_object('state', coalesce(alg, 'default')));
    SELECT o.token INTO tok FROM setstream.outbox o WHERE o.stream = 's02-tx' AND o.jti = v_jti;
    header := convert_from(pg_temp.unb64u(split_part(tok, '.', 1)), 'UTF8')::jsonb;
    received := setstream.receive('s02-rx', tok) = v_jti;
END $$;

CREATE TEMP TABLE gen AS
SELECT a.n, a.alg, r.*
  FROM (VALUES (1, NULL), (2, 'ES256'), (3, 'ES384'), (4, 'ES512'), (5, 'RS256'),
               (6, 'RS384'), (7, 'RS512'), (8, 'PS256'), (9, 'PS384'), (10, 'PS512'),
               (11, 'EdDSA')) AS a (n, alg),
       LATERAL pg_temp.round_trip(a.alg) r;

-- shape of each public JWK: members, kty/crv, alg, use, size
SELECT n, coalesce(alg, '(default)') AS requested,
       (SELECT string_agg(k, ',' ORDER BY k COLLATE "C") FROM jsonb_object_keys(pub) k) AS members,
       pub->>'kty' AS kty, pub->>'crv' AS crv, pub->>'alg' AS jwk_alg, pub->>'use' AS use,
       CASE pub->>'kty' WHEN 'RSA' THEN length(pg_temp.unb64u(pub->>'n')) * 8 END AS rsa_bits,
       CASE WHEN pub ? 'x' THEN length(pg_temp.unb64u(pub->>'x')) END AS x_bytes,
       pub->>'kid' = pg_temp.thumbprint(pub) AS kid_is_thumbprint
  FROM gen ORDER BY n;
-- no private member in any of them
SELECT count(*) FILTER (WHERE pub ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']) AS with_private
  FROM gen;
-- the SET signed with each key: its header, and it verified on the peer
SELECT n, header->>'alg' AS alg, header->>'typ' AS typ,
       header->>'kid' = pub->>'kid' AS kid_matches,
       (SELECT string_agg(k, ',' ORDER BY k COLLATE "C") FROM jsonb_object_keys(header) k) AS header_members,
       received
  FROM gen ORDER BY n;
SELECT count(*) AS stored FROM setstream.events WHERE stream = 's02-rx';

-- stored: sign keys with the public JWK in keys, the private one in key_secrets
SELECT count(*) AS sign_keys,
       count(*) FILTER (WHERE k.jwk ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi']) AS public_with_private,
       count(*) FILTER (WHERE s.jwk::jsonb ? 'd') AS secret_with_d,
       count(*) FILTER (WHERE k.jwk = g.pub) AS public_as_returned
  FROM setstream.keys k
  JOIN setstream.key_secrets s USING (stream, kid)
  JOIN gen g ON g.pub->>'kid' = k.kid
 WHERE k.stream = 's02-tx' AND k.purpose = 'sign';

-- jwks(): the active signing keys, public parts only; no verify keys
SELECT count(*) AS in_jwks,
       count(*) FILTER (WHERE j ?| ARRAY['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) AS with_private
  FROM jsonb_array_elements(setstream.jwks()->'keys') j
 WHERE j->>'kid' IN (SELECT pub->>'kid' FROM gen);
SELECT count(*) AS s02_verify_keys_in_jwks
  FROM jsonb_array_elements(setstream.jwks()->'keys') j
 WHERE j->>'kid' IN (SELECT kid FROM setstream.keys WHERE stream = 's02');

-- emit signs with the newest active key; revoking it falls back to the
-- one before, and takes it out of jwks().  It signed SETs that are not
-- settled: revoke_key refuses (55006, object_in_use) unless forced.
\set VERBOSITY sqlstate
SELECT setstream.revoke_key('s02-tx', (SELECT pub->>'kid' FROM gen WHERE n = 11));
\set VERBOSITY default
SELECT setstream.revoke_key('s02-tx', (SELECT pub->>'kid' FROM gen WHERE n = 11), force => true);
SELECT count(*) AS revoked_in_jwks FROM jsonb_array_elements(setstream.jwks()->'keys') j
 WHERE j->>'kid' = (SELECT pub->>'kid' FROM gen WHERE n = 11);
SELECT setstream.emit('s02-tx', 'https://example.com/event/after-revoke', '{}') AS jti \gset
SELECT header->>'alg' AS alg, header->>'kid' = (SELECT pub->>'kid' FROM gen WHERE n = 10) AS previous_key
  FROM (SELECT convert_from(pg_temp.unb64u(split_part(token, '.', 1)), 'UTF8')::jsonb AS header
          FROM setstream.outbox
         WHERE stream = 's02-tx' AND jti = :'jti') h;

-- generate_key errors
SELECT pg_temp.try($$SELECT setstream.generate_key('s02-tx', 'HS256')$$);
SELECT pg_temp.try($$SELECT setstream.generate_key('s02-tx', 'es256')$$);
SELECT pg_temp.try($$SELECT setstream.generate_key('s02-tx', 'none')$$);
SELECT pg_temp.try($$SELECT setstream.generate_key('s02-tx', '')$$);
SELECT pg_temp.try($$SELECT setstream.generate_key('s02-nosuch')$$);
SELECT setstream.generate_key('s02-tx', 'Ed25519');
SELECT setstream.generate_key('s02-tx', NULL) IS NULL AS null_alg;

-- ------------------------------------------------------------------
-- key_secrets: no role but the extension owner can read it
-- ------------------------------------------------------------------
SELECT count(*) AS grants_to_others
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE c.oid = 'setstream.key_secrets'::regclass AND a.grantee <> c.relowner;
CREATE ROLE regress_setstream_s02;
GRANT USAGE ON SCHEMA setstream TO regress_setstream_s02;
SELECT setstream.grant_stream('s02', 'regress_setstream_s02', '{receive,read}');
SELECT has_table_privilege('regress_setstream_s02', 'setstream.key_secrets', 'SELECT') AS can_select;
SET ROLE regress_setstream_s02;
SELECT count(*) > 0 AS reads_keys FROM setstream.keys WHERE stream = 's02';
SELECT pg_temp.try('SELECT * FROM setstream.key_secrets');
SELECT pg_temp.try('SELECT count(*) FROM setstream.key_secrets');
-- yet verification with a secret works for this role (the extension reads
-- the secret itself), and leaves the role as it was
SELECT setstream.receive('s02', pg_temp.hs256(
    format('{"alg":"HS256","typ":"secevent+jwt","kid":"%s"}',
           pg_temp.thumbprint(jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(:'secret'::bytea)))),
    replace(:'claims', 's02-1', 's02-role'), :'secret'::bytea)) AS jti;
SELECT current_user;
SELECT pg_temp.try('SELECT * FROM setstream.key_secrets');
RESET ROLE;
SELECT jti FROM setstream.events WHERE stream = 's02' ORDER BY jti COLLATE "C";

-- clean up
DROP OWNED BY regress_setstream_s02;
DROP ROLE regress_setstream_s02;
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's02%';
END $$;
SELECT count(*) FROM setstream.keys WHERE stream LIKE 's02%';
