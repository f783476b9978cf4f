-- Helpers the pgTAP files share (each includes this with \ir after its
-- plan, inside its transaction; pg_temp keeps them to the session):
--   as_role(r, q)  runs q as role r; its single result as text, or
--                  "ERROR <state>: <message>"
--   tok(jti)       the outbox token of a jti
--   b64u_json(s)   a base64url JSON text (a JWS part) decoded
CREATE FUNCTION pg_temp.as_role(r text, q text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    res text;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', r);
    BEGIN
        EXECUTE q INTO res;
    EXCEPTION WHEN OTHERS THEN
        res := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
    END;
    RESET ROLE;
    RETURN res;
END
$$;

CREATE FUNCTION pg_temp.tok(j text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT token FROM setstream.outbox WHERE jti = j $$;

CREATE FUNCTION pg_temp.b64u_json(s text) RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT convert_from(decode(rpad(translate(s, '-_', '+/'),
                                    (ceil(length(s) / 4.0) * 4)::int, '='), 'base64'), 'UTF8')::jsonb
$$;
