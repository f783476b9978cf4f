--
-- 04_receive: receive() of SETs built here (HS256 with pgcrypto, and
-- unsigned ones) and of SETs signed by an independent implementation
-- (python3-jwcrypto: RS*, PS*, ES*, EdDSA): what is accepted, what is
-- stored, duplicates stored once, and every rule a SET can break, with its
-- RFC 8935 error code and SQLSTATE.
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
-- rcv(stream, set): "ok <jti>", or "SQLSTATE (code): message"
CREATE FUNCTION pg_temp.rcv(stream text, tok text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    msg text; st text;
BEGIN
    RETURN 'ok ' || setstream.receive(stream, tok);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ' (' || coalesce(setstream.error_code(st), '-') || '): ' || msg;
END $$;
CREATE FUNCTION pg_temp.b64u(bytea) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT rtrim(translate(encode($1, 'base64'), E'+/\n', '-_'), '=') $$;
CREATE FUNCTION pg_temp.b64u(text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.b64u(convert_to($1, 'UTF8')) $$;
-- the shared secret of this file's HS256 SETs, and its kid (RFC 7638)
CREATE FUNCTION pg_temp.secret() RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT convert_to('s04 shared secret, 32+ bytes long', 'UTF8') $$;
CREATE FUNCTION pg_temp.kid() RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.b64u(sha256(convert_to(format('{"k":"%s","kty":"oct"}',
                                                   pg_temp.b64u(pg_temp.secret())), 'UTF8'))) $$;
-- HS256 JWS of a header and claims given as text (exact bytes)
CREATE FUNCTION pg_temp.hs(header text, claims text, secret bytea DEFAULT NULL) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT pg_temp.b64u(header) || '.' || pg_temp.b64u(claims) || '.' ||
           pg_temp.b64u(hmac(convert_to(pg_temp.b64u(header) || '.' || pg_temp.b64u(claims), 'UTF8'),
                             coalesce(secret, pg_temp.secret()), 'sha256'))
$$;
CREATE FUNCTION pg_temp.hdr() RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT format('{"alg":"HS256","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()) $$;
-- the claims of a valid SET for stream s04, changed by a patch (a null
-- member in the patch removes that claim)
CREATE FUNCTION pg_temp.claims(patch jsonb DEFAULT '{}') RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_strip_nulls(jsonb_build_object(
        'iss', 'https://idp.example/s04',
        'aud', 'https://db.example/s04',
        'iat', 1700000000,
        'jti', 's04-x',
        'sub_id', jsonb_build_object('format', 'email', 'email', 'alice@example.com'),
        'events', jsonb_build_object(
            'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
            jsonb_build_object('initiating_entity', 'policy'))) || patch)::text
$$;
-- a valid HS256 SET for stream s04 with a patch applied to its claims
CREATE FUNCTION pg_temp.set(patch jsonb DEFAULT '{}') RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.hs(pg_temp.hdr(), pg_temp.claims(patch)) $$;
-- the same with sub_id replaced
CREATE FUNCTION pg_temp.sub(sub_id jsonb) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.set(jsonb_build_object('sub_id', sub_id)) $$;
CREATE FUNCTION pg_temp.unsigned(header text, claims text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.b64u(header) || '.' || pg_temp.b64u(claims) || '.' $$;

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's04%';
END $$;

-- s04: SSF profile; s04-8417: the plain RFC; s04-none: accepts unsigned
-- SETs; s04-nopeer: no peer issuer; s04-nokeys: no keys
SELECT name, profile, allow_unsigned FROM setstream.create_stream('s04', 'https://db.example/s04',
    ARRAY['https://idp.example/s04'], 'https://idp.example/s04');
SELECT name, profile, allow_unsigned FROM setstream.create_stream('s04-8417', 'https://db.example/s04',
    ARRAY['https://idp.example/s04'], 'https://idp.example/s04', 'rfc8417');
SELECT name, profile, allow_unsigned FROM setstream.create_stream('s04-none', 'https://db.example/s04',
    ARRAY['https://idp.example/s04'], 'https://idp.example/s04', allow_unsigned => true);
SELECT name, peer_issuer FROM setstream.create_stream('s04-nopeer', 'https://db.example/s04',
    ARRAY['https://idp.example/s04']);
SELECT name FROM setstream.create_stream('s04-nokeys', 'https://db.example/s04',
    ARRAY['https://idp.example/s04'], 'https://idp.example/s04');
SELECT setstream.add_key(s, jsonb_build_object('kty', 'oct', 'k', pg_temp.b64u(pg_temp.secret()))) = pg_temp.kid() AS kid_ok
  FROM unnest(ARRAY['s04', 's04-8417', 's04-none', 's04-nopeer']) s;

-- ------------------------------------------------------------------
-- accepted, and what is stored
-- ------------------------------------------------------------------
\set full '{"iss":"https://idp.example/s04","aud":["https://other.example","https://db.example/s04"],"iat":1700000000.25,"jti":"s04-full","txn":"txn-1","toe":1699999990,"sub_id":{"format":"iss_sub","iss":"https://idp.example/s04","sub":"248289761001"},"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"initiating_entity":"policy","reason_admin":{"en":"Policy violation"}},"https://schemas.openid.net/secevent/risc/event-type/sessions-revoked":{}},"x-vendor":{"any":"thing"}}'
SELECT pg_temp.hs(pg_temp.hdr(), :'full') AS full_set \gset
SELECT setstream.receive('s04', :'full_set') AS jti;
SELECT stream, jti, iss, aud, extract(epoch FROM iat) AS iat, txn, extract(epoch FROM toe) AS toe,
       subject, event_types, events
  FROM setstream.events WHERE stream = 's04' AND jti = 's04-full';
SELECT claims = :'full'::jsonb AS claims_as_sent,
       header = pg_temp.hdr()::jsonb AS header_as_sent,
       token = :'full_set' AS token_byte_exact,
       received_at IS NOT NULL AS has_received_at
  FROM setstream.events WHERE stream = 's04' AND jti = 's04-full';

-- a duplicate (same stream, iss, jti) is accepted again and stored once,
-- even when its bytes differ; the first one stays
SELECT setstream.receive('s04', :'full_set') AS again;
SELECT setstream.receive('s04', pg_temp.hs(pg_temp.hdr(),
    replace(:'full', '"txn":"txn-1"', '"txn":"txn-2"'))) AS changed_bytes;
SELECT count(*), min(txn) AS txn, bool_and(token = :'full_set') AS first_token_kept
  FROM setstream.events WHERE stream = 's04' AND jti = 's04-full';
-- the same jti on another stream is another event
SELECT setstream.receive('s04-8417', :'full_set') AS other_stream;
SELECT stream, jti FROM setstream.events WHERE jti = 's04-full' ORDER BY stream COLLATE "C";

-- each of these is valid on s04 (SSF profile)
CREATE TEMP TABLE good (n serial, what text, stream text, tok text);
INSERT INTO good (what, stream, tok) VALUES
    ('minimal SET',              's04', pg_temp.set('{"jti":"g-min"}')),
    ('typ application/secevent+jwt', 's04', pg_temp.hs(format('{"alg":"HS256","typ":"application/secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims('{"jti":"g-typ1"}'))),
    ('typ in upper case',        's04', pg_temp.hs(format('{"alg":"HS256","typ":"APPLICATION/SECEVENT+JWT","kid":"%s"}', pg_temp.kid()), pg_temp.claims('{"jti":"g-typ2"}'))),
    ('no kid: the stream''s keys', 's04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt"}', pg_temp.claims('{"jti":"g-nokid"}'))),
    ('unknown header member',    's04', pg_temp.hs(format('{"alg":"HS256","typ":"secevent+jwt","kid":"%s","x-hdr":[1,2]}', pg_temp.kid()), pg_temp.claims('{"jti":"g-xhdr"}'))),
    ('iat 0',                    's04', pg_temp.set('{"jti":"g-iat0","iat":0}')),
    ('iat 9999-12-31T23:59:59Z', 's04', pg_temp.set('{"jti":"g-iatmax","iat":253402300799}')),
    ('nbf a NumericDate',        's04', pg_temp.set('{"jti":"g-nbf","nbf":1700000000}')),
    ('jti of 256 bytes',         's04', pg_temp.set(jsonb_build_object('jti', repeat('j', 256)))),
    ('unicode jti and txn',      's04', pg_temp.set('{"jti":"g-ünï-\u00e9","txn":"tx-ü"}')),
    ('sub_id account',           's04', pg_temp.set('{"jti":"g-account","sub_id":{"format":"account","uri":"acct:alice@example.com"}}')),
    ('sub_id opaque',            's04', pg_temp.set('{"jti":"g-opaque","sub_id":{"format":"opaque","id":"11112222333344445555"}}')),
    ('sub_id phone_number',      's04', pg_temp.set('{"jti":"g-phone","sub_id":{"format":"phone_number","phone_number":"+12065550100"}}')),
    ('sub_id did',               's04', pg_temp.set('{"jti":"g-did","sub_id":{"format":"did","url":"did:example:123456"}}')),
    ('sub_id uri',               's04', pg_temp.set('{"jti":"g-uri","sub_id":{"format":"uri","uri":"https://user.example.com/"}}')),
    ('sub_id jwt_id',            's04', pg_temp.set('{"jti":"g-jwtid","sub_id":{"format":"jwt_id","iss":"https://as.example","jti":"B70BA622"}}')),
    ('sub_id saml_assertion_id', 's04', pg_temp.set('{"jti":"g-saml","sub_id":{"format":"saml_assertion_id","issuer":"https://idp.example","assertion_id":"_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6"}}')),
    ('sub_id ip-addresses',      's04', pg_temp.set('{"jti":"g-ip","sub_id":{"format":"ip-addresses","ip-addresses":["10.29.37.75","2001:db8::1"]}}')),
    ('sub_id aliases',           's04', pg_temp.set('{"jti":"g-aliases","sub_id":{"format":"aliases","identifiers":[{"format":"email","email":"user@example.com"},{"format":"phone_number","phone_number":"+12065550100"},{"format":"complex","user":{"format":"opaque","id":"u1"}}]}}')),
    ('sub_id complex',           's04', pg_temp.set('{"jti":"g-complex","sub_id":{"format":"complex","user":{"format":"email","email":"bob@example.com"},"device":{"format":"opaque","id":"d1"},"session":{"format":"opaque","id":"s1"}}}')),
    ('email at localhost',       's04', pg_temp.set('{"jti":"g-localhost","sub_id":{"format":"email","email":"root@localhost"}}')),
    -- rfc8417 profile: typ optional or JWT, sub and exp tolerated, aud and sub_id optional
    ('rfc8417: no typ',          's04-8417', pg_temp.hs(format('{"alg":"HS256","kid":"%s"}', pg_temp.kid()), pg_temp.claims('{"jti":"g8-notyp"}'))),
    ('rfc8417: typ JWT',         's04-8417', pg_temp.hs(format('{"alg":"HS256","typ":"JWT","kid":"%s"}', pg_temp.kid()), pg_temp.claims('{"jti":"g8-jwt"}'))),
    ('rfc8417: sub and exp',     's04-8417', pg_temp.set('{"jti":"g8-sub","sub":"user-1","exp":1800000000}')),
    ('rfc8417: no aud, no sub_id', 's04-8417', pg_temp.set('{"jti":"g8-bare","aud":null,"sub_id":null}')),
    -- unsigned SETs where the stream allows them
    ('unsigned, allowed',        's04-none', pg_temp.unsigned('{"alg":"none","typ":"secevent+jwt"}', pg_temp.claims('{"jti":"gn-1"}'))),
    ('signed, on s04-none',      's04-none', pg_temp.set('{"jti":"gn-2"}'));
SELECT n, what, stream, left(pg_temp.rcv(stream, tok), 60) AS result FROM good ORDER BY n;
-- how some of them are stored
SELECT jti, subject, aud, extract(epoch FROM iat) AS iat, txn
  FROM setstream.events
 WHERE jti IN ('g-min', 'g-aliases', 'g-iatmax', 'g-ünï-é', 'g8-bare', 'gn-1')
 ORDER BY jti COLLATE "C";
SELECT length(jti) FROM setstream.events WHERE jti LIKE 'jjj%';
SELECT jti, header FROM setstream.events WHERE jti IN ('gn-1', 'g8-notyp') ORDER BY jti COLLATE "C";

-- a paused stream still receives
SELECT status FROM setstream.set_stream_status('s04', 'paused');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"g-paused"}')) AS paused;
SELECT status FROM setstream.enable_stream('s04');

-- ------------------------------------------------------------------
-- SETs signed by jwcrypto with RSA, EC and Ed25519 keys
-- ------------------------------------------------------------------
-- (signed once with python3-jwcrypto; claims iss https://idp.example/s04a,
-- aud https://db.example/s04a, jti "asym-<alg>"; t_es256_nokid has no kid,
-- the last two name the kid "rsa-rs256-only")
\set t_rs256 'eyJhbGciOiJSUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1SUzI1NiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.uHT9ZSXFq4OltJlJenwMNR0iDJ8cP1SkvI23J3wh-XDZc9n2A5JiPU7P_D4iXroiduZNLrMesKfDj885xFquI1joRHamHDC9nNKL4FWRr4suP7VJd4iw_OFV0pXC6LZJ53kJ1I1om5vXebSXIAKM3wb8lqI-QGrYc-hAwRbswnLZLRrFFyVGQZm_K478UblUuNemU0RdQ5BwZBONKN6cqje-bwXJ7e2uIDodQp-sZxCL_Go5VtDU5N-jp5-wXeee1qXBGhn4wIysxu_BXhmKFQzyHu1yhVetJhtNebKVrSPpPt1erGm7XmquyIH81oCUUK5vexUsX-aTx1MtXZlbpA'
\set t_rs384 'eyJhbGciOiJSUzM4NCIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1SUzM4NCIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.gr9Dky0c_509-EpvjW9-Or5EYhSxutgfLiHryHFGqMQxA-KEE4MFJINBRifCf3QtnslRpF9sIuS7W1v7WjCUAn9jiwESWjaV4QzUnXJD-1g0jgxLQNKfHFTOVcJ72BTbH5xqoIHyiZOOQICuENT5W0QK1ZyGZ0WnYWcc_XZ21hAJDZ7KB2gWzSBKjobe38KZLGON-QjCp-8em9SxTNH-zGg3jkmj93_Q9pDd9aI53OfUEgLkjbVUgEFY7SomhEiQVnUGjGcrB6P2bbdsTQPeLZPOScZoyp6SuDZ8CEMi0AK7dfVjIkYbXMoQ5L0LmMtReGjjckzwg19jQEGhMIMBrA'
\set t_rs512 'eyJhbGciOiJSUzUxMiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1SUzUxMiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.sDEFl70nUe6XWhn03V2GXUI9Nam0bFkhmEX-SQIHd7s4oqQ_eBnyyaIUia8pk04jQYJi26SDKmWiP1u_fN7ROwUP-IfkV9FXpD-UZv4rTEdE55RtEcuW8i8Svinp5Tua-_fCtUm59HsA2J33wOVkbDD2ZU9JZCG0d3QrptJV_yxkxHOi2dcBScmuANKL21t_epRJnxMGNwWGisEvXCXBLol2PEGSSOVxRfVBeCyNXIWR36Px8EfBbk_Y9_30SK1w1gP9jBWuhOJfxQPFx5WFSS8YIIm1gvFOCLg0D7-HsfBPg1dvt-igs4CtKuGdRLi8wgdcCFSsm4MBnDV3IG04lg'
\set t_ps256 'eyJhbGciOiJQUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1QUzI1NiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.kFrbBUX5Se-v06MaPVrhh2VI5FLnsde55KGpvW-7BA0-4B97svvJYtLgq6dUkdcnXRYtF70kMxPN7UquMsFEIqtz1iKeG9uRaOCGSdhBoyh5I4plYWeNQGrvct1MKapp2rsWaMvx0d3sPNlRXqaSMArNtrTKKhR9x25W_qgBt8GOxD--pqIwBYUQGI3bT4CR0ccQkrS7UZa1CdoWg6Mqbd0ba37KIAYW3lYPFU6LkmYYjJG2tzJnTqf4LaU1I41rzj0r3pQn0AC9zezo5D-fO4ZN8voctQTSga9qQID-7nnfuG3yFlND0Nz4XSS24zXtOmxUnCUYOXCPpYoWIpfszA'
\set t_ps384 'eyJhbGciOiJQUzM4NCIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1QUzM4NCIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.z8mEOI5PD0P14T626jLvlBn-Viq20o3I56-N36_tblgayepZYyv-HYT8b7r_7dy3ABkdY7U6taQIr_ByfYsdRpFkb2JZr37xbBOYFzOL88S6xFi9VaXzLUh8GMXpJLmYmstblFXj3q5eap0j85BxL2XQJjSrVe2TOFPE2AiJHwQA9VimCpB_5wKVsyRYPKg8bZBjeA1Fukc446Ubkes6PECLNxHz8QBFFPwPcUmEYygIORWMVUhzfPz2PRMFBLV2Fc4xhbI96lbh8960nd9x88KG48w0IenxxK5G2y873hsL_HTARJIyj3dpVlFgkm1EEydqoP5qxi7D3kVMCmluvQ'
\set t_ps512 'eyJhbGciOiJQUzUxMiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ii1HTUc1R3gyOVNva1N6bFV6V3VLUWlydU1LZDlYd3EwTE4wVHlLMVV5cHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1QUzUxMiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.AsUYHPiUHgKpCPJyPxXV0BD9NYUKnCAuEXYpB-1ca-9z-TMmvIXsjHU9LYTiwv2vGSAjXhIiZ51bNQ39SH4lJEiar6f40QndFgjYlvpFTDPuOTjbU7W3QOV-UF6MOnO7NK6AMVNl5nG-r9akUQ6KqJWtzeAJ2dz8ojZasl1V-dm8yv0slt90wDWJZP7oC0sA1pzDKbAkWwxQipXtXQg-lLsFRSIPgaNaCDdLLQJO5xLuPRStcwcbC_3mtoHsAVBwt4iE5e2WtzAfXrr96enr7fo2kCd5lbDQ8Xvy4-GQmuvWhktg2paAP896fk4r5vkkw_1EPkBa7Xp7bZ26hOqfNg'
\set t_es256 'eyJhbGciOiJFUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6ImxWZmh5Z0xnelpiMXNLWGkyWERoUDZENldtZzdabFBZRFJXT3hZTWtFNEkifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1FUzI1NiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.5_NFWI0pLI5uNxEsUpDKAoga_2OkUgKo-JQ_HrTUuc3RJ1n3AOnzmkEnqFERKrS7wqT3IEaY1rOIMIhLMgXLOQ'
\set t_es384 'eyJhbGciOiJFUzM4NCIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6ImZ1d3NEVjFmb0VNYjBLNlgxZkdYUkNyS1hTOWFIbVRCLUkzVlN4WXZnOHMifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1FUzM4NCIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.eESRmGIhzGzltMOZs9hSm33jE5N-_93TubXUqA7oFsVYkzw0u6zbD2QtNYZ2XnfcyHQMr763Ssc33hXfRQLFqFjvp_M7sHdEZSiLIGLsa-FdEPV71Y_1pMWrHk68dABI'
\set t_es512 'eyJhbGciOiJFUzUxMiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6IlZZMnpNbXdYS1huOXJuSHN4Uy1leHZyRnlsaFhuLThRbDBNajktM3VNRU0ifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1FUzUxMiIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.AQM0q6WOPNH4QDy5WyfzeWYsBhRquGkrcrmoc-ZdKRmjDkdQCLc3tOuwkeDLNK7-zmYTUZcWV_JqI23DbrL6Qem9ALstLOVTD389FCVsx2P0Kph4iIDRIsyu8wWm-2zrDQj2OC8ahnzRJo3e55cRfEWWZoqVYCeQ2_RMgVqbs761bvxO'
\set t_eddsa 'eyJhbGciOiJFZERTQSIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6Ild0emRkZ2RmbkdmQmlOUE1SWHFOdzdGZHV4Y0pFeEw0QTg5V3RqOV82MEEifQ.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1FZERTQSIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.FxLf97J1V6S0HANqe6AbYMdNaXkuBanevDs70D3qi45lvXVB_Pp6tpXbrztdNswgVvbAPItQqDDJYi9hf3o1Cg'
\set t_es256_nokid 'eyJhbGciOiJFUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1ub2tpZCIsInN1Yl9pZCI6eyJmb3JtYXQiOiJlbWFpbCIsImVtYWlsIjoiYWxpY2VAZXhhbXBsZS5jb20ifSwiZXZlbnRzIjp7Imh0dHBzOi8vc2NoZW1hcy5vcGVuaWQubmV0L3NlY2V2ZW50L2NhZXAvZXZlbnQtdHlwZS9zZXNzaW9uLXJldm9rZWQiOnsiaW5pdGlhdGluZ19lbnRpdHkiOiJwb2xpY3kifX19.pIBHTAn1APWUq6fzUARh1K4vXdT3sPvnH26rf465HQ2ylY6cx3dP8bf3RngBcXvM5qScNrmBr4s27diYkXXj9g'
\set t_rs256_only 'eyJhbGciOiJSUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6InJzYS1yczI1Ni1vbmx5In0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1yczI1Ni1vbmx5Iiwic3ViX2lkIjp7ImZvcm1hdCI6ImVtYWlsIiwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSJ9LCJldmVudHMiOnsiaHR0cHM6Ly9zY2hlbWFzLm9wZW5pZC5uZXQvc2VjZXZlbnQvY2FlcC9ldmVudC10eXBlL3Nlc3Npb24tcmV2b2tlZCI6eyJpbml0aWF0aW5nX2VudGl0eSI6InBvbGljeSJ9fX0.ZciX7ZeSdyTrvDBpqbqlfHIuSEuHMjbWklEz4oONHE8LaquOw3po6L9TW8OI1dXQYw_VPFrech8vugLx1PdXA8cgxqw2TV_ohhaqMxjFwIQDcfy5eRCInsZakO2zCDLXnjuQKluXAZN-bECQn-je2XJ1IKj3KCVKAebS2Xh4RcPlFo2HrZ0P89aPvaZ9_EL2tOhYbmfjk2jMme5JiIQb2lrMaJe3LDg2cF2ffRU71Nz2u0LuMxEUGFeYFfZ-5KNAlwiJ72xev6TSQZJXPUjtY1hHmlsD24FuEXo0bJcUfvPQAqJhQ_vMrdee_3GzGQ2VF6GhD4ukp4FEjY_DY6t7ug'
\set t_ps256_only 'eyJhbGciOiJQUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCIsImtpZCI6InJzYS1yczI1Ni1vbmx5In0.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlL3MwNGEiLCJhdWQiOiJodHRwczovL2RiLmV4YW1wbGUvczA0YSIsImlhdCI6MTcwMDAwMDAwMCwianRpIjoiYXN5bS1wczI1Ni1vbmx5Iiwic3ViX2lkIjp7ImZvcm1hdCI6ImVtYWlsIiwiZW1haWwiOiJhbGljZUBleGFtcGxlLmNvbSJ9LCJldmVudHMiOnsiaHR0cHM6Ly9zY2hlbWFzLm9wZW5pZC5uZXQvc2VjZXZlbnQvY2FlcC9ldmVudC10eXBlL3Nlc3Npb24tcmV2b2tlZCI6eyJpbml0aWF0aW5nX2VudGl0eSI6InBvbGljeSJ9fX0.ORsGnLDhhg1zgOgfKfSs3NnQmrSEcvZL-7b0zDzfSfPxLnRsD3t0FrUm3_2VijjOQxjIxFWAeu3e9T8nD94X1tD5SmgZHSsl924gSwscq86vzUYzjeRvwkxnMPwW8cO2qbQDFdSAH_OCi10aVWx-XUcwYK6ziROYNXUhKelu-JzSSzKhLESSiWKCmpOdkfc2oKie0xxP5mziBuit2OEG3c0TZkbnoDgTlX8Jl1CA_SpZLKVrE0GP-JBf2smLO03gcaSCyuIbjAXv28dqs7f8WakrHMPZtALyYwPqcHjn0ygS7pOBJoIJTPHjUOho3DivDzAu73qEP-to_fj9VjmIvA'
SELECT name FROM setstream.create_stream('s04a', 'https://db.example/s04a',
    ARRAY['https://idp.example/s04a'], 'https://idp.example/s04a');
-- the jwcrypto public keys (kid: their thumbprints, as in the SETs' headers)
SELECT setstream.add_key('s04a', k) AS kid FROM (VALUES
    ('{"e":"AQAB","kty":"RSA","n":"0aec1v9OcZA13x79npVdnvqOqgQ9O-aVe6exqQ4LSgYgveDn86xPTapumKI_aio-vSOw3zfCXrmSJfQAEwzWHMHO4hpIZzEpW4lcTVG-u7jp47dysJEc5fSYeAdBfcF9syAS3N609DtfBbFEY2GnLYhenYCNWVPINJoLTly1I1cGmqOkdhmeKhQRNrIhqJoZVB2hH1h5-3-QZYTWebdy8-AmQXL6VVGIrGmsbmChVxqXdokkJyrOyOmm1pGC52c69-jBFFuo8YnpwcUqvr9IfRZoY5GDoUdudOqCr4OyPkaU0XXIbl0_yp7fWw_hcBkjDitcaCa4FSCJ9tZ-_AWilw"}'::jsonb),
    ('{"crv":"P-256","kty":"EC","x":"7GhvN4huzmzviiVdI74wFq2Ya1BjsAZVeAqO97OEZU0","y":"aGDhke6ADepJDtGEB9EhzEUoTG_BWiDT5mOSzzjXHIE"}'),
    ('{"crv":"P-384","kty":"EC","x":"MGS-6idYVJSNrx3du1Z-S5fD3LPXWHH1HQnvlONesqDnllwDPuVfrXSHxxnGCp9r","y":"nw2ms6VdEsfjZNvKzxGZTFT8HYVxk5wI3qZA28hNotPcx9ddtaPZaE6tSaSTT2oR"}'),
    ('{"crv":"P-521","kty":"EC","x":"AM-edyJZ14gXZ70fyjasksXTopwQ6AnOmAG5oXMvCLR0qbMa_8C1FtH0yD2BAPLJAsNO3-7dvi_jZbNwVZUgBl40","y":"AKuSpW_otKMSUUytJ2NFSuxMxZ3TZboJNdjTAAv0y8LGGv2mJjE4O5Mz5o-fFUKbbEaen0vN2W6Xj57qfz72cCmB"}'),
    ('{"crv":"Ed25519","kty":"OKP","x":"l9XIMW-7SE362hotifW_lTIrYX5OMlGjMb7X5soP494"}')) AS v (k);
CREATE TEMP TABLE asym (n serial, alg text, tok text);
INSERT INTO asym (alg, tok) VALUES
    ('RS256', :'t_rs256'), ('RS384', :'t_rs384'), ('RS512', :'t_rs512'),
    ('PS256', :'t_ps256'), ('PS384', :'t_ps384'), ('PS512', :'t_ps512'),
    ('ES256', :'t_es256'), ('ES384', :'t_es384'), ('ES512', :'t_es512'),
    ('EdDSA', :'t_eddsa');
SELECT n, alg, pg_temp.rcv('s04a', tok) AS result FROM asym ORDER BY n;
SELECT count(*) AS stored, bool_and(e.token = a.tok) AS tokens_exact,
       bool_and(e.header->>'alg' = a.alg) AS header_alg
  FROM setstream.events e JOIN asym a ON e.jti = 'asym-' || a.alg
 WHERE e.stream = 's04a';
-- a changed signature, or a changed payload, does not verify (for each alg)
SELECT n, alg,
       pg_temp.rcv('s04a', overlay(tok PLACING CASE WHEN substr(split_part(tok, '.', 3), 10, 1) = 'A' THEN 'B' ELSE 'A' END
                                   FROM length(tok) - length(split_part(tok, '.', 3)) + 10 FOR 1)) AS changed_signature,
       pg_temp.rcv('s04a', split_part(tok, '.', 1) || '.' ||
                   pg_temp.b64u(replace(convert_from(decode(rpad(translate(split_part(tok, '.', 2), '-_', '+/'),
                       (length(split_part(tok, '.', 2)) + 3) / 4 * 4, '='), 'base64'), 'UTF8'),
                       '"asym-', '"forged-')) || '.' || split_part(tok, '.', 3)) AS forged_jti
  FROM asym ORDER BY n;
-- the header names a key whose type does not fit its alg
SELECT pg_temp.rcv('s04a', pg_temp.b64u(
           '{"alg":"ES384","typ":"secevent+jwt","kid":"lVfhygLgzZb1sKXi2XDhP6D6Wmg7ZlPYDRWOxYMkE4I"}')
       || '.' || split_part(:'t_es256', '.', 2) || '.' || split_part(:'t_es256', '.', 3)) AS es384_on_p256;
SELECT pg_temp.rcv('s04a', pg_temp.b64u(
           '{"alg":"RS256","typ":"secevent+jwt","kid":"WtzddgdfnGfBiNPMRXqNw7FduxcJExL4A89Wtj9_60A"}')
       || '.' || split_part(:'t_eddsa', '.', 2) || '.' || split_part(:'t_rs256', '.', 3)) AS rs256_on_ed25519;
-- a key registered with an "alg" verifies only that alg
SELECT setstream.add_key('s04a', '{"e":"AQAB","kty":"RSA","kid":"rsa-rs256-only","alg":"RS256","n":"0aec1v9OcZA13x79npVdnvqOqgQ9O-aVe6exqQ4LSgYgveDn86xPTapumKI_aio-vSOw3zfCXrmSJfQAEwzWHMHO4hpIZzEpW4lcTVG-u7jp47dysJEc5fSYeAdBfcF9syAS3N609DtfBbFEY2GnLYhenYCNWVPINJoLTly1I1cGmqOkdhmeKhQRNrIhqJoZVB2hH1h5-3-QZYTWebdy8-AmQXL6VVGIrGmsbmChVxqXdokkJyrOyOmm1pGC52c69-jBFFuo8YnpwcUqvr9IfRZoY5GDoUdudOqCr4OyPkaU0XXIbl0_yp7fWw_hcBkjDitcaCa4FSCJ9tZ-_AWilw"}') AS kid;
SELECT pg_temp.rcv('s04a', :'t_rs256_only') AS rs256_with_rs256_key,
       pg_temp.rcv('s04a', :'t_ps256_only') AS ps256_with_rs256_key;
SELECT setstream.add_key('s04', jsonb_build_object('kty', 'oct', 'kid', 'hs512-only', 'alg', 'HS512',
    'k', pg_temp.b64u(convert_to(repeat('k', 64), 'UTF8')))) AS kid;
SELECT pg_temp.rcv('s04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":"hs512-only"}',
           pg_temp.claims('{"jti":"hs256-with-hs512-key"}'), convert_to(repeat('k', 64), 'UTF8'))) AS hs256_with_hs512_key;
SELECT pg_temp.rcv('s04', pg_temp.b64u('{"alg":"HS512","typ":"secevent+jwt","kid":"hs512-only"}') || '.' ||
           pg_temp.b64u(pg_temp.claims('{"jti":"hs512-with-hs512-key"}')) || '.' ||
           pg_temp.b64u(hmac(convert_to(pg_temp.b64u('{"alg":"HS512","typ":"secevent+jwt","kid":"hs512-only"}') || '.' ||
                                        pg_temp.b64u(pg_temp.claims('{"jti":"hs512-with-hs512-key"}')), 'UTF8'),
                             convert_to(repeat('k', 64), 'UTF8'), 'sha512'))) AS hs512_with_hs512_key;
-- HS256 keyed with the RSA public key (the algorithm-confusion attack)
SELECT pg_temp.rcv('s04a', pg_temp.hs(
           '{"alg":"HS256","typ":"secevent+jwt","kid":"-GMG5Gx29SokSzlUzWuKQiruMKd9Xwq0LN0TyK1Uyps"}',
           replace(pg_temp.claims('{"jti":"confused"}'), '/s04', '/s04a'),
           convert_to((SELECT jwk::text FROM setstream.keys WHERE stream = 's04a' AND kid = '-GMG5Gx29SokSzlUzWuKQiruMKd9Xwq0LN0TyK1Uyps'), 'UTF8'))) AS hs256_with_rsa_kid;
-- no kid: the keys whose type fits the alg are tried
SELECT pg_temp.rcv('s04a', :'t_es256_nokid') AS es256_no_kid;
SELECT pg_temp.rcv('s04a', pg_temp.b64u('{"alg":"ES256","typ":"secevent+jwt"}')
       || '.' || split_part(:'t_es256', '.', 2) || '.' || split_part(:'t_es256', '.', 3)) AS es256_no_kid_other_header;
SELECT pg_temp.rcv('s04a', pg_temp.b64u('{"alg":"HS256","typ":"secevent+jwt"}')
       || '.' || split_part(:'t_es256', '.', 2) || '.' || split_part(:'t_es256', '.', 3)) AS hs256_no_kid;

-- ------------------------------------------------------------------
-- every rule a SET can break
-- ------------------------------------------------------------------
CREATE TEMP TABLE bad (n serial, what text, stream text, tok text);
INSERT INTO bad (what, stream, tok) VALUES
    -- the compact serialization
    ('empty',                    's04', ''),
    ('larger than max_request_bytes', 's04', repeat('a', 1048577)),
    ('no dot',                   's04', 'abc'),
    ('one dot',                  's04', 'abc.def'),
    ('four dots (JWE)',          's04', 'a.b.c.d.e'),
    ('five dots',                's04', 'a.b.c.d.e.f'),
    ('empty header',             's04', '.' || pg_temp.b64u(pg_temp.claims()) || '.sig'),
    ('empty payload',            's04', pg_temp.b64u(pg_temp.hdr()) || '..sig'),
    ('signature not base64url',  's04', pg_temp.set() || '+'),
    ('header not base64url',     's04', 'eyJ$.' || pg_temp.b64u(pg_temp.claims()) || '.c2ln'),
    ('header of one character',  's04', 'e.' || pg_temp.b64u(pg_temp.claims()) || '.c2ln'),
    ('payload not base64url',    's04', pg_temp.b64u(pg_temp.hdr()) || '.eyJ=.c2ln'),
    ('padded base64',            's04', pg_temp.b64u(pg_temp.hdr()) || '=.' || pg_temp.b64u(pg_temp.claims()) || '.c2ln'),
    ('header not JSON',          's04', pg_temp.hs('{"alg":"HS256",', pg_temp.claims())),
    ('header an array',          's04', pg_temp.hs('["HS256"]', pg_temp.claims())),
    ('header duplicate member',  's04', pg_temp.hs(format('{"alg":"none","alg":"HS256","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    -- the JOSE header
    ('no alg',                   's04', pg_temp.hs(format('{"typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('alg empty',                's04', pg_temp.hs(format('{"alg":"","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('alg not a string',         's04', pg_temp.hs(format('{"alg":256,"typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('crit',                     's04', pg_temp.hs(format('{"alg":"HS256","typ":"secevent+jwt","kid":"%s","crit":["exp"],"exp":1}', pg_temp.kid()), pg_temp.claims())),
    ('enc in a JWS header',      's04', pg_temp.hs(format('{"alg":"HS256","enc":"A128GCM","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('typ not a string',         's04', pg_temp.hs(format('{"alg":"HS256","typ":1,"kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('ssf: no typ',              's04', pg_temp.hs(format('{"alg":"HS256","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('ssf: typ JWT',             's04', pg_temp.hs(format('{"alg":"HS256","typ":"JWT","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('typ with parameters',      's04', pg_temp.hs(format('{"alg":"HS256","typ":"secevent+jwt; x=y","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('rfc8417: typ jose',        's04-8417', pg_temp.hs(format('{"alg":"HS256","typ":"jose","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('kid empty',                's04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":""}', pg_temp.claims())),
    ('kid not a string',         's04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":5}', pg_temp.claims())),
    -- the claims
    ('claims not JSON',          's04', pg_temp.hs(pg_temp.hdr(), '{"iss":')),
    ('claims an array',          's04', pg_temp.hs(pg_temp.hdr(), '[1]')),
    ('claims duplicate member',  's04', pg_temp.hs(pg_temp.hdr(), replace(pg_temp.claims(), '{', '{"jti": "dup-1", '))),
    ('nested duplicate member',  's04', pg_temp.hs(pg_temp.hdr(), replace(pg_temp.claims(), '"format": "email"', '"format": "email", "format": "opaque"'))),
    ('claims with trailing data', 's04', pg_temp.hs(pg_temp.hdr(), pg_temp.claims() || ' {}')),
    ('no iss',                   's04', pg_temp.set('{"iss":null}')),
    ('iss empty',                's04', pg_temp.set('{"iss":""}')),
    ('iss not a string',         's04', pg_temp.set('{"iss":["https://idp.example/s04"]}')),
    ('no jti',                   's04', pg_temp.set('{"jti":null}')),
    ('jti empty',                's04', pg_temp.set('{"jti":""}')),
    ('jti a number',             's04', pg_temp.set('{"jti":42}')),
    ('jti of 257 bytes',         's04', pg_temp.set(jsonb_build_object('jti', repeat('j', 257)))),
    ('no iat',                   's04', pg_temp.set('{"iat":null}')),
    ('iat a string',             's04', pg_temp.set('{"iat":"1700000000"}')),
    ('iat negative',             's04', pg_temp.set('{"iat":-1}')),
    ('iat after 9999',           's04', pg_temp.set('{"iat":253402300800}')),
    ('no events',                's04', pg_temp.set('{"events":null}')),
    ('events empty',             's04', pg_temp.set('{"events":{}}')),
    ('events an array',          's04', pg_temp.set('{"events":["https://example.com/e"]}')),
    ('event type not a URI',     's04', pg_temp.set('{"events":{"session-revoked":{}}}')),
    ('event type with a space',  's04', pg_temp.set('{"events":{"https://example.com/a b":{}}}')),
    ('event payload a string',   's04', pg_temp.set('{"events":{"https://example.com/e":"x"}}')),
    ('event payload null',       's04', pg_temp.hs(pg_temp.hdr(), replace(pg_temp.claims(), '{"initiating_entity": "policy"}', 'null'))),
    ('aud a number',             's04', pg_temp.set('{"aud":1}')),
    ('aud empty string',         's04', pg_temp.set('{"aud":""}')),
    ('aud empty array',          's04', pg_temp.set('{"aud":[]}')),
    ('aud array with a number',  's04', pg_temp.set('{"aud":["https://db.example/s04",1]}')),
    ('txn a number',             's04', pg_temp.set('{"txn":5}')),
    ('txn empty',                's04', pg_temp.set('{"txn":""}')),
    ('toe a string',             's04', pg_temp.set('{"toe":"yesterday"}')),
    ('exp a string',             's04-8417', pg_temp.set('{"exp":"never"}')),
    ('nbf negative',             's04', pg_temp.set('{"nbf":-5}')),
    ('sub a number',             's04-8417', pg_temp.set('{"sub":5}')),
    -- the issuer
    ('iss of someone else',      's04', pg_temp.set('{"iss":"https://evil.example"}')),
    ('iss with a trailing slash', 's04', pg_temp.set('{"iss":"https://idp.example/s04/"}')),
    ('stream without peer_issuer', 's04-nopeer', pg_temp.set()),
    -- the signature
    ('alg none, not allowed',    's04', pg_temp.unsigned('{"alg":"none","typ":"secevent+jwt"}', pg_temp.claims())),
    ('alg none with a signature', 's04-none', pg_temp.b64u('{"alg":"none","typ":"secevent+jwt"}') || '.' || pg_temp.b64u(pg_temp.claims()) || '.c2ln'),
    ('unknown kid',              's04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":"nope"}', pg_temp.claims())),
    ('stream without keys',      's04-nokeys', pg_temp.set()),
    ('stream without keys, kid', 's04-nokeys', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":"x"}', pg_temp.claims())),
    ('HS384 with a 32-byte key', 's04', pg_temp.hs(format('{"alg":"HS384","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('RS256 with an oct key',    's04', pg_temp.hs(format('{"alg":"RS256","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('ES256, no kid, oct keys',  's04', pg_temp.hs('{"alg":"ES256","typ":"secevent+jwt"}', pg_temp.claims())),
    ('alg in lower case',        's04', pg_temp.hs(format('{"alg":"hs256","typ":"secevent+jwt","kid":"%s"}', pg_temp.kid()), pg_temp.claims())),
    ('wrong secret',             's04', pg_temp.hs(pg_temp.hdr(), pg_temp.claims(), convert_to(repeat('w', 32), 'UTF8'))),
    ('signature of other claims', 's04', split_part(pg_temp.set(), '.', 1) || '.' || split_part(pg_temp.set('{"jti":"other"}'), '.', 2) || '.' || split_part(pg_temp.set(), '.', 3)),
    ('signature removed',        's04', split_part(pg_temp.set(), '.', 1) || '.' || split_part(pg_temp.set(), '.', 2) || '.'),
    -- the audience
    ('ssf: no aud',              's04', pg_temp.set('{"aud":null}')),
    ('aud of someone else',      's04', pg_temp.set('{"aud":"https://other.example"}')),
    ('aud array without us',     's04', pg_temp.set('{"aud":["https://a.example","https://b.example"]}')),
    ('aud differs in case',      's04', pg_temp.set('{"aud":"https://DB.example/s04"}')),
    ('rfc8417: aud without us',  's04-8417', pg_temp.set('{"aud":"https://other.example"}')),
    -- the SSF profile
    ('ssf: sub',                 's04', pg_temp.set('{"sub":"user-1"}')),
    ('ssf: exp',                 's04', pg_temp.set('{"exp":1800000000}')),
    ('ssf: no sub_id',           's04', pg_temp.set('{"sub_id":null}')),
    -- the subject identifier
    ('sub_id a string',          's04', pg_temp.sub('"alice@example.com"')),
    ('sub_id without format',    's04', pg_temp.sub('{"email":"alice@example.com"}')),
    ('sub_id format empty',      's04', pg_temp.sub('{"format":"","email":"alice@example.com"}')),
    ('sub_id format a number',   's04', pg_temp.sub('{"format":1}')),
    ('unknown format',           's04', pg_temp.sub('{"format":"username","username":"alice"}')),
    ('email without member',     's04', pg_temp.sub('{"format":"email","id":"alice"}')),
    ('email member a number',    's04', pg_temp.sub('{"format":"email","email":5}')),
    ('email member empty',       's04', pg_temp.sub('{"format":"email","email":""}')),
    ('email without @',          's04', pg_temp.sub('{"format":"email","email":"alice.example.com"}')),
    ('email without domain dot', 's04', pg_temp.sub('{"format":"email","email":"alice@example"}')),
    ('email with a space',       's04', pg_temp.sub('{"format":"email","email":"alice smith@example.com"}')),
    ('NUL in a claims string',           's04', pg_temp.hs(pg_temp.hdr(), replace(pg_temp.claims(), 'alice@', 'al\u0000ice@'))),
    ('email extra member',       's04', pg_temp.sub('{"format":"email","email":"alice@example.com","name":"Alice"}')),
    ('iss_sub without sub',      's04', pg_temp.sub('{"format":"iss_sub","iss":"https://idp.example"}')),
    ('opaque id empty',          's04', pg_temp.sub('{"format":"opaque","id":""}')),
    ('phone without +',          's04', pg_temp.sub('{"format":"phone_number","phone_number":"12065550100"}')),
    ('phone with a dash',        's04', pg_temp.sub('{"format":"phone_number","phone_number":"+1-206-555-0100"}')),
    ('phone of 16 digits',       's04', pg_temp.sub('{"format":"phone_number","phone_number":"+1234567890123456"}')),
    ('account not acct:',        's04', pg_temp.sub('{"format":"account","uri":"mailto:alice@example.com"}')),
    ('did not did:',             's04', pg_temp.sub('{"format":"did","url":"https://example.com/did"}')),
    ('did method upper case',    's04', pg_temp.sub('{"format":"did","url":"did:Example:123"}')),
    ('uri not a URI',            's04', pg_temp.sub('{"format":"uri","uri":"not a uri"}')),
    ('ip-addresses not a list',  's04', pg_temp.sub('{"format":"ip-addresses","ip-addresses":"10.0.0.1"}')),
    ('ip-addresses empty',       's04', pg_temp.sub('{"format":"ip-addresses","ip-addresses":[]}')),
    ('ip-addresses bad address', 's04', pg_temp.sub('{"format":"ip-addresses","ip-addresses":["10.0.0.256"]}')),
    ('ip-addresses extra member', 's04', pg_temp.sub('{"format":"ip-addresses","ip-addresses":["10.0.0.1"],"x":1}')),
    ('aliases without list',     's04', pg_temp.sub('{"format":"aliases"}')),
    ('aliases extra member',     's04', pg_temp.sub('{"format":"aliases","identifiers":[{"format":"opaque","id":"a"}],"x":1}')),
    ('aliases in aliases',       's04', pg_temp.sub('{"format":"aliases","identifiers":[{"format":"aliases","identifiers":[{"format":"opaque","id":"a"}]}]}')),
    ('aliases with a bad one',   's04', pg_temp.sub('{"format":"aliases","identifiers":[{"format":"opaque","id":"a"},{"format":"email","email":"x"}]}')),
    ('complex without members',  's04', pg_temp.sub('{"format":"complex"}')),
    ('complex in complex',       's04', pg_temp.sub('{"format":"complex","user":{"format":"complex","device":{"format":"opaque","id":"d"}}}')),
    ('aliases in complex',       's04', pg_temp.sub('{"format":"complex","user":{"format":"aliases","identifiers":[{"format":"opaque","id":"a"}]}}')),
    ('complex with a bad member', 's04', pg_temp.sub('{"format":"complex","user":{"format":"phone_number","phone_number":"555"}}'));
SELECT n, what, pg_temp.rcv(stream, tok) AS result FROM bad ORDER BY n;
-- none of them was stored
SELECT count(*) AS stored FROM setstream.events e JOIN bad b ON e.token = b.tok;
SELECT count(*) AS stored FROM setstream.events WHERE jti IN ('dup-1', 'other', 'x', 's04-x');

-- several faults: the code of the first check that fails wins
-- (claims, then iss, then signature, then aud, then the profile)
SELECT pg_temp.rcv('s04', pg_temp.hs(pg_temp.hdr(), pg_temp.claims('{"iss":"https://evil.example","iat":"x"}'), convert_to(repeat('w', 32), 'UTF8'))) AS claims_first;
SELECT pg_temp.rcv('s04', pg_temp.hs(pg_temp.hdr(), pg_temp.claims('{"iss":"https://evil.example","aud":"x"}'), convert_to(repeat('w', 32), 'UTF8'))) AS iss_before_signature;
SELECT pg_temp.rcv('s04', pg_temp.hs(pg_temp.hdr(), pg_temp.claims('{"aud":"x","sub":"u"}'), convert_to(repeat('w', 32), 'UTF8'))) AS signature_before_aud;
SELECT pg_temp.rcv('s04', pg_temp.set('{"aud":"x","sub":"u","sub_id":null}')) AS aud_before_profile;

-- changed settings and new keys apply to the very next SET
SELECT peer_issuer FROM setstream.alter_stream('s04', peer_issuer => 'https://idp2.example/s04');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-1"}')) AS old_iss,
       pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-1","iss":"https://idp2.example/s04"}')) AS new_iss;
SELECT issuer FROM setstream.alter_stream('s04', issuer => 'https://db2.example/s04');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-2","iss":"https://idp2.example/s04"}')) AS old_aud,
       pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-2","iss":"https://idp2.example/s04","aud":"https://db2.example/s04"}')) AS new_aud;
SELECT profile FROM setstream.alter_stream('s04', profile => 'rfc8417');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-3","iss":"https://idp2.example/s04","aud":"https://db2.example/s04","sub":"u"}')) AS sub_under_rfc8417;
SELECT issuer, peer_issuer, profile FROM setstream.alter_stream('s04', issuer => 'https://db.example/s04',
    peer_issuer => 'https://idp.example/s04', profile => 'ssf');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"alter-4","sub":"u"}')) AS sub_under_ssf_again;
SELECT setstream.add_key('s04', jsonb_build_object('kty', 'oct', 'kid', 'late-key',
    'k', pg_temp.b64u(convert_to(repeat('L', 32), 'UTF8')))) AS kid;
SELECT pg_temp.rcv('s04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":"late-key"}',
    pg_temp.claims('{"jti":"late-key-1"}'), convert_to(repeat('L', 32), 'UTF8'))) AS new_key;
SELECT setstream.revoke_key('s04', 'late-key');
SELECT pg_temp.rcv('s04', pg_temp.hs('{"alg":"HS256","typ":"secevent+jwt","kid":"late-key"}',
    pg_temp.claims('{"jti":"late-key-2"}'), convert_to(repeat('L', 32), 'UTF8'))) AS revoked_key;

-- a stream refusing inbound SETs refuses every SET, valid or not
-- (access_denied); a disabled one takes them (disabled stops what it sends)
SELECT inbound FROM setstream.set_inbound('s04', 'refuse');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"while-refusing"}')) AS valid_set;
SELECT pg_temp.rcv('s04', 'garbage') AS garbage;
SELECT inbound FROM setstream.set_inbound('s04', 'accept');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"while-refusing"}')) AS after_accept;
SELECT status FROM setstream.disable_stream('s04');
SELECT pg_temp.rcv('s04', pg_temp.set('{"jti":"while-disabled"}')) AS while_disabled;
SELECT status FROM setstream.enable_stream('s04');

-- unknown stream; NULL arguments (receive is STRICT)
SELECT pg_temp.try(format('SELECT setstream.receive(%L, %L)', 's04-nosuch', pg_temp.set()));
SELECT setstream.receive(NULL, pg_temp.set()) IS NULL AS null_stream,
       setstream.receive('s04', NULL) IS NULL AS null_set;
-- the plain error display
SELECT setstream.receive('s04', pg_temp.set('{"iss":"https://evil.example"}'));
SELECT setstream.receive('s04', 'not-a-set');

-- a received SET is part of its transaction
BEGIN;
SELECT setstream.receive('s04', pg_temp.set('{"jti":"rolled-back"}')) AS jti;
ROLLBACK;
SELECT count(*) AS rolled_back FROM setstream.events WHERE jti = 'rolled-back';

SELECT stream, count(*) FROM setstream.events WHERE stream LIKE 's04%' GROUP BY stream ORDER BY stream COLLATE "C";

DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's04%';
END $$;
SELECT count(*) FROM setstream.events WHERE stream LIKE 's04%';
