-- Client certificates bound to a stream (mTLS) and the client_auth policy:
-- bind_client_cert / unbind_client_cert with their errors (42704 unknown
-- stream or binding, 42710 already bound, 22023 not one valid certificate,
-- a private key, an expired certificate, a malformed fingerprint), the
-- fingerprint (SHA-256 of the DER, computed here independently from the
-- PEM), create_stream/alter_stream client_auth, drop_stream cascading, and
-- the privileges binding needs.
BEGIN;
SELECT plan(30);

CREATE TEMP TABLE pem (name text PRIMARY KEY, text text);
INSERT INTO pem VALUES
 -- self-signed P-256, CN=tap client, valid 2020-01-01 .. 2120-01-01
 ('good', $pem$-----BEGIN CERTIFICATE-----
MIIBTjCB9KADAgECAgID6DAKBggqhkjOPQQDAjAvMRMwEQYDVQQDDAp0YXAgY2xp
ZW50MRgwFgYDVQQKDA9zZXRzdHJlYW0gdGVzdHMwIBcNMjAwMTAxMDAwMDAwWhgP
MjEyMDAxMDEwMDAwMDBaMC8xEzARBgNVBAMMCnRhcCBjbGllbnQxGDAWBgNVBAoM
D3NldHN0cmVhbSB0ZXN0czBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABL2M2/fH
TIJ3QdNtT0gWG+5Wo9rA/Z+CTM0tif/4wMfIrAdgsrHuuhqLa8AGR3Z+qrUjPTqG
nvBD2jy8bx8AVTowCgYIKoZIzj0EAwIDSQAwRgIhAN77VM2KmXAMpN0O+O4m5aLs
Rg4FVE/qvFzq4vHRGXszAiEAlM8NFSgQyOpHvawwJ8GcbpJcCoVqWoqpkmM0vLXw
ELc=
-----END CERTIFICATE-----
$pem$),
 -- self-signed P-256, CN=tap expired, valid 2000-01-01 .. 2001-01-01
 ('expired', $pem$-----BEGIN CERTIFICATE-----
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
CREATE FUNCTION pg_temp.pem(n text) RETURNS text LANGUAGE sql STABLE AS $$ SELECT text FROM pem WHERE name = n $$;
-- the fingerprint, from the base64 of the PEM body
CREATE FUNCTION pg_temp.fp(n text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(decode(regexp_replace(pg_temp.pem(n), '-----[A-Z ]+-----|\s', '', 'g'), 'base64')), 'hex') $$;

SELECT setstream.create_stream('tap-c1', 'https://c1.example', ARRAY['https://peer.example']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-c2', 'https://c2.example', ARRAY['https://peer.example'],
                               client_auth => 'cert') IS NOT NULL AS ok \gset

-- ---------------------------------------------------------------- client_auth
SELECT is((SELECT client_auth FROM setstream.streams WHERE name = 'tap-c1'), 'bearer',
          'create_stream: client_auth defaults to bearer');
SELECT is((SELECT client_auth FROM setstream.streams WHERE name = 'tap-c2'), 'cert',
          'create_stream stores client_auth');
SELECT is((setstream.alter_stream('tap-c1', client_auth => 'bearer+cert')).client_auth, 'bearer+cert',
          'alter_stream changes client_auth');
SELECT is((setstream.alter_stream('tap-c1', issuer => 'https://c1b.example')).client_auth, 'bearer+cert',
          'alter_stream without client_auth keeps it');
SELECT throws_ok($$ SELECT setstream.alter_stream('tap-c1', client_auth => 'password') $$,
                 '22023', 'unknown client_auth "password"', 'alter_stream: an unknown client_auth -> 22023');
SELECT throws_ok($$ SELECT setstream.create_stream('tap-c3', 'https://c3.example', ARRAY['https://p.example'],
                                                   client_auth => 'mtls') $$,
                 '22023', 'unknown client_auth "mtls"', 'create_stream: an unknown client_auth -> 22023');

-- ---------------------------------------------------------------- bind_client_cert
SELECT is(setstream.bind_client_cert('tap-c1', pg_temp.pem('good')), pg_temp.fp('good'),
          'bind_client_cert returns the SHA-256 of the DER certificate, in hex');
SELECT results_eq($$ SELECT encode(sha256, 'hex'), subject, not_after FROM setstream.client_certs WHERE stream = 'tap-c1' $$,
                  $$ VALUES (pg_temp.fp('good'), 'O=setstream tests,CN=tap client', '2120-01-01 00:00:00+00'::timestamptz) $$,
                  'the binding keeps the fingerprint, the subject (RFC 2253) and the expiry');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', pg_temp.pem('good')) $$,
                 '42710', format('client certificate %s is already bound to stream "tap-c1"', pg_temp.fp('good')),
                 'binding a certificate twice -> 42710');
