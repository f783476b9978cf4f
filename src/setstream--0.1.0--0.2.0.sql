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
