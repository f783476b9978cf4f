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
-- issue 13: SSF status semantics (stream-updated, verification, inactivity)
-- ---------------------------------------------------------------------

-- When the receiver last made a management call or polled one of its
-- streams (the listener writes it, at most once a second, while
-- setstream.ssf_inactivity_timeout is set), and when it last asked for a
-- verification of each stream (POST /ssf/verify: at most one per
-- setstream.ssf_min_verification_interval).
ALTER TABLE setstream.receivers ADD COLUMN active_at timestamptz;
COMMENT ON COLUMN setstream.receivers.active_at IS
'SSF: the receiver''s last management call or poll (written while setstream.ssf_inactivity_timeout is set, at most once a second); NULL: none since.';
ALTER TABLE setstream.streams ADD COLUMN verification_requested_at timestamptz;
COMMENT ON COLUMN setstream.streams.verification_requested_at IS
'SSF: when the receiver last asked for a verification SET (POST /ssf/verify); transmitter-initiated ones and verify_stream() do not count.';

-- Sign and queue an SSF stream event about the stream itself (sub_id
-- opaque = the stream's name): stream-updated (event {"status",
-- "reason"?}) or verification (event {"state"?}).  Needs the manage
-- privilege; queued as the extension owner.  NULL when the stream has no
-- signing key, or (verification) is disabled.  A stream-updated SET is
-- queued even on a disabled stream, and is the one SET a paused or
-- disabled stream still delivers (poll, push, pushpull).
CREATE FUNCTION setstream._control_event(stream text, event_type text, event jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_control_event'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION setstream._control_event(text, text, jsonb) IS
'internal: queue an SSF stream-updated or verification SET about the stream; needs the manage privilege';

-- Queue a verification SET (SSF 8.1.4); state, when given, is echoed in
-- it.  The jti, or NULL when the stream is disabled.
CREATE FUNCTION setstream.verify_stream(stream text, state text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_verify_stream'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
COMMENT ON FUNCTION setstream.verify_stream(text, text) IS
'queue an SSF verification SET on the stream (echoing state when given); NULL when the stream is disabled; needs the manage privilege';

-- The status change itself.  announce: queue a stream-updated SET
-- (status, reason) when the status of an SSF stream (one with a
-- receiver) changes, as SSF asks of a transmitter that changes a stream's
-- status on its own; the change a receiver asks for (POST /ssf/status) is
-- not announced, and streams without a receiver get none.  A disabled stream keeps its
-- stream-updated SETs (the settlement leaves them), so the receiver
-- still gets the one saying so.  A stream enabled again after disabled
-- gets a verification SET without state.
CREATE FUNCTION setstream._set_stream_status(name text, status text, reason text,
                                             announce boolean)
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
    UPDATE setstream.streams s SET status = _set_stream_status.status
     WHERE s.name = cur.name
    RETURNING s.* INTO result;
    IF _set_stream_status.status = 'disabled' THEN
        UPDATE setstream.outbox o
           SET state = 'failed', failed_at = pg_catalog.now(),
               err = 'stream_disabled', description = 'the stream was disabled',
               next_attempt_at = NULL
         WHERE o.stream = cur.name AND o.state IN ('pending', 'delivered')
           AND o.event_types <> ARRAY['https://schemas.openid.net/secevent/ssf/event-type/stream-updated']::text[];
    END IF;
    IF cur.status IS DISTINCT FROM _set_stream_status.status
       AND cur.receiver IS NOT NULL THEN
        IF announce THEN
            PERFORM setstream._control_event(cur.name,
                'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
                pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                    'status', _set_stream_status.status, 'reason', reason)));
        END IF;
        IF cur.status = 'disabled' AND _set_stream_status.status = 'enabled' THEN
            PERFORM setstream._control_event(cur.name,
                'https://schemas.openid.net/secevent/ssf/event-type/verification',
                '{}'::pg_catalog.jsonb);
        END IF;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION setstream._set_stream_status(text, text, text, boolean) IS
'internal: set_stream_status, with the reason of the stream-updated SET and whether to queue one';

-- enabled: SETs flow both ways.  paused: emitted SETs are held (queued,
-- not delivered) until the stream is enabled again, then delivered in
-- order.  disabled: emit() queues nothing, and the SETs still queued
-- fail with err "stream_disabled"; polls answer no SETs.  A change made
-- here is announced to the receiver by a stream-updated SET (reason
-- "changed by the transmitter's administrator"), delivered before the
-- hold begins.
CREATE OR REPLACE FUNCTION setstream.set_stream_status(name text, status text)
RETURNS setstream.streams
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
SELECT setstream._set_stream_status(name, status,
                                    'changed by the transmitter''s administrator', true)
$$;

-- Inactivity (sender 0, every second, while setstream.ssf_inactivity_timeout
-- is set): a stream with a receiver that made no management call and no
-- poll for timeout seconds (since the stream was made, when never) is
-- paused, and disabled after twice that, each with a stream-updated SET
-- (reason "inactivity").  Returns how many streams changed.
CREATE FUNCTION setstream._ssf_inactivity(timeout integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    n integer := 0;
BEGIN
    FOR s IN
        SELECT st.name, st.status,
               pg_catalog.now() - GREATEST(r.active_at, st.created_at) AS idle
          FROM setstream.streams st
          JOIN setstream.receivers r ON r.name = st.receiver
         WHERE st.status <> 'disabled'
           AND GREATEST(r.active_at, st.created_at)
               < pg_catalog.now() - pg_catalog.make_interval(secs => timeout)
         ORDER BY st.name
    LOOP
        IF s.status = 'enabled' THEN
            PERFORM setstream._set_stream_status(s.name, 'paused', 'inactivity', true);
            n := n + 1;
        ELSIF s.idle >= pg_catalog.make_interval(secs => 2 * timeout) THEN
            PERFORM setstream._set_stream_status(s.name, 'disabled', 'inactivity', true);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._ssf_inactivity(integer) FROM PUBLIC;
COMMENT ON FUNCTION setstream._ssf_inactivity(integer) IS
'internal (the sender): pause, then disable, SSF streams whose receiver was inactive for timeout seconds';

-- verify_stream and what set_stream_status calls now are granted with the
-- manage right (grant_stream, allow_stream_creation); the roles that hold
-- it already (whoever may run set_stream_status) get them here, as their
-- own grants (_update_grant, above).
REVOKE EXECUTE ON FUNCTION setstream.verify_stream(text, text),
    setstream._set_stream_status(text, text, text, boolean),
    setstream._control_event(text, text, jsonb) FROM PUBLIC;
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream.verify_stream(text, text), '
          'setstream._set_stream_status(text, text, text, boolean), '
          'setstream._control_event(text, text, jsonb) TO %s']);

-- ---------------------------------------------------------------------
-- end of issue 13: SSF status semantics
-- ---------------------------------------------------------------------

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
