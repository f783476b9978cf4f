-- setstream 0.1.0 -> 0.2.0
--
-- Role of this file: every change to the SQL surface since 0.1.0.  A fresh
-- CREATE EXTENSION setstream installs 0.1.0 and runs this script (there is
-- no separate setstream--0.2.0.sql), so a fresh install and an upgraded one
-- end in the same schema by construction; test/upgrade checks the data.
-- setstream--0.1.0.sql is frozen: never edit it, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------
-- Least privilege (issue 11)
-- ---------------------------------------------------------------------

-- The role the listener (and every later setstream worker) connects as:
-- not a superuser, with exactly the rights below.  BYPASSRLS: the workers
-- serve every stream and authenticate peers themselves (token, certificate).
-- A role is cluster-wide: it is created by the first database that installs
-- setstream and kept when the extension is dropped (DROP ROLE it by hand).
-- setstream.role names another role instead; it needs the same grants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r
                    WHERE r.rolname OPERATOR(pg_catalog.=) 'setstream_worker') THEN
        CREATE ROLE setstream_worker LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOINHERIT NOREPLICATION BYPASSRLS;
        COMMENT ON ROLE setstream_worker IS
            'setstream background workers (listener): not a superuser; see the setstream README, "Privileges"';
    ELSE
        -- made by hand, or by another database's setstream: what the
        -- workers need (the supervisor refuses a superuser)
        ALTER ROLE setstream_worker LOGIN BYPASSRLS;
    END IF;
END
$$;

-- Who owns a stream: its creator.  The owner holds every right on it and
-- may grant them (grant_stream).  Streams that existed before 0.2.0 belong
-- to the role that ran the upgrade.
ALTER TABLE setstream.streams
    ADD COLUMN owner regrole NOT NULL DEFAULT current_user::regrole;

-- Rights on one stream given to a role (grant_stream / revoke_stream):
--   emit     emit(), emit_trigger() on the stream
--   receive  receive(), ingest()'s inbound SETs (and read them back)
--   read     SELECT its rows of events and outbox
--   deliver  poll(), ingest()'s outbound SETs, acks and setErrs
--   manage   keys, tokens, client certificates, settings, status, drop
-- A member of the grantee (with INHERIT) holds them too.
CREATE TABLE setstream.stream_grants (
    stream      text NOT NULL REFERENCES setstream.streams (name) ON DELETE CASCADE,
    grantee     oid NOT NULL,
    privilege   text NOT NULL
                CHECK (privilege IN ('emit', 'receive', 'read', 'deliver', 'manage')),
    granted_by  oid NOT NULL,
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, grantee, privilege)
);
COMMENT ON TABLE setstream.stream_grants IS
'Rights on a stream given to a role besides its owner (grant_stream, revoke_stream). grantee is a role OID; revoke before dropping a role.';
SELECT pg_catalog.pg_extension_config_dump('setstream.stream_grants', '');

CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.stream_grants
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();

-- The streams on which the current role holds a right (any right when
-- privilege is NULL); what the row-level security policies below test.
CREATE FUNCTION setstream._streams_with(privilege text)
RETURNS text[]
AS 'MODULE_PATHNAME', 'setstream_streams_with'
LANGUAGE C STABLE PARALLEL RESTRICTED;

