-- sql/pg_state.sql: the failover record read by applications.
--
-- Run once on the primary, as a superuser:
--     psql -d postgres -f pg_state.sql
-- Streaming replication carries it to the standby.  After each promotion the
-- keeper appends one row to pg_state.failover_log (settings
-- pg_keeper.failover_log_database / pg_keeper.failover_log_table).  The first
-- two columns stay (unixtime, host) so that readers written for pg_keeper,
--     select * from failover_log order by unixtime desc limit 1
-- keep working.

SELECT 'CREATE DATABASE pg_state'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pg_state')
\gexec

\connect pg_state

CREATE TABLE IF NOT EXISTS failover_log (
    unixtime      bigint      NOT NULL,
    host          text        NOT NULL,
    old_primary   text,
    new_timeline  integer,
    promote_lsn   pg_lsn,
    reason        text,
    promoted_at   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE failover_log IS
'one row per promotion made by pg_keeper_go; the newest row names the current primary';
COMMENT ON COLUMN failover_log.unixtime IS 'time of the promotion, seconds since the Unix epoch';
COMMENT ON COLUMN failover_log.host IS 'host name of the node that was promoted';
COMMENT ON COLUMN failover_log.old_primary IS 'the former primary, as host=... port=... (never a password)';
COMMENT ON COLUMN failover_log.new_timeline IS 'timeline the promoted node writes on';
COMMENT ON COLUMN failover_log.promote_lsn IS 'last WAL position replayed before the promotion';
COMMENT ON COLUMN failover_log.reason IS 'why the keeper promoted, with the failed checks';
COMMENT ON COLUMN failover_log.promoted_at IS 'time of the promotion';

CREATE INDEX IF NOT EXISTS failover_log_unixtime_idx ON failover_log (unixtime DESC);

GRANT SELECT ON failover_log TO PUBLIC;
