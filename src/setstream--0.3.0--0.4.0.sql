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

-- end of issue 13: SSF subjects, the emit filter, PATCH/PUT of stream configuration

-- ---------------------------------------------------------------------
-- issue 13: setstream as an SSF receiver (subscribe, unsubscribe, request_verification)
-- ---------------------------------------------------------------------

-- A stream of this database subscribed to a remote SSF transmitter:
-- what subscribe found at the transmitter (its discovery document's
-- endpoints, the stream it created: remote_stream_id, aud), the bearer
-- token issued for push delivery (push_token_id), what the transmitter
-- said of the stream in stream-updated SETs (transmitter_status...), and
-- the state of the last request_verification (verification_state, valid
-- until verification_expires_at; verified_at: when a verification SET
-- with it arrived).
CREATE TABLE setstream.subscriptions (
    stream                  text PRIMARY KEY
                            REFERENCES setstream.streams (name) ON DELETE CASCADE,
    transmitter_issuer      text NOT NULL
                            CHECK (transmitter_issuer ~* '^https?://[^/?#[:space:]]+'),
    delivery                text NOT NULL CHECK (delivery IN ('push', 'poll')),
    events_requested        text[],
    events_delivered        text[],
    remote_stream_id        text NOT NULL CHECK (remote_stream_id ~ '^[A-Za-z0-9._~-]+$'),
    aud                     text[] NOT NULL CHECK (cardinality(aud) > 0),
    configuration_endpoint  text NOT NULL,
    status_endpoint         text,
    verification_endpoint   text,
    jwks_uri                text NOT NULL,
    push_token_id           bigint,
    transmitter_status      text,
    transmitter_status_reason text,
    transmitter_status_at   timestamptz,
    verification_state      text,
    verification_expires_at timestamptz,
    verification_requested_at timestamptz,
    verified_at             timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE setstream.subscriptions IS
'Streams of this database that receive the SETs of a remote SSF transmitter (subscribe): the transmitter''s endpoints, the stream it created for us (remote_stream_id, aud), the status it last announced (stream-updated) and the last verification requested.';
SELECT pg_catalog.pg_extension_config_dump('setstream.subscriptions', '');

-- The credentials subscribe presents to the transmitter ({"bearer": ...},
-- or an OAuth client's, with the access token last obtained and the time
-- it is good until): readable by the extension owner only, never
-- returned, shown or logged.
CREATE TABLE setstream.subscription_secrets (
    stream          text PRIMARY KEY
                    REFERENCES setstream.streams (name) ON DELETE CASCADE,
    credentials     jsonb NOT NULL,
    access_token    text,
    access_token_expires_at timestamptz
);
REVOKE ALL ON setstream.subscription_secrets FROM PUBLIC;
COMMENT ON TABLE setstream.subscription_secrets IS
'Credentials of the SSF receiver towards its transmitters (subscribe). Readable by the extension owner only; never returned by any function.';
SELECT pg_catalog.pg_extension_config_dump('setstream.subscription_secrets', '');

ALTER TABLE setstream.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE setstream.subscription_secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON setstream.subscriptions FOR SELECT
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with(NULL))::pg_catalog.text[]));
CREATE POLICY manage ON setstream.subscriptions FOR ALL
    USING (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]))
    WITH CHECK (stream OPERATOR(pg_catalog.=) ANY ((SELECT setstream._streams_with('manage'))::pg_catalog.text[]));
-- (subscription_secrets: no policy; only its owner, who bypasses them, reads it)

