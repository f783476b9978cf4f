-- Schema contract of setstream (DESIGN.md, "Public contract" and "Data model"):
-- tables and their columns/types, keys that make inbound SETs unique per
-- (stream, iss, jti), the query indexes on events, and the SQL API signatures.
BEGIN;
SELECT plan(131);

-- ---------------------------------------------------------------- tables
SELECT has_schema('setstream');
SELECT has_table('setstream', 'streams', 'table setstream.streams exists');
SELECT has_table('setstream', 'keys', 'table setstream.keys exists');
SELECT has_table('setstream', 'key_secrets', 'table setstream.key_secrets exists');
SELECT has_table('setstream', 'tokens', 'table setstream.tokens exists');
SELECT has_table('setstream', 'events', 'table setstream.events exists');
SELECT has_table('setstream', 'outbox', 'table setstream.outbox exists');
SELECT has_table('setstream', 'client_certs', 'table setstream.client_certs exists');

-- ---------------------------------------------------------------- streams
SELECT col_type_is('setstream', 'streams', 'name', 'text', 'streams.name is text');
SELECT col_type_is('setstream', 'streams', 'issuer', 'text', 'streams.issuer is text');
SELECT col_type_is('setstream', 'streams', 'audience', 'text[]', 'streams.audience is text[]');
SELECT col_type_is('setstream', 'streams', 'peer_issuer', 'text', 'streams.peer_issuer is text');
SELECT col_type_is('setstream', 'streams', 'profile', 'text', 'streams.profile is text');
SELECT col_type_is('setstream', 'streams', 'status', 'text', 'streams.status is text');
SELECT col_is_pk('setstream', 'streams', 'name', 'streams is keyed on name');
SELECT col_type_is('setstream', 'streams', 'client_auth', 'text', 'streams.client_auth is text');
SELECT col_default_is('setstream', 'streams', 'client_auth', 'bearer', 'streams.client_auth defaults to bearer');
SELECT throws_ok($$
    INSERT INTO setstream.streams (name, issuer, audience, client_auth)
    VALUES ('tap-schema-ca', 'https://me.example', ARRAY['https://peer.example'], 'password')
$$, '23514', NULL, 'streams.client_auth is one of bearer, cert, bearer+cert');

-- ---------------------------------------------------------------- client_certs
SELECT col_type_is('setstream', 'client_certs', 'stream', 'text', 'client_certs.stream is text');
SELECT col_type_is('setstream', 'client_certs', 'sha256', 'bytea', 'client_certs.sha256 is bytea');
SELECT col_type_is('setstream', 'client_certs', 'subject', 'text', 'client_certs.subject is text');
SELECT col_type_is('setstream', 'client_certs', 'not_after', 'timestamp with time zone', 'client_certs.not_after is timestamptz');
SELECT col_is_pk('setstream', 'client_certs', ARRAY['stream', 'sha256'], 'client_certs is keyed on (stream, sha256)');
SELECT has_trigger('setstream', 'client_certs', 'config_changed',
          'a change to client_certs drops the listeners'' caches (config_changed trigger)');
SELECT ok(EXISTS (SELECT 1 FROM pg_extension e
                   WHERE e.extname = 'setstream'
                     AND 'setstream.client_certs'::regclass = ANY (e.extconfig)),
          'pg_dump keeps the rows of client_certs');

-- ---------------------------------------------------------------- keys
SELECT col_type_is('setstream', 'keys', 'stream', 'text', 'keys.stream is text');
SELECT col_type_is('setstream', 'keys', 'kid', 'text', 'keys.kid is text');
SELECT col_type_is('setstream', 'keys', 'alg', 'text', 'keys.alg is text');
SELECT col_type_is('setstream', 'keys', 'jwk', 'jsonb', 'keys.jwk is jsonb');
SELECT col_is_pk('setstream', 'keys', ARRAY['stream', 'kid'], 'keys is keyed on (stream, kid)');
SELECT has_column('setstream', 'key_secrets', 'stream', 'key_secrets.stream exists');
SELECT has_column('setstream', 'key_secrets', 'kid', 'key_secrets.kid exists');

