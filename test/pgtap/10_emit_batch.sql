-- emit_trigger stores the SETs of one statement in batches (emitbuf.c):
-- what SQL sees is still one outbox row per changed row, in order, visible
-- when the statement returns; a failed statement, a rolled back savepoint or
-- an exception block drops exactly its own SETs; triggers fired outside a
-- statement (SET CONSTRAINTS, deferred) store at once.  Also the outbox's
-- state-machine CHECK (setstream._outbox_row_valid).
BEGIN;
SELECT plan(26);

SELECT setstream.create_stream('tap-eb', 'https://tx.example/issuer', ARRAY['https://rx.example/aud']) IS NOT NULL AS ok \gset
SELECT setstream.generate_key('tap-eb')->>'kid' AS kid \gset

CREATE FUNCTION pg_temp.queued() RETURNS int
LANGUAGE sql STABLE AS $$ SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' $$;
CREATE FUNCTION pg_temp.emails() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(claims->'sub_id'->>'email' ORDER BY seq), '{}')
      FROM setstream.outbox WHERE stream = 'tap-eb'
$$;

CREATE TEMP TABLE tap_eb (id int, email text);
CREATE TRIGGER tap_eb_emit AFTER INSERT OR UPDATE OR DELETE ON tap_eb FOR EACH ROW
    EXECUTE FUNCTION setstream.emit_trigger('tap-eb', 'urn:example:eb', 'email', 'email');

-- ---------------------------------------------------------------- one statement, many batches
INSERT INTO tap_eb SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 2500) g;
SELECT is(pg_temp.queued(), 2500, 'INSERT ... SELECT of 2500 rows queues 2500 SETs (batches of 1000 and the rest)');
SELECT is(pg_temp.emails(),
          (SELECT array_agg('u' || g || '@example.com' ORDER BY g) FROM generate_series(1, 2500) g),
          'outbox seq follows the order the rows were emitted');
SELECT is((SELECT count(DISTINCT jti)::int FROM setstream.outbox WHERE stream = 'tap-eb'), 2500,
          'every SET has its own jti');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb'
            AND state = 'pending' AND attempts = 0 AND token ~ '^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$'), 2500,
          'batched rows are pending, unattempted, with a compact JWS');

-- visible to the next statement of a data-modifying CTE's outer query too
WITH d AS (DELETE FROM tap_eb WHERE id <= 10 RETURNING id)
SELECT is((SELECT count(*)::int FROM d), 10, 'a DELETE in a CTE fires the trigger');
SELECT is(pg_temp.queued(), 2510, 'its SETs are stored when the statement returns');

-- ---------------------------------------------------------------- a failing statement
INSERT INTO tap_eb VALUES (5001, 'ok@example.com');
SELECT throws_ok($$
    INSERT INTO tap_eb SELECT g, CASE WHEN g = 1500 THEN NULL ELSE 'x' || g || '@example.com' END
      FROM generate_series(1, 2000) g
$$, '22004', NULL, 'a NULL subject in row 1500 fails the statement');
SELECT is(pg_temp.queued(), 2511, 'none of the failed statement''s SETs stay, not even the first batch');
INSERT INTO tap_eb VALUES (5002, 'after@example.com');
SELECT is((pg_temp.emails())[2512], 'after@example.com', 'the next statement queues normally');

-- ---------------------------------------------------------------- savepoints
SAVEPOINT s1;
INSERT INTO tap_eb SELECT g, 'sp' || g || '@example.com' FROM generate_series(1, 300) g;
ROLLBACK TO SAVEPOINT s1;
SELECT is(pg_temp.queued(), 2512, 'ROLLBACK TO SAVEPOINT drops the SETs of the statements after it');
RELEASE SAVEPOINT s1;

-- ---------------------------------------------------------------- nested statements
CREATE TEMP TABLE tap_eb_audit (id int, email text);
CREATE TRIGGER tap_eb_audit_emit AFTER INSERT ON tap_eb_audit FOR EACH ROW
    EXECUTE FUNCTION setstream.emit_trigger('tap-eb', 'urn:example:eb-audit', 'email', 'email');
