-- setstream 0.3.0 -> 0.4.0
--
-- Role of this file: every change to the SQL surface since 0.3.0 (the
-- release that added metrics, Citus distribution, peer keys from a
-- jwks_uri, inbound by poll, the SSF transmitter's management API and key
-- rotation).  A fresh CREATE EXTENSION setstream installs 0.1.0 and runs
-- the update scripts in order (there is no setstream--0.4.0.sql), so a
-- fresh install and an updated one end in the same schema by
-- construction; test/python/test_upgrade.py checks it from every released
-- version.  setstream--0.1.0.sql, setstream--0.1.0--0.2.0.sql and
-- setstream--0.2.0--0.3.0.sql are frozen: never edit them, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit

-- Two helpers of this update only (dropped at its end), as in
-- setstream--0.2.0--0.3.0.sql: roles that hold a right already get what
-- 0.4.0 adds to it as their own grants, as grant_stream gives them from
-- 0.4.0 on, with pg_init_privs put back as it was (so that pg_dump keeps
-- them, as it keeps grant_stream's).

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

-- Each change goes in a block of its own below, headed by a comment that
-- names its issue, before the helpers are dropped.

-- ---------------------------------------------------------------------
-- issue 13: SSF subjects, the emit filter, PATCH/PUT of stream configuration
-- ---------------------------------------------------------------------
--
-- A stream's subjects (SSF add_subject / remove_subject; the SQL
-- functions add_subject and remove_subject): a row per subject the
-- receiver added (included) or removed (not included: what a stream whose
-- default_subjects is ALL must leave out).  emit() and emit_trigger()
-- deliver to a stream only SETs whose subject these rows allow and whose
-- event type is in its events_delivered (src/sql/sqlapi.c, the README,
-- "SSF transmitter").  Distributed by stream, co-located with the events,
-- on Citus; a change touches the stream's row of setstream.streams (a
-- reference table) so that every node's cached filter of the stream is
-- dropped.
CREATE TABLE setstream.stream_subjects (
    stream      text NOT NULL REFERENCES setstream.streams (name) ON DELETE CASCADE,
    subject     jsonb NOT NULL CONSTRAINT stream_subjects_subject_object
                CHECK (pg_catalog.jsonb_typeof(subject) OPERATOR(pg_catalog.=) 'object'),
    included    boolean NOT NULL,
    verified    boolean NOT NULL DEFAULT true,
    changed_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (stream, subject)
);
REVOKE ALL ON setstream.stream_subjects FROM PUBLIC;
COMMENT ON TABLE setstream.stream_subjects IS
'SSF: the subjects added to (included) or removed from (not included) a stream: add_subject, remove_subject. Readable by the extension owner only.';
SELECT pg_catalog.pg_extension_config_dump('setstream.stream_subjects', '');

-- Add or remove a subject (as the extension owner; the callers check the
-- right or the receiver).  keep_removed: the stream delivers every
-- subject not removed (default_subjects ALL), so the removal is a row.
CREATE FUNCTION setstream._set_subject(stream text, subject jsonb, included boolean,
                                       verified boolean, keep_removed boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF included OR keep_removed THEN
        INSERT INTO setstream.stream_subjects AS x (stream, subject, included, verified)
        VALUES (_set_subject.stream, _set_subject.subject, _set_subject.included,
                coalesce(_set_subject.verified, true))
        ON CONFLICT ON CONSTRAINT stream_subjects_pkey DO UPDATE
           SET included = excluded.included, verified = excluded.verified,
               changed_at = pg_catalog.now();
    ELSE
        DELETE FROM setstream.stream_subjects x
         WHERE x.stream OPERATOR(pg_catalog.=) _set_subject.stream
           AND x.subject OPERATOR(pg_catalog.=) _set_subject.subject;
    END IF;
    -- every node's cached filter of the stream goes
    UPDATE setstream.streams s SET receiver = s.receiver
     WHERE s.name OPERATOR(pg_catalog.=) _set_subject.stream;
END
$$;

-- What emit needs to filter the stream's SETs: events_delivered (NULL:
-- no events_requested, no filter), whether a receiver's management API
-- reaches it, and its subjects as [[subject, included], ...]
CREATE FUNCTION setstream._stream_filter(stream text)
RETURNS TABLE (events_delivered text[], has_receiver boolean, subjects jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN s.events_requested IS NULL THEN NULL
            ELSE ARRAY(SELECT e FROM pg_catalog.unnest(s.events_requested) e
                        WHERE e OPERATOR(pg_catalog.=) ANY (setstream._ssf_events_supported())) END,
       s.receiver IS NOT NULL,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(x.subject, x.included))
          FROM setstream.stream_subjects x
         WHERE x.stream OPERATOR(pg_catalog.=) _stream_filter.stream)
  FROM setstream.streams s
 WHERE s.name OPERATOR(pg_catalog.=) _stream_filter.stream
$$;

