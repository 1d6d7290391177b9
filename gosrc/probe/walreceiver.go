package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// walReceiverAge is how long ago the WAL receiver heard from the primary,
// in seconds, -1 when it does not stream, or -2 when this role may not see
// its status (it needs pg_read_all_stats); the replay lag in seconds (0
// before the first replayed transaction); the replay position in bytes;
// whether WAL can come from restore_command; and the application name the
// WAL receiver shows the primary (its conninfo's application_name, else
// the fallback it sets: cluster_name or "walreceiver").
const walReceiverAge = `select coalesce((select case when status is null then -2
                                      when status <> 'streaming' then -1
                                      else extract(epoch from clock_timestamp() - last_msg_receipt_time) end
                          from pg_stat_wal_receiver), -1)::float8,
       coalesce(` + pgsession.ReplayLagSQL + `, 0),
       coalesce(pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0'), -1)::int8,
       current_setting('restore_command') <> '',
       coalesce((select coalesce(substring(conninfo from '(?:^| )application_name=([^ ]+)'),
                                 substring(conninfo from 'fallback_application_name=([^ ]+)'))
                   from pg_stat_wal_receiver), '')`

// rereadTimeout bounds reading this node's WAL receiver again at the end
// of a failed check: a local query, well within the second after which the
// keeper would take the check for a pause.
const rereadTimeout = 250 * time.Millisecond

// readWALReceiver reads this standby's WAL receiver into pc; it returns
// the replay position (-1 when unknown) and the application name the WAL
// receiver shows the primary.
func (p *Prober) readWALReceiver(ctx context.Context, pc *PrimaryCheck) (int64, string) {
	var (
		age, lag float64
		replayed int64 = -1
		archive  bool
		appName  string
	)
	pc.WALReceiverErr = nil
	if err := p.local.QueryRow(ctx, walReceiverAge, &age, &lag, &replayed, &archive, &appName); err != nil {
		pc.WALReceiverAge, pc.WALReceiverErr = -1, fmt.Errorf("local node: %w", err)
	} else if age == -2 {
		pc.WALReceiverAge, pc.WALReceiverErr = -1, errors.New("pg_stat_wal_receiver hides its status from the role of pg_keeper.my_conninfo")
	} else {
		pc.WALReceiverAge = time.Duration(age * float64(time.Second))
		pc.ReplayLag = time.Duration(max(lag, 0) * float64(time.Second))
		pc.ReplicationState = replicationState(pc.WALReceiverAge >= 0, archive)
	}
	if appName == "" {
		appName = "walreceiver" // PostgreSQL's fallback without cluster_name
	}
	return replayed, appName
}

// replicationState names how a standby gets its WAL, as Patroni does.
func replicationState(streaming, archive bool) string {
	switch {
	case streaming:
		return "streaming"
	case archive:
		return "in archive recovery"
	}
	return ""
}
