-- purge_outbox: settled rows older than the interval go, nothing else
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS setstream;
RESET client_min_messages;
SELECT setstream.drop_stream(name) FROM setstream.streams WHERE name IN ('s08', 's08b');

SELECT name FROM setstream.create_stream('s08', 'https://db.example.com/s08', ARRAY['https://rx.example.com']);
SELECT name FROM setstream.create_stream('s08b', 'https://db.example.com/s08b', ARRAY['https://rx.example.com']);
SELECT 'key' FROM setstream.generate_key('s08');
SELECT 'key' FROM setstream.generate_key('s08b');

-- four SETs on s08: acked, failed, delivered, pending; one acked on s08b
SELECT count(setstream.emit('s08', 'https://example.com/e', jsonb_build_object('n', g))) FROM generate_series(1, 4) g;
SELECT count(setstream.emit('s08b', 'https://example.com/e', '{}')) ;
SELECT count(*) AS taken FROM jsonb_object_keys(setstream.poll('s08', '{"maxEvents": 3}')->'sets');
SELECT count(*) AS taken FROM jsonb_object_keys(setstream.poll('s08b', '{}')->'sets');
WITH d AS (SELECT jti, row_number() OVER (ORDER BY seq) AS n FROM setstream.outbox WHERE stream = 's08' AND state = 'delivered')
SELECT setstream.poll('s08', jsonb_build_object(
    'maxEvents', 0,
    'ack', (SELECT jsonb_agg(jti) FROM d WHERE n = 1),
    'setErrs', (SELECT jsonb_object_agg(jti, '{"err": "invalid_key"}'::jsonb) FROM d WHERE n = 2))) ->> 'moreAvailable' AS more;
SELECT setstream.poll('s08b', jsonb_build_object('maxEvents', 0,
    'ack', (SELECT jsonb_agg(jti) FROM setstream.outbox WHERE stream = 's08b'))) ->> 'moreAvailable' AS more;
SELECT stream, state, count(*) FROM setstream.outbox WHERE stream IN ('s08', 's08b') GROUP BY 1, 2 ORDER BY 1, 2;

-- nothing is old enough yet
SELECT setstream.purge_outbox('1 hour');
-- make the settled rows old
UPDATE setstream.outbox SET acked_at = acked_at - interval '2 hours' WHERE stream IN ('s08', 's08b') AND state = 'acked';
UPDATE setstream.outbox SET failed_at = failed_at - interval '2 hours' WHERE stream IN ('s08', 's08b') AND state = 'failed';
-- one stream only
SELECT setstream.purge_outbox('1 hour', 's08b');
SELECT stream, state, count(*) FROM setstream.outbox WHERE stream IN ('s08', 's08b') GROUP BY 1, 2 ORDER BY 1, 2;
-- all streams: the acked and the failed row of s08 go; delivered and pending stay
SELECT setstream.purge_outbox('1 hour');
SELECT stream, state, count(*) FROM setstream.outbox WHERE stream IN ('s08', 's08b') GROUP BY 1, 2 ORDER BY 1, 2;

SELECT setstream.drop_stream(name) FROM setstream.streams WHERE name IN ('s08', 's08b');
