-- setstream 0.1.0 -> 0.2.0
--
-- Role of this file: every change to the SQL surface since 0.1.0.  A fresh
-- CREATE EXTENSION setstream installs 0.1.0 and runs this script (there is
-- no separate setstream--0.2.0.sql), so a fresh install and an upgraded one
-- end in the same schema by construction; test/upgrade checks the data.
-- setstream--0.1.0.sql is frozen: never edit it, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit


-- issue 16: the triggers that make every listener drop its cached streams,
-- keys, tokens and client certificates fire under session_replication_role
-- = replica as well (logical replication's apply worker and some restore
-- tools write with it): a revoked token replicated here must not keep
-- opening its stream.  (ALTER TABLE ... DISABLE TRIGGER still silences
-- them: see "Writes that bypass triggers" in the README.)
ALTER TABLE setstream.streams ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.keys ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.key_secrets ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.tokens ENABLE ALWAYS TRIGGER config_changed;
ALTER TABLE setstream.client_certs ENABLE ALWAYS TRIGGER config_changed;

-- issue 16: a NULL stream name is an invalid argument (22023), not an
-- unknown stream (42704), in every function that looks a stream up by name
-- here: _stream_row (alter_stream, set_stream_status, enable_stream,
-- disable_stream, revoke_key, revoke_token, unbind_client_cert) and
-- drop_stream.  (The C functions are STRICT: NULL in, NULL out.)
CREATE OR REPLACE FUNCTION setstream._stream_row(stream text)
RETURNS setstream.streams
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result setstream.streams;
BEGIN
    IF stream IS NULL THEN
        RAISE EXCEPTION 'stream name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
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
    IF drop_stream.name IS NULL THEN
        RAISE EXCEPTION 'stream name must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM setstream.streams s WHERE s.name = drop_stream.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$$;
