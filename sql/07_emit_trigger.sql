--
-- 07_emit_trigger: setstream.emit_trigger() on application tables: the
-- subject built from a column for each one-member format, the payload
-- column, INSERT/UPDATE/DELETE rows, every misuse, and emits that roll
-- back with their transaction.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS setstream;
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
CREATE FUNCTION pg_temp.payload_of(tok text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_from(decode(rpad(translate(split_part(tok, '.', 2), '-_', '+/'),
                                    (length(split_part(tok, '.', 2)) + 3) / 4 * 4, '='), 'base64'), 'UTF8')::jsonb
$$;
-- what the outbox of s07 holds, oldest first, without jti and iat
CREATE FUNCTION pg_temp.queued() RETURNS TABLE (seq bigint, event_type text, sub_id jsonb, event jsonb, txn text, token_ok boolean)
LANGUAGE sql STABLE AS $$
    SELECT row_number() OVER (ORDER BY o.seq), o.event_types[1], o.claims->'sub_id',
           o.claims->'events'->(o.event_types[1]), o.claims->>'txn',
           pg_temp.payload_of(o.token) = o.claims
      FROM setstream.outbox o WHERE o.stream = 's07' ORDER BY o.seq
$$;

DROP TABLE IF EXISTS s07_users, s07_misc;
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's07%';
END $$;

SELECT name FROM setstream.create_stream('s07', 'https://db.example/s07', ARRAY['https://rp.example/s07']);
SELECT setstream.generate_key('s07') IS NOT NULL AS signing_key;

CREATE TABLE s07_users (
    id       int PRIMARY KEY,
    email    text,
    phone    text,
    handle   text,
    account  text,
    did      text,
    homepage text,
    payload  jsonb,
    note     text
);

-- ------------------------------------------------------------------
-- INSERT: email subject, payload column
-- ------------------------------------------------------------------
CREATE TRIGGER s07_credential_change AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger(
        's07', 'https://schemas.openid.net/secevent/caep/event-type/credential-change',
        'email', 'email', 'payload');
INSERT INTO s07_users (id, email, payload) VALUES
    (1, 'alice@example.com', '{"credential_type":"password","change_type":"update"}'),
    (2, 'bob@example.com', NULL);
SELECT * FROM pg_temp.queued();
DROP TRIGGER s07_credential_change ON s07_users;

-- ------------------------------------------------------------------
-- UPDATE (the new row), DELETE (the old row); the other formats
-- ------------------------------------------------------------------
CREATE TRIGGER s07_phone AFTER UPDATE OF phone ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger(
        's07', 'https://schemas.openid.net/secevent/risc/event-type/identifier-changed', 'phone_number', 'phone');
CREATE TRIGGER s07_purged AFTER DELETE ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger(
        's07', 'https://schemas.openid.net/secevent/risc/event-type/account-purged', 'opaque', 'handle');
UPDATE s07_users SET phone = '+12065550100', handle = 'h-alice' WHERE id = 1;
UPDATE s07_users SET note = 'no phone change' WHERE id = 1;
DELETE FROM s07_users WHERE id = 1;
SELECT * FROM pg_temp.queued() WHERE seq > 2;
DROP TRIGGER s07_phone ON s07_users;
DROP TRIGGER s07_purged ON s07_users;

-- account, did, uri; a non-text subject column (its text form)
CREATE TRIGGER s07_account AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/account', 'account', 'account');
CREATE TRIGGER s07_did AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/did', 'did', 'did');
CREATE TRIGGER s07_uri AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/uri', 'uri', 'homepage');
CREATE TRIGGER s07_id AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/id', 'opaque', 'id');
INSERT INTO s07_users (id, account, did, homepage) VALUES
    (3, 'acct:carol@example.com', 'did:example:carol', 'https://carol.example.com/');
SELECT * FROM pg_temp.queued() WHERE seq > 4;
DROP TRIGGER s07_account ON s07_users;
DROP TRIGGER s07_did ON s07_users;
DROP TRIGGER s07_uri ON s07_users;
DROP TRIGGER s07_id ON s07_users;
-- every SET is signed with its claims, has no txn, and its own jti
SELECT count(*) AS queued, bool_and(token_ok) AS tokens_ok, count(txn) AS with_txn FROM pg_temp.queued();
SELECT count(DISTINCT jti) AS jtis FROM setstream.outbox WHERE stream = 's07';

-- a payload column of type text and of type json
CREATE TABLE s07_misc (id int, subject text, body text, doc json);
CREATE TRIGGER s07_text_payload AFTER INSERT ON s07_misc
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/text', 'opaque', 'subject', 'body');
INSERT INTO s07_misc VALUES (1, 'm1', '{"from":"text"}', NULL);
DROP TRIGGER s07_text_payload ON s07_misc;
CREATE TRIGGER s07_json_payload AFTER INSERT ON s07_misc
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/json', 'opaque', 'subject', 'doc');
INSERT INTO s07_misc VALUES (2, 'm2', NULL, '{"from":"json","n":[1,2]}');
DROP TRIGGER s07_json_payload ON s07_misc;
SELECT event_type, sub_id, event FROM pg_temp.queued() WHERE seq > 8;

-- ------------------------------------------------------------------
-- errors raised when the trigger fires; the statement fails whole
-- ------------------------------------------------------------------
SELECT count(*) AS before_errors FROM setstream.outbox WHERE stream = 's07' \gset
CREATE TEMP TABLE trigger_case (n serial, what text, args text, row_sql text);
INSERT INTO trigger_case (what, args, row_sql) VALUES
    ('NULL subject column',      $$'s07', 'https://example.com/e', 'email', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, NULL)$$),
    ('no such subject column',   $$'s07', 'https://example.com/e', 'email', 'mail'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('no such payload column',   $$'s07', 'https://example.com/e', 'email', 'email', 'body'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('payload not an object',    $$'s07', 'https://example.com/e', 'email', 'email', 'payload'$$,
                                 $$INSERT INTO s07_users (id, email, payload) VALUES (10, 'x@example.com', '[1, 2]')$$),
    ('payload a JSON string',    $$'s07', 'https://example.com/e', 'email', 'email', 'payload'$$,
                                 $$INSERT INTO s07_users (id, email, payload) VALUES (10, 'x@example.com', '"x"')$$),
    ('payload text, not JSON',   $$'s07', 'https://example.com/e', 'email', 'email', 'note'$$,
                                 $$INSERT INTO s07_users (id, email, note) VALUES (10, 'x@example.com', 'hello')$$),
    ('subject not an email',     $$'s07', 'https://example.com/e', 'email', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'not-an-email')$$),
    ('subject not a phone',      $$'s07', 'https://example.com/e', 'phone_number', 'phone'$$,
                                 $$INSERT INTO s07_users (id, phone) VALUES (10, '555-0100')$$),
    ('format iss_sub',           $$'s07', 'https://example.com/e', 'iss_sub', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('unknown format',           $$'s07', 'https://example.com/e', 'username', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('three arguments',          $$'s07', 'https://example.com/e', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('six arguments',            $$'s07', 'https://example.com/e', 'email', 'email', 'payload', 'x'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('event type not a URI',     $$'s07', 'credential-change', 'email', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$),
    ('unknown stream',           $$'s07-nosuch', 'https://example.com/e', 'email', 'email'$$,
                                 $$INSERT INTO s07_users (id, email) VALUES (10, 'x@example.com')$$);
CREATE FUNCTION pg_temp.fire(args text, row_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE format('CREATE TRIGGER s07_case AFTER INSERT ON s07_users FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger(%s)', args);
    r := pg_temp.try(row_sql);
    DROP TRIGGER s07_case ON s07_users;
    RETURN r;
END $$;
SELECT n, what, pg_temp.fire(args, row_sql) AS result FROM trigger_case ORDER BY n;
-- nothing was queued, no row was inserted
SELECT count(*) - :before_errors AS queued FROM setstream.outbox WHERE stream = 's07';
SELECT count(*) AS rows FROM s07_users WHERE id = 10;

-- wrong kinds of trigger
CREATE TRIGGER s07_before BEFORE INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/e', 'email', 'email');
SELECT pg_temp.try($$INSERT INTO s07_users (id, email) VALUES (11, 'x@example.com')$$);
DROP TRIGGER s07_before ON s07_users;
CREATE TRIGGER s07_statement AFTER INSERT ON s07_users
    FOR EACH STATEMENT EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/e', 'email', 'email');
SELECT pg_temp.try($$INSERT INTO s07_users (id, email) VALUES (11, 'x@example.com')$$);
DROP TRIGGER s07_statement ON s07_users;
CREATE VIEW s07_view AS SELECT * FROM s07_users;
CREATE TRIGGER s07_instead INSTEAD OF INSERT ON s07_view
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/e', 'email', 'email');
SELECT pg_temp.try($$INSERT INTO s07_view (id, email) VALUES (11, 'x@example.com')$$);
DROP VIEW s07_view;
-- called as a plain function
SELECT pg_temp.try($$SELECT setstream.emit_trigger()$$);
-- the plain error display
CREATE TRIGGER s07_null AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/e', 'email', 'email');
INSERT INTO s07_users (id, email) VALUES (12, NULL);
DROP TRIGGER s07_null ON s07_users;
CREATE TRIGGER s07_format AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/e', 'complex', 'email');
INSERT INTO s07_users (id, email) VALUES (12, 'x@example.com');
DROP TRIGGER s07_format ON s07_users;
SELECT count(*) - :before_errors AS queued FROM setstream.outbox WHERE stream = 's07';

-- a stream without a signing key
SELECT name FROM setstream.create_stream('s07-nokey', 'https://db.example/s07-nokey', ARRAY['https://rp.example']);
CREATE TRIGGER s07_nokey AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07-nokey', 'https://example.com/e', 'email', 'email');
SELECT pg_temp.try($$INSERT INTO s07_users (id, email) VALUES (13, 'x@example.com')$$);
DROP TRIGGER s07_nokey ON s07_users;

-- ------------------------------------------------------------------
-- transactions: an emit lives and dies with its row
-- ------------------------------------------------------------------
CREATE TRIGGER s07_tx AFTER INSERT ON s07_users
    FOR EACH ROW EXECUTE FUNCTION setstream.emit_trigger('s07', 'https://example.com/event/tx', 'opaque', 'handle');
SELECT count(*) AS before_tx FROM setstream.outbox WHERE stream = 's07' \gset
BEGIN;
INSERT INTO s07_users (id, handle) VALUES (20, 'tx-rolled-back');
SELECT count(*) - :before_tx AS queued_inside FROM setstream.outbox WHERE stream = 's07';
ROLLBACK;
SELECT count(*) - :before_tx AS after_rollback FROM setstream.outbox WHERE stream = 's07';
BEGIN;
INSERT INTO s07_users (id, handle) VALUES (21, 'tx-kept');
SAVEPOINT sp;
INSERT INTO s07_users (id, handle) VALUES (22, 'tx-savepoint-rolled-back');
ROLLBACK TO SAVEPOINT sp;
INSERT INTO s07_users (id, handle) VALUES (23, 'tx-kept-too');
COMMIT;
SELECT sub_id->>'id' AS handle FROM pg_temp.queued() WHERE event_type = 'https://example.com/event/tx' ORDER BY seq;
-- a statement that fails after the trigger fired queues nothing
SELECT pg_temp.try($$INSERT INTO s07_users (id, handle) VALUES (24, 'tx-dup-key'), (21, 'tx-dup-key')$$);
SELECT count(*) AS dup_key_queued FROM pg_temp.queued() WHERE sub_id->>'id' = 'tx-dup-key';
-- a multi-row statement queues one SET per row, in row order
INSERT INTO s07_users (id, handle) SELECT 30 + g, 'multi-' || g FROM generate_series(1, 3) g;
SELECT sub_id->>'id' AS handle FROM pg_temp.queued() WHERE sub_id->>'id' LIKE 'multi-%' ORDER BY seq;

-- a disabled stream: the row is written, nothing is queued
SELECT status FROM setstream.disable_stream('s07');
INSERT INTO s07_users (id, handle) VALUES (40, 'while-disabled');
SELECT count(*) AS rows FROM s07_users WHERE id = 40;
SELECT count(*) AS queued FROM pg_temp.queued() WHERE sub_id->>'id' = 'while-disabled';
-- paused: queued, not delivered
SELECT status FROM setstream.set_stream_status('s07', 'paused');
INSERT INTO s07_users (id, handle) VALUES (41, 'while-paused');
SELECT count(*) AS queued FROM pg_temp.queued() WHERE sub_id->>'id' = 'while-paused';
SELECT setstream.poll('s07') AS poll_while_paused;
SELECT status FROM setstream.enable_stream('s07');
-- and every SET still queued is delivered by poll: the one queued while
-- paused; those queued before the disable were settled by it
SELECT (SELECT count(*) FROM jsonb_object_keys(setstream.poll('s07')->'sets')) AS delivered,
       (SELECT count(*) FROM pg_temp.queued()) AS queued,
       (SELECT count(*) FROM setstream.outbox o
         WHERE o.stream = 's07' AND o.err = 'stream_disabled') AS settled_by_disable;
DROP TRIGGER s07_tx ON s07_users;

DROP TABLE s07_users, s07_misc;
DO $$ BEGIN
    PERFORM setstream.drop_stream(name) FROM setstream.streams WHERE name LIKE 's07%';
END $$;