-- Has the current role the rights of this one (member with INHERIT)?  False
-- for a role that no longer exists.
CREATE FUNCTION setstream._holds_role(role oid)
RETURNS boolean
AS 'MODULE_PATHNAME', 'setstream_holds_role'
LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION setstream.has_stream_privilege(stream text, privilege text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'setstream_has_stream_privilege'
LANGUAGE C STABLE STRICT;

-- Raises 42704 (the stream does not exist, or the role may not see it) or
-- 42501 (it may see it, but lacks the privilege).
CREATE FUNCTION setstream._require(stream text, privilege text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_require'
LANGUAGE C STABLE;

CREATE FUNCTION setstream.grant_stream(stream text, grantee regrole,
                                       privileges text[] DEFAULT '{emit,receive,read,deliver}')
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_grant_stream'
LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION setstream.revoke_stream(stream text, grantee regrole,
                                        privileges text[] DEFAULT '{emit,receive,read,deliver,manage}')
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_revoke_stream'
LANGUAGE C VOLATILE STRICT;

-- Let a role create streams of its own (and use them fully): the table and
-- function privileges that owning a stream needs.  Extension owner only.
CREATE FUNCTION setstream.allow_stream_creation(grantee regrole)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_allow_stream_creation'
LANGUAGE C VOLATILE STRICT;

-- Row-level security: a role that is not the tables' owner, a superuser or
-- BYPASSRLS (setstream_worker) sees and changes only the rows of streams
-- on which it holds the right.  (SELECT ...) makes each array one InitPlan,
-- computed once per statement.
ALTER TABLE setstream.streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.client_certs ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.stream_grants ENABLE ROW LEVEL SECURITY;

-- (the owner test lets INSERT ... RETURNING see the row it just made)
CREATE POLICY visible ON setstream.streams FOR SELECT
    USING (setstream._holds_role(owner::pg_catalog.oid)
           OR name OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
CREATE POLICY create_own ON setstream.streams FOR INSERT
    WITH CHECK (owner OPERATOR(pg_catalog.=) current_user::regrole);
CREATE POLICY manage ON setstream.streams FOR UPDATE
    USING (name OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]))
    WITH CHECK (name OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
CREATE POLICY drop ON setstream.streams FOR DELETE
    USING (name OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

CREATE POLICY visible ON setstream.keys FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
CREATE POLICY manage_insert ON setstream.keys FOR INSERT
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
CREATE POLICY manage_update ON setstream.keys FOR UPDATE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
CREATE POLICY manage_delete ON setstream.keys FOR DELETE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

CREATE POLICY manage ON setstream.tokens FOR ALL
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
CREATE POLICY manage ON setstream.client_certs FOR ALL
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

-- receive includes reading the stream's events back: INSERT ... ON CONFLICT
-- (stream, iss, jti) DO NOTHING, the duplicate check, applies SELECT policies
CREATE POLICY read ON setstream.events FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('read'))::pg_catalog.text[])
           OR stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('receive'))::pg_catalog.text[]));
CREATE POLICY receive ON setstream.events FOR INSERT
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('receive'))::pg_catalog.text[]));
CREATE POLICY manage_delete ON setstream.events FOR DELETE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

CREATE POLICY read ON setstream.outbox FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('read'))::pg_catalog.text[])
           OR stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('deliver'))::pg_catalog.text[]));
CREATE POLICY emit ON setstream.outbox FOR INSERT
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('emit'))::pg_catalog.text[]));
CREATE POLICY deliver ON setstream.outbox FOR UPDATE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('deliver'))::pg_catalog.text[]));
CREATE POLICY manage_delete ON setstream.outbox FOR DELETE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

-- A role sees the grants made to it (or to a role whose rights it has)
CREATE POLICY own ON setstream.stream_grants FOR SELECT
    USING (setstream._holds_role(grantee));

-- Management functions check the caller's right on the stream first: a
-- stream it may not see "does not exist" (42704); one it may see but not
-- manage is 42501.
CREATE OR REPLACE FUNCTION setstream._stream_row(stream text)
RETURNS setstream.streams
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
BEGIN
    PERFORM setstream._require(stream, 'manage');
    SELECT * INTO result FROM setstream.streams s WHERE s.name = stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', stream
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN result;
END
$$;

