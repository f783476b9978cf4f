-- setstream 0.2.0 -> 0.3.0
--
-- Role of this file: every change to the SQL surface since 0.2.0 (the
-- release that added least privilege and outbound push).  A fresh CREATE
-- EXTENSION setstream installs 0.1.0 and runs 0.1.0--0.2.0 and this script
-- (there is no setstream--0.3.0.sql), so a fresh install and an upgraded
-- one end in the same schema by construction; test/python/test_upgrade.py
-- checks it from 0.1.0 and from 0.2.0.  setstream--0.1.0.sql and
-- setstream--0.1.0--0.2.0.sql are frozen: never edit them, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------
-- issue 15, metrics: setstream.metrics() gives the samples that GET
-- /metrics on the listener shows (Prometheus text format), one row each:
-- the sample's name (a histogram's with _bucket, _sum or _count), its
-- labels and its value.  Per stream only for the streams on which the
-- caller holds the read right (at most setstream.metrics_max_streams of
-- them); the listener-wide samples name no stream.  Executable by every
-- role: what it shows is decided by the caller's rights, not by grants on
-- the tables.
-- ---------------------------------------------------------------------
CREATE FUNCTION setstream.metrics(
    OUT name text, OUT labels jsonb, OUT value double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'setstream_metrics'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION setstream.metrics() IS
'Prometheus samples of setstream (what GET /metrics shows): per stream the caller may read, and listener-wide.';

GRANT EXECUTE ON FUNCTION setstream.metrics() TO PUBLIC;

-- ---------------------------------------------------------------------
-- Citus / distribution by stream (issue 18)
-- ---------------------------------------------------------------------
--
-- Every table can be a Citus reference table (the configuration: streams,
-- keys, key_secrets, tokens, client_certs, stream_grants, deliveries,
-- delivery_secrets) or be distributed by stream and co-located (events,
-- outbox); setstream.generations stays a plain table on every node.  See
-- the README, "Citus".

-- The order of a stream's outbox without a node-local sequence: the
-- microseconds of the clock (shifted left 10 bits) with the low bits
-- naming the backend, and never less than this backend's last value plus
-- 1024: strictly increasing in each session (whatever the clock does),
-- oldest first across sessions and nodes as far as their clocks agree, and
-- two sessions never draw the same value on one node.  What nextval() gave
-- before 0.3.0 is smaller than any value drawn now.
CREATE FUNCTION setstream._order_key()
RETURNS bigint
AS 'MODULE_PATHNAME', 'setstream_order_key'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;
GRANT EXECUTE ON FUNCTION setstream._order_key() TO PUBLIC;

ALTER TABLE setstream.outbox ALTER COLUMN seq SET DEFAULT setstream._order_key();
-- (out of the extension first: that also takes it out of pg_dump's list)
ALTER EXTENSION setstream DROP SEQUENCE setstream.outbox_seq;
DROP SEQUENCE setstream.outbox_seq;

-- Token ids: the same clock-based values, not an identity (whose sequence
-- is per node: a token issued on a worker got an id already used).
ALTER TABLE setstream.tokens ALTER COLUMN id DROP IDENTITY;
ALTER TABLE setstream.tokens ALTER COLUMN id SET DEFAULT setstream._order_key();

-- A token hash is unique within its stream (a unique key of a table
-- distributed by stream must contain the stream).  Tokens are 256 random
-- bits: two streams never share one.
ALTER TABLE setstream.tokens DROP CONSTRAINT tokens_token_hash_key;
ALTER TABLE setstream.tokens
    ADD CONSTRAINT tokens_stream_token_hash_key UNIQUE (stream, token_hash);

-- Foreign keys without ON UPDATE CASCADE (Citus refuses it when the
-- distribution column is in the key; a stream is never renamed anyway).
ALTER TABLE setstream.keys DROP CONSTRAINT keys_stream_fkey,
    ADD CONSTRAINT keys_stream_fkey FOREIGN KEY (stream)
        REFERENCES setstream.streams (name) ON DELETE CASCADE;
ALTER TABLE setstream.key_secrets DROP CONSTRAINT key_secrets_stream_kid_fkey,
    ADD CONSTRAINT key_secrets_stream_kid_fkey FOREIGN KEY (stream, kid)
        REFERENCES setstream.keys (stream, kid) ON DELETE CASCADE;
ALTER TABLE setstream.tokens DROP CONSTRAINT tokens_stream_fkey,
    ADD CONSTRAINT tokens_stream_fkey FOREIGN KEY (stream)
        REFERENCES setstream.streams (name) ON DELETE CASCADE;
ALTER TABLE setstream.client_certs DROP CONSTRAINT client_certs_stream_fkey,
    ADD CONSTRAINT client_certs_stream_fkey FOREIGN KEY (stream)
        REFERENCES setstream.streams (name) ON DELETE CASCADE;
ALTER TABLE setstream.events DROP CONSTRAINT events_stream_fkey,
    ADD CONSTRAINT events_stream_fkey FOREIGN KEY (stream)
        REFERENCES setstream.streams (name) ON DELETE CASCADE;
ALTER TABLE setstream.outbox DROP CONSTRAINT outbox_stream_fkey,
    ADD CONSTRAINT outbox_stream_fkey FOREIGN KEY (stream)
        REFERENCES setstream.streams (name) ON DELETE CASCADE;

-- revoke_key: the time is a value, not clock_timestamp() inside the UPDATE
-- (Citus refuses volatile functions in an UPDATE of a distributed table).
-- Its new body is below, with key rotation (issue 13), which gives it a
-- force argument.

-- purge_outbox: one statement for one stream (routed to its shard), one
-- for all; the cutoff is computed first, and each DELETE is planned for
-- its values (EXECUTE): no "stream IS NULL OR" that no shard can prune.
CREATE OR REPLACE FUNCTION setstream.purge_outbox(
    older_than interval DEFAULT '7 days',
    stream text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    cutoff timestamptz := now() - older_than;
BEGIN
    IF purge_outbox.stream IS NOT NULL THEN
        PERFORM setstream._require(purge_outbox.stream, 'manage');
        EXECUTE 'DELETE FROM setstream.outbox o'
                ' WHERE o.stream OPERATOR(pg_catalog.=) $1'
                ' AND ((o.state OPERATOR(pg_catalog.=) ''acked'' AND o.acked_at OPERATOR(pg_catalog.<) $2)'
                ' OR (o.state OPERATOR(pg_catalog.=) ''failed'' AND o.failed_at OPERATOR(pg_catalog.<) $2))'
            USING purge_outbox.stream, cutoff;
    ELSE
        EXECUTE 'DELETE FROM setstream.outbox o'
                ' WHERE (o.state OPERATOR(pg_catalog.=) ''acked'' AND o.acked_at OPERATOR(pg_catalog.<) $1)'
                ' OR (o.state OPERATOR(pg_catalog.=) ''failed'' AND o.failed_at OPERATOR(pg_catalog.<) $1)'
            USING cutoff;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- stats: events counted by one grouped pass joined on the stream, like the
-- outbox (a correlated subquery over a distributed table beside a
-- reference table is not something Citus plans).
CREATE OR REPLACE VIEW setstream.stats WITH (security_invoker = true) AS
SELECT s.name AS stream,
       s.status,
       coalesce(c.received, 0) AS received,
       coalesce(c.rejected, '{}'::jsonb) AS rejected,
       coalesce(e0.stored, 0) AS stored,
       o.emitted,
       o.pending,
       o.delivered,
       o.acked,
       o.failed,
       o.pending + o.delivered AS outbox_depth,
       coalesce(c.long_polls, 0) AS waiting_long_polls,
       l.connections AS listener_connections
  FROM setstream.streams s
  LEFT JOIN setstream.stream_counters() c ON c.stream = s.name
  LEFT JOIN (
      SELECT ev.stream, count(*) AS stored
        FROM setstream.events ev GROUP BY ev.stream) e0 ON e0.stream = s.name
  LEFT JOIN (
      SELECT ob.stream,
             count(*) AS emitted,
             count(*) FILTER (WHERE ob.state = 'pending') AS pending,
             count(*) FILTER (WHERE ob.state = 'delivered') AS delivered,
             count(*) FILTER (WHERE ob.state = 'acked') AS acked,
             count(*) FILTER (WHERE ob.state = 'failed') AS failed
        FROM setstream.outbox ob GROUP BY ob.stream) o0 ON o0.stream = s.name
  CROSS JOIN LATERAL (
      SELECT coalesce(o0.emitted, 0) AS emitted,
             coalesce(o0.pending, 0) AS pending,
             coalesce(o0.delivered, 0) AS delivered,
             coalesce(o0.acked, 0) AS acked,
             coalesce(o0.failed, 0) AS failed) o
  CROSS JOIN setstream.listener_stats() l;

-- Configuration generations, per stream, in a plain table of each node
-- (never distribute it: on Citus the configuration tables are reference
-- tables, so every change is written, and these triggers fire, on every
-- node).  The listeners and senders of the node read the sum every
-- setstream.generation_check_interval and drop their caches when it
-- moved: a change that committed on this node by any path (plain commit,
-- COMMIT PREPARED in any session, logical replication) is seen without
-- relying on the committing backend.  The row '' counts TRUNCATEs.
CREATE TABLE setstream.generations (
    stream      text PRIMARY KEY,
    generation  bigint NOT NULL DEFAULT 1,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE setstream.generations IS
'Per-stream generation of the configuration (streams, keys, key_secrets, tokens, client_certs, stream_grants), bumped by triggers; the listeners and senders of this node drop their caches when the sum moves. Node-local: never distribute it.';
REVOKE ALL ON setstream.generations FROM PUBLIC;
GRANT SELECT ON setstream.generations TO setstream_worker;

CREATE FUNCTION setstream._bump_generation()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s text := '';
BEGIN
    -- TG_ARGV[0]: the column that names the stream (a Citus shard's
    -- table name is not the table's)
    IF TG_OP OPERATOR(pg_catalog.=) 'TRUNCATE' THEN
        NULL;
    ELSIF TG_ARGV[0] OPERATOR(pg_catalog.=) 'name' THEN
        IF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
            s := OLD.name;
        ELSE
            s := NEW.name;
        END IF;
    ELSIF TG_OP OPERATOR(pg_catalog.=) 'DELETE' THEN
        s := OLD.stream;
    ELSE
        s := NEW.stream;
    END IF;
    INSERT INTO setstream.generations AS g (stream) VALUES (s)
    ON CONFLICT (stream) DO UPDATE
       SET generation = g.generation OPERATOR(pg_catalog.+) 1,
           changed_at = pg_catalog.now();
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._bump_generation() FROM PUBLIC;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['streams', 'keys', 'key_secrets', 'tokens',
                             'client_certs', 'stream_grants'] LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER bump_generation AFTER INSERT OR UPDATE OR DELETE ON setstream.%I'
            ' FOR EACH ROW EXECUTE FUNCTION setstream._bump_generation(%L)', t,
            CASE WHEN t OPERATOR(pg_catalog.=) 'streams' THEN 'name' ELSE 'stream' END);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER bump_generation_truncate AFTER TRUNCATE ON setstream.%I'
            ' FOR EACH STATEMENT EXECUTE FUNCTION setstream._bump_generation()', t);
        EXECUTE pg_catalog.format(
            'ALTER TABLE setstream.%I ENABLE ALWAYS TRIGGER bump_generation', t);
        EXECUTE pg_catalog.format(
            'ALTER TABLE setstream.%I ENABLE ALWAYS TRIGGER bump_generation_truncate', t);
    END LOOP;
END
$$;

-- What distribute() changes on each node before converting the tables:
-- the row-level security policies lose their "(SELECT ...)" (Citus
-- refuses subqueries in policies of distributed tables; the call is then
-- made per row, not once per statement), and the foreign keys are dropped
-- (returned, to be made again once every table is converted: Citus would
-- otherwise convert the whole graph of local tables at once, and create on
-- the workers tables that their own CREATE EXTENSION made).
CREATE FUNCTION setstream._prepare_distribution()
RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fk record;
    fks text[] := '{}';
    p record;
    q text;
    c text;
    pat constant text := '\(\s*SELECT (setstream\._streams_with\([^)]*\)) AS _streams_with\)';
BEGIN
    -- Row-level security policies without subqueries (Citus refuses them
    -- on distributed tables): "(SELECT setstream._streams_with(p))"
    -- becomes the call itself.
    FOR p IN SELECT * FROM pg_catalog.pg_policies pp
              WHERE pp.schemaname OPERATOR(pg_catalog.=) 'setstream' LOOP
        q := pg_catalog.regexp_replace(p.qual, pat, '\1', 'g');
        c := pg_catalog.regexp_replace(p.with_check, pat, '\1', 'g');
        IF q IS DISTINCT FROM p.qual THEN
            EXECUTE pg_catalog.format('ALTER POLICY %I ON setstream.%I USING (%s)',
                                      p.policyname, p.tablename, q);
        END IF;
        IF c IS DISTINCT FROM p.with_check THEN
            EXECUTE pg_catalog.format('ALTER POLICY %I ON setstream.%I WITH CHECK (%s)',
                                      p.policyname, p.tablename, c);
        END IF;
    END LOOP;

    -- The foreign keys are dropped while the tables are converted one by
    -- one (Citus would otherwise convert the whole graph of local tables
    -- at once, and create on the workers tables that setstream's own
    -- CREATE EXTENSION made there), then made again.
    FOR fk IN SELECT co.conrelid::pg_catalog.regclass::pg_catalog.text AS rel, co.conname,
                     pg_catalog.pg_get_constraintdef(co.oid) AS def
                FROM pg_catalog.pg_constraint co
                JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) co.connamespace
               WHERE n.nspname OPERATOR(pg_catalog.=) 'setstream'
                 AND co.contype OPERATOR(pg_catalog.=) 'f'
               ORDER BY co.conrelid, co.conname LOOP
        EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', fk.rel, fk.conname);
        fks := fks OPERATOR(pg_catalog.||)
               pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.rel, fk.conname, fk.def);
    END LOOP;

    RETURN fks;
END
$$;
-- Distribute setstream's tables on a Citus cluster (the README, "Citus"):
-- the configuration tables become reference tables, events and outbox
-- are distributed by stream and co-located; setstream.generations stays a
-- plain table on each node.  Tables already distributed are left as they
-- are.  Without Citus: 0A000.
CREATE FUNCTION setstream.distribute(shard_count integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    done boolean;
    fks text[];
    q text;
    r record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'setstream.distribute() needs Citus, which is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'On a Citus coordinator: CREATE EXTENSION citus first; see the setstream README, "Citus".';
    END IF;
    -- the configuration tables' triggers (config_changed, bump_generation)
    -- run on every node's placement
    PERFORM pg_catalog.set_config('citus.enable_unsafe_triggers', 'on', true);
    -- reference tables and foreign keys to them in one transaction
    PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);

    fks := setstream._prepare_distribution();
    -- the same on the workers' own tables (their CREATE EXTENSION made them)
    FOR r IN EXECUTE 'SELECT * FROM pg_catalog.run_command_on_workers($1)'
               USING 'SELECT setstream._prepare_distribution()' LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'setstream._prepare_distribution() failed on %:%: %',
                r.nodename, r.nodeport, r.result;
        END IF;
    END LOOP;

    FOREACH t IN ARRAY ARRAY['streams', 'keys', 'key_secrets', 'tokens', 'client_certs',
                             'stream_grants', 'deliveries', 'delivery_secrets',
                             'peer_jwks', 'sources', 'source_secrets',
                             'receivers', 'receiver_tokens',
                             'events', 'outbox'] LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p'
                ' WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass)'
            INTO done USING 'setstream.' OPERATOR(pg_catalog.||) t;
        CONTINUE WHEN done;
        IF t OPERATOR(pg_catalog.=) 'events' THEN
            EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3,'
                    ' shard_count => $4)'
                USING 'setstream.events', 'stream', 'none',
                      coalesce(shard_count,
                               pg_catalog.current_setting('citus.shard_count')::integer);
        ELSIF t OPERATOR(pg_catalog.=) 'outbox' THEN
            EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3)'
                USING 'setstream.outbox', 'stream', 'setstream.events';
        ELSE
            EXECUTE 'SELECT pg_catalog.create_reference_table($1)'
                USING 'setstream.' OPERATOR(pg_catalog.||) t;
        END IF;
    END LOOP;

    FOREACH q IN ARRAY fks LOOP
        EXECUTE q;
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream.distribute(integer),
    setstream._prepare_distribution() FROM PUBLIC;