-- Store (NULL: remove) the credentials, as the extension owner, after
-- checking the caller's manage right
CREATE FUNCTION setstream._set_subscription_secret(stream text, credentials text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_set_subscription_secret'
LANGUAGE C VOLATILE;

-- One HTTP request to the stream's transmitter, waited for in this
-- backend (bounded by setstream.outbound_timeout_ms; the rules of every
-- outbound request hold); authorize: with the stored bearer token
CREATE FUNCTION setstream._ssf_call(stream text, method text, url text,
                                    request_body text, authorize boolean,
                                    OUT status integer, OUT body text, OUT error text)
RETURNS record
AS 'MODULE_PATHNAME', 'setstream_ssf_call'
LANGUAGE C VOLATILE;

-- The poll client's Authorization header of a subscription with OAuth
-- credentials: its current access token (stored as the owner, never
-- returned)
CREATE FUNCTION setstream._ssf_source_token(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'setstream_ssf_source_token'
LANGUAGE C VOLATILE;

-- The JSON object of a transmitter's answer, or an error naming what
-- was asked (08006: no answer; 08P01: an answer we cannot use)
CREATE FUNCTION setstream._ssf_answer(status integer, body text, error text,
                                      what text, ok integer[])
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    doc jsonb;
BEGIN
    IF _ssf_answer.status = 0 THEN
        RAISE EXCEPTION 'no answer from the transmitter to %: %', what, _ssf_answer.error
            USING ERRCODE = 'connection_failure';
    END IF;
    IF NOT _ssf_answer.status = ANY (ok) THEN
        RAISE EXCEPTION 'the transmitter answered % with HTTP %', what, _ssf_answer.status
            USING ERRCODE = 'protocol_violation',
                  DETAIL = pg_catalog.left(coalesce(_ssf_answer.body, ''), 300);
    END IF;
    IF ok = ARRAY[204] OR _ssf_answer.status = 204 THEN
        RETURN NULL;
    END IF;
    BEGIN
        doc := _ssf_answer.body::jsonb;
    EXCEPTION WHEN others THEN
        doc := NULL;
    END;
    IF doc IS NULL OR pg_catalog.jsonb_typeof(doc) <> 'object' THEN
        RAISE EXCEPTION 'the transmitter''s answer to % is no JSON object', what
            USING ERRCODE = 'protocol_violation';
    END IF;
    RETURN doc;
END
$$;

-- Subscribe the stream (made when it does not exist) to the SSF
-- transmitter whose issuer is transmitter_issuer: discovery (its issuer
-- must be transmitter_issuer exactly), the stream created there (push:
-- to our /streams/<stream>/events with a bearer token issued here; poll:
-- our poll client polls the endpoint it returns), refused and deleted
-- there when its iss is not the issuer.  The stream then accepts SETs of
-- iss transmitter_issuer, signed by keys of the transmitter's jwks_uri,
-- whose aud holds the aud the transmitter returned.  credentials:
-- {"bearer": "<token>"}, or an OAuth client_credentials client
-- {"client_id", "client_secret", "token_endpoint"?, "scope"?,
-- "token_endpoint_auth_method"?}, or with "private_key_jwk" (a private
-- JWK) instead of client_secret: private_key_jwt.
CREATE FUNCTION setstream.subscribe(stream text, transmitter_issuer text,
                                    delivery text DEFAULT 'push',
                                    events_requested text[] DEFAULT NULL,
                                    credentials jsonb DEFAULT NULL)
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
    d text := pg_catalog.lower(delivery);
    iss text := transmitter_issuer;
    parts text[];
    answer record;
    doc jsonb;
    cfg jsonb;
    req jsonb;
    base text;
    token_id bigint;
    sid text;
    aud text[];
    poll_url text;
BEGIN
    IF d = 'urn:ietf:rfc:8935' THEN
        d := 'push';
    ELSIF d = 'urn:ietf:rfc:8936' THEN
        d := 'poll';
    END IF;
    IF d IS NULL OR d NOT IN ('push', 'poll') THEN
        RAISE EXCEPTION 'unknown delivery "%"', delivery
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use push (urn:ietf:rfc:8935) or poll (urn:ietf:rfc:8936).';
    END IF;
    parts := pg_catalog.regexp_match(iss, '^(https?://[^/?#[:space:]]+)(/[^?#[:space:]]*)?$', 'i');
    IF parts IS NULL THEN
        RAISE EXCEPTION 'transmitter_issuer must be an http or https URL without query or fragment'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF credentials IS NULL THEN
        NULL;
    ELSIF pg_catalog.jsonb_typeof(credentials) = 'object' AND credentials ? 'bearer' THEN
        IF pg_catalog.jsonb_typeof(credentials -> 'bearer') <> 'string' OR
           (SELECT pg_catalog.count(*) FROM pg_catalog.jsonb_object_keys(credentials)) <> 1 OR
           credentials ->> 'bearer' !~ '^[A-Za-z0-9._~+/=-]+$' THEN
            RAISE EXCEPTION 'credentials must be {"bearer": "<token>"} or an OAuth client''s'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSIF pg_catalog.jsonb_typeof(credentials) = 'object' AND credentials ? 'client_id' THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.jsonb_each(credentials) e
                    WHERE e.key NOT IN ('client_id', 'client_secret', 'private_key_jwk',
                                        'token_endpoint', 'scope', 'token_endpoint_auth_method')
                       OR pg_catalog.jsonb_typeof(e.value) <>
                          CASE e.key WHEN 'private_key_jwk' THEN 'object' ELSE 'string' END) OR
           (credentials ? 'client_secret') = (credentials ? 'private_key_jwk') OR
           coalesce(credentials ->> 'token_endpoint_auth_method',
                    CASE WHEN credentials ? 'private_key_jwk' THEN 'private_key_jwt'
                         ELSE 'client_secret_basic' END)
               NOT IN (CASE WHEN credentials ? 'private_key_jwk' THEN 'private_key_jwt' ELSE 'client_secret_basic' END,
                       CASE WHEN credentials ? 'private_key_jwk' THEN 'private_key_jwt' ELSE 'client_secret_post' END) OR
           coalesce(credentials ->> 'token_endpoint', 'https://x') !~* '^https?://[^/?#[:space:]]+' THEN
            RAISE EXCEPTION 'OAuth credentials are {"client_id", "client_secret" (token_endpoint_auth_method client_secret_basic, the default, or client_secret_post) or "private_key_jwk" (private_key_jwt), "token_endpoint"?, "scope"?}'
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    ELSE
        RAISE EXCEPTION 'credentials must be {"bearer": "<token>"} or an OAuth client''s'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM setstream.streams s WHERE s.name = subscribe.stream) THEN
        PERFORM setstream.create_stream(subscribe.stream, iss, ARRAY[iss], iss);
    END IF;
    result := setstream._stream_row(subscribe.stream);
    IF EXISTS (SELECT 1 FROM setstream.subscriptions s WHERE s.stream = result.name) THEN
        RAISE EXCEPTION 'stream "%" is subscribed already', result.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'unsubscribe() it first.';
    END IF;
    PERFORM setstream._set_subscription_secret(result.name, credentials::text);

    -- discovery: the path-inserted well-known URL of the issuer
    answer := setstream._ssf_call(result.name, 'GET',
        parts[1] || '/.well-known/ssf-configuration' || coalesce(pg_catalog.rtrim(parts[2], '/'), ''),
        NULL, false);
    doc := setstream._ssf_answer(answer.status, answer.body, answer.error, 'the discovery request', ARRAY[200]);
    IF doc ->> 'issuer' IS DISTINCT FROM iss THEN
        RAISE EXCEPTION 'the transmitter''s discovery document names issuer "%", not "%"',
                        doc ->> 'issuer', iss
            USING ERRCODE = 'protocol_violation';
    END IF;
    IF pg_catalog.jsonb_typeof(doc -> 'jwks_uri') IS DISTINCT FROM 'string' OR
       doc ->> 'jwks_uri' !~* '^https?://[^/?#[:space:]]+' OR
       pg_catalog.jsonb_typeof(doc -> 'configuration_endpoint') IS DISTINCT FROM 'string' OR
       doc ->> 'configuration_endpoint' !~* '^https?://[^/?#[:space:]]+[^?#[:space:]]*$' THEN
        RAISE EXCEPTION 'the transmitter''s discovery document has no usable jwks_uri and configuration_endpoint'
            USING ERRCODE = 'protocol_violation';
    END IF;

    -- OAuth without a token_endpoint: the transmitter's authorization
    -- server metadata (RFC 8414, at its issuer) names it
    IF credentials ? 'client_id' AND NOT credentials ? 'token_endpoint' THEN
        answer := setstream._ssf_call(result.name, 'GET',
            parts[1] || '/.well-known/oauth-authorization-server' || coalesce(pg_catalog.rtrim(parts[2], '/'), ''),
            NULL, false);
        cfg := setstream._ssf_answer(answer.status, answer.body, answer.error,
                                     'the authorization server metadata request', ARRAY[200]);
        IF pg_catalog.jsonb_typeof(cfg -> 'token_endpoint') IS DISTINCT FROM 'string' OR
           cfg ->> 'token_endpoint' !~* '^https?://[^/?#[:space:]]+' THEN
            RAISE EXCEPTION 'the transmitter''s authorization server metadata names no token_endpoint'
                USING ERRCODE = 'protocol_violation';
        END IF;
        PERFORM setstream._set_subscription_secret(result.name,
            (credentials || pg_catalog.jsonb_build_object('token_endpoint', cfg ->> 'token_endpoint'))::text);
    END IF;

    -- the stream at the transmitter
    IF d = 'push' THEN
        base := pg_catalog.rtrim(coalesce(pg_catalog.current_setting('setstream.public_url', true), ''), '/');
        IF base = '' THEN
            RAISE EXCEPTION 'push delivery needs setstream.public_url, where the transmitter pushes'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        req := pg_catalog.jsonb_build_object('delivery', pg_catalog.jsonb_build_object(
            'method', 'urn:ietf:rfc:8935',
            'endpoint_url', base || '/streams/' || result.name || '/events',
            'authorization_header', 'Bearer ' || setstream.issue_token(result.name)));
        SELECT pg_catalog.max(t.id) INTO token_id FROM setstream.tokens t
         WHERE t.stream = result.name;
    ELSE
        req := pg_catalog.jsonb_build_object('delivery',
            pg_catalog.jsonb_build_object('method', 'urn:ietf:rfc:8936'));
    END IF;
    IF events_requested IS NOT NULL THEN
        req := req || pg_catalog.jsonb_build_object('events_requested', pg_catalog.to_jsonb(events_requested));
    END IF;
    answer := setstream._ssf_call(result.name, 'POST', doc ->> 'configuration_endpoint',
                                  req::text, true);
    req := NULL;
    cfg := setstream._ssf_answer(answer.status, answer.body, answer.error, 'the stream creation', ARRAY[200, 201]);
    sid := cfg ->> 'stream_id';
    IF sid IS NULL OR sid !~ '^[A-Za-z0-9._~-]+$' THEN
        RAISE EXCEPTION 'the transmitter created a stream without a usable stream_id'
            USING ERRCODE = 'protocol_violation';
    END IF;
    aud := CASE pg_catalog.jsonb_typeof(cfg -> 'aud')
           WHEN 'string' THEN ARRAY[cfg ->> 'aud']
           WHEN 'array' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(cfg -> 'aud'))
           END;
    IF d = 'poll' THEN
        poll_url := cfg -> 'delivery' ->> 'endpoint_url';
    END IF;
    IF cfg ->> 'iss' IS DISTINCT FROM iss OR aud IS NULL OR pg_catalog.cardinality(aud) = 0 OR
       '' = ANY (aud) OR (d = 'poll' AND coalesce(poll_url, '') !~* '^https?://[^/?#[:space:]]+') THEN
        answer := setstream._ssf_call(result.name, 'DELETE',
            (doc ->> 'configuration_endpoint') || '?stream_id=' || sid, NULL, true);
        IF cfg ->> 'iss' IS DISTINCT FROM iss THEN
            RAISE EXCEPTION 'the transmitter created stream "%" with iss "%", not "%"',
                            sid, cfg ->> 'iss', iss
                USING ERRCODE = 'protocol_violation',
                      DETAIL = 'The stream was deleted at the transmitter (HTTP ' || answer.status || ').';
        END IF;
        RAISE EXCEPTION 'the transmitter created stream "%" without a usable aud or poll endpoint_url', sid
            USING ERRCODE = 'protocol_violation',
                  DETAIL = 'The stream was deleted at the transmitter (HTTP ' || answer.status || ').';
    END IF;

    INSERT INTO setstream.subscriptions
        (stream, transmitter_issuer, delivery, events_requested, events_delivered,
         remote_stream_id, aud, configuration_endpoint, status_endpoint,
         verification_endpoint, jwks_uri, push_token_id)
    VALUES (result.name, iss, d, subscribe.events_requested,
            CASE WHEN pg_catalog.jsonb_typeof(cfg -> 'events_delivered') = 'array'
                 THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(cfg -> 'events_delivered')) END,
            sid, aud, doc ->> 'configuration_endpoint', doc ->> 'status_endpoint',
            doc ->> 'verification_endpoint', doc ->> 'jwks_uri', token_id);
    -- inbound SETs: iss the issuer, keys from its jwks_uri, aud ours
    result := setstream.alter_stream(result.name, issuer => aud[1], peer_issuer => iss,
                                     peer_jwks_uri => doc ->> 'jwks_uri');
    IF d = 'poll' THEN
        -- (an OAuth client polls with the access token it has now; the
        -- token renewer of sender 0 renews it: tokenrenew.c)
        PERFORM setstream.set_source(result.name, 'poll', poll_url,
            CASE WHEN credentials ? 'bearer' THEN 'Bearer ' || (credentials ->> 'bearer') END);
        IF credentials ? 'client_id' THEN
            PERFORM setstream._ssf_source_token(result.name);
        END IF;
    END IF;
    RETURN result;
