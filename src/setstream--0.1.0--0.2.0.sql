-- setstream 0.1.0 -> 0.2.0
--
-- Role of this file: every change to the SQL surface since 0.1.0.  A fresh
-- CREATE EXTENSION setstream installs 0.1.0 and runs this script (there is
-- no separate setstream--0.2.0.sql), so a fresh install and an upgraded one
-- end in the same schema by construction; test/upgrade checks the data.
-- setstream--0.1.0.sql is frozen: never edit it, add here.

\echo Use "ALTER EXTENSION setstream UPDATE" to load this file. \quit