CREATE FUNCTION pg_temp.audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- kept: a nested statement in the trigger's own subtransaction
    INSERT INTO tap_eb_audit VALUES (NEW.id, 'audit' || NEW.id || '@example.com');
    BEGIN
        -- dropped: the exception block rolls back its statement's SETs
        INSERT INTO tap_eb_audit VALUES (NEW.id, 'lost' || NEW.id || '@example.com');
        RAISE EXCEPTION 'undo';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
    RETURN NULL;
END $$;
CREATE TRIGGER tap_eb_audit AFTER INSERT ON tap_eb FOR EACH ROW EXECUTE FUNCTION pg_temp.audit();
INSERT INTO tap_eb SELECT g, 'n' || g || '@example.com' FROM generate_series(6001, 6050) g;
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' AND claims->'sub_id'->>'email' LIKE 'n%'), 50,
          'the outer statement''s 50 SETs are stored');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' AND claims->'sub_id'->>'email' LIKE 'audit%'), 50,
          'the nested statements'' SETs are stored');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' AND claims->'sub_id'->>'email' LIKE 'lost%'), 0,
          'SETs of statements in a rolled back exception block are not');
DROP TRIGGER tap_eb_audit ON tap_eb;

-- ---------------------------------------------------------------- triggers fired outside a statement
CREATE TEMP TABLE tap_eb_def (id int, email text);
CREATE CONSTRAINT TRIGGER tap_eb_def_emit AFTER INSERT ON tap_eb_def
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    EXECUTE FUNCTION setstream.emit_trigger('tap-eb', 'urn:example:eb-deferred', 'email', 'email');
INSERT INTO tap_eb_def SELECT g, 'def' || g || '@example.com' FROM generate_series(1, 20) g;
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' AND claims->'sub_id'->>'email' LIKE 'def%'), 0,
          'a deferred emit_trigger has not fired yet');
SET CONSTRAINTS ALL IMMEDIATE;
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-eb' AND claims->'sub_id'->>'email' LIKE 'def%'), 20,
          'SET CONSTRAINTS ALL IMMEDIATE fires it and its SETs are stored at once');

-- ---------------------------------------------------------------- the state-machine CHECK
INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
VALUES ('tap-eb', 'chk', ARRAY['urn:x:y'], '{}', 'a.b.c');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'lost' WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'state outside pending, delivered, acked, failed -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'failed', failed_at = now() WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'failed without err -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'failed', err = 'invalid_key' WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'failed without failed_at -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET acked_at = now() WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'acked_at on a row that is not acked -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET err = 'invalid_key' WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'err on a row that is not failed -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'acked' WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'acked without acked_at -> 23514');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'delivered' WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'delivered with no attempt -> 23514');
SELECT lives_ok($$ UPDATE setstream.outbox SET state = 'delivered', attempts = 1, delivered_at = now()
                    WHERE stream = 'tap-eb' AND jti = 'chk' $$, 'pending -> delivered with an attempt is valid');
SELECT lives_ok($$ UPDATE setstream.outbox SET state = 'acked', acked_at = now()
                    WHERE stream = 'tap-eb' AND jti = 'chk' $$, 'delivered -> acked with acked_at is valid');
SELECT lives_ok($$ INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
                   VALUES ('tap-eb', 'chk2', ARRAY['urn:x:y'], '{}', 'a.b.c');
                   UPDATE setstream.outbox SET state = 'failed', err = 'invalid_key', failed_at = now()
                    WHERE stream = 'tap-eb' AND jti = 'chk2' $$, 'pending -> failed with err and failed_at is valid');
SELECT throws_ok($$ UPDATE setstream.outbox SET state = 'failed', err = 'invalid_key', failed_at = now()
                    WHERE stream = 'tap-eb' AND jti = 'chk' $$,
                 '23514', NULL, 'acked -> failed keeps acked_at -> 23514');
SELECT * FROM finish();
ROLLBACK;