END
$$;

-- Delete the stream at its transmitter (gone there already: fine), and
-- end the subscription here: no more polls, the push token revoked.  The
-- stream itself and the SETs it received stay.
CREATE FUNCTION setstream.unsubscribe(stream text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
    sub setstream.subscriptions;
    answer record;
BEGIN
    result := setstream._stream_row(unsubscribe.stream);
    SELECT * INTO sub FROM setstream.subscriptions s WHERE s.stream = result.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" is not subscribed', result.name
            USING ERRCODE = 'undefined_object';
    END IF;
    answer := setstream._ssf_call(result.name, 'DELETE',
        sub.configuration_endpoint || '?stream_id=' || sub.remote_stream_id, NULL, true);
    IF answer.status <> 404 THEN
        PERFORM setstream._ssf_answer(answer.status, answer.body, answer.error, 'the stream deletion', ARRAY[200, 204]);
    END IF;
    IF sub.delivery = 'poll' THEN
        PERFORM setstream.set_source(result.name, 'none', NULL, NULL);
    END IF;
    UPDATE setstream.tokens t SET revoked_at = pg_catalog.now()
     WHERE t.stream = result.name AND t.id = sub.push_token_id AND t.revoked_at IS NULL;
    PERFORM setstream._set_subscription_secret(result.name, NULL);
    DELETE FROM setstream.subscriptions s WHERE s.stream = result.name;
END
$$;

-- Ask the transmitter for a verification SET carrying a fresh random
-- state (returned; kept for setstream.ssf_verification_ttl... 10 minutes)
CREATE FUNCTION setstream.request_verification(stream text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
    sub setstream.subscriptions;
    answer record;
    st text := pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '')
               || pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', '');
BEGIN
    result := setstream._stream_row(request_verification.stream);
    SELECT * INTO sub FROM setstream.subscriptions s WHERE s.stream = result.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" is not subscribed', result.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF sub.verification_endpoint IS NULL OR
       sub.verification_endpoint !~* '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'the transmitter of stream "%" has no verification_endpoint', result.name
            USING ERRCODE = 'feature_not_supported';
    END IF;
    -- recorded first: a verification SET may arrive before the answer
    UPDATE setstream.subscriptions s
       SET verification_state = st,
           verification_expires_at = pg_catalog.now() + interval '10 minutes',
           verification_requested_at = pg_catalog.now()
     WHERE s.stream = result.name;
    answer := setstream._ssf_call(result.name, 'POST', sub.verification_endpoint,
        pg_catalog.jsonb_build_object('stream_id', sub.remote_stream_id, 'state', st)::text, true);
    PERFORM setstream._ssf_answer(answer.status, answer.body, answer.error, 'the verification request', ARRAY[200, 202, 204]);
    RETURN st;
END
$$;

REVOKE EXECUTE ON FUNCTION setstream._set_subscription_secret(text, text),
    setstream._ssf_call(text, text, text, text, boolean),
    setstream._ssf_source_token(text),
    setstream._ssf_answer(integer, text, text, text, integer[]),
    setstream.subscribe(text, text, text, text[], jsonb),
    setstream.unsubscribe(text),
    setstream.request_verification(text) FROM PUBLIC;

-- The workers: read the subscriptions, record what the transmitter says
GRANT SELECT ON setstream.subscriptions TO setstream_worker;
GRANT UPDATE (transmitter_status, transmitter_status_reason, transmitter_status_at,
              verified_at)
    ON setstream.subscriptions TO setstream_worker;

-- Roles given the manage right before this update get subscribe & co.,
-- as grant_stream gives them from 0.4.0 on, as their own grants
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders('setstream.deliveries'::pg_catalog.regclass, 'SELECT')
          EXCEPT SELECT 'setstream_worker' ORDER BY 1),
    ARRAY['GRANT SELECT ON setstream.subscriptions TO %s']);
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT INSERT, UPDATE, DELETE ON setstream.subscriptions TO %s',
          'GRANT EXECUTE ON FUNCTION setstream.subscribe(text, text, text, text[], jsonb),'
          ' setstream.unsubscribe(text), setstream.request_verification(text),'
          ' setstream._set_subscription_secret(text, text),'
          ' setstream._ssf_call(text, text, text, text, boolean),'
          ' setstream._ssf_source_token(text),'
          ' setstream._ssf_answer(integer, text, text, text, integer[]) TO %s']);