-- Dropping setstream on a Citus cluster (the README, "Citus"): the
-- distributed and reference tables (with their shards on every node) and
-- the stats view are dropped here, and with them, on the coordinator, the
-- extension itself (its functions depend on the tables' row types).  Then,
-- once this has committed, the workers' own setstream (their CREATE
-- EXTENSION) is dropped on each worker (in this transaction, the workers'
-- DROP would wait for its locks).  Without Citus: 0A000.
CREATE FUNCTION setstream.prepare_drop()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
    done boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                    WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        RAISE EXCEPTION 'setstream.prepare_drop() is for Citus, which is not installed in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'DROP EXTENSION setstream is enough here.';
    END IF;
    PERFORM pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
    ALTER EXTENSION setstream DROP VIEW setstream.stats;
    DROP VIEW setstream.stats;
    FOREACH t IN ARRAY ARRAY['outbox', 'events', 'source_secrets', 'sources',
                             'peer_jwks', 'delivery_secrets', 'deliveries',
                             'stream_grants', 'client_certs', 'tokens', 'key_secrets',
                             'keys', 'streams', 'receiver_tokens', 'receivers'] LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p'
                ' WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass)'
            INTO done USING 'setstream.' OPERATOR(pg_catalog.||) t;
        CONTINUE WHEN NOT done;
        EXECUTE pg_catalog.format('ALTER EXTENSION setstream DROP TABLE setstream.%I', t);
        EXECUTE pg_catalog.format('DROP TABLE setstream.%I CASCADE', t);
    END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream.prepare_drop() FROM PUBLIC;