-- ---------------------------------------------------------------- tokens
SELECT col_type_is('setstream', 'tokens', 'stream', 'text', 'tokens.stream is text');
SELECT col_type_is('setstream', 'tokens', 'token_hash', 'bytea', 'tokens.token_hash is bytea');
SELECT col_type_is('setstream', 'tokens', 'created_at', 'timestamp with time zone', 'tokens.created_at is timestamptz');
SELECT col_type_is('setstream', 'tokens', 'revoked_at', 'timestamp with time zone', 'tokens.revoked_at is timestamptz');
SELECT hasnt_column('setstream', 'tokens', 'token', 'tokens has no clear-text token column');

-- ---------------------------------------------------------------- events
SELECT col_type_is('setstream', 'events', 'stream', 'text', 'events.stream is text');
SELECT col_type_is('setstream', 'events', 'jti', 'text', 'events.jti is text');
SELECT col_type_is('setstream', 'events', 'iss', 'text', 'events.iss is text');
SELECT col_type_is('setstream', 'events', 'aud', 'text[]', 'events.aud is text[]');
SELECT col_type_is('setstream', 'events', 'iat', 'timestamp with time zone', 'events.iat is timestamptz');
SELECT col_type_is('setstream', 'events', 'txn', 'text', 'events.txn is text');
SELECT col_type_is('setstream', 'events', 'toe', 'timestamp with time zone', 'events.toe is timestamptz');
SELECT col_type_is('setstream', 'events', 'subject', 'jsonb', 'events.subject is jsonb');
SELECT col_type_is('setstream', 'events', 'event_types', 'text[]', 'events.event_types is text[]');
SELECT col_type_is('setstream', 'events', 'events', 'jsonb', 'events.events is jsonb');
SELECT col_type_is('setstream', 'events', 'received_at', 'timestamp with time zone', 'events.received_at is timestamptz');
SELECT col_type_is('setstream', 'events', 'token', 'text', 'events.token is text');
SELECT col_not_null('setstream', 'events', 'stream', 'events.stream is NOT NULL');
SELECT col_not_null('setstream', 'events', 'jti', 'events.jti is NOT NULL');
SELECT col_not_null('setstream', 'events', 'iss', 'events.iss is NOT NULL');
SELECT col_not_null('setstream', 'events', 'token', 'events.token is NOT NULL');

-- ---------------------------------------------------------------- outbox
SELECT col_type_is('setstream', 'outbox', 'stream', 'text', 'outbox.stream is text');
SELECT col_type_is('setstream', 'outbox', 'seq', 'bigint', 'outbox.seq is bigint');
SELECT col_type_is('setstream', 'outbox', 'jti', 'text', 'outbox.jti is text');
SELECT col_type_is('setstream', 'outbox', 'event_types', 'text[]', 'outbox.event_types is text[]');
SELECT col_type_is('setstream', 'outbox', 'claims', 'jsonb', 'outbox.claims is jsonb');
SELECT col_type_is('setstream', 'outbox', 'token', 'text', 'outbox.token is text');
SELECT col_type_is('setstream', 'outbox', 'state', 'text', 'outbox.state is text');
SELECT col_type_is('setstream', 'outbox', 'attempts', 'integer', 'outbox.attempts is integer');
SELECT col_type_is('setstream', 'outbox', 'created_at', 'timestamp with time zone', 'outbox.created_at is timestamptz');
SELECT col_type_is('setstream', 'outbox', 'delivered_at', 'timestamp with time zone', 'outbox.delivered_at is timestamptz');
SELECT col_type_is('setstream', 'outbox', 'acked_at', 'timestamp with time zone', 'outbox.acked_at is timestamptz');
SELECT col_type_is('setstream', 'outbox', 'err', 'text', 'outbox.err is text');
SELECT col_type_is('setstream', 'outbox', 'description', 'text', 'outbox.description is text');
SELECT col_default_is('setstream', 'outbox', 'state', 'pending', 'outbox.state defaults to pending');
SELECT col_default_is('setstream', 'outbox', 'attempts', 0, 'outbox.attempts defaults to 0');