-- Inbound SSF events of a subscribed stream, checked and recorded as
-- they are stored (a trigger on setstream.events, so that push, poll and
-- pushpull all go through it; raising SE001/SE007 makes the SET a setErr
-- or a 400 with that err):
--   verification: a sub_id whose id is not the remote stream id is
--     invalid_request (no sub_id: accepted, as older transmitters send
--     none); a state that is not the one request_verification sent (or
--     past its expiry) is invalid_state; without a state it is accepted
--     (transmitter-initiated).  The expected state sets verified_at.
--     request_verification records its state in the transaction that
--     asks the transmitter, so a transmitter that pushes at once is here
--     before that commits: a state that differs from the committed one
--     waits for the subscription's row lock (that transaction's, at most
--     lock_timeout, 5 s: then 55P03, a transient error, a 503 with
--     Retry-After to a push) and is checked against the row as it is then.
--   stream-updated: the status and reason the transmitter announced are
--     recorded in subscriptions.transmitter_status(_reason, _at).
-- Runs as the extension owner (it writes subscriptions, whoever stores
-- the SET); every name and operator is schema-qualified.
CREATE FUNCTION setstream._subscription_event()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '5s'
AS $$
DECLARE
    sub setstream.subscriptions;
    ev jsonb;
    sub_id jsonb;
