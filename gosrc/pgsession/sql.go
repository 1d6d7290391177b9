package pgsession

import "fmt"

// SQL expressions that more than one package reads the same way.

// TimelineSQL is the current timeline of a primary, as an SQL expression
// (an int): from the name of the WAL file it inserts into, since
// pg_control's checkpoint timeline lags behind a promotion until the next
// checkpoint.  Only valid out of recovery.
const TimelineSQL = `('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int`

// ReplayLagSQL is a standby's replay lag in seconds, as an SQL expression:
// 0 when it has replayed everything it received, otherwise the age of the
// last replayed transaction (NULL before the first one).  The keeper's
// /replica and the pg_keeper_go command share this one definition.
const ReplayLagSQL = `case when pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn() then 0
            else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end`

// FormatLSN writes a WAL position the way PostgreSQL does ("0/3000060").
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn))
}