-- ---------------------------------------------------------------- keys and uniqueness
-- Every table keys on the stream (distribution-ready: a distributed
-- PostgreSQL needs the distribution column in every unique key), first but
-- in the outbox, whose key leads with jti so that acks are index lookups.
SELECT is(
    (SELECT array_agg(c.relname::text ORDER BY c.relname)
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
      WHERE c.relnamespace = 'setstream'::regnamespace
        AND c.relname IN ('keys', 'key_secrets', 'tokens', 'client_certs', 'events', 'outbox')
        AND k.contype = 'p' AND a.attname = 'stream'),
    ARRAY['client_certs', 'events', 'key_secrets', 'keys', 'tokens'],
    'the primary key of keys, key_secrets, tokens, client_certs and events starts with stream');
SELECT is(
    (SELECT array_agg(c.relname::text ORDER BY c.relname)
       FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid
       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
      WHERE c.relnamespace = 'setstream'::regnamespace
        AND c.relname IN ('keys', 'key_secrets', 'tokens', 'client_certs', 'events', 'outbox')
        AND k.contype = 'p' AND a.attname = 'stream'),
    ARRAY['client_certs', 'events', 'key_secrets', 'keys', 'outbox', 'tokens'],
    'the primary key of keys, key_secrets, tokens, client_certs, events and outbox includes stream');

SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'setstream.events'::regclass AND i.indisunique
       AND i.indpred IS NULL AND i.indnkeyatts = 3
       AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
              FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
           = ARRAY['iss', 'jti', 'stream']),
    'events has a unique key on exactly (stream, iss, jti)');

SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'setstream.outbox'::regclass AND i.indisunique
       AND i.indpred IS NULL AND i.indnkeyatts = 2
       AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
              FROM pg_attribute a
             WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
           = ARRAY['jti', 'stream']),
    'outbox has a unique key on exactly (jti, stream)');

SELECT is((SELECT array_agg(a.attname::text ORDER BY k.n)
             FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY AS k (attnum, n), pg_attribute a
            WHERE c.conrelid = 'setstream.outbox'::regclass AND c.contype = 'p'
              AND a.attrelid = c.conrelid AND a.attnum = k.attnum),
          ARRAY['jti', 'stream'], 'the primary key of outbox is (jti, stream)');
SELECT is((SELECT count(*)::int FROM pg_index i WHERE i.indrelid = 'setstream.outbox'::regclass), 2,
          'outbox has two indexes (every ack writes an entry into each index but the due one)');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'setstream.outbox'::regclass AND NOT i.indisunique
       AND pg_get_expr(i.indpred, i.indrelid) = '((acked_at IS NULL) AND (failed_at IS NULL))'
       AND (SELECT array_agg(a.attname::text ORDER BY k.n)
              FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
           = ARRAY['stream', 'seq']),
    'outbox_due_idx: (stream, seq) of the rows neither acked nor failed');

-- unique per stream (a unique key of a table distributed by stream holds
-- the stream: issue 18)
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = 'setstream.tokens'::regclass AND i.indisunique
       AND (SELECT array_agg(a.attname::text ORDER BY k.n)
              FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)
              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
           = ARRAY['stream', 'token_hash']),
    'tokens (stream, token_hash) is unique');

