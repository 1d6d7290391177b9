/* sql/pg_keeper_go--1.2--1.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_keeper_go UPDATE TO '1.3'" to load this file. \quit

-- the maintenance pause: pg_keeper_pause(), pg_keeper_resume(), and two
-- columns of pg_keeper_status() that show it
DROP FUNCTION pg_keeper_status();

CREATE FUNCTION pg_keeper_status(
    OUT role text,
    OUT state text,
    OUT partner text,
    OUT consecutive_failures integer,
    OUT last_success timestamptz,
    OUT last_failure timestamptz,
    OUT last_failure_reason text,
    OUT promoted_at timestamptz,
    OUT worker_pid integer,
    OUT timeline integer,
    OUT keepalive_time interval,
    OUT keepalive_count integer,
    OUT failover_after interval,
    OUT config_error text,
    OUT updated_at timestamptz,
    OUT guard text,
    OUT guard_reason text,
    OUT lease_valid_for interval,
    OUT paused boolean,
    OUT paused_since timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_keeper_status'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION pg_keeper_status() IS
'state of the pg_keeper_go keeper on this node: role, fsm state, partner (password removed), failed checks, timings, write guard, maintenance pause';

REVOKE ALL ON FUNCTION pg_keeper_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_keeper_status() TO pg_monitor;

CREATE FUNCTION pg_keeper_pause()
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_pause'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_pause() IS
'pauses automatic failover on this node until pg_keeper_resume(), across restarts: the keeper neither promotes it nor switches synchronous replication; true when it was not paused yet';

REVOKE ALL ON FUNCTION pg_keeper_pause() FROM PUBLIC;

CREATE FUNCTION pg_keeper_resume()
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_resume'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_resume() IS
'ends the maintenance pause of pg_keeper_pause() on this node: the keeper acts on what it then sees; true when it was paused';

REVOKE ALL ON FUNCTION pg_keeper_resume() FROM PUBLIC;

-- the planned switchover (pg_keeper_go switchover): the primary's step and
-- the standby's
CREATE FUNCTION pg_keeper_demote(wait_ms integer DEFAULT 10000)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_keeper_demote'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_demote(integer) IS
'switchover: closes the write guard, waits up to wait_ms until a standby flushed all WAL, writes standby.signal and reinitializes the server in place so that it restarts as a standby of primary_conninfo; returns only with an error';

REVOKE ALL ON FUNCTION pg_keeper_demote(integer) FROM PUBLIC;

CREATE FUNCTION pg_keeper_switchover_promote()
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_switchover_promote'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_switchover_promote() IS
'switchover: asks this standby''s keeper to promote it once its check finds the primary in recovery (the request lasts a minute)';

REVOKE ALL ON FUNCTION pg_keeper_switchover_promote() FROM PUBLIC;
