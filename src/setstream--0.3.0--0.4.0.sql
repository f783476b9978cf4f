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

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