-- The unique key is enforced: same (stream, iss, jti) twice is refused,
-- a different iss with the same jti is a different event.
SELECT lives_ok($$
    INSERT INTO setstream.streams (name, issuer, audience, peer_issuer)
    VALUES ('tap-schema', 'https://me.example', ARRAY['https://peer.example'], 'https://peer.example');
    INSERT INTO setstream.events (stream, jti, iss, iat, event_types, events, claims, header, token)
    VALUES ('tap-schema', 'j1', 'https://peer.example', now(), ARRAY['urn:x:y'], '{}', '{}', '{}', 'a.b.c'),
           ('tap-schema', 'j1', 'https://other.example', now(), ARRAY['urn:x:y'], '{}', '{}', '{}', 'a.b.c')
$$, 'the same jti from two issuers is two events');
SELECT throws_ok($$
    INSERT INTO setstream.events (stream, jti, iss, iat, event_types, events, claims, header, token)
    VALUES ('tap-schema', 'j1', 'https://peer.example', now(), ARRAY['urn:x:y'], '{}', '{}', '{}', 'a.b.c')
$$, '23505', NULL, 'the same (stream, iss, jti) cannot be stored twice');
SELECT lives_ok($$
    INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
    VALUES ('tap-schema', 'o1', ARRAY['urn:x:y'], '{}', 'a.b.c'),
           ('tap-schema', 'o2', ARRAY['urn:x:y'], '{}', 'a.b.c')
$$, 'outbox rows get their seq by default');
SELECT ok((SELECT max(seq) FILTER (WHERE jti = 'o2') > max(seq) FILTER (WHERE jti = 'o1')
             FROM setstream.outbox WHERE stream = 'tap-schema'),
          'outbox seq increases with insertion order');
SELECT throws_ok($$
    INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
    VALUES ('tap-schema', 'o1', ARRAY['urn:x:y'], '{}', 'a.b.c')
$$, '23505', NULL, 'a jti is queued once per stream');
SELECT throws_ok($$
    UPDATE setstream.outbox SET state = 'lost' WHERE stream = 'tap-schema' AND jti = 'o1'
$$, '23514', NULL, 'outbox.state is one of pending, delivered, acked, failed');

-- ---------------------------------------------------------------- indexes on events
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = 'setstream.events'::regclass
       AND am.amname = 'gin' AND a.attname = 'event_types'),
    'events has a GIN index on event_types (for @> queries)');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = 'setstream.events'::regclass
       AND am.amname = 'gin' AND a.attname = 'subject'),
    'events has a GIN index on subject (for @> queries)');
SELECT ok(EXISTS (
    SELECT 1 FROM pg_index i
      JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = 'setstream.events'::regclass
       AND am.amname = 'btree' AND a.attname IN ('received_at', 'iat')),
    'events has a btree index on a time column (received_at or iat)');

-- ---------------------------------------------------------------- SQL API (DESIGN.md table)
SELECT function_returns('setstream', 'create_stream',
    ARRAY['text', 'text', 'text[]', 'text', 'text', 'boolean', 'text', 'text'], 'setstream.streams',
    'create_stream(name, issuer, audience, peer_issuer, profile, allow_unsigned, client_auth, peer_jwks_uri) returns setstream.streams');
SELECT function_returns('setstream', 'add_key', ARRAY['text', 'jsonb'], 'text',
    'add_key(stream text, jwk jsonb) returns text');
SELECT function_returns('setstream', 'generate_key', ARRAY['text', 'text'], 'jsonb',
    'generate_key(stream text, alg text) returns jsonb');
SELECT function_returns('setstream', 'issue_token', ARRAY['text'], 'text',
    'issue_token(stream text) returns text');
SELECT function_returns('setstream', 'emit', ARRAY['text', 'text', 'jsonb', 'jsonb', 'text'], 'text',
    'emit(stream, event_type, event, subject, txn) returns text');
SELECT function_returns('setstream', 'emit_trigger', ARRAY[]::text[], 'trigger',
    'emit_trigger() returns trigger');
SELECT function_returns('setstream', 'receive', ARRAY['text', 'text'], 'text',
    'receive(stream text, set text) returns text');
SELECT function_returns('setstream', 'ingest', ARRAY['text', 'jsonb'], 'jsonb',
    'ingest(stream text, body jsonb) returns jsonb');
SELECT function_returns('setstream', 'poll', ARRAY['text', 'jsonb'], 'jsonb',
    'poll(stream text, request jsonb) returns jsonb');