-- ---------------------------------------------------------------------
-- issue 17: peer keys from a jwks_uri
-- ---------------------------------------------------------------------
--
-- A stream with a peer_jwks_uri gets its verification keys from that JWK
-- Set: the sender fetches it (src/outbound/jwksfetch.c) and writes its
-- keys into setstream.keys with origin 'jwks_uri'; a refetch replaces only
-- those.  Keys that add_key and generate_key make have origin 'sql'.  The
-- state of the fetches is in setstream.peer_jwks (written by the sender
-- as the extension owner; readable like setstream.deliveries).  See the
-- README, "Peer keys from a jwks_uri".

ALTER TABLE setstream.streams
    ADD COLUMN peer_jwks_uri text
        CONSTRAINT streams_peer_jwks_uri_check
        CHECK (peer_jwks_uri ~* '^https?://[^/?#[:space:]]+');

ALTER TABLE setstream.keys
    ADD COLUMN origin text NOT NULL DEFAULT 'sql'
        CONSTRAINT keys_origin_check CHECK (origin IN ('sql', 'jwks_uri'));

CREATE TABLE setstream.peer_jwks (
    stream          text PRIMARY KEY
                    REFERENCES setstream.streams (name) ON DELETE CASCADE,
    uri             text NOT NULL,
    fetched_at      timestamptz,
    expires_at      timestamptz,
    next_fetch_at   timestamptz,
    keys            integer NOT NULL DEFAULT 0,
    failures        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    last_error_at   timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE setstream.peer_jwks IS
'The fetches of each stream''s peer_jwks_uri (uri: the one last fetched): fetched_at (last success), expires_at (its max-age, or an hour), next_fetch_at, keys (how many it gave), failures in a row, and the last failure (last_status: HTTP status, 0 for no answer; last_error, last_error_at). Written by the sender; a failure keeps the keys of the last success.';
SELECT pg_catalog.pg_extension_config_dump('setstream.peer_jwks', '');
ALTER TABLE setstream.peer_jwks ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON setstream.peer_jwks FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
GRANT SELECT ON setstream.peer_jwks TO setstream_worker;

-- alter_stream gains peer_jwks_uri (NULL: unchanged; '': none).  The old
-- signature goes; whoever could run it (the manage right's grants) may run
-- the new one and update the new column.
CREATE FUNCTION setstream.alter_stream(
    name text,
    issuer text DEFAULT NULL,
    audience text[] DEFAULT NULL,
    peer_issuer text DEFAULT NULL,
    profile text DEFAULT NULL,
    allow_unsigned boolean DEFAULT NULL,
    client_auth text DEFAULT NULL,
    peer_jwks_uri text DEFAULT NULL)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur setstream.streams := setstream._stream_row(name);
    result setstream.streams;
BEGIN
    PERFORM setstream._check_stream_fields(cur.name,
        coalesce(issuer, cur.issuer), coalesce(audience, cur.audience),
        coalesce(peer_issuer, cur.peer_issuer), coalesce(profile, cur.profile),
        coalesce(client_auth, cur.client_auth));
    IF peer_jwks_uri <> '' AND peer_jwks_uri !~* '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'peer_jwks_uri must be an http or https URL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE setstream.streams s
       SET issuer = coalesce(alter_stream.issuer, s.issuer),
           audience = coalesce(alter_stream.audience, s.audience),
           peer_issuer = coalesce(alter_stream.peer_issuer, s.peer_issuer),
           profile = coalesce(alter_stream.profile, s.profile),
           allow_unsigned = coalesce(alter_stream.allow_unsigned, s.allow_unsigned),
           client_auth = coalesce(alter_stream.client_auth, s.client_auth),
           peer_jwks_uri = CASE WHEN alter_stream.peer_jwks_uri IS NULL THEN s.peer_jwks_uri
                                WHEN alter_stream.peer_jwks_uri = '' THEN NULL
                                ELSE alter_stream.peer_jwks_uri END
     WHERE s.name = cur.name
    RETURNING s.* INTO result;
    -- without a peer_jwks_uri, the keys fetched from one go with it
    IF result.peer_jwks_uri IS NULL AND cur.peer_jwks_uri IS NOT NULL THEN
        DELETE FROM setstream.keys k
         WHERE k.stream OPERATOR(pg_catalog.=) cur.name
           AND k.origin OPERATOR(pg_catalog.=) 'jwks_uri';
    END IF;
    RETURN result;
END
$$;

-- Two helpers of this update only (dropped at its end).  Roles that hold
-- a right already get what 0.3.0 adds to it as their own grants, as
-- grant_stream gives them from 0.3.0 on.  A GRANT made by an extension
-- script is recorded in pg_init_privs, and pg_dump would then leave it out
-- (a restore, which runs CREATE EXTENSION, would lose it); so
-- _update_grant puts pg_init_privs back as it was before its grants: the
-- schema then is, to pg_dump too, what a fresh install and grant_stream
-- make.

-- The roles other than PUBLIC and the owner that hold "privilege" on a
-- function (regprocedure) or a table (regclass), in name order
CREATE FUNCTION setstream._update_holders(obj pg_catalog.oid, privilege pg_catalog.text)
RETURNS SETOF pg_catalog.text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.role FROM (
        SELECT a.grantee::pg_catalog.regrole::pg_catalog.text AS role
          FROM pg_catalog.pg_proc p, LATERAL pg_catalog.aclexplode(p.proacl) a
         WHERE p.oid OPERATOR(pg_catalog.=) obj
           AND a.privilege_type OPERATOR(pg_catalog.=) privilege
           AND a.grantee OPERATOR(pg_catalog.<>) 0
           AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
        UNION
        SELECT a.grantee::pg_catalog.regrole::pg_catalog.text
          FROM pg_catalog.pg_class c, LATERAL pg_catalog.aclexplode(c.relacl) a
         WHERE c.oid OPERATOR(pg_catalog.=) obj
           AND a.privilege_type OPERATOR(pg_catalog.=) privilege
           AND a.grantee OPERATOR(pg_catalog.<>) 0
           AND a.grantee OPERATOR(pg_catalog.<>) c.relowner) h
     ORDER BY h.role
$$;

-- Run each GRANT (format templates: %s is the role) for each role, then
-- put pg_init_privs back as it was: rows the grants added go, rows they
-- changed get their old value
CREATE FUNCTION setstream._update_grant(roles pg_catalog.text[], grants pg_catalog.text[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before pg_catalog.pg_init_privs[];
    r pg_catalog.text;
    g pg_catalog.text;
BEGIN
    SELECT pg_catalog.array_agg(ip) INTO before FROM pg_catalog.pg_init_privs ip;
    FOREACH r IN ARRAY roles LOOP
        FOREACH g IN ARRAY grants LOOP
            EXECUTE pg_catalog.format(g, r);
        END LOOP;
    END LOOP;
    DELETE FROM pg_catalog.pg_init_privs ip
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(before) b
                        WHERE b.objoid OPERATOR(pg_catalog.=) ip.objoid
                          AND b.classoid OPERATOR(pg_catalog.=) ip.classoid
                          AND b.objsubid OPERATOR(pg_catalog.=) ip.objsubid);
    UPDATE pg_catalog.pg_init_privs ip SET initprivs = b.initprivs
      FROM pg_catalog.unnest(before) b
     WHERE b.objoid OPERATOR(pg_catalog.=) ip.objoid
       AND b.classoid OPERATOR(pg_catalog.=) ip.classoid
       AND b.objsubid OPERATOR(pg_catalog.=) ip.objsubid
       AND b.initprivs IS DISTINCT FROM ip.initprivs;
END
$$;

REVOKE EXECUTE ON FUNCTION
    setstream.alter_stream(text, text, text[], text, text, boolean, text, text) FROM PUBLIC;

-- Who could run the old alter_stream (the manage right) gets the new one
-- and UPDATE of the new column; who could read deliveries (every right)
-- may read peer_jwks.
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.alter_stream(text, text, text[], text, text, boolean, text)'::pg_catalog.regprocedure,
        'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.alter_stream(text, text, text[], text, text, boolean, text, text) TO %s',
          'GRANT UPDATE (peer_jwks_uri) ON setstream.streams TO %s']);
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders('setstream.deliveries'::pg_catalog.regclass, 'SELECT')),
    ARRAY['GRANT SELECT ON setstream.peer_jwks TO %s']);
