-- The SQL surface of pg_keeper_go: the extension, pg_keeper_status(), the
-- settings, the failover_log script, bad input and privileges.
-- The server runs with a partner that does not exist (docker/regress.sh).

CREATE EXTENSION pg_keeper_go;
SELECT extname, extversion, obj_description(oid, 'pg_extension') AS comment
FROM pg_extension WHERE extname = 'pg_keeper_go';

-- every object has a comment
SELECT p.oid::regprocedure AS function, obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_keeper_go'
ORDER BY p.proname, p.oid::regprocedure::text COLLATE "C";

-- one row, from the running keeper; no password in any column
SELECT count(*) FROM pg_keeper_status();
SELECT role, state IN ('connected', 'failing', 'alone', 'init') AS known_state,
       partner, worker_pid > 0 AS has_worker, timeline,
       keepalive_time, keepalive_count, failover_after, config_error
FROM pg_keeper_status();
SELECT count(*) AS rows_with_password
FROM pg_keeper_status() s
WHERE s::text LIKE '%regress_secret%';

-- the write guard: no standby has ever followed this primary, so it is open
SELECT guard, guard_reason, lease_valid_for FROM pg_keeper_status();
-- a primary grants no lease (only a standby does), whoever asks
SELECT pg_keeper_grant_lease();
SELECT pg_keeper_grant_lease(4000, (SELECT system_identifier FROM pg_control_system()), 1);
-- a lease says how long it lasts: from 1 ms to 999 hours
SELECT pg_keeper_grant_lease(0, 1, 1);
SELECT pg_keeper_grant_lease(3596400001, 1, 1);

-- settings: both spellings, units, reload-only, ranges (a misspelt
-- pg_keeper.* name is refused from PostgreSQL 15 on: tests/integration)
SHOW pg_keeper.keepalive_time;
SHOW pg_keeper.keepalives_count;
SHOW pg_keeper.check_timeout;
SET pg_keeper.keepalive_time = 2;
ALTER SYSTEM SET pg_keeper.keepalive_count = 0;
ALTER SYSTEM SET pg_keeper.keepalive_time = 'abc';
ALTER SYSTEM SET pg_keeper.keepalive_time = '2min';
ALTER SYSTEM RESET pg_keeper.keepalive_time;
SHOW pg_keeper.split_brain_policy;
ALTER SYSTEM SET pg_keeper.split_brain_policy = 'maybe';
SHOW pg_keeper.witness_conninfo;
SHOW pg_keeper.http_address;
SHOW pg_keeper.operator_address;
SELECT name, setting FROM pg_settings WHERE name LIKE 'pg_keeper.operator%' ORDER BY name;
SHOW pg_keeper.create_extension;
ALTER SYSTEM SET pg_keeper.create_extension = 'sometimes';

-- privileges: pg_monitor may read the status, others may not, and nobody
-- but superusers (and pg_read_all_settings) sees the conninfos
CREATE ROLE regress_pgk_app;
CREATE ROLE regress_pgk_monitor IN ROLE pg_monitor;
SET ROLE regress_pgk_app;
SELECT role FROM pg_keeper_status();
SELECT pg_keeper_grant_lease();
SELECT pg_keeper_grant_lease(4000, 1, 1);
SELECT pg_keeper_pause();
SELECT pg_keeper_resume();
SELECT pg_keeper_demote();
SELECT pg_keeper_switchover_promote();
SELECT name FROM pg_settings WHERE name LIKE 'pg_keeper.operator%' ORDER BY name;
-- (the wording of this error changed in 16; its SQLSTATE did not)
DO $$
BEGIN
    PERFORM current_setting('pg_keeper.partner_conninfo');
    RAISE NOTICE 'partner_conninfo is visible';
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'partner_conninfo is hidden (SQLSTATE %)', SQLSTATE;
END $$;
RESET ROLE;
SET ROLE regress_pgk_monitor;
SELECT role FROM pg_keeper_status();
SELECT pg_keeper_grant_lease();
SELECT pg_keeper_pause();
RESET ROLE;
DROP ROLE regress_pgk_app;
DROP ROLE regress_pgk_monitor;

-- the maintenance pause: shown at once, idempotent, kept in a file of the
-- data directory (so that it survives a restart) until resumed
SELECT paused, paused_since IS NULL AS no_since FROM pg_keeper_status();
SELECT pg_keeper_pause();
SELECT pg_keeper_pause();
SELECT paused, paused_since > now() - interval '1 minute' AS recent FROM pg_keeper_status();
SELECT split_part(pg_read_file('pg_keeper_go.paused'), E'\n', 2) AS pause_file;
SELECT pg_keeper_resume();
SELECT pg_keeper_resume();
SELECT paused, paused_since FROM pg_keeper_status();
SELECT pg_stat_file('pg_keeper_go.paused', true) IS NULL AS pause_file_removed;

-- the switchover's steps refuse where they do not apply: a primary is
-- not a standby to promote; a demotion needs primary_conninfo and a
-- sensible wait
SELECT pg_keeper_switchover_promote();
SELECT pg_keeper_demote(-1);
SELECT pg_keeper_demote(0);

-- the failover_log script, twice (it is idempotent)
\i sql/pg_state.sql
\i sql/pg_state.sql
SELECT column_name, data_type FROM information_schema.columns
WHERE table_name = 'failover_log' ORDER BY ordinal_position;
SELECT count(*) AS columns_without_comment
FROM information_schema.columns c
WHERE c.table_name = 'failover_log'
  AND col_description('failover_log'::regclass, c.ordinal_position) IS NULL;
-- host names longer than pg_keeper users' varchar(10)
INSERT INTO failover_log (unixtime, host) VALUES (1, 'db-primary-01.example.internal');
SELECT unixtime, host, old_primary FROM failover_log ORDER BY unixtime DESC LIMIT 1;
\connect contrib_regression
DROP DATABASE pg_state;

DROP EXTENSION pg_keeper_go;

-- the upgrade path from 1.0: the old status function does not match the
-- library until ALTER EXTENSION ... UPDATE; 1.2's status (no pause
-- columns) works with the new library
CREATE EXTENSION pg_keeper_go VERSION '1.0';
SELECT role FROM pg_keeper_status();
ALTER EXTENSION pg_keeper_go UPDATE TO '1.2';
SELECT role, guard FROM pg_keeper_status();
ALTER EXTENSION pg_keeper_go UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'pg_keeper_go';
SELECT role, guard FROM pg_keeper_status();
SELECT p.oid::regprocedure AS function
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_keeper_go'
ORDER BY p.proname, p.oid::regprocedure::text COLLATE "C";
DROP EXTENSION pg_keeper_go;