-- management functions of the brief
SELECT function_returns('setstream', 'alter_stream',
    ARRAY['text', 'text', 'text[]', 'text', 'text', 'boolean', 'text', 'text'], 'setstream.streams',
    'alter_stream(...) returns setstream.streams');
SELECT function_returns('setstream', 'bind_client_cert', ARRAY['text', 'text'], 'text',
    'bind_client_cert(stream, cert) returns text');
SELECT function_returns('setstream', 'unbind_client_cert', ARRAY['text', 'text'], 'void',
    'unbind_client_cert(stream, sha256) returns void');
SELECT has_function('setstream', 'set_stream_status', ARRAY['text', 'text'], 'set_stream_status(name, status) exists');
SELECT has_function('setstream', 'disable_stream', ARRAY['text'], 'disable_stream(name) exists');
SELECT has_function('setstream', 'set_inbound', ARRAY['text', 'text'], 'set_inbound(name, inbound) exists');
SELECT has_function('setstream', 'enable_stream', ARRAY['text'], 'enable_stream(name) exists');
SELECT has_function('setstream', 'drop_stream', ARRAY['text'], 'drop_stream(name) exists');
SELECT has_function('setstream', 'revoke_key', ARRAY['text', 'text'], 'revoke_key(stream, kid) exists');
SELECT function_returns('setstream', 'check_token', ARRAY['text', 'text'], 'boolean',
    'check_token(stream, token) returns boolean');
SELECT has_function('setstream', 'revoke_token', ARRAY['text', 'text'], 'revoke_token(stream, token) exists');
SELECT has_function('setstream', 'revoke_token', ARRAY['text', 'bigint'], 'revoke_token(stream, id) exists');
SELECT function_returns('setstream', 'jwks', ARRAY[]::text[], 'jsonb', 'jwks() returns jsonb');
SELECT function_returns('setstream', 'error_code', ARRAY['text'], 'text', 'error_code(sqlstate) returns text');

-- Parameter names are part of the contract (callers use named notation).
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.create_stream(text,text,text[],text,text,boolean,text,text)'::regprocedure)::text[],
          ARRAY['name', 'issuer', 'audience', 'peer_issuer', 'profile', 'allow_unsigned', 'client_auth', 'peer_jwks_uri'],
          'create_stream parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.alter_stream(text,text,text[],text,text,boolean,text,text)'::regprocedure)::text[],
          ARRAY['name', 'issuer', 'audience', 'peer_issuer', 'profile', 'allow_unsigned', 'client_auth', 'peer_jwks_uri'],
          'alter_stream parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.bind_client_cert(text,text)'::regprocedure)::text[],
          ARRAY['stream', 'cert'], 'bind_client_cert parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.unbind_client_cert(text,text)'::regprocedure)::text[],
          ARRAY['stream', 'sha256'], 'unbind_client_cert parameter names');
SELECT ok(pg_get_function_arguments('setstream.create_stream(text,text,text[],text,text,boolean,text,text)'::regprocedure)
          ~ $re$client_auth text DEFAULT 'bearer'$re$, 'create_stream client_auth defaults to bearer');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.add_key(text,jsonb)'::regprocedure)::text[],
          ARRAY['stream', 'jwk'], 'add_key parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.generate_key(text,text)'::regprocedure)::text[],
          ARRAY['stream', 'alg'], 'generate_key parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.issue_token(text)'::regprocedure)::text[],
          ARRAY['stream'], 'issue_token parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.emit(text,text,jsonb,jsonb,text)'::regprocedure)::text[],
          ARRAY['stream', 'event_type', 'event', 'subject', 'txn'], 'emit parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.receive(text,text)'::regprocedure)::text[],
          ARRAY['stream', 'set'], 'receive parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.ingest(text,jsonb)'::regprocedure)::text[],
          ARRAY['stream', 'body'], 'ingest parameter names');