DROP FUNCTION setstream.alter_stream(text, text, text[], text, text, boolean, text);
-- ---------------------------------------------------------------------
-- end of issue 17: peer keys from a jwks_uri
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- SSF stream status (issue 13): disabled holds no events; refusing
-- inbound SETs is a setting of its own
-- ---------------------------------------------------------------------
--
-- SSF 1.0 (8.1.2.1): a disabled stream transmits nothing and holds
-- nothing; a poll on it answers 200 with no SETs (RFC 8936 2.5).  Until
-- 0.2.0 "disabled" also refused inbound SETs; that is now
-- set_inbound(stream, 'refuse').  Streams disabled before this update
-- keep refusing them.
ALTER TABLE setstream.streams
    ADD COLUMN inbound text NOT NULL DEFAULT 'accept'
        CONSTRAINT streams_inbound_valid CHECK (inbound IN ('accept', 'refuse'));
COMMENT ON COLUMN setstream.streams.inbound IS
'accept: inbound SETs (push, pushpull, receive(), ingest()) are verified and stored; refuse: each is answered access_denied (set_inbound).';
UPDATE setstream.streams SET inbound = 'refuse' WHERE status = 'disabled';

-- enabled: SETs flow both ways.  paused: emitted SETs are queued but not
-- delivered until the stream is enabled again.  disabled: emit() queues
-- nothing, and the SETs still queued (pending, or delivered and not
-- acknowledged) fail with err "stream_disabled"; polls answer no SETs.
-- Inbound SETs are governed by set_inbound(), not by the status.
CREATE OR REPLACE FUNCTION setstream.set_stream_status(name text, status text)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur setstream.streams := setstream._stream_row(name);
    result setstream.streams;
BEGIN
    IF status IS NULL OR status NOT IN ('enabled', 'paused', 'disabled') THEN
        RAISE EXCEPTION 'unknown stream status "%"', status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''enabled'', ''paused'' or ''disabled''.';
    END IF;
    UPDATE setstream.streams s SET status = set_stream_status.status
     WHERE s.name = cur.name
    RETURNING s.* INTO result;
    IF set_stream_status.status = 'disabled' THEN
        UPDATE setstream.outbox o
           SET state = 'failed', failed_at = pg_catalog.now(),
               err = 'stream_disabled', description = 'the stream was disabled',
               next_attempt_at = NULL
         WHERE o.stream = cur.name AND o.state IN ('pending', 'delivered');
    END IF;
    RETURN result;
END
$$;

-- Accept or refuse the stream's inbound SETs
CREATE FUNCTION setstream.set_inbound(name text, inbound text)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur setstream.streams := setstream._stream_row(name);
    result setstream.streams;
BEGIN
    IF inbound IS NULL OR inbound NOT IN ('accept', 'refuse') THEN
        RAISE EXCEPTION 'unknown inbound setting "%"', inbound
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''accept'' or ''refuse''.';
    END IF;
    UPDATE setstream.streams s SET inbound = set_inbound.inbound
     WHERE s.name = cur.name
    RETURNING s.* INTO result;
    RETURN result;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream.set_inbound(text, text) FROM PUBLIC;