CREATE OR REPLACE FUNCTION setstream.drop_stream(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream._require(name, 'manage');
    DELETE FROM setstream.streams s WHERE s.name = drop_stream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION setstream.purge_outbox(
    older_than interval DEFAULT '7 days',
    stream text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    IF purge_outbox.stream IS NOT NULL THEN
        PERFORM setstream._require(purge_outbox.stream, 'manage');
    END IF;
    DELETE FROM setstream.outbox o
     WHERE (purge_outbox.stream IS NULL OR o.stream = purge_outbox.stream)
       AND ((o.state = 'acked' AND o.acked_at < now() - older_than)
         OR (o.state = 'failed' AND o.failed_at < now() - older_than));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Revoke a token by the SHA-256 of its text (hex), so that the token
-- itself never appears in a statement that could be logged.
CREATE FUNCTION setstream.revoke_token_hash(stream text, sha256 text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hex text := lower(replace(sha256, ':', ''));
BEGIN
    PERFORM setstream._stream_row(stream);
    IF hex IS NULL OR hex !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'invalid token hash'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A token hash is the SHA-256 of the token text: 64 hexadecimal digits.';
    END IF;
    UPDATE setstream.tokens t SET revoked_at = now()
     WHERE t.stream = revoke_token_hash.stream
       AND t.token_hash = decode(hex, 'hex')
       AND t.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no active token of stream "%" matches', stream
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- Counters of the streams the caller may see, only: the view reads the
-- tables with the caller's rights (and row-level security), not its owner's
ALTER VIEW setstream.stats SET (security_invoker = true);

-- Functions: nothing is executable by PUBLIC but what row-level security
-- and constraints call; grant_stream / allow_stream_creation grant the rest.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA setstream FROM PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._outbox_row_valid(text, integer, timestamptz, text, timestamptz) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._streams_with(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._holds_role(oid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._require(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream.has_stream_privilege(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream.grant_stream(text, regrole, text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream.revoke_stream(text, regrole, text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._stream_row(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream._check_stream_fields(text, text, text[], text, text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION setstream.error_code(text) TO PUBLIC;

-- What the workers need: read the configuration, store inbound SETs,
-- deliver and acknowledge outbound ones, serve the JWKS.
GRANT USAGE ON SCHEMA setstream TO setstream_worker;
GRANT SELECT ON setstream.streams, setstream.keys, setstream.tokens,
    setstream.client_certs TO setstream_worker;
GRANT SELECT, INSERT ON setstream.events TO setstream_worker;
GRANT SELECT, UPDATE ON setstream.outbox TO setstream_worker;
GRANT EXECUTE ON FUNCTION setstream.jwks() TO setstream_worker;

-- issue 16: the triggers that make every listener drop its cached streams,
-- keys, tokens, client certificates and rights fire under
-- session_replication_role = replica as well (logical replication's apply
-- worker and some restore tools write with it): a revoked token replicated
-- here must not keep opening its stream.  (ALTER TABLE ... DISABLE TRIGGER
-- still silences them: see "Writes that bypass triggers" in the README.)
-- A NULL stream name is 22023 everywhere (setstream._require, above).
ALTER TABLE setstream.streams ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.keys ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.key_secrets ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.tokens ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.client_certs ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.stream_grants ENABLE ALWAYS TRIGGER config_changed;

-- ---------------------------------------------------------------------
-- issue 17: outbound push
-- ---------------------------------------------------------------------

-- What the sender (src/sender.c) records of each push: when the SET is due
-- again, and the last answer (HTTP status, or 0 for no answer) and error.
ALTER TABLE setstream.outbox
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_status integer,
    ADD COLUMN last_error text;

-- How a stream's emitted SETs leave, and the state of that delivery.  A
-- stream without a row here is delivered by poll (served by the listener).
--   state active     the sender pushes whatever is due
--         backoff    nothing is pushed before backoff_until
--         suspended  nothing is pushed until resume_delivery()
CREATE TABLE setstream.deliveries (
    stream              text PRIMARY KEY
                        REFERENCES setstream.streams (name) ON DELETE CASCADE,
    method              text NOT NULL DEFAULT 'poll'
                        CHECK (method IN ('poll', 'push')),
    endpoint_url        text CHECK (endpoint_url ~* '^https?://[^/?#[:space:]]+'),
    push_concurrency    integer NOT NULL DEFAULT 4
                        CHECK (push_concurrency BETWEEN 1 AND 64),
    state               text NOT NULL DEFAULT 'active'
                        CHECK (state IN ('active', 'backoff', 'suspended')),
    backoff_until       timestamptz,
    suspended_reason    text,
    failures            integer NOT NULL DEFAULT 0,
    auth_failures       integer NOT NULL DEFAULT 0,
    nonconformant_acks  bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deliveries_push_has_url
        CHECK ((method = 'push') = (endpoint_url IS NOT NULL)),
    CONSTRAINT deliveries_backoff_until
        CHECK ((state = 'backoff') = (backoff_until IS NOT NULL)),
    CONSTRAINT deliveries_suspended_reason
        CHECK ((state = 'suspended') = (suspended_reason IS NOT NULL))
);
COMMENT ON TABLE setstream.deliveries IS
'How each stream''s emitted SETs leave (set_delivery) and the state of that delivery: active, backoff until a time, or suspended with a reason (resume_delivery). failures / auth_failures count consecutive failed pushes; nonconformant_acks counts 2xx answers other than 202.';
SELECT pg_catalog.pg_extension_config_dump('setstream.deliveries', '');

-- Outbound credentials: the Authorization header sent with each push.
-- Readable by the extension owner only (like key_secrets); written and read
-- by the C code as the owner, never returned, shown or logged.
CREATE TABLE setstream.delivery_secrets (
    stream                  text PRIMARY KEY
                            REFERENCES setstream.deliveries (stream) ON DELETE CASCADE,
    authorization_header    text NOT NULL
);
REVOKE ALL ON setstream.delivery_secrets FROM PUBLIC;
COMMENT ON TABLE setstream.delivery_secrets IS
'Outbound credentials (the Authorization header of pushes). Readable by the extension owner only; never returned by any function.';
SELECT pg_catalog.pg_extension_config_dump('setstream.delivery_secrets', '');

ALTER TABLE setstream.deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.delivery_secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON setstream.deliveries FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
CREATE POLICY manage ON setstream.deliveries FOR ALL
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]))
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
-- (delivery_secrets: no policy; only its owner, who bypasses them, reads it)

-- redeliver() is an operator action: manage may put a stream's SETs back
CREATE POLICY manage_update ON setstream.outbox FOR UPDATE
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));

-- Store or remove the stream's Authorization header (as the extension
-- owner, after checking the caller's manage right), and wake the sender
-- at commit.  Called by set_delivery.
CREATE FUNCTION setstream._set_delivery_secret(stream text, authorization_header text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_set_delivery_secret'
LANGUAGE C VOLATILE;

-- Wake the sender at commit (resume_delivery, redeliver)
CREATE FUNCTION setstream._wake_sender(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_wake_sender'
LANGUAGE C VOLATILE STRICT;

-- How the stream's emitted SETs leave.  method: poll (the default; served
-- by the listener), push (RFC 8935 POST to endpoint_url, with
-- authorization_header verbatim as Authorization).  urn:ietf:rfc:8935 and
-- urn:ietf:rfc:8936 name push and poll.  pushpull and pushpull-ws are not
-- built yet (0A000).  Setting the delivery makes it active again.
CREATE FUNCTION setstream.set_delivery(stream text, method text DEFAULT 'poll',
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
    IF m IN ('pushpull', 'pushpull-ws') THEN
        RAISE EXCEPTION 'delivery method "%" is not supported yet', m
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Use push or poll; see the README, "Outbound delivery (push)".';
    ELSIF m NOT IN ('poll', 'push') THEN
        RAISE EXCEPTION 'unknown delivery method "%"', method
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use poll, push, urn:ietf:rfc:8935 or urn:ietf:rfc:8936.';
    END IF;
    IF m = 'push' THEN
        IF endpoint_url IS NULL OR endpoint_url !~* '^https?://[^/?#[:space:]]+' THEN
            RAISE EXCEPTION 'push needs an http:// or https:// endpoint_url'
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
    VALUES (result.name, m, CASE WHEN m = 'push' THEN endpoint_url END,
            coalesce(set_delivery.push_concurrency, 4))
    ON CONFLICT ON CONSTRAINT deliveries_pkey DO UPDATE
       SET method = excluded.method, endpoint_url = excluded.endpoint_url,
           push_concurrency = excluded.push_concurrency,
           state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, updated_at = now();
    PERFORM setstream._set_delivery_secret(result.name,
                                           CASE WHEN m = 'push' THEN authorization_header END);
    RETURN result;
END
$$;

-- Make a suspended or backing-off stream's delivery active again
CREATE FUNCTION setstream.resume_delivery(stream text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream._stream_row(stream);
    UPDATE setstream.deliveries d
       SET state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, updated_at = now()
     WHERE d.stream = resume_delivery.stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no outbound delivery', stream
            USING ERRCODE = 'undefined_object',
                  HINT = 'set_delivery(stream, ''push'', endpoint_url) configures one.';
    END IF;
    PERFORM setstream._wake_sender(stream);
END
$$;

-- Put failed (or not yet acknowledged) SETs of the stream back to pending,
-- due now; acked ones are left alone.  Returns how many were put back.
CREATE FUNCTION setstream.redeliver(stream text, jti text[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM setstream._stream_row(stream);
    UPDATE setstream.outbox o
       SET state = 'pending', failed_at = NULL, err = NULL, description = NULL,
           next_attempt_at = NULL
     WHERE o.stream = redeliver.stream AND o.jti = ANY (redeliver.jti)
       AND o.state IN ('pending', 'delivered', 'failed');
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM setstream._wake_sender(stream);
    RETURN n;
END
$$;

REVOKE EXECUTE ON FUNCTION setstream._set_delivery_secret(text, text),
    setstream._wake_sender(text), setstream.set_delivery(text, text, text, text, integer),
    setstream.resume_delivery(text), setstream.redeliver(text, text[]) FROM PUBLIC;

-- The sender (setstream_worker): read the deliveries and record their
-- state; the outbox columns above come with its UPDATE on the outbox.
GRANT SELECT ON setstream.deliveries TO setstream_worker;
GRANT UPDATE (state, backoff_until, suspended_reason, failures, auth_failures,
              nonconformant_acks, updated_at) ON setstream.deliveries TO setstream_worker;
