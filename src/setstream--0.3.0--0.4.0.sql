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
-- issue 17: pushpull-ws, setstream initiating the pushpull WebSocket binding
-- ---------------------------------------------------------------------
-- A pushpull-ws stream has an endpoint_url (the peer's pushpull endpoint,
-- http:// or https://, upgraded to a WebSocket) and an authorization
-- header as a pushpull stream has; its sender (outbound/pushpullws.c)
-- opens the WebSocket, and falls back to the HTTP binding while the peer
-- refuses the upgrade.
ALTER TABLE setstream.deliveries DROP CONSTRAINT deliveries_method_check;
ALTER TABLE setstream.deliveries ADD CONSTRAINT deliveries_method_check
    CHECK (method IN ('poll', 'push', 'pushpull', 'pushpull-ws'));
ALTER TABLE setstream.deliveries DROP CONSTRAINT deliveries_push_has_url;
ALTER TABLE setstream.deliveries ADD CONSTRAINT deliveries_push_has_url
    CHECK ((method IN ('push', 'pushpull', 'pushpull-ws')) = (endpoint_url IS NOT NULL));

-- How the stream's emitted SETs leave.  method: poll (the default; served
-- by the listener), push (RFC 8935 POST to endpoint_url, with
-- authorization_header verbatim as Authorization), pushpull (we initiate
-- the pushpull HTTP binding to endpoint_url; SETs flow both ways),
-- pushpull-ws (we initiate the pushpull WebSocket binding to endpoint_url,
-- falling back to the HTTP binding while the upgrade is refused).
-- urn:ietf:rfc:8935 and urn:ietf:rfc:8936 name push and poll.  Setting the
-- delivery makes it active again.
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
    IF m NOT IN ('poll', 'push', 'pushpull', 'pushpull-ws') THEN
        RAISE EXCEPTION 'unknown delivery method "%"', method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use poll, push, pushpull, pushpull-ws, urn:ietf:rfc:8935 or urn:ietf:rfc:8936.';
    END IF;
    IF m IN ('push', 'pushpull', 'pushpull-ws') THEN
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
    VALUES (result.name, m, CASE WHEN m IN ('push', 'pushpull', 'pushpull-ws') THEN endpoint_url END,
            coalesce(set_delivery.push_concurrency, 4))
    ON CONFLICT ON CONSTRAINT deliveries_pkey DO UPDATE
       SET method = excluded.method, endpoint_url = excluded.endpoint_url,
           push_concurrency = excluded.push_concurrency,
           state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, updated_at = now();
    PERFORM setstream._set_delivery_secret(result.name,
        CASE WHEN m IN ('push', 'pushpull', 'pushpull-ws') THEN authorization_header END);
    RETURN result;
END
$$;
-- ---------------------------------------------------------------------
-- end of issue 17: pushpull-ws
-- ---------------------------------------------------------------------

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