SELECT is((SELECT proargnames FROM pg_proc WHERE oid = 'setstream.poll(text,jsonb)'::regprocedure)::text[],
          ARRAY['stream', 'request'], 'poll parameter names');

-- Defaults of the contract: peer_issuer, generate_key's alg, emit's subject/txn.
SELECT is((SELECT pronargdefaults >= 1 FROM pg_proc WHERE oid = 'setstream.create_stream(text,text,text[],text,text,boolean,text,text)'::regprocedure),
          true, 'create_stream can be called without peer_issuer');
SELECT ok(pg_get_function_arguments('setstream.generate_key(text,text)'::regprocedure)
          ~ $re$alg text DEFAULT 'ES256'$re$, 'generate_key alg defaults to ES256');
SELECT ok(pg_get_function_arguments('setstream.emit(text,text,jsonb,jsonb,text)'::regprocedure)
          ~ 'subject jsonb DEFAULT NULL::jsonb, txn text DEFAULT NULL::text',
          'emit subject and txn default to NULL');
SELECT is((SELECT provolatile FROM pg_proc WHERE oid = 'setstream.emit(text,text,jsonb,jsonb,text)'::regprocedure),
          'v'::"char", 'emit is VOLATILE');
SELECT is((SELECT provolatile FROM pg_proc WHERE oid = 'setstream.poll(text,jsonb)'::regprocedure),
          'v'::"char", 'poll is VOLATILE');

-- emit_trigger is a trigger function usable in CREATE TRIGGER
SELECT lives_ok($$
    CREATE TABLE pg_temp.tap_trigger_target (id int);
    CREATE TRIGGER tap_emit AFTER INSERT ON pg_temp.tap_trigger_target
        FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('tap-schema', 'urn:x:y', 'opaque', 'id')
$$, 'emit_trigger can be attached as an AFTER ROW trigger');

-- error_code maps every SQLSTATE of the contract
SELECT results_eq($$
    SELECT s, setstream.error_code(s)
      FROM unnest(ARRAY['SE001','SE002','SE003','SE004','SE005','SE006','SE007']) s
$$, $$
    VALUES ('SE001', 'invalid_request'), ('SE002', 'invalid_key'), ('SE003', 'invalid_issuer'),
           ('SE004', 'invalid_audience'), ('SE005', 'authentication_failed'),
           ('SE006', 'access_denied'), ('SE007', 'invalid_state')
$$, 'error_code maps SE001..SE007 to the RFC 8935 codes');
SELECT is(setstream.error_code('23505'), NULL, 'error_code of a foreign SQLSTATE is NULL');

-- The GUCs of the contract exist.
SELECT results_eq($$
    SELECT name FROM pg_settings
     WHERE name IN ('setstream.database', 'setstream.listen_addresses', 'setstream.port',
                    'setstream.workers', 'setstream.tls_cert_file', 'setstream.tls_key_file',
                    'setstream.tls_ca_file',
                    'setstream.max_request_bytes', 'setstream.max_connections',
                    'setstream.poll_timeout', 'setstream.idle_timeout',
                    'setstream.redelivery_interval')
     ORDER BY name
$$, $$
    VALUES ('setstream.database'), ('setstream.idle_timeout'), ('setstream.listen_addresses'),
           ('setstream.max_connections'), ('setstream.max_request_bytes'), ('setstream.poll_timeout'),
           ('setstream.port'), ('setstream.redelivery_interval'), ('setstream.tls_ca_file'),
           ('setstream.tls_cert_file'),
           ('setstream.tls_key_file'), ('setstream.workers')
$$, 'every GUC of the contract is defined');
SELECT is((SELECT context FROM pg_settings WHERE name = 'setstream.tls_ca_file'),
          'sighup', 'setstream.tls_ca_file is reloaded on SIGHUP');
SELECT is((SELECT boot_val || ' ' || unit FROM pg_settings WHERE name = 'setstream.redelivery_interval'),
          '60000 ms', 'setstream.redelivery_interval defaults to 60 s');

SELECT * FROM finish();
ROLLBACK;
