-- setstream 0.1.0: schema, tables, and the SQL API.
--
-- Role of this file: everything setstream keeps is defined here.  The C
-- functions (src/sqlapi.c) do the cryptography and protocol parsing; the
-- management functions that are plain bookkeeping are written in SQL or
-- PL/pgSQL below.  Every table is keyed on the stream first, so that the
-- tables could later be distributed on the stream.
--
-- Privileges: nothing is granted to PUBLIC.  The extension owner grants
-- what each role needs (see README, "Privileges").  Private key material
-- lives in setstream.key_secrets, which no role but the owner can read;
-- the C code switches to the owner only for the statements that touch it.

\echo Use "CREATE EXTENSION setstream" to load this file. \quit

-- ---------------------------------------------------------------------
-- Streams
-- ---------------------------------------------------------------------

CREATE TABLE setstream.streams (
    name            text PRIMARY KEY
                    CONSTRAINT streams_name_check
                    CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$'),
    issuer          text NOT NULL CHECK (issuer <> ''),
    audience        text[] NOT NULL
                    CHECK (cardinality(audience) > 0
                           AND array_position(audience, NULL) IS NULL
                           AND array_position(audience, '') IS NULL),
    peer_issuer     text CHECK (peer_issuer <> ''),
    profile         text NOT NULL DEFAULT 'ssf'
                    CHECK (profile IN ('ssf', 'rfc8417')),
    allow_unsigned  boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'enabled'
                    CHECK (status IN ('enabled', 'paused', 'disabled')),
    client_auth     text NOT NULL DEFAULT 'bearer'
                    CHECK (client_auth IN ('bearer', 'cert', 'bearer+cert')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE setstream.streams IS
'SET streams: one peer each. issuer/audience are the iss and aud of SETs this database emits; peer_issuer is the iss accepted on inbound SETs, whose aud must contain issuer. client_auth: what the listener requires of the peer (a bearer token, a client certificate bound in client_certs, or both).';

-- ---------------------------------------------------------------------
-- Keys
-- ---------------------------------------------------------------------

-- Public halves (and, for oct keys, only the metadata) of every key.
-- purpose = 'verify': a peer's key for inbound SETs (add_key);
-- purpose = 'sign': this database's signing key (generate_key).
CREATE TABLE setstream.keys (
    stream      text NOT NULL REFERENCES setstream.streams (name)
                ON DELETE CASCADE ON UPDATE CASCADE,
    kid         text NOT NULL CHECK (kid <> ''),
    purpose     text NOT NULL CHECK (purpose IN ('verify', 'sign')),
    kty         text NOT NULL CHECK (kty IN ('RSA', 'EC', 'OKP', 'oct')),
    alg         text,
    jwk         jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at  timestamptz,
    PRIMARY KEY (stream, kid)
);

-- Secret material: private signing keys and oct (HMAC) secrets.
CREATE TABLE setstream.key_secrets (
    stream  text NOT NULL,
    kid     text NOT NULL,
    jwk     text NOT NULL,
    PRIMARY KEY (stream, kid),
    FOREIGN KEY (stream, kid) REFERENCES setstream.keys (stream, kid)
        ON DELETE CASCADE ON UPDATE CASCADE
);
REVOKE ALL ON setstream.key_secrets FROM PUBLIC;

COMMENT ON TABLE setstream.key_secrets IS
'Private keys and shared secrets. Readable by the extension owner only; never returned by any function.';

-- ---------------------------------------------------------------------
-- Bearer tokens (only their SHA-256 is stored)
-- ---------------------------------------------------------------------

CREATE TABLE setstream.tokens (
    stream      text NOT NULL REFERENCES setstream.streams (name)
                ON DELETE CASCADE ON UPDATE CASCADE,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (stream, id)
);

-- ---------------------------------------------------------------------
-- Client certificates (mTLS): the SHA-256 of the DER of each certificate
-- bound to a stream.  The listener verifies the certificate against
-- setstream.tls_ca_file; the binding says which stream it opens.
-- ---------------------------------------------------------------------

CREATE TABLE setstream.client_certs (
    stream      text NOT NULL REFERENCES setstream.streams (name)
                ON DELETE CASCADE ON UPDATE CASCADE,
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    subject     text,
    not_after   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, sha256)
);

COMMENT ON TABLE setstream.client_certs IS
'Client certificates bound to a stream (bind_client_cert): SHA-256 fingerprint of the DER certificate, with its subject and expiry for reference.';

-- ---------------------------------------------------------------------
-- Inbound SETs
-- ---------------------------------------------------------------------

CREATE TABLE setstream.events (
    stream       text NOT NULL REFERENCES setstream.streams (name)
                 ON DELETE CASCADE ON UPDATE CASCADE,
    jti          text NOT NULL,
    iss          text NOT NULL,
    aud          text[],
    iat          timestamptz NOT NULL,
    txn          text,
    toe          timestamptz,
    subject      jsonb,
    event_types  text[] NOT NULL,
    events       jsonb NOT NULL,
    claims       jsonb NOT NULL,
    header       jsonb NOT NULL,
    token        text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, iss, jti)
)
-- A SET row is about 2 kB: just over the default TOAST threshold, which
-- would try (and fail) to compress the base64 token of every row.  Rows
-- stay whole up to a page instead.
WITH (toast_tuple_target = 8160);