COMMENT ON FUNCTION setstream.set_inbound(text, text) IS
'accept or refuse the stream''s inbound SETs (refused: access_denied); needs the manage privilege';

-- set_inbound and the column it writes are granted with the manage right
-- (grant_stream, allow_stream_creation); the roles that hold it already
-- (whoever may run set_stream_status) get them here, as their own grants
-- (_update_grant, above).
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.set_inbound(text, text) TO %s',
          'GRANT UPDATE (inbound) ON setstream.streams TO %s']);

-- ---------------------------------------------------------------------
-- issue 17: the RFC 8936 poll client (set_source)
-- ---------------------------------------------------------------------

-- Streams whose SETs setstream fetches itself: the sender serving the
-- stream long-polls the peer's RFC 8936 endpoint_url and stores what
-- arrives (src/outbound/pollclient.c).  state as in deliveries:
--   active     polling
--   backoff    no poll before backoff_until
--   suspended  no poll until set_source() is called again
-- received / rejected count the SETs stored (or found stored) and those
-- answered with a setErr; last_status / last_error: the last answer (0: no
-- answer), polled_at: when it came.
CREATE TABLE setstream.sources (
    stream              text PRIMARY KEY
                        REFERENCES setstream.streams (name) ON DELETE CASCADE,
    method              text NOT NULL DEFAULT 'poll' CHECK (method IN ('poll')),
    endpoint_url        text NOT NULL CHECK (endpoint_url ~* '^https?://[^/?#[:space:]]+'),
    state               text NOT NULL DEFAULT 'active'
                        CHECK (state IN ('active', 'backoff', 'suspended')),
    backoff_until       timestamptz,
    suspended_reason    text,
    failures            integer NOT NULL DEFAULT 0,
    auth_failures       integer NOT NULL DEFAULT 0,
    received            bigint NOT NULL DEFAULT 0,
    rejected            bigint NOT NULL DEFAULT 0,
    last_status         integer,
    last_error          text,
    polled_at           timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sources_backoff_until
        CHECK ((state = 'backoff') = (backoff_until IS NOT NULL)),
    CONSTRAINT sources_suspended_reason
        CHECK ((state = 'suspended') = (suspended_reason IS NOT NULL))
);
COMMENT ON TABLE setstream.sources IS
'Streams whose SETs setstream polls from a peer (set_source, RFC 8936), and the state of that polling: active, backoff until a time, or suspended with a reason (set_source again resumes it).';
SELECT pg_catalog.pg_extension_config_dump('setstream.sources', '');

-- The Authorization header sent with each poll: readable by the extension
-- owner only, never returned, shown or logged.
CREATE TABLE setstream.source_secrets (
    stream                  text PRIMARY KEY
                            REFERENCES setstream.sources (stream) ON DELETE CASCADE,
    authorization_header    text NOT NULL
);
REVOKE ALL ON setstream.source_secrets FROM PUBLIC;
COMMENT ON TABLE setstream.source_secrets IS
'Outbound credentials of the poll client (the Authorization header of polls). Readable by the extension owner only; never returned by any function.';
SELECT pg_catalog.pg_extension_config_dump('setstream.source_secrets', '');

ALTER TABLE setstream.sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.source_secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON setstream.sources FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
CREATE POLICY manage ON setstream.sources FOR ALL
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]))
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
-- (source_secrets: no policy; only its owner, who bypasses them, reads it)

-- Store or remove the source's Authorization header (as the extension
-- owner, after checking the caller's manage right), and make the senders
-- read their sources again at commit.
CREATE FUNCTION setstream._set_source_secret(stream text, authorization_header text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_set_source_secret'
LANGUAGE C VOLATILE;

-- Poll the peer's RFC 8936 endpoint for the stream's inbound SETs
-- (method poll or urn:ietf:rfc:8936), with authorization_header verbatim
-- as Authorization; none stops it.  Calling it again makes the source
-- active again (a suspended one too).
CREATE FUNCTION setstream.set_source(stream text, method text, endpoint_url text,
                                     authorization_header text DEFAULT NULL)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
    m text := lower(method);
BEGIN
    result := setstream._stream_row(stream);
    IF m = 'urn:ietf:rfc:8936' THEN
        m := 'poll';
    END IF;
    IF m IS NULL OR m NOT IN ('poll', 'none') THEN
        RAISE EXCEPTION 'unknown source method "%"', method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use poll, urn:ietf:rfc:8936 or none.';
    END IF;
    IF m = 'none' THEN
        IF endpoint_url IS NOT NULL OR authorization_header IS NOT NULL THEN
            RAISE EXCEPTION 'none takes no endpoint_url and no authorization_header'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        PERFORM setstream._set_source_secret(result.name, NULL);
        DELETE FROM setstream.sources s WHERE s.stream = result.name;
        RETURN result;
    END IF;
    IF endpoint_url IS NULL OR endpoint_url !~* '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'poll needs an http:// or https:// endpoint_url'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO setstream.sources AS s (stream, method, endpoint_url)
    VALUES (result.name, m, endpoint_url)
    ON CONFLICT ON CONSTRAINT sources_pkey DO UPDATE
       SET method = excluded.method, endpoint_url = excluded.endpoint_url,
           state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, updated_at = now();
    PERFORM setstream._set_source_secret(result.name, authorization_header);
    RETURN result;
END
$$;

REVOKE EXECUTE ON FUNCTION setstream._set_source_secret(text, text),
    setstream.set_source(text, text, text, text) FROM PUBLIC;

-- The sender (setstream_worker): read the sources, record their state
GRANT SELECT ON setstream.sources TO setstream_worker;
GRANT UPDATE (state, backoff_until, suspended_reason, failures, auth_failures,
              received, rejected, last_status, last_error, polled_at, updated_at)
    ON setstream.sources TO setstream_worker;

-- Roles given rights before this update get the privileges of sources as
-- grant_stream gives them from 0.3.0 on: SELECT for whoever may read
-- setstream.deliveries; set_source and INSERT, UPDATE, DELETE for whoever
-- may run set_stream_status (the manage right); as their own grants.
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders('setstream.deliveries'::pg_catalog.regclass, 'SELECT')
          EXCEPT SELECT 'setstream_worker' ORDER BY 1),
    ARRAY['GRANT SELECT ON setstream.sources TO %s']);
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT INSERT, UPDATE, DELETE ON setstream.sources TO %s',
          'GRANT EXECUTE ON FUNCTION setstream.set_source(text, text, text, text),'
          ' setstream._set_source_secret(text, text) TO %s']);
-- (end of issue 17: the RFC 8936 poll client)

-- ---------------------------------------------------------------------
-- issue 17 (continued): create_stream takes peer_jwks_uri
-- ---------------------------------------------------------------------
--
-- create_stream gains peer_jwks_uri (NULL or '': none), as alter_stream
-- did above.  The old signature goes; whoever could run it (the grants of
-- allow_stream_creation) may run the new one.  INSERT on setstream.streams,
-- which those roles hold, covers the new column.
CREATE FUNCTION setstream.create_stream(
    name text,
    issuer text,
    audience text[],
    peer_issuer text DEFAULT NULL,
    profile text DEFAULT 'ssf',
    allow_unsigned boolean DEFAULT false,
    client_auth text DEFAULT 'bearer',
    peer_jwks_uri text DEFAULT NULL)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
