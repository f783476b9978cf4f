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