BEGIN
    SELECT * INTO sub FROM setstream.subscriptions s
     WHERE s.stream OPERATOR(pg_catalog.=) NEW.stream;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    ev := coalesce(NEW.events OPERATOR(pg_catalog.->) 'https://schemas.openid.net/secevent/ssf/event-type/verification',
                   NEW.events OPERATOR(pg_catalog.->) 'https://schemas.openid.net/secevent/sse/event-type/verification');
    IF ev IS NOT NULL THEN
        sub_id := NEW.claims OPERATOR(pg_catalog.->) 'sub_id';
        IF sub_id IS NOT NULL AND
           (pg_catalog.jsonb_typeof(sub_id) OPERATOR(pg_catalog.<>) 'object' OR
            (sub_id OPERATOR(pg_catalog.->>) 'id') IS DISTINCT FROM sub.remote_stream_id) THEN
            RAISE EXCEPTION 'invalid_request: the verification event''s sub_id is not this stream''s stream_id'
                USING ERRCODE = 'SE001';
        END IF;
        IF pg_catalog.jsonb_typeof(ev) OPERATOR(pg_catalog.=) 'object' AND ev OPERATOR(pg_catalog.?) 'state' THEN
            IF (ev OPERATOR(pg_catalog.->>) 'state') IS DISTINCT FROM sub.verification_state THEN
                -- (a request_verification in flight holds the row: wait for
                -- its commit, then read the row again)
                PERFORM 1 FROM setstream.subscriptions s
                  WHERE s.stream OPERATOR(pg_catalog.=) NEW.stream FOR SHARE;
                SELECT * INTO sub FROM setstream.subscriptions s
                 WHERE s.stream OPERATOR(pg_catalog.=) NEW.stream;
            END IF;
            IF sub.verification_state IS NULL OR
               (ev OPERATOR(pg_catalog.->>) 'state') IS DISTINCT FROM sub.verification_state OR
               sub.verification_expires_at OPERATOR(pg_catalog.<) pg_catalog.now() THEN
                RAISE EXCEPTION 'invalid_state: the verification event''s state is not one this receiver sent'
                    USING ERRCODE = 'SE007';
            END IF;
            UPDATE setstream.subscriptions s SET verified_at = pg_catalog.now()
             WHERE s.stream OPERATOR(pg_catalog.=) NEW.stream;
        END IF;
    END IF;
    ev := coalesce(NEW.events OPERATOR(pg_catalog.->) 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
                   NEW.events OPERATOR(pg_catalog.->) 'https://schemas.openid.net/secevent/sse/event-type/stream-updated');
    IF ev IS NOT NULL AND pg_catalog.jsonb_typeof(ev) OPERATOR(pg_catalog.=) 'object' AND
       pg_catalog.jsonb_typeof(ev OPERATOR(pg_catalog.->) 'status') OPERATOR(pg_catalog.=) 'string' THEN
        UPDATE setstream.subscriptions s
           SET transmitter_status = ev OPERATOR(pg_catalog.->>) 'status',
               transmitter_status_reason = ev OPERATOR(pg_catalog.->>) 'reason',
               transmitter_status_at = pg_catalog.now()
         WHERE s.stream OPERATOR(pg_catalog.=) NEW.stream;
    END IF;
    RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._subscription_event() FROM PUBLIC;

-- (WHEN: no call at all for the SETs of other event types)
CREATE TRIGGER ssf_receiver BEFORE INSERT ON setstream.events
    FOR EACH ROW
    WHEN (NEW.event_types OPERATOR(pg_catalog.&&) ARRAY[
        'https://schemas.openid.net/secevent/ssf/event-type/verification',
        'https://schemas.openid.net/secevent/ssf/event-type/stream-updated',
        'https://schemas.openid.net/secevent/sse/event-type/verification',
        'https://schemas.openid.net/secevent/sse/event-type/stream-updated']::pg_catalog.text[])
    EXECUTE FUNCTION setstream._subscription_event();
-- end of issue 13: setstream as an SSF receiver

-- ---------------------------------------------------------------------
-- Citus: distribute() and prepare_drop() know every table of 0.4.0:
-- stream_subjects is distributed by stream, co-located with events;
-- subscriptions and subscription_secrets are configuration (reference
-- tables, as sources and source_secrets).  (The ssf_receiver trigger on
-- setstream.events updates subscriptions, a reference table, from the
-- shard a SET lands in.)
-- ---------------------------------------------------------------------
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
                             'subscriptions', 'subscription_secrets',
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
    FOREACH t IN ARRAY ARRAY['stream_subjects', 'outbox', 'events',
                             'subscription_secrets', 'subscriptions',
                             'source_secrets', 'sources',
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

-- end of the Citus lists

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
    was_paused boolean;
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
    SELECT d.paused_stream INTO was_paused FROM setstream.deliveries d
     WHERE d.stream = result.name FOR UPDATE;
    INSERT INTO setstream.deliveries AS d (stream, method, endpoint_url, push_concurrency)
    VALUES (result.name, m, CASE WHEN m IN ('push', 'pushpull', 'pushpull-ws') THEN endpoint_url END,
            coalesce(set_delivery.push_concurrency, 4))
    ON CONFLICT ON CONSTRAINT deliveries_pkey DO UPDATE
       SET method = excluded.method, endpoint_url = excluded.endpoint_url,
           push_concurrency = excluded.push_concurrency,
           state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, paused_stream = false, updated_at = now();
    PERFORM setstream._set_delivery_secret(result.name,
        CASE WHEN m IN ('push', 'pushpull', 'pushpull-ws') THEN authorization_header END);
    -- the SSF stream the suspension of the old delivery paused is enabled
    -- again (resume_delivery)
    IF was_paused AND (SELECT s.status FROM setstream.streams s WHERE s.name = result.name)
                      = 'paused' THEN
        PERFORM setstream._set_stream_status(result.name, 'enabled', 'delivery resumed', true);
        result := setstream._stream_row(result.name);
    END IF;
    RETURN result;
END
$$;
-- ---------------------------------------------------------------------
-- end of issue 17: pushpull-ws

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

-- ---------------------------------------------------------------------
-- issue 13: the stream configuration names min_verification_interval and
-- inactivity_timeout (SSF 1.0 8.1.1, transmitter-supplied)
-- ---------------------------------------------------------------------

-- A stream's SSF configuration object (SSF 1.0, 8.1.1); NULL when the
-- stream is not the receiver's.  min_verification_interval and
-- inactivity_timeout are setstream.ssf_min_verification_interval and
-- setstream.ssf_inactivity_timeout, in seconds, each left out when 0 (no
-- limit, never): a receiver (and the conformance suite) waits out the
-- first before it asks for a verification.  (Parameters are named with
-- the function's name: in SQL functions a column of the same name wins.)
CREATE OR REPLACE FUNCTION setstream._ssf_stream_config(stream text, receiver text, public_url text)
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
    'description', s.description,
    'min_verification_interval', (SELECT NULLIF(g.setting::pg_catalog.int4, 0)
                                    FROM pg_catalog.pg_settings g
                                   WHERE g.name OPERATOR(pg_catalog.=) 'setstream.ssf_min_verification_interval'),
    'inactivity_timeout', (SELECT NULLIF(g.setting::pg_catalog.int4, 0)
                             FROM pg_catalog.pg_settings g
                            WHERE g.name OPERATOR(pg_catalog.=) 'setstream.ssf_inactivity_timeout')))
  FROM setstream.streams s
  LEFT JOIN setstream.deliveries d ON d.stream OPERATOR(pg_catalog.=) s.name
 WHERE s.name OPERATOR(pg_catalog.=) _ssf_stream_config.stream
   AND s.receiver OPERATOR(pg_catalog.=) _ssf_stream_config.receiver