CREATE INDEX events_event_types_idx ON setstream.events USING gin (event_types);
CREATE INDEX events_subject_idx ON setstream.events USING gin (subject jsonb_path_ops);
CREATE INDEX events_received_at_idx ON setstream.events (stream, received_at);
CREATE INDEX events_iat_idx ON setstream.events (stream, iat);
CREATE INDEX events_txn_idx ON setstream.events (stream, txn) WHERE txn IS NOT NULL;

COMMENT ON TABLE setstream.events IS
'Received SETs, verified and stored once per (stream, iss, jti). token is the compact JWS exactly as received.';

-- ---------------------------------------------------------------------
-- Outbound SETs
-- ---------------------------------------------------------------------

CREATE SEQUENCE setstream.outbox_seq;

-- The outbox's state machine as one CHECK: state is pending, delivered,
-- acked or failed; err and failed_at are set exactly when failed, acked_at
-- exactly when acked; delivered rows have attempts > 0.  One C call instead of four SQL
-- expressions: every INSERT (each SET emit_trigger queues) prepares the
-- table's CHECKs anew, and the four SQL forms cost as much as the rest of
-- the INSERT.
CREATE FUNCTION setstream._outbox_row_valid(state text, attempts integer,
                                            acked_at timestamptz, err text,
                                            failed_at timestamptz)
RETURNS boolean
AS 'MODULE_PATHNAME', 'setstream_outbox_row_valid'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE TABLE setstream.outbox (
    stream        text NOT NULL REFERENCES setstream.streams (name)
                  ON DELETE CASCADE ON UPDATE CASCADE,
    seq           bigint NOT NULL DEFAULT nextval('setstream.outbox_seq'),
    jti           text NOT NULL,
    event_types   text[] NOT NULL,
    claims        jsonb NOT NULL,
    token         text NOT NULL,
    state         text NOT NULL DEFAULT 'pending',
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    acked_at      timestamptz,
    failed_at     timestamptz,
    err           text,
    description   text,
    -- No unique index on seq (the sequence makes it unique): an ack moves
    -- the row out of outbox_due_idx, a non-HOT update that writes an entry
    -- into every other index, and one is cheaper than two.
    -- The key includes the stream (a distributed PostgreSQL distributing
    -- on the stream needs it in every unique key) but leads with jti: an
    -- ack, "jti = ANY ($2) AND stream = $1", is then always an index
    -- condition.  With (stream, jti), a planner whose statistics made the
    -- stream look nearly empty (taken while another stream filled the
    -- table) chose "stream = $1" alone and scanned all the stream's rows
    -- for every ack.
    PRIMARY KEY (jti, stream),
    CONSTRAINT outbox_state_valid
        CHECK (setstream._outbox_row_valid(state, attempts, acked_at, err, failed_at))
)
-- Pages are half filled by INSERTs: the other half takes the new version of
-- each row when it is delivered, as a HOT update (no index entries).
WITH (toast_tuple_target = 8160, fillfactor = 50);
ALTER SEQUENCE setstream.outbox_seq OWNED BY setstream.outbox.seq;

