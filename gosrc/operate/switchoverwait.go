package operate

// A switchover's waits: each polls one node until a condition holds.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// waitOldPrimaryInRecovery waits until the demoted node answers from
// recovery with its WAL receiver started (it has replayed all its own
// WAL), and returns where its WAL ends.
func waitOldPrimaryInRecovery(ctx context.Context, timeout time.Duration, p *switchNode) (uint64, error) {
	var end uint64
	err := poll(ctx, timeout, func(ctx context.Context) error {
		var inRecovery, receiver bool
		var lsn *string
		err := p.s.QueryRow(ctx, `select pg_is_in_recovery(), pg_last_wal_replay_lsn()::text,
		                                 exists (select from pg_stat_wal_receiver)`, &inRecovery, &lsn, &receiver)
		switch {
		case err != nil:
			p.s.Failed(err)
			return errors.New(conninfo.ErrorLine(err))
		case !inRecovery:
			return errors.New("it is not in recovery")
		case lsn == nil || !receiver:
			return errors.New("it still replays its own WAL")
		}
		l, err := pglogrepl.ParseLSN(*lsn)
		end = uint64(l)
		return err
	})
	return end, err
}

// waitReceived waits until the standby has received WAL up to end.
func waitReceived(ctx context.Context, timeout time.Duration, s *switchNode, end uint64) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		var lsn *string
		if err := s.s.QueryRow(ctx, "select greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text", &lsn); err != nil {
			s.s.Failed(err)
			return errors.New(conninfo.ErrorLine(err))
		}
		if lsn == nil {
			return errors.New("it has received no WAL")
		}
		l, err := pglogrepl.ParseLSN(*lsn)
		if err != nil {
			return err
		}
		if uint64(l) < end {
			return fmt.Errorf("it has received up to %s of %s", l, pglogrepl.LSN(end))
		}
		return nil
	})
}

// writableSQL is true on a node out of recovery whose guard lets writes
// commit; it also returns the timeline.
const writableSQL = `select not pg_is_in_recovery() and (guard = 'open' or (guard = 'leased' and lease_valid_for > '0')),
       case when pg_is_in_recovery() then 0 else ` + pgsession.TimelineSQL + ` end, coalesce(guard_reason, '') from pg_keeper_status()`

// writable asks n once whether it takes writes, and its timeline.
func writable(ctx context.Context, n *switchNode) (uint32, error) {
	var ok bool
	var tli int32
	var why string
	if err := n.s.QueryRow(ctx, writableSQL, &ok, &tli, &why); err != nil {
		n.s.Failed(err)
		return 0, errors.New(conninfo.ErrorLine(err))
	}
	if !ok {
		return 0, fmt.Errorf("it takes no writes yet (%s)", why)
	}
	return uint32(tli), nil
}

// waitWritable waits until n takes writes and returns its timeline.
func waitWritable(ctx context.Context, timeout time.Duration, n *switchNode) (uint32, error) {
	var tli uint32
	err := poll(ctx, timeout, func(ctx context.Context) error {
		var err error
		tli, err = writable(ctx, n)
		return err
	})
	return tli, err
}

// waitStreamingFrom waits until n streams on timeline tli (or newer) and
// has flushed the new primary's WAL up to target (where it stood when it
// took writes): until then a crash of the new primary would leave n with
// the new timeline's first segment partly received, which PostgreSQL
// cannot promote from.
func waitStreamingFrom(ctx context.Context, timeout time.Duration, n *switchNode, tli uint32, target uint64) error {
	return poll(ctx, timeout, func(ctx context.Context) error {
		var status, flushed string
		var got int64
		err := n.s.QueryRow(ctx, `select coalesce((select status from pg_stat_wal_receiver), ''),
		        coalesce((select received_tli from pg_stat_wal_receiver), 0)::bigint,
		        coalesce((select flushed_lsn from pg_stat_wal_receiver), '0/0')::text`, &status, &got, &flushed)
		if err != nil {
			n.s.Failed(err)
			return errors.New(conninfo.ErrorLine(err))
		}
		l, err := pglogrepl.ParseLSN(flushed)
		switch {
		case err != nil:
			return err
		case status != "streaming" || uint32(got) < tli:
			return fmt.Errorf("WAL receiver %q on timeline %d", status, got)
		case uint64(l) < target:
			return fmt.Errorf("it has received up to %s of the new primary's %s", l, pglogrepl.LSN(target))
		}
		return nil
	})
}

// poll calls fn every 20 ms until it succeeds or timeout passes, each
// call under the query deadline; it returns fn's last error.
func poll(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		qctx, qcancel := context.WithTimeout(ctx, min(queryTimeout, timeout))
		err := fn(qctx)
		qcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %w", timeout, err)
		case <-time.After(20 * time.Millisecond): // poll interval
		}
	}
}