SELECT is(setstream.bind_client_cert('tap-c2', E'  \n' || pg_temp.pem('good') || E'\n'), pg_temp.fp('good'),
          'the same certificate can be bound to a second stream (surrounding blanks are fine)');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-nope', pg_temp.pem('good')) $$,
                 '42704', 'stream "tap-nope" does not exist', 'bind_client_cert on an unknown stream -> 42704');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', 'not a certificate') $$,
                 '22023', 'invalid client certificate', 'text that is not PEM -> 22023');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1',
                        E'-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n') $$,
                 '22023', 'invalid client certificate', 'a PEM block that is no certificate -> 22023');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', pg_temp.pem('good') || pg_temp.pem('expired')) $$,
                 '22023', 'invalid client certificate', 'two certificates in one text -> 22023');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', pg_temp.pem('expired')) $$,
                 '22023', 'invalid client certificate', 'an expired certificate -> 22023');
-- a private key is refused, and the error does not repeat it
CREATE FUNCTION pg_temp.bind_error(stream text, cert text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text;
BEGIN
    PERFORM setstream.bind_client_cert(stream, cert);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || msg || ' / ' || det;
END $$;
SELECT is(pg_temp.bind_error('tap-c2', pg_temp.pem('good') ||
              E'-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n'),
          '22023: invalid client certificate / The text holds a private key; bind the certificate only.',
          'a private key with the certificate -> 22023, and the key is not echoed');
SELECT is((SELECT count(*)::int FROM setstream.client_certs WHERE stream IN ('tap-c1', 'tap-c2')), 2,
          'no refused certificate was bound');

-- ---------------------------------------------------------------- unbind_client_cert
SELECT lives_ok(format($$ SELECT setstream.unbind_client_cert('tap-c1', %L) $$,
                       upper(regexp_replace(pg_temp.fp('good'), '(..)(?!$)', '\1:', 'g'))),
                'unbind_client_cert takes the fingerprint in upper case with colons');
SELECT is((SELECT count(*)::int FROM setstream.client_certs WHERE stream = 'tap-c1'), 0,
          'the binding is gone');
SELECT is((SELECT count(*)::int FROM setstream.client_certs WHERE stream = 'tap-c2'), 1,
          'the other stream keeps its binding');
SELECT throws_ok(format($$ SELECT setstream.unbind_client_cert('tap-c1', %L) $$, pg_temp.fp('good')),
                 '42704', format('stream "tap-c1" has no client certificate %s', pg_temp.fp('good')),
                 'unbinding a certificate that is not bound -> 42704');
SELECT throws_ok($$ SELECT setstream.unbind_client_cert('tap-c1', 'abc') $$,
                 '22023', 'invalid certificate fingerprint "abc"', 'a malformed fingerprint -> 22023');
SELECT throws_ok($$ SELECT setstream.unbind_client_cert('tap-nope', repeat('0', 64)) $$,
                 '42704', 'stream "tap-nope" does not exist', 'unbind_client_cert on an unknown stream -> 42704');

-- ---------------------------------------------------------------- privileges
CREATE ROLE tap_cert_manager;
GRANT USAGE ON SCHEMA setstream TO tap_cert_manager;
GRANT SELECT ON pem TO tap_cert_manager;
GRANT EXECUTE ON FUNCTION setstream.bind_client_cert(text, text) TO tap_cert_manager;
SET LOCAL ROLE tap_cert_manager;
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', pg_temp.pem('good')) $$,
                 '42704', 'stream "tap-c1" does not exist',
                 'a role with no right on the stream cannot even name it');
RESET ROLE;
SELECT setstream.grant_stream('tap-c1', 'tap_cert_manager', '{read}') IS NULL AS granted \gset
SET LOCAL ROLE tap_cert_manager;
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c1', pg_temp.pem('good')) $$,
                 '42501', 'permission denied for stream "tap-c1"',
                 'binding needs the manage right on the stream');
RESET ROLE;
SELECT setstream.grant_stream('tap-c1', 'tap_cert_manager', '{manage}') IS NULL AS granted \gset
SET LOCAL ROLE tap_cert_manager;
SELECT is(setstream.bind_client_cert('tap-c1', pg_temp.pem('good')), pg_temp.fp('good'),
          'with the manage right a role can bind');
SELECT lives_ok(format($$ SELECT setstream.unbind_client_cert('tap-c1', %L) $$, pg_temp.fp('good')),
                'with the manage right a role can unbind');
SELECT throws_ok($$ SELECT setstream.bind_client_cert('tap-c2', pg_temp.pem('good')) $$,
                 '42704', 'stream "tap-c2" does not exist',
                 'the manage right on one stream opens no other');
RESET ROLE;

-- ---------------------------------------------------------------- drop_stream cascades
SELECT lives_ok($$ SELECT setstream.drop_stream('tap-c2') $$, 'drop_stream drops a stream with a bound certificate');
SELECT is((SELECT count(*)::int FROM setstream.client_certs WHERE stream = 'tap-c2'), 0,
          'drop_stream removes its client certificate bindings');

SELECT * FROM finish();
ROLLBACK;