-- PATCH and PUT /ssf/streams: change the receiver-supplied members of the
-- receiver's stream (set_*: the member is given; PUT gives them all, a
-- missing one NULL); a change of delivery goes through set_delivery, and
-- the queued SETs follow the new route at once.  NULL when the stream is not the
-- receiver's; else its configuration object.
CREATE FUNCTION setstream._ssf_update_stream(stream text, receiver text, public_url text,
                                             set_description boolean, description text,
                                             set_events boolean, events_requested text[],
                                             set_delivery boolean, method text,
                                             endpoint_url text, authorization_header text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    old_method text;
    old_url text;
BEGIN
    PERFORM 1 FROM setstream.streams s
      WHERE s.name OPERATOR(pg_catalog.=) _ssf_update_stream.stream
        AND s.receiver OPERATOR(pg_catalog.=) _ssf_update_stream.receiver FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF set_description THEN
        UPDATE setstream.streams s SET description = _ssf_update_stream.description
         WHERE s.name OPERATOR(pg_catalog.=) _ssf_update_stream.stream;
    END IF;
    IF set_events THEN
        UPDATE setstream.streams s SET events_requested = _ssf_update_stream.events_requested
         WHERE s.name OPERATOR(pg_catalog.=) _ssf_update_stream.stream;
    END IF;
    IF set_delivery THEN
        SELECT d.method, d.endpoint_url INTO old_method, old_url
          FROM setstream.deliveries d
         WHERE d.stream OPERATOR(pg_catalog.=) _ssf_update_stream.stream;
        IF _ssf_update_stream.method OPERATOR(pg_catalog.=) 'push' THEN
            PERFORM setstream.set_delivery(_ssf_update_stream.stream, 'push',
                                           _ssf_update_stream.endpoint_url,
                                           _ssf_update_stream.authorization_header);
        ELSE
            PERFORM setstream.set_delivery(_ssf_update_stream.stream, 'poll');
        END IF;
        -- a new route: the SETs the old one had taken and not had
        -- acknowledged are due on the new one now, not after the old
        -- route's retry or redelivery wait
        IF coalesce(old_method, 'poll') OPERATOR(pg_catalog.<>) _ssf_update_stream.method
           OR old_url IS DISTINCT FROM _ssf_update_stream.endpoint_url THEN
            UPDATE setstream.outbox o SET state = 'pending', next_attempt_at = NULL
             WHERE o.stream OPERATOR(pg_catalog.=) _ssf_update_stream.stream
               AND o.acked_at IS NULL AND o.failed_at IS NULL
               AND (o.state OPERATOR(pg_catalog.<>) 'pending' OR o.next_attempt_at IS NOT NULL);
        END IF;
    END IF;
    RETURN setstream._ssf_stream_config(_ssf_update_stream.stream, _ssf_update_stream.receiver,
                                        _ssf_update_stream.public_url);
END
$$;

REVOKE EXECUTE ON FUNCTION setstream._set_subject(text, jsonb, boolean, boolean, boolean),
    setstream._stream_filter(text),
    setstream._ssf_update_stream(text, text, text, boolean, text, boolean, text[],
                                 boolean, text, text, text) FROM PUBLIC;

-- add_subject(stream, subject, verified), remove_subject(stream, subject):
-- the manage right on the stream (src/sql/receiverapi.c)
CREATE FUNCTION setstream.add_subject(stream text, subject jsonb, verified boolean DEFAULT true)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'setstream_add_subject';
COMMENT ON FUNCTION setstream.add_subject(text, jsonb, boolean) IS
'SSF: the stream delivers SETs about this subject (an RFC 9493 subject identifier); needs the manage right';
CREATE FUNCTION setstream.remove_subject(stream text, subject jsonb)
RETURNS void
LANGUAGE C
AS 'MODULE_PATHNAME', 'setstream_remove_subject';
COMMENT ON FUNCTION setstream.remove_subject(text, jsonb) IS
'SSF: the stream no longer delivers SETs about this subject; needs the manage right';
REVOKE EXECUTE ON FUNCTION setstream.add_subject(text, jsonb, boolean),
    setstream.remove_subject(text, jsonb) FROM PUBLIC;

-- They come with the manage right: roles holding it already get them.
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_receiver(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.add_subject(text, jsonb, boolean),'
          ' setstream.remove_subject(text, jsonb) TO %s']);

-- Citus: stream_subjects is distributed by stream, co-located with events
CREATE OR REPLACE FUNCTION setstream.distribute(shard_count integer DEFAULT NULL)
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
                             'events', 'outbox', 'stream_subjects'] LOOP
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
        ELSIF t OPERATOR(pg_catalog.=) ANY (ARRAY['outbox', 'stream_subjects']) THEN
            EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3)'
                USING 'setstream.' OPERATOR(pg_catalog.||) t, 'stream', 'setstream.events';
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

CREATE OR REPLACE FUNCTION setstream.prepare_drop()
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
    FOREACH t IN ARRAY ARRAY['stream_subjects', 'outbox', 'events', 'source_secrets', 'sources',
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

-- end of issue 13: SSF subjects, the emit filter, PATCH/PUT of stream configuration

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