BEGIN
    PERFORM setstream._check_stream_fields(name, issuer, audience, peer_issuer, profile,
                                           coalesce(client_auth, 'bearer'));
    IF peer_jwks_uri <> '' AND peer_jwks_uri !~* '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'peer_jwks_uri must be an http or https URL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO setstream.streams AS s (name, issuer, audience, peer_issuer, profile,
                                        allow_unsigned, client_auth, peer_jwks_uri)
    VALUES (name, issuer, audience, peer_issuer, profile, coalesce(allow_unsigned, false),
            coalesce(client_auth, 'bearer'), nullif(peer_jwks_uri, ''))
    RETURNING s.* INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'stream "%" already exists', name
        USING ERRCODE = 'duplicate_object';
END
$$;

REVOKE EXECUTE ON FUNCTION
    setstream.create_stream(text, text, text[], text, text, boolean, text, text) FROM PUBLIC;

-- Who could run the old create_stream (allow_stream_creation) may run the
-- new one, as its own grant (_update_grant, above).
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.create_stream(text, text, text[], text, text, boolean, text)'::pg_catalog.regprocedure,
        'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.create_stream(text, text, text[], text, text, boolean, text, text) TO %s']);
DROP FUNCTION setstream.create_stream(text, text, text[], text, text, boolean, text);
-- ---------------------------------------------------------------------
-- end of issue 17 (continued): create_stream takes peer_jwks_uri
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- error_code() from the one mapping (issue 12)
-- ---------------------------------------------------------------------
-- The SQLSTATE -> RFC 8935 code table lives in C (base/errors.c), which
-- the listener and the SQL API already use; the SQL CASE of 0.1.0 was a
-- copy of it.  Same answers (NULL for anything else), same rights.
CREATE OR REPLACE FUNCTION setstream.error_code(sqlstate text)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_error_code'
LANGUAGE C IMMUTABLE STRICT;

-- ---------------------------------------------------------------------
-- issue 13: key rotation
-- ---------------------------------------------------------------------
-- rotate_key(stream, alg) signs with a new key at once.  The keys it
-- supersedes stay in /jwks.json while SETs they signed are unsettled
-- (neither acknowledged nor failed) and for setstream.jwks_max_age after
-- the rotation (the max-age of the JWKS answer, so a receiver's cached
-- copy still holds them); then the sender retires them (revoked_at).
-- revoke_key refuses a key that unsettled SETs still need, unless forced.
ALTER TABLE setstream.keys ADD COLUMN superseded_at timestamptz;

COMMENT ON COLUMN setstream.keys.superseded_at IS
'When rotate_key replaced this signing key.  It no longer signs; it stays published until the SETs it signed are settled and setstream.jwks_max_age has passed, then its revoked_at is set.';