$$;

-- ---------------------------------------------------------------------
-- end of issue 13: min_verification_interval and inactivity_timeout
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- issue 13: a delivery the sender suspends pauses its SSF stream, with a
-- stream-updated SET; resuming the delivery enables it again
-- ---------------------------------------------------------------------

-- paused_stream: the sender paused the stream (status enabled -> paused,
-- announced by a stream-updated SET) when it suspended this delivery;
-- resume_delivery and set_delivery enable it again.
ALTER TABLE setstream.deliveries ADD COLUMN paused_stream boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN setstream.deliveries.paused_stream IS
'SSF: the sender paused the stream (with a stream-updated SET) when it suspended this delivery; resume_delivery or set_delivery enables it again (with another).';

-- The sender (as the extension owner), after it suspended the stream's
-- delivery: an enabled stream with a receiver (an SSF stream) is paused
-- with a stream-updated SET whose reason names the suspension.  That SET
-- waits, like every other, for the delivery to be resumed.  Once per
-- suspension; true when the stream was paused.
CREATE FUNCTION setstream._delivery_suspended(stream text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d setstream.deliveries;
    s setstream.streams;
BEGIN
    SELECT * INTO d FROM setstream.deliveries x
     WHERE x.stream OPERATOR(pg_catalog.=) _delivery_suspended.stream
       FOR UPDATE;
    IF NOT FOUND OR d.state OPERATOR(pg_catalog.<>) 'suspended' OR d.paused_stream THEN
        RETURN false;
    END IF;
    SELECT * INTO s FROM setstream.streams x WHERE x.name OPERATOR(pg_catalog.=) d.stream;
    IF s.receiver IS NULL OR s.status OPERATOR(pg_catalog.<>) 'enabled' THEN
        RETURN false;
    END IF;
    PERFORM setstream._set_stream_status(s.name, 'paused',
        pg_catalog.left('delivery suspended: ' OPERATOR(pg_catalog.||) d.suspended_reason, 256),
        true);
    UPDATE setstream.deliveries x SET paused_stream = true
     WHERE x.stream OPERATOR(pg_catalog.=) d.stream;
    RETURN true;
END
$$;
REVOKE EXECUTE ON FUNCTION setstream._delivery_suspended(text) FROM PUBLIC;
COMMENT ON FUNCTION setstream._delivery_suspended(text) IS
'internal (the sender, as the extension owner): pause the SSF stream whose delivery was just suspended, with a stream-updated SET';

-- Make a suspended or backing-off stream's delivery active again; an SSF
-- stream that the suspension paused, and that nobody changed since, is
-- enabled again with a stream-updated SET (reason "delivery resumed").
CREATE OR REPLACE FUNCTION setstream.resume_delivery(stream text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    was_paused boolean;
BEGIN
    PERFORM setstream._stream_row(stream);
    SELECT d.paused_stream INTO was_paused FROM setstream.deliveries d
     WHERE d.stream OPERATOR(pg_catalog.=) resume_delivery.stream
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no outbound delivery', stream
            USING ERRCODE = 'undefined_object',
                  HINT = 'set_delivery(stream, ''push'', endpoint_url) configures one.';
    END IF;
    UPDATE setstream.deliveries d
       SET state = 'active', backoff_until = NULL, suspended_reason = NULL,
           failures = 0, auth_failures = 0, paused_stream = false,
           updated_at = pg_catalog.now()
     WHERE d.stream OPERATOR(pg_catalog.=) resume_delivery.stream;
    IF was_paused AND (SELECT s.status FROM setstream.streams s
                        WHERE s.name OPERATOR(pg_catalog.=) resume_delivery.stream)
                      OPERATOR(pg_catalog.=) 'paused' THEN
        PERFORM setstream._set_stream_status(resume_delivery.stream, 'enabled',
                                             'delivery resumed', true);
    END IF;
    PERFORM setstream._wake_sender(stream);
END
$$;

-- ---------------------------------------------------------------------
-- end of issue 13: a suspended delivery pauses its SSF stream
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- issue 13: the signing key of a stream made through the management API
-- has the algorithm of setstream.ssf_signing_alg (RS256 by default: the
-- CAEP interoperability profile requires it)
-- ---------------------------------------------------------------------

-- Make a stream for the receiver; NULL when it has max_streams already
CREATE OR REPLACE FUNCTION setstream._ssf_create_stream(receiver text, issuer text, public_url text,
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
    PERFORM setstream.generate_key(n, coalesce(
        pg_catalog.current_setting('setstream.ssf_signing_alg', true), 'RS256'));
    IF _ssf_create_stream.method OPERATOR(pg_catalog.=) 'push' THEN
        PERFORM setstream.set_delivery(n, 'push', _ssf_create_stream.endpoint_url,
                                       _ssf_create_stream.authorization_header);
    END IF;
    RETURN setstream._ssf_stream_config(n, r.name, _ssf_create_stream.public_url);
END
$$;

-- ---------------------------------------------------------------------
-- end of issue 13: setstream.ssf_signing_alg
-- ---------------------------------------------------------------------

-- ---------------------------------------------------------------------
-- issue 13: the receiver reads and changes its stream at the transmitter
-- (subscription_config, update_subscription, subscription_status,
-- set_subscription_status), as an SSF receiver does after the create
-- ---------------------------------------------------------------------

-- The subscription of the stream (42704 when it has none), after the
-- caller's right to the stream is checked
CREATE FUNCTION setstream._subscription_row(stream text)
RETURNS setstream.subscriptions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams := setstream._stream_row(_subscription_row.stream);
    sub setstream.subscriptions;
BEGIN
    SELECT * INTO sub FROM setstream.subscriptions s
     WHERE s.stream OPERATOR(pg_catalog.=) result.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" is not subscribed', result.name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN sub;
END
$$;

-- A stream configuration the transmitter answered, checked (its
-- stream_id is ours, its iss the issuer) and recorded (events_delivered)
CREATE FUNCTION setstream._subscription_config_answer(sub setstream.subscriptions, cfg jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cfg OPERATOR(pg_catalog.->>) 'stream_id' IS DISTINCT FROM sub.remote_stream_id OR
       cfg OPERATOR(pg_catalog.->>) 'iss' IS DISTINCT FROM sub.transmitter_issuer THEN
        RAISE EXCEPTION 'the transmitter answered with the configuration of stream "%" of "%", not of "%" of "%"',
                        cfg OPERATOR(pg_catalog.->>) 'stream_id', cfg OPERATOR(pg_catalog.->>) 'iss',
                        sub.remote_stream_id, sub.transmitter_issuer
            USING ERRCODE = 'protocol_violation';
    END IF;
    UPDATE setstream.subscriptions s
       SET events_delivered =
           CASE WHEN pg_catalog.jsonb_typeof(cfg OPERATOR(pg_catalog.->) 'events_delivered')
                     OPERATOR(pg_catalog.=) 'array'
                THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(
                               cfg OPERATOR(pg_catalog.->) 'events_delivered')) END
     WHERE s.stream OPERATOR(pg_catalog.=) sub.stream;
    RETURN cfg;
END
$$;

-- The configuration of our stream at the transmitter (GET
-- configuration_endpoint?stream_id=); its events_delivered is recorded
CREATE FUNCTION setstream.subscription_config(stream text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub setstream.subscriptions := setstream._subscription_row(subscription_config.stream);
    answer record;
BEGIN
    answer := setstream._ssf_call(sub.stream, 'GET',
        sub.configuration_endpoint OPERATOR(pg_catalog.||) '?stream_id='
            OPERATOR(pg_catalog.||) sub.remote_stream_id, NULL, true);
    RETURN setstream._subscription_config_answer(sub,
        setstream._ssf_answer(answer.status, answer.body, answer.error, 'the stream read',
                              ARRAY[200]));
END
$$;

-- Change our stream at the transmitter.  changes: a JSON object of the
-- receiver-supplied members setstream lets change, "description" and
-- "events_requested" (null removes one).  replace false: PATCH, only
-- those change; replace true: PUT, they are the whole configuration (a
-- member left out is removed there), with our delivery as it is (push: a
-- new bearer token replaces the one subscribe issued, revoked once the
-- transmitter took the new one).  The delivery is setstream's own:
-- unsubscribe and subscribe again to change it.  Returns the
-- transmitter's new configuration.
CREATE FUNCTION setstream.update_subscription(stream text, changes jsonb,
                                              replace boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub setstream.subscriptions := setstream._subscription_row(update_subscription.stream);
    body jsonb;
    answer record;
    cfg jsonb;
    base text;
    token_id bigint;
    ev jsonb := changes OPERATOR(pg_catalog.->) 'events_requested';
BEGIN
    IF changes IS NULL OR pg_catalog.jsonb_typeof(changes) OPERATOR(pg_catalog.<>) 'object' OR
       EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(changes) k
                WHERE k OPERATOR(pg_catalog.<>) ALL (ARRAY['description', 'events_requested'])) OR
       pg_catalog.jsonb_typeof(changes OPERATOR(pg_catalog.->) 'description')
           OPERATOR(pg_catalog.<>) ALL (ARRAY['string', 'null']) OR
       (ev IS NOT NULL AND pg_catalog.jsonb_typeof(ev) OPERATOR(pg_catalog.<>) 'null' AND
        (pg_catalog.jsonb_typeof(ev) OPERATOR(pg_catalog.<>) 'array' OR
         EXISTS (SELECT 1 FROM pg_catalog.jsonb_array_elements(ev) e
                  WHERE pg_catalog.jsonb_typeof(e) OPERATOR(pg_catalog.<>) 'string'))) THEN
        RAISE EXCEPTION 'changes must be a JSON object of "description" (a string) and "events_requested" (an array of strings)'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The delivery is setstream''s own: unsubscribe() and subscribe() again to change it.';
    END IF;
    body := changes OPERATOR(pg_catalog.||)
            pg_catalog.jsonb_build_object('stream_id', sub.remote_stream_id);
    IF replace AND sub.delivery OPERATOR(pg_catalog.=) 'push' THEN
        base := pg_catalog.rtrim(coalesce(pg_catalog.current_setting('setstream.public_url', true), ''), '/');
        IF base OPERATOR(pg_catalog.=) '' THEN
            RAISE EXCEPTION 'push delivery needs setstream.public_url, where the transmitter pushes'
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        body := body OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('delivery',
            pg_catalog.jsonb_build_object(
                'method', 'urn:ietf:rfc:8935',
                'endpoint_url', base OPERATOR(pg_catalog.||) '/streams/'
                                OPERATOR(pg_catalog.||) sub.stream
                                OPERATOR(pg_catalog.||) '/events',
                'authorization_header', 'Bearer ' OPERATOR(pg_catalog.||)
                                        setstream.issue_token(sub.stream)));
        SELECT pg_catalog.max(t.id) INTO token_id FROM setstream.tokens t
         WHERE t.stream OPERATOR(pg_catalog.=) sub.stream;
    ELSIF replace THEN
        body := body OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('delivery',
            pg_catalog.jsonb_build_object('method', 'urn:ietf:rfc:8936'));
    END IF;
    answer := setstream._ssf_call(sub.stream, CASE WHEN replace THEN 'PUT' ELSE 'PATCH' END,
                                  sub.configuration_endpoint, body::text, true);
    body := NULL;
    cfg := setstream._subscription_config_answer(sub,
        setstream._ssf_answer(answer.status, answer.body, answer.error,
                              CASE WHEN replace THEN 'the stream replacement'
                                   ELSE 'the stream update' END, ARRAY[200]));
    UPDATE setstream.subscriptions s
       SET events_requested = CASE
               WHEN changes OPERATOR(pg_catalog.?) 'events_requested' OR replace THEN
                   CASE WHEN pg_catalog.jsonb_typeof(ev) OPERATOR(pg_catalog.=) 'array'
                        THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(ev)) END
               ELSE s.events_requested END,
           push_token_id = coalesce(token_id, s.push_token_id)
     WHERE s.stream OPERATOR(pg_catalog.=) sub.stream;
    IF token_id IS NOT NULL THEN
        UPDATE setstream.tokens t SET revoked_at = pg_catalog.now()
         WHERE t.stream OPERATOR(pg_catalog.=) sub.stream
           AND t.id OPERATOR(pg_catalog.=) sub.push_token_id AND t.revoked_at IS NULL;
    END IF;
    RETURN cfg;
END
$$;

-- A status answer of the transmitter, checked and recorded
CREATE FUNCTION setstream._subscription_status_answer(sub setstream.subscriptions, st jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF st OPERATOR(pg_catalog.->>) 'status' IS NULL OR
       st OPERATOR(pg_catalog.->>) 'status' OPERATOR(pg_catalog.<>) ALL (ARRAY['enabled', 'paused', 'disabled']) THEN
        RAISE EXCEPTION 'the transmitter answered no stream status'
            USING ERRCODE = 'protocol_violation',
                  DETAIL = pg_catalog.left(st::text, 300);
    END IF;
    UPDATE setstream.subscriptions s
       SET transmitter_status = st OPERATOR(pg_catalog.->>) 'status',
           transmitter_status_reason = st OPERATOR(pg_catalog.->>) 'reason',
           transmitter_status_at = pg_catalog.now()
     WHERE s.stream OPERATOR(pg_catalog.=) sub.stream;
    RETURN st;
END
$$;

-- The status of our stream at the transmitter (GET status_endpoint),
-- recorded in transmitter_status
CREATE FUNCTION setstream.subscription_status(stream text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub setstream.subscriptions := setstream._subscription_row(subscription_status.stream);
    answer record;
BEGIN
    IF sub.status_endpoint IS NULL OR
       sub.status_endpoint OPERATOR(pg_catalog.!~*) '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'the transmitter of stream "%" has no status_endpoint', sub.stream
            USING ERRCODE = 'feature_not_supported';
    END IF;
    answer := setstream._ssf_call(sub.stream, 'GET',
        sub.status_endpoint OPERATOR(pg_catalog.||) '?stream_id='
            OPERATOR(pg_catalog.||) sub.remote_stream_id, NULL, true);
    RETURN setstream._subscription_status_answer(sub,
        setstream._ssf_answer(answer.status, answer.body, answer.error, 'the status read',
                              ARRAY[200]));
END
$$;

-- Ask the transmitter to enable, pause or disable our stream (POST
-- status_endpoint {stream_id, status, reason?}); its answer is recorded
-- in transmitter_status and returned
CREATE FUNCTION setstream.set_subscription_status(stream text, status text,
                                                  reason text DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    sub setstream.subscriptions := setstream._subscription_row(set_subscription_status.stream);
    answer record;
BEGIN
    IF status IS NULL OR status OPERATOR(pg_catalog.<>) ALL (ARRAY['enabled', 'paused', 'disabled']) THEN
        RAISE EXCEPTION 'unknown stream status "%"', status
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''enabled'', ''paused'' or ''disabled''.';
    END IF;
    IF sub.status_endpoint IS NULL OR
       sub.status_endpoint OPERATOR(pg_catalog.!~*) '^https?://[^/?#[:space:]]+' THEN
        RAISE EXCEPTION 'the transmitter of stream "%" has no status_endpoint', sub.stream
            USING ERRCODE = 'feature_not_supported';
    END IF;
    answer := setstream._ssf_call(sub.stream, 'POST', sub.status_endpoint,
        pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
            'stream_id', sub.remote_stream_id, 'status', status, 'reason', reason))::text, true);
    RETURN setstream._subscription_status_answer(sub,
        setstream._ssf_answer(answer.status, answer.body, answer.error, 'the status change',
                              ARRAY[200]));
END
$$;

REVOKE EXECUTE ON FUNCTION setstream._subscription_row(text),
    setstream._subscription_config_answer(setstream.subscriptions, jsonb),
    setstream.subscription_config(text),
    setstream.update_subscription(text, jsonb, boolean),
    setstream._subscription_status_answer(setstream.subscriptions, jsonb),
    setstream.subscription_status(text),
    setstream.set_subscription_status(text, text, text) FROM PUBLIC;
COMMENT ON FUNCTION setstream.subscription_config(text) IS
'SSF receiver: the configuration of the stream at its transmitter (GET); needs the manage privilege';
COMMENT ON FUNCTION setstream.update_subscription(text, jsonb, boolean) IS
'SSF receiver: change description / events_requested of the stream at its transmitter (PATCH, or PUT with replace); needs the manage privilege';
COMMENT ON FUNCTION setstream.subscription_status(text) IS
'SSF receiver: the status of the stream at its transmitter (GET), recorded in subscriptions; needs the manage privilege';
COMMENT ON FUNCTION setstream.set_subscription_status(text, text, text) IS
'SSF receiver: ask the transmitter to enable, pause or disable the stream (POST), recorded in subscriptions; needs the manage privilege';
SELECT setstream._update_grant(
    ARRAY(SELECT setstream._update_holders(
        'setstream.set_stream_status(text, text)'::pg_catalog.regprocedure, 'EXECUTE')),
    ARRAY['GRANT EXECUTE ON FUNCTION setstream._subscription_row(text), '
          'setstream._subscription_config_answer(setstream.subscriptions, jsonb), '
          'setstream.subscription_config(text), '
          'setstream.update_subscription(text, jsonb, boolean), '
          'setstream._subscription_status_answer(setstream.subscriptions, jsonb), '
          'setstream.subscription_status(text), '
          'setstream.set_subscription_status(text, text, text) TO %s']);

-- ---------------------------------------------------------------------
-- end of issue 13: the receiver reads and changes its stream
-- ---------------------------------------------------------------------

-- the update's own helpers go
DROP FUNCTION setstream._update_grant(pg_catalog.text[], pg_catalog.text[]);
DROP FUNCTION setstream._update_holders(pg_catalog.oid, pg_catalog.text);
