/* sql/pg_keeper_go--1.2.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_keeper_go" to load this file. \quit

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
    OUT lease_valid_for interval)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_keeper_status'
LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

COMMENT ON FUNCTION pg_keeper_status() IS
'state of the pg_keeper_go keeper on this node: role, fsm state, partner (password removed), failed checks, timings, write guard';

REVOKE ALL ON FUNCTION pg_keeper_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_keeper_status() TO pg_monitor;

CREATE FUNCTION pg_keeper_grant_lease()
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_grant_lease'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_grant_lease() IS
'the grant of keepers older than 1.2: true when this standby promises not to promote for the lease its own settings give, plus a margin';

REVOKE ALL ON FUNCTION pg_keeper_grant_lease() FROM PUBLIC;

CREATE FUNCTION pg_keeper_grant_lease(lease_ms bigint, system_identifier bigint, timeline integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_grant_lease'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_grant_lease(bigint, bigint, integer) IS
'called by the primary''s keeper on its standby: true when this standby, a standby of the same cluster (system_identifier) on the primary''s timeline or an older one, promises not to promote for lease_ms plus a margin, on its own clock';

REVOKE ALL ON FUNCTION pg_keeper_grant_lease(bigint, bigint, integer) FROM PUBLIC;

CREATE FUNCTION pg_keeper_heartbeat()
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'pg_keeper_heartbeat'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_heartbeat() IS
'called by the keeper on its primary: writes and flushes a WAL message so that the standby hears from its primary even when it is idle';

REVOKE ALL ON FUNCTION pg_keeper_heartbeat() FROM PUBLIC;
