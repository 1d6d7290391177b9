/* sql/pg_keeper_go--1.1--1.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pg_keeper_go UPDATE TO '1.2'" to load this file. \quit

-- a grant carries the lease's duration and the cluster's identity; the
-- grant without arguments stays for keepers older than 1.2
COMMENT ON FUNCTION pg_keeper_grant_lease() IS
'the grant of keepers older than 1.2: true when this standby promises not to promote for the lease its own settings give, plus a margin';

CREATE FUNCTION pg_keeper_grant_lease(lease_ms bigint, system_identifier bigint, timeline integer)
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_keeper_grant_lease'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION pg_keeper_grant_lease(bigint, bigint, integer) IS
'called by the primary''s keeper on its standby: true when this standby, a standby of the same cluster (system_identifier) on the primary''s timeline or an older one, promises not to promote for lease_ms plus a margin, on its own clock';

REVOKE ALL ON FUNCTION pg_keeper_grant_lease(bigint, bigint, integer) FROM PUBLIC;
