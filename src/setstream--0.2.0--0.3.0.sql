-- setstream 0.2.0 -> 0.3.0
--
-- Role of this file: every change to the SQL surface since 0.2.0 (the
-- release that added least privilege and outbound push).  A fresh CREATE
-- EXTENSION setstream installs 0.1.0 and runs 0.1.0--0.2.0 and this script
-- (there is no setstream--0.3.0.sql), so a fresh install and an upgraded
-- one end in the same schema by construction; test/python/test_upgrade.py
-- checks it from 0.1.0 and from 0.2.0.  setstream--0.1.0.sql and
-- setstream--0.1.0--0.2.0.sql are frozen: never edit them, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit

-- ---------------------------------------------------------------------
-- issue 15, metrics: setstream.metrics() gives the samples that GET
-- /metrics on the listener shows (Prometheus text format), one row each:
-- the sample's name (a histogram's with _bucket, _sum or _count), its
-- labels and its value.  Per stream only for the streams on which the
-- caller holds the read right (at most setstream.metrics_max_streams of
-- them); the listener-wide samples name no stream.  Executable by every
-- role: what it shows is decided by the caller's rights, not by grants on
-- the tables.
-- ---------------------------------------------------------------------
CREATE FUNCTION setstream.metrics(
    OUT name text, OUT labels jsonb, OUT value double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'setstream_metrics'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION setstream.metrics() IS
'Prometheus samples of setstream (what GET /metrics shows): per stream the caller may read, and listener-wide.';

GRANT EXECUTE ON FUNCTION setstream.metrics() TO PUBLIC;
