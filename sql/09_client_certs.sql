--
-- 09_client_certs: client_auth on create_stream/alter_stream,
-- bind_client_cert and unbind_client_cert, and every error message of
-- them (mTLS: client certificates bound to a stream).
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
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's09%';
END $$;

-- a self-signed P-256 certificate (CN=tap client, valid 2020..2120) and an
-- expired one (CN=tap expired, valid 2000..2001)
CREATE TEMP TABLE pem (name text PRIMARY KEY, text text);
INSERT INTO pem VALUES ('good', $pem$-----BEGIN CERTIFICATE-----
MIIBTjCB9KADAgECAgID6DAKBggqhkjOPQQDAjAvMRMwEQYDVQQDDAp0YXAgY2xp
ZW50MRgwFgYDVQQKDA9zZXRzdHJlYW0gdGVzdHMwIBcNMjAwMTAxMDAwMDAwWhgP
MjEyMDAxMDEwMDAwMDBaMC8xEzARBgNVBAMMCnRhcCBjbGllbnQxGDAWBgNVBAoM
D3NldHN0cmVhbSB0ZXN0czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABL2M2/fH
TIJ3QdNtT0gWG+5Wo9rA/Z+CTM0tif/4wMfIrAdgsrHuuhqLa8AGR3Z+qrUjPTqG
nvBD2jy8bx8AVTowCgYIKoZIzj0EAwIDSQAwRgIhAN77VM2KmXAMpN0O+O4m5aLs
Rg4FVE/qvFzq4vHRGXszAiEAlM8NFSgQyOpHvawwJ8GcbpJcCoVqWoqpkmM0vLXw
ELc=
-----END CERTIFICATE-----
$pem$), ('expired', $pem$-----BEGIN CERTIFICATE-----
MIIBTTCB9KADAgECAgID6DAKBggqhkjOPQQDAjAwMRQwEgYDVQQDDAt0YXAgZXhw
aXJlZDEYMBYGA1UECgwPc2V0c3RyZWFtIHRlc3RzMB4XDTAwMDEwMTAwMDAwMFoX
DTAxMDEwMTAwMDAwMFowMDEUMBIGA1UEAwwLdGFwIGV4cGlyZWQxGDAWBgNVBAoM
D3NldHN0cmVhbSB0ZXN0czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABJR0Bv+B
nl5DwwRGCI0IFy3Rf/9H/4+hjF793gltjYpdVU05Ok/6QnVdQUHlYS0X+m4RPL+Q
/PWz8qutHOjU8tkwCgYIKoZIzj0EAwIDSAAwRQIgbAf5cbi4AnUfN1XJDJdkVnGf
8ZVxsRu9k6yHn/Ye+yYCIQDrCeaEUFHmTPsvN+6SIodgGaJOARna+whfOKNMF8Q3
pg==
-----END CERTIFICATE-----
$pem$);

-- ------------------------------------------------------------------
-- client_auth
-- ------------------------------------------------------------------
SELECT name, client_auth FROM setstream.create_stream('s09-a', 'https://db.example/a', ARRAY['https://rp']);
SELECT name, client_auth FROM setstream.create_stream('s09-b', 'https://db.example/b', ARRAY['https://rp'],
                                                      client_auth => 'cert');
SELECT name, client_auth FROM setstream.alter_stream('s09-a', client_auth => 'bearer+cert');
SELECT name, client_auth FROM setstream.alter_stream('s09-a', profile => 'ssf');
SELECT pg_temp.try($$SELECT setstream.create_stream('s09-e', 'https://x', ARRAY['a'], client_auth => 'tls')$$);
SELECT pg_temp.try($$SELECT setstream.alter_stream('s09-a', client_auth => 'Bearer')$$);
SELECT count(*) FROM setstream.streams WHERE name = 's09-e';

-- ------------------------------------------------------------------
-- bind_client_cert
-- ------------------------------------------------------------------
SELECT setstream.bind_client_cert('s09-b', (SELECT text FROM pem WHERE name = 'good'));
SELECT encode(sha256, 'hex') AS sha256, subject, not_after AT TIME ZONE 'UTC' AS not_after
  FROM setstream.client_certs WHERE stream = 's09-b';
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-b', (SELECT text FROM pem WHERE name = 'good'))$$);
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-nope', (SELECT text FROM pem WHERE name = 'good'))$$);
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-b', 'hello')$$);
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-b', (SELECT text FROM pem WHERE name = 'expired'))$$);
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-b', (SELECT string_agg(text, '') FROM pem))$$);
SELECT pg_temp.try($$SELECT setstream.bind_client_cert('s09-b',
    E'-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n')$$);
SELECT count(*) FROM setstream.client_certs WHERE stream LIKE 's09%';

-- ------------------------------------------------------------------
-- unbind_client_cert
-- ------------------------------------------------------------------
SELECT pg_temp.try($$SELECT setstream.unbind_client_cert('s09-b', 'zz')$$);
SELECT pg_temp.try($$SELECT setstream.unbind_client_cert('s09-nope', repeat('ab', 32))$$);
SELECT pg_temp.try($$SELECT setstream.unbind_client_cert('s09-a', repeat('ab', 32))$$);
SELECT pg_temp.try(format($$SELECT setstream.unbind_client_cert('s09-b', %L)$$,
    (SELECT upper(encode(sha256, 'hex')) FROM setstream.client_certs WHERE stream = 's09-b')));
SELECT count(*) FROM setstream.client_certs WHERE stream LIKE 's09%';

-- the plain error display, with its DETAIL and HINT
SELECT setstream.bind_client_cert('s09-b', 'hello');

SELECT setstream.drop_stream('s09-a');
SELECT setstream.drop_stream('s09-b');