-- The kid of a compact JWS's protected header; NULL when there is none.
CREATE FUNCTION setstream._token_kid(token text)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_token_kid'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Do unsettled outbox rows of the stream carry a signature by kid?  The
-- scan walks outbox_due_idx (the unsettled rows) in emit order, so while
-- rows signed by an old key remain it stops at the first one.
CREATE FUNCTION setstream._key_in_use(stream text, kid text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (
        SELECT 1 FROM setstream.outbox o
         WHERE o.stream = _key_in_use.stream
           AND o.acked_at IS NULL AND o.failed_at IS NULL
           AND setstream._token_kid(o.token) = _key_in_use.kid)
$$;

CREATE FUNCTION setstream.rotate_key(stream text, alg text DEFAULT 'ES256')
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := clock_timestamp();
    jwk jsonb;
    new_kid text;
BEGIN
    PERFORM setstream._stream_row(stream);
    jwk := setstream.generate_key(stream, alg);
    new_kid := jwk ->> 'kid';
    UPDATE setstream.keys k SET superseded_at = at
     WHERE k.stream = rotate_key.stream AND k.purpose = 'sign'
       AND k.revoked_at IS NULL AND k.superseded_at IS NULL
       AND k.kid <> new_kid;
    RETURN jwk;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream.rotate_key(text, text) FROM PUBLIC;

-- The time is a value, not clock_timestamp() inside the UPDATE (Citus
-- refuses volatile functions in an UPDATE of a distributed table).
CREATE FUNCTION setstream.revoke_key(stream text, kid text, force boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := clock_timestamp();
BEGIN
    PERFORM setstream._stream_row(stream);
    IF NOT force AND setstream._key_in_use(stream, kid) THEN
        RAISE EXCEPTION 'key "%" of stream "%" signed SETs that are not settled yet', kid, stream
            USING ERRCODE = 'object_in_use',
                  HINT = 'Receivers could no longer verify them.  Wait until they are acknowledged or failed (a key replaced by rotate_key retires itself then), or pass force => true.';
    END IF;
    UPDATE setstream.keys k SET revoked_at = at
     WHERE k.stream = revoke_key.stream AND k.kid = revoke_key.kid
       AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no active key "%"', stream, kid
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream.revoke_key(text, text, boolean) FROM PUBLIC;

CREATE OR REPLACE FUNCTION setstream.revoke_key(stream text, kid text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream.revoke_key(stream, kid, false);
END
$$;

-- The sender's sweep (worker/sender.c, every second on sender 0): retire
-- the superseded keys whose time is up and whose SETs are all settled.
CREATE FUNCTION setstream._retire_keys(max_age_s integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    at timestamptz := clock_timestamp();
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT k.stream, k.kid FROM setstream.keys k
              WHERE k.superseded_at IS NOT NULL AND k.revoked_at IS NULL
                AND k.superseded_at <= at - make_interval(secs => max_age_s)
              ORDER BY k.stream, k.kid
    LOOP
        CONTINUE WHEN setstream._key_in_use(r.stream, r.kid);
        UPDATE setstream.keys k SET revoked_at = at
         WHERE k.stream = r.stream AND k.kid = r.kid AND k.revoked_at IS NULL;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._retire_keys(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._retire_keys(integer) TO setstream_worker;
GRANT UPDATE (revoked_at) ON setstream.keys TO setstream_worker;

-- Who may generate keys may rotate them and force a revocation.
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.generate_key(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.rotate_key(text, text),'
          ' setstream.revoke_key(text, text, boolean) TO %s']);
-- ---------------------------------------------------------------------
-- end of issue 13: key rotation
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- issue 13, SSF transmitter: receivers and their tokens, streams owned by
-- a receiver (see the README, "SSF transmitter")
-- ---------------------------------------------------------------------
--
-- A receiver is a client of the SSF management API (/ssf/...): it is
-- made by create_receiver, authenticates with a bearer token from
-- issue_receiver_token, and reaches only the streams whose "receiver" is
-- its name.  Both tables are the extension owner's alone: the functions
-- below (C, src/sql/receiverapi.c) check the caller and write them as
-- the owner; the listener reads them as the owner.  A receiver belongs to
-- the role that created it (owner); only that role (or one with its
-- rights, or one that bypasses row-level security) issues its tokens and
-- attaches streams to it.
CREATE TABLE setstream.receivers (
    name        text PRIMARY KEY
                CONSTRAINT receivers_name_valid
                CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$'),
    audience    text[],
    max_streams integer CONSTRAINT receivers_max_streams_valid
                CHECK (max_streams IS NULL OR max_streams >= 1),
    owner       regrole NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON setstream.receivers FROM PUBLIC;
ALTER TABLE setstream.receivers ENABLE ROW LEVEL SECURITY;
COMMENT ON TABLE setstream.receivers IS
'SSF receivers: clients of the management API (create_receiver). Readable by the extension owner only.';
SELECT pg_catalog.pg_extension_config_dump('setstream.receivers', '');

-- Only the SHA-256 of each token is kept; scopes ssf.read, ssf.manage
CREATE TABLE setstream.receiver_tokens (
    receiver    text NOT NULL
                REFERENCES setstream.receivers (name) ON DELETE CASCADE,
    token_hash  bytea NOT NULL CHECK (pg_catalog.length(token_hash) = 32),
    scopes      text[] NOT NULL
                CONSTRAINT receiver_tokens_scopes_valid
                CHECK (scopes <@ ARRAY['ssf.read', 'ssf.manage']::text[]
                       AND pg_catalog.cardinality(scopes) > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (receiver, token_hash)
);
REVOKE ALL ON setstream.receiver_tokens FROM PUBLIC;
ALTER TABLE setstream.receiver_tokens ENABLE ROW LEVEL SECURITY;
COMMENT ON TABLE setstream.receiver_tokens IS
'Bearer tokens of SSF receivers (issue_receiver_token): SHA-256 only, with their scopes. Readable by the extension owner only.';
SELECT pg_catalog.pg_extension_config_dump('setstream.receiver_tokens', '');

-- A receiver's ssf.read tokens also open the poll endpoints of its
-- streams: the listeners' cached streams carry their hashes, so a change
-- drops those caches, on this node at commit (_config_changed) and on
-- every node through setstream.generations (the row '' moves).
CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.receiver_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();
ALTER TABLE setstream.receiver_tokens ENABLE ALWAYS TRIGGER config_changed;
CREATE FUNCTION setstream._bump_receiver_generation()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO setstream.generations AS g (stream) VALUES ('')
    ON CONFLICT (stream) DO UPDATE
       SET generation = g.generation OPERATOR(pg_catalog.+) 1,
           changed_at = pg_catalog.now();
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._bump_receiver_generation() FROM PUBLIC;
CREATE TRIGGER bump_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.receiver_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._bump_receiver_generation();
ALTER TABLE setstream.receiver_tokens ENABLE ALWAYS TRIGGER bump_generation;

-- The receiver whose management API reaches the stream; NULL: a stream
-- made by SQL, not reachable through /ssf/...
ALTER TABLE setstream.streams
    ADD COLUMN receiver text REFERENCES setstream.receivers (name);
COMMENT ON COLUMN setstream.streams.receiver IS
'The SSF receiver (setstream.receivers) whose management API reaches this stream; NULL: none (set_stream_receiver).';

CREATE FUNCTION setstream.create_receiver(name text, audience text[] DEFAULT NULL,
                                          max_streams integer DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'setstream_create_receiver'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION setstream.create_receiver(text, text[], integer) IS
'a client of the SSF management API, owned by the calling role; needs allow_stream_creation';

CREATE FUNCTION setstream.issue_receiver_token(receiver text,
                                               scopes text[] DEFAULT '{ssf.read,ssf.manage}')
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_issue_receiver_token'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION setstream.issue_receiver_token(text, text[]) IS
'a bearer token of the receiver for the SSF management API (shown once, only its hash kept); scopes ssf.read, ssf.manage';

CREATE FUNCTION setstream.set_stream_receiver(stream text, receiver text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_set_stream_receiver'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION setstream.set_stream_receiver(text, text) IS
'let the receiver''s management API reach the stream (NULL: no receiver); needs the manage right on the stream and the receiver''s ownership';

REVOKE EXECUTE ON FUNCTION setstream.create_receiver(text, text[], integer),
    setstream.issue_receiver_token(text, text[]),
    setstream.set_stream_receiver(text, text) FROM PUBLIC;

-- The stream configuration endpoint (POST, GET, DELETE /ssf/streams;
-- src/server/ssf.c).  A stream made there is an ordinary stream, named by
-- a random UUID (its SSF stream_id; never reused), owned by the extension
-- owner, reached by the receiver that made it, with an ES256 signing key;
-- its description and events_requested are the receiver's.  The
-- functions below are the listener's alone (run as the extension owner,
-- every value a parameter).
ALTER TABLE setstream.streams
    ADD COLUMN description text,
    ADD COLUMN events_requested text[];
COMMENT ON COLUMN setstream.streams.description IS
'SSF: the receiver-supplied description of a stream made through /ssf/streams.';
COMMENT ON COLUMN setstream.streams.events_requested IS
'SSF: the event types the receiver requested; events_delivered is their intersection with the supported ones.';

-- The event types setstream transmits (SSF events_supported)
CREATE FUNCTION setstream._ssf_events_supported()
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT ARRAY[
    'https://schemas.openid.net/secevent/ssf/event-type/verification',
    'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
    'https://schemas.openid.net/secevent/caep/event-type/session-revoked',
    'https://schemas.openid.net/secevent/caep/event-type/token-claims-change',
    'https://schemas.openid.net/secevent/caep/event-type/credential-change',
    'https://schemas.openid.net/secevent/caep/event-type/assurance-level-change',
    'https://schemas.openid.net/secevent/caep/event-type/device-compliance-change',
    'https://schemas.openid.net/secevent/caep/event-type/session-established',
    'https://schemas.openid.net/secevent/caep/event-type/session-presented',
    'https://schemas.openid.net/secevent/caep/event-type/risk-level-change']::text[]
$$;

-- A stream's SSF configuration object (SSF 1.0, 8.1.1); NULL when the
-- stream is not the receiver's.  (Parameters are named with the
-- function's name: in SQL functions a column of the same name wins.)
CREATE FUNCTION setstream._ssf_stream_config(stream text, receiver text, public_url text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'stream_id', s.name,
    'iss', s.issuer,
    'aud', CASE WHEN pg_catalog.cardinality(s.audience) OPERATOR(pg_catalog.=) 1
                THEN pg_catalog.to_jsonb(s.audience[1]) ELSE pg_catalog.to_jsonb(s.audience) END,
    'events_supported', pg_catalog.to_jsonb(setstream._ssf_events_supported()),
    'events_requested', pg_catalog.to_jsonb(s.events_requested),
    'events_delivered', pg_catalog.to_jsonb(ARRAY(
        SELECT e FROM pg_catalog.unnest(s.events_requested) WITH ORDINALITY AS r (e, i)
         WHERE e OPERATOR(pg_catalog.=) ANY (setstream._ssf_events_supported())
         ORDER BY i)),
    'delivery', CASE WHEN d.method OPERATOR(pg_catalog.=) 'push'
                     THEN pg_catalog.jsonb_build_object('method', 'urn:ietf:rfc:8935',
                                                        'endpoint_url', d.endpoint_url)
                     ELSE pg_catalog.jsonb_build_object('method', 'urn:ietf:rfc:8936',
                          'endpoint_url', _ssf_stream_config.public_url OPERATOR(pg_catalog.||) '/streams/'
                                          OPERATOR(pg_catalog.||) s.name
                                          OPERATOR(pg_catalog.||) '/poll') END,
    'description', s.description))
  FROM setstream.streams s
  LEFT JOIN setstream.deliveries d ON d.stream OPERATOR(pg_catalog.=) s.name
 WHERE s.name OPERATOR(pg_catalog.=) _ssf_stream_config.stream
   AND s.receiver OPERATOR(pg_catalog.=) _ssf_stream_config.receiver
$$;

-- Make a stream for the receiver; NULL when it has max_streams already
CREATE FUNCTION setstream._ssf_create_stream(receiver text, issuer text, public_url text,
                                             description text, events_requested text[],
                                             method text, endpoint_url text,
                                             authorization_header text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r setstream.receivers;
    n text := pg_catalog.gen_random_uuid()::text;
BEGIN
    -- (locked: two creates at once count each other)
    SELECT * INTO STRICT r FROM setstream.receivers x
     WHERE x.name OPERATOR(pg_catalog.=) _ssf_create_stream.receiver FOR UPDATE;
    IF r.max_streams IS NOT NULL AND
       (SELECT pg_catalog.count(*) FROM setstream.streams s
         WHERE s.receiver OPERATOR(pg_catalog.=) r.name) OPERATOR(pg_catalog.>=) r.max_streams THEN
        RETURN NULL;
    END IF;
    PERFORM setstream.create_stream(n, _ssf_create_stream.issuer,
                                    coalesce(r.audience, ARRAY[r.name]));
    UPDATE setstream.streams s
       SET receiver = r.name, description = _ssf_create_stream.description,
           events_requested = _ssf_create_stream.events_requested
     WHERE s.name OPERATOR(pg_catalog.=) n;
    PERFORM setstream.generate_key(n, 'ES256');
    IF _ssf_create_stream.method OPERATOR(pg_catalog.=) 'push' THEN
        PERFORM setstream.set_delivery(n, 'push', _ssf_create_stream.endpoint_url,
                                       _ssf_create_stream.authorization_header);
    END IF;
    RETURN setstream._ssf_stream_config(n, r.name, _ssf_create_stream.public_url);
END
$$;

-- Drop the receiver's stream; false when it is not the receiver's
CREATE FUNCTION setstream._ssf_delete_stream(stream text, receiver text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM setstream.streams s
                    WHERE s.name OPERATOR(pg_catalog.=) _ssf_delete_stream.stream
                      AND s.receiver OPERATOR(pg_catalog.=) _ssf_delete_stream.receiver) THEN
        RETURN false;
    END IF;
    PERFORM setstream.drop_stream(_ssf_delete_stream.stream);
    RETURN true;
END
$$;

-- Every stream of the receiver, oldest first
CREATE FUNCTION setstream._ssf_receiver_streams(receiver text, public_url text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(pg_catalog.jsonb_agg(
           setstream._ssf_stream_config(s.name, s.receiver, _ssf_receiver_streams.public_url)
           ORDER BY s.created_at, s.name), '[]'::pg_catalog.jsonb)
  FROM setstream.streams s
 WHERE s.receiver OPERATOR(pg_catalog.=) _ssf_receiver_streams.receiver
$$;

REVOKE EXECUTE ON FUNCTION setstream._ssf_events_supported(),
    setstream._ssf_stream_config(text, text, text),
    setstream._ssf_create_stream(text, text, text, text, text[], text, text, text),
    setstream._ssf_delete_stream(text, text),
    setstream._ssf_receiver_streams(text, text) FROM PUBLIC;

-- create_receiver and issue_receiver_token come with
-- allow_stream_creation, set_stream_receiver with the manage right; the
-- roles holding them already get them here, as their own grants.
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.create_stream(text, text, text[], text, text, boolean, text, text)'::pg_catalog.regprocedure,
        'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.create_receiver(text, text[], integer),'
          ' setstream.issue_receiver_token(text, text[]) TO %s']);
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.set_stream_receiver(text, text) TO %s']);
-- ---------------------------------------------------------------------
-- end of issue 13, SSF transmitter: receivers
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- issue 17: pushpull as initiator over HTTP (set_delivery ... 'pushpull')
-- ---------------------------------------------------------------------
-- A pushpull stream has an endpoint_url (the peer's pushpull endpoint) as a
-- push stream has; its sender (outbound/pushpullclient.c) posts
-- Communication Objects there.  pushpull-ws is not built yet (0A000).
ALTER TABLE setstream.deliveries DROP CONSTRAINT deliveries_method_check;
ALTER TABLE setstream.deliveries ADD CONSTRAINT deliveries_method_check
    CHECK (method IN ('poll', 'push', 'pushpull'));
ALTER TABLE setstream.deliveries DROP CONSTRAINT deliveries_push_has_url;
ALTER TABLE setstream.deliveries ADD CONSTRAINT deliveries_push_has_url
    CHECK ((method IN ('push', 'pushpull')) = (endpoint_url IS NOT NULL));

-- How the stream's emitted SETs leave.  method: poll (the default; served
-- by the listener), push (RFC 8935 POST to endpoint_url, with
-- authorization_header verbatim as Authorization), pushpull (we initiate
-- the pushpull HTTP binding to endpoint_url; SETs flow both ways).
-- urn:ietf:rfc:8935 and urn:ietf:rfc:8936 name push and poll.  pushpull-ws
-- is not built yet (0A000).  Setting the delivery makes it active again.
CREATE OR REPLACE FUNCTION setstream.set_delivery(stream text, method text DEFAULT 'poll',
                                       endpoint_url text DEFAULT NULL,
                                       authorization_header text DEFAULT NULL,
                                       push_concurrency integer DEFAULT 4)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
    m text := lower(coalesce(method, 'poll'));
BEGIN
    result := setstream._stream_row(stream);
    IF m = 'urn:ietf:rfc:8935' THEN
        m := 'push';
    ELSIF m = 'urn:ietf:rfc:8936' THEN
        m := 'poll';
    END IF;
    IF m = 'pushpull-ws' THEN
        RAISE EXCEPTION 'delivery method "%" is not supported yet', m
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use pushpull (the HTTP binding), push or poll; see the README, "Outbound delivery".';
    ELSIF m NOT IN ('poll', 'push', 'pushpull') THEN
        RAISE EXCEPTION 'unknown delivery method "%"', method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use poll, push, pushpull, urn:ietf:rfc:8935 or urn:ietf:rfc:8936.';
    END IF;
    IF m IN ('push', 'pushpull') THEN
        IF endpoint_url IS NULL OR endpoint_url !~* '^https?://[^/?#[:space:]]+' THEN
            RAISE EXCEPTION '% needs an http:// or https:// endpoint_url', m
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF set_delivery.push_concurrency IS NULL
           OR set_delivery.push_concurrency NOT BETWEEN 1 AND 64 THEN
            RAISE EXCEPTION 'push_concurrency must be between 1 and 64'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF endpoint_url IS NOT NULL OR authorization_header IS NOT NULL THEN
        RAISE EXCEPTION 'poll takes no endpoint_url and no authorization_header'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Poll delivery is served by the listener: the peer polls us.';
    END IF;
    INSERT INTO setstream.deliveries AS d (stream, method, endpoint_url, push_concurrency)
    VALUES (result.name, m, CASE WHEN m IN ('push', 'pushpull') THEN endpoint_url END,
            coalesce(set_delivery.push_concurrency, 4))
    ON CONFLICT ON CONSTRAINT deliveries_pkey DO UPDATE
       SET method = excluded.method, endpoint_url = excluded.endpoint_url,
           push_concurrency = excluded.push_concurrency,
           state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, updated_at = now();
    PERFORM setstream._set_delivery_secret(result.name,
        CASE WHEN m IN ('push', 'pushpull') THEN authorization_header END);
    RETURN result;
END
$$;
-- ---------------------------------------------------------------------
-- end of issue 17: pushpull as initiator
-- ---------------------------------------------------------------------

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
