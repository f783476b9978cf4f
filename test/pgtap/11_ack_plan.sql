-- An ack or a setErrs finds its outbox rows by index lookups on the jtis it
-- names, whatever the planner believes about the stream.  The statistics
-- here were taken while another stream filled the outbox, so the planner
-- believes the acking stream nearly empty; with the key (stream, jti) it
-- then chose "stream = ..." alone and scanned all the stream's rows for
-- every ack.  The statements are the listener's (src/store.c).
BEGIN;
SELECT plan(6);

SELECT setstream.create_stream('tap-ap-big', 'https://tx.example/issuer', ARRAY['https://rx.example/aud']) IS NOT NULL AS ok \gset
SELECT setstream.create_stream('tap-ap', 'https://tx.example/issuer', ARRAY['https://rx.example/aud']) IS NOT NULL AS ok \gset

INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
SELECT 'tap-ap-big', 'big-' || g, '{https://example.com/e}', '{}', repeat('t', 500)
  FROM generate_series(1, 20000) g;
ANALYZE setstream.outbox;
DELETE FROM setstream.outbox;
INSERT INTO setstream.outbox (stream, jti, event_types, claims, token)
SELECT 'tap-ap', 'ap-' || g, '{https://example.com/e}', '{}', repeat('t', 500)
  FROM generate_series(1, 5000) g;

CREATE FUNCTION pg_temp.plan_text(q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    line text;
    result text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
        result := result || line || E'\n';
    END LOOP;
    RETURN result;
END $$;

CREATE FUNCTION pg_temp.estimated_rows(q text) RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    j json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO j;
    RETURN (j->0->'Plan'->>'Plan Rows')::numeric;
END $$;

SELECT cmp_ok(pg_temp.estimated_rows($$SELECT 1 FROM setstream.outbox WHERE stream = 'tap-ap'$$),
              '<=', 10::numeric,
              'premise: the statistics make the stream look nearly empty (5000 rows)');

-- store.c stmt_apply_acks
SELECT matches(pg_temp.plan_text($$
    UPDATE setstream.outbox SET state = 'acked', acked_at = now()
     WHERE stream = 'tap-ap' AND jti = ANY ('{ap-1,ap-2,ap-3,ap-4999}'::text[])
       AND state IN ('pending', 'delivered')$$),
    'Index Cond: \(\(jti = ANY', 'an ack looks up its jtis in the key');
SELECT doesnt_match(pg_temp.plan_text($$
    UPDATE setstream.outbox SET state = 'acked', acked_at = now()
     WHERE stream = 'tap-ap' AND jti = ANY ('{ap-1,ap-2,ap-3,ap-4999}'::text[])
       AND state IN ('pending', 'delivered')$$),
    'Seq Scan', 'an ack does not scan the outbox');

-- store.c stmt_apply_errs
SELECT matches(pg_temp.plan_text($$
    UPDATE setstream.outbox o SET state = 'failed', failed_at = now(),
           err = e.err, description = e.description
      FROM unnest('{ap-5,ap-6}'::text[], '{invalid_key,invalid_key}'::text[], '{x,y}'::text[])
           AS e (jti, err, description)
     WHERE o.stream = 'tap-ap' AND o.jti = e.jti AND o.state IN ('pending', 'delivered')$$),
    'Index Cond: \(\(jti = e\.jti\)', 'a setErrs looks up each jti in the key');

-- and they do what they say
UPDATE setstream.outbox SET state = 'acked', acked_at = now()
 WHERE stream = 'tap-ap' AND jti = ANY ('{ap-1,ap-2,ap-3,ap-4999}'::text[])
   AND state IN ('pending', 'delivered');
SELECT is((SELECT count(*)::int FROM setstream.outbox WHERE stream = 'tap-ap' AND state = 'acked'), 4,
          'the ack acknowledged its four SETs');

-- the stats view still counts per stream
SELECT results_eq($$SELECT stream, emitted, pending, acked FROM setstream.stats
                     WHERE stream IN ('tap-ap', 'tap-ap-big') ORDER BY stream$$,
                  $$VALUES ('tap-ap'::text, 5000::bigint, 4996::bigint, 4::bigint),
                           ('tap-ap-big'::text, 0::bigint, 0::bigint, 0::bigint)$$,
                  'setstream.stats counts the outbox per stream, zero for a stream with none');

SELECT * FROM finish();
ROLLBACK;