-- What poll and pushpull scan: SETs not yet acknowledged or failed.  The
-- predicate names acked_at and failed_at, not state (the CHECK makes them
-- equivalent): a delivery changes no indexed column, so it is a HOT update.
CREATE INDEX outbox_due_idx ON setstream.outbox (stream, seq)
    WHERE acked_at IS NULL AND failed_at IS NULL;

COMMENT ON TABLE setstream.outbox IS
'Emitted SETs: pending -> delivered -> acked, or failed (err, description) when the receiver reports it in setErrs. token is signed at emit and redelivered byte-identical.';

-- pg_dump keeps user data of extension tables only when told to.
SELECT pg_catalog.pg_extension_config_dump('setstream.streams', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.keys', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.key_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.tokens', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.client_certs', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.events', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('setstream.outbox_seq', '');

-- The listeners cache streams, keys, token hashes and client certificate
-- fingerprints; any change to them
-- makes every listener drop its cache when the transaction commits.
CREATE FUNCTION setstream._config_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'setstream_config_changed'
LANGUAGE C;

CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.streams
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();
CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.keys
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();
CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.key_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();
CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.tokens
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();
CREATE TRIGGER config_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON setstream.client_certs
    FOR EACH STATEMENT EXECUTE FUNCTION setstream._config_changed();

-- ---------------------------------------------------------------------
-- Stream management
-- ---------------------------------------------------------------------

CREATE FUNCTION setstream.create_stream(
    name text,
    issuer text,
    audience text[],
    peer_issuer text DEFAULT NULL,
    profile text DEFAULT 'ssf',
    allow_unsigned boolean DEFAULT false,
    client_auth text DEFAULT 'bearer')
RETURNS setstream.streams
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
BEGIN
    PERFORM setstream._check_stream_fields(name, issuer, audience, peer_issuer, profile,
                                           coalesce(client_auth, 'bearer'));
    INSERT INTO setstream.streams AS s (name, issuer, audience, peer_issuer, profile,
                                        allow_unsigned, client_auth)
    VALUES (name, issuer, audience, peer_issuer, profile, coalesce(allow_unsigned, false),
            coalesce(client_auth, 'bearer'))
    RETURNING s.* INTO result;
    RETURN result;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'stream "%" already exists', name
        USING ERRCODE = 'duplicate_object';
END
$$;

CREATE FUNCTION setstream._check_stream_fields(
    name text, issuer text, audience text[], peer_issuer text, profile text,
    client_auth text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid stream name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A stream name is 1 to 128 characters of A-Z, a-z, 0-9, ".", "_", "~" and "-", starting with a letter or digit; it appears in URLs.';
    END IF;
    IF issuer IS NULL OR issuer = '' THEN
        RAISE EXCEPTION 'issuer must be a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF audience IS NULL OR cardinality(audience) = 0
       OR array_position(audience, NULL) IS NOT NULL
       OR array_position(audience, '') IS NOT NULL THEN
        RAISE EXCEPTION 'audience must be a non-empty array of non-empty strings'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF peer_issuer = '' THEN
        RAISE EXCEPTION 'peer_issuer must be NULL or a non-empty string'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF profile IS NULL OR profile NOT IN ('ssf', 'rfc8417') THEN
        RAISE EXCEPTION 'unknown profile "%"', profile
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''ssf'' (the default) or ''rfc8417''.';
    END IF;
    IF client_auth IS NULL OR client_auth NOT IN ('bearer', 'cert', 'bearer+cert') THEN
        RAISE EXCEPTION 'unknown client_auth "%"', client_auth
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''bearer'' (the default), ''cert'' or ''bearer+cert''.';
    END IF;
END
$$;

CREATE FUNCTION setstream._stream_row(stream text)
RETURNS setstream.streams
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
BEGIN
    SELECT * INTO result FROM setstream.streams s WHERE s.name = stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', stream
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN result;
END
$$;

-- Change a stream's settings; a NULL argument leaves that setting as it is.
CREATE FUNCTION setstream.alter_stream(
    name text,
    issuer text DEFAULT NULL,
    audience text[] DEFAULT NULL,
    peer_issuer text DEFAULT NULL,
    profile text DEFAULT NULL,
    allow_unsigned boolean DEFAULT NULL,
    client_auth text DEFAULT NULL)
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
    UPDATE setstream.streams s
       SET issuer = coalesce(alter_stream.issuer, s.issuer),
           audience = coalesce(alter_stream.audience, s.audience),
           peer_issuer = coalesce(alter_stream.peer_issuer, s.peer_issuer),
           profile = coalesce(alter_stream.profile, s.profile),
           allow_unsigned = coalesce(alter_stream.allow_unsigned, s.allow_unsigned),
           client_auth = coalesce(alter_stream.client_auth, s.client_auth)
     WHERE s.name = cur.name
    RETURNING s.* INTO result;
    RETURN result;
END
$$;

-- enabled: SETs flow both ways.  paused: inbound SETs are accepted, emitted
-- SETs are queued but not delivered until the stream is enabled again.
-- disabled: inbound SETs are refused (access_denied), emit() queues nothing.
CREATE FUNCTION setstream.set_stream_status(name text, status text)
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
    RETURN result;
END
$$;

CREATE FUNCTION setstream.disable_stream(name text)
RETURNS setstream.streams
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT setstream.set_stream_status(name, 'disabled') $$;

CREATE FUNCTION setstream.enable_stream(name text)
RETURNS setstream.streams
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT setstream.set_stream_status(name, 'enabled') $$;

-- Drop a stream with its keys, tokens, received events and outbox.
CREATE FUNCTION setstream.drop_stream(name text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM setstream.streams s WHERE s.name = drop_stream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Keys and tokens (C: src/sqlapi.c)
-- ---------------------------------------------------------------------

CREATE FUNCTION setstream.add_key(stream text, jwk jsonb)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_add_key'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.generate_key(stream text, alg text DEFAULT 'ES256')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'setstream_generate_key'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.revoke_key(stream text, kid text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream._stream_row(stream);
    UPDATE setstream.keys k SET revoked_at = clock_timestamp()
     WHERE k.stream = revoke_key.stream AND k.kid = revoke_key.kid
       AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no active key "%"', stream, kid
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

CREATE FUNCTION setstream.issue_token(stream text)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_issue_token'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.check_token(stream text, token text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'setstream_check_token'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION setstream.revoke_token(stream text, token text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream._stream_row(stream);
    UPDATE setstream.tokens t SET revoked_at = now()
     WHERE t.stream = revoke_token.stream
       AND t.token_hash = sha256(convert_to(token, 'UTF8'))
       AND t.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no active token of stream "%" matches', stream
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

CREATE FUNCTION setstream.revoke_token(stream text, id bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM setstream._stream_row(stream);
    UPDATE setstream.tokens t SET revoked_at = now()
     WHERE t.stream = revoke_token.stream AND t.id = revoke_token.id
       AND t.revoked_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no active token %', stream, id
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- ---------------------------------------------------------------------
-- Client certificates (mTLS)
-- ---------------------------------------------------------------------

-- Bind a PEM certificate to a stream; returns its SHA-256 fingerprint (hex).
CREATE FUNCTION setstream.bind_client_cert(stream text, cert text)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_bind_client_cert'
LANGUAGE C STRICT VOLATILE;

-- Unbind a certificate, named by its SHA-256 fingerprint: 64 hex digits,
-- in either case, with or without ':' between the bytes.
CREATE FUNCTION setstream.unbind_client_cert(stream text, sha256 text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hex text := lower(replace(sha256, ':', ''));
BEGIN
    PERFORM setstream._stream_row(stream);
    IF hex !~ '^[0-9a-f]{64}$' THEN
        RAISE EXCEPTION 'invalid certificate fingerprint "%"', sha256
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A fingerprint is the SHA-256 of the DER certificate: 64 hexadecimal digits, optionally separated by colons.';
    END IF;
    DELETE FROM setstream.client_certs c
     WHERE c.stream = unbind_client_cert.stream AND c.sha256 = decode(hex, 'hex');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" has no client certificate %', stream, hex
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;

-- The public JWK Set of every active signing key (served at /jwks.json).
CREATE FUNCTION setstream.jwks()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('keys', coalesce(jsonb_agg(k.jwk ORDER BY k.stream, k.created_at), '[]'))
      FROM setstream.keys k
     WHERE k.purpose = 'sign' AND k.revoked_at IS NULL
$$;

-- ---------------------------------------------------------------------
-- Receive, emit, poll (C: src/sqlapi.c)
-- ---------------------------------------------------------------------

CREATE FUNCTION setstream.receive(stream text, set text)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_receive'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.ingest(stream text, body jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'setstream_ingest'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.emit(
    stream text,
    event_type text,
    event jsonb,
    subject jsonb DEFAULT NULL,
    txn text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'setstream_emit'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;

CREATE FUNCTION setstream.emit_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'setstream_emit_trigger'
LANGUAGE C;

CREATE FUNCTION setstream.poll(stream text, request jsonb DEFAULT '{}')
RETURNS jsonb
AS 'MODULE_PATHNAME', 'setstream_poll'
LANGUAGE C STRICT VOLATILE;

-- The RFC 8935 error code for an SQLSTATE raised by receive()/ingest()/poll().
CREATE FUNCTION setstream.error_code(sqlstate text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT
AS $$
    SELECT CASE sqlstate
        WHEN 'SE001' THEN 'invalid_request'
        WHEN 'SE002' THEN 'invalid_key'
        WHEN 'SE003' THEN 'invalid_issuer'
        WHEN 'SE004' THEN 'invalid_audience'
        WHEN 'SE005' THEN 'authentication_failed'
        WHEN 'SE006' THEN 'access_denied'
        WHEN 'SE007' THEN 'invalid_state'
    END
$$;

-- ---------------------------------------------------------------------
-- Observability
-- ---------------------------------------------------------------------

CREATE FUNCTION setstream.stream_counters(
    OUT stream text, OUT received bigint, OUT rejected jsonb, OUT long_polls integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'setstream_stream_counters'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION setstream.listener_stats(
    OUT listeners integer, OUT connections integer, OUT long_polls integer)
RETURNS record
AS 'MODULE_PATHNAME', 'setstream_listener_stats'
LANGUAGE C STRICT VOLATILE;

-- Per stream: SETs received since server start (accepted, duplicates
-- included) and rejected by RFC 8935 code, SETs stored, the outbox by
-- state, long polls waiting now; and the listener's open connections.
CREATE VIEW setstream.stats AS
SELECT s.name AS stream,
       s.status,
       coalesce(c.received, 0) AS received,
       coalesce(c.rejected, '{}'::jsonb) AS rejected,
       (SELECT count(*) FROM setstream.events e WHERE e.stream = s.name) AS stored,
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
  -- one pass over the outbox for all streams (no index leads with stream)
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

-- ---------------------------------------------------------------------
-- Retention
-- ---------------------------------------------------------------------

-- Delete outbox rows that are settled (acked or failed) since longer than
-- older_than, of one stream or of all; returns how many.  Pending and
-- delivered rows are never touched.
CREATE FUNCTION setstream.purge_outbox(
    older_than interval DEFAULT '7 days',
    stream text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM setstream.outbox o
         WHERE (purge_outbox.stream IS NULL OR o.stream = purge_outbox.stream)
           AND ((o.state = 'acked' AND o.acked_at < now() - older_than)
             OR (o.state = 'failed' AND o.failed_at < now() - older_than))
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
