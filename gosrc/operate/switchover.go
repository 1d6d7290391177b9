package operate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
)

// SwitchoverOptions says which pair to switch over, and how.
type SwitchoverOptions struct {
	// Nodes are the two nodes' connection strings (no password), each
	// for a superuser: the primary's and the standby's, in any order.
	Nodes []string
	// MaxLag refuses a switchover while the standby's replay is more than
	// this many bytes behind the primary.
	MaxLag int64
	// Timeout bounds each wait: the old primary back in recovery, the
	// standby caught up, writable, the old primary streaming.
	Timeout time.Duration
	// PrimaryConninfo is what the old primary's primary_conninfo becomes:
	// how it reaches the new primary for replication; "" for its
	// pg_keeper.partner_conninfo.
	PrimaryConninfo string
	// DryRun checks and says what would be done, changing nothing.
	DryRun bool
	// FromConfig: the connection strings come from a server's
	// configuration (a keeper's operator API) and may hold passwords; a
	// command line's may not.
	FromConfig bool
	// Log prints a progress line.
	Log func(format string, args ...any)
}

// SwitchoverResult is what Switchover did.
type SwitchoverResult struct {
	OldPrimary, NewPrimary string // host:port
	// Primary is the node that is the primary at the end (host:port), ""
	// when none could be made writable.
	Primary string
	// WriteRefused is how long no node took writes: from closing the old
	// primary's guard to the first moment the new primary took writes.
	WriteRefused time.Duration
	Timeline     uint32        // the new primary's timeline
	Streaming    time.Duration // from the start until the old primary streamed from the new one
}

// switchNode is one node of a switchover and what was read from it.
type switchNode struct {
	name string
	cfg  *pgx.ConnConfig
	s    *pgsession.Session

	inRecovery, paused, keeper, restartAfterCrash bool
	guard, state, receiver                        string
	lsn                                           uint64 // a primary's current, a standby's replayed WAL
	partnerConninfo, witnessConninfo              string
	systemID                                      string
}

// Switchover moves the primary of a pair to its standby with no
// acknowledged write lost: it checks every precondition before it changes
// anything, then points the primary's primary_conninfo at the standby,
// has the primary demote itself (pg_keeper_demote(): no more commits, a
// standby has flushed its WAL, restart in place as a standby), waits until
// the standby has received everything the old primary wrote, asks the
// standby's keeper to promote it (pg_keeper_switchover_promote()), and
// waits until the old primary streams from the new one.  If a step fails
// after the demotion it makes sure one node is the primary and says which.
func Switchover(ctx context.Context, opt SwitchoverOptions) (SwitchoverResult, error) {
	var res SwitchoverResult
	if opt.Log == nil {
		opt.Log = func(string, ...any) {}
	}
	if opt.Timeout <= 0 {
		opt.Timeout = time.Minute
	}
	if len(opt.Nodes) != 2 {
		return res, errors.New("give the two nodes of the pair")
	}
	nodes := make([]*switchNode, 2)
	for i, s := range opt.Nodes {
		if err := refusePassword(s); err != nil && !opt.FromConfig {
			return res, err
		}
		cfg, err := watch.ParseNode(s, ApplicationName)
		if err != nil {
			return res, err
		}
		nodes[i] = &switchNode{name: watch.NodeName(cfg.Host, cfg.Port), cfg: cfg, s: pgsession.NewWithConfig(cfg)}
	}
	if nodes[0].name == nodes[1].name {
		return res, fmt.Errorf("node %s is given twice", nodes[0].name)
	}
	defer pgsession.CloseAll(nodes[0].s, nodes[1].s)

	p, s, err := preflight(ctx, opt, nodes)
	if err != nil {
		return res, err
	}
	res.OldPrimary, res.NewPrimary = p.name, s.name
	upstream := opt.PrimaryConninfo
	if upstream == "" {
		upstream = p.partnerConninfo
	}
	opt.Log("%s is the primary, %s its standby (streaming, %d bytes behind); both keepers run, neither is paused or fenced",
		p.name, s.name, lagBytes(p, s))
	steps := []string{
		"CHECKPOINT on " + p.name + " (a short restart)",
		fmt.Sprintf("on %s: primary_conninfo = '%s', reloaded", p.name, conninfo.Redact(upstream)),
		"on " + p.name + ": pg_keeper_demote(): writes refused from here, a standby flushed all WAL, standby.signal, restart in place as a standby",
		"wait until " + p.name + " is in recovery and " + s.name + " has received all its WAL",
		"on " + s.name + ": pg_keeper_switchover_promote(): its keeper promotes it (failover_log, after_command); writes go there",
		"wait until " + p.name + " streams from " + s.name,
	}
	for i, st := range steps {
		prefix := ""
		if opt.DryRun {
			prefix = "dry run: "
		}
		opt.Log("%s%d. %s", prefix, i+1, st)
	}
	if opt.DryRun {
		res.Primary = p.name
		return res, nil
	}

	if err := run(ctx, p, "checkpoint"); err != nil {
		return res, &HintError{Err: fmt.Errorf("CHECKPOINT on %s: %w", p.name, err), Hint: "Nothing changed."}
	}
	if err := setPrimaryConninfo(ctx, p, upstream); err != nil {
		return res, &HintError{Err: err, Hint: "Nothing changed but primary_conninfo on " + p.name + ", which a primary ignores."}
	}

	start := time.Now()
	if err := demote(ctx, p); err != nil {
		return res, err
	}
	opt.Log("%s: writes refused, restarting as a standby", p.name)
	end, err := waitOldPrimaryInRecovery(ctx, opt.Timeout, p)
	if err != nil {
		res.Primary = settle(ctx, opt, p, s, opt.Timeout)
		return res, &HintError{Err: fmt.Errorf("%s did not come back as a standby: %w", p.name, err),
			Hint: settleHint(res.Primary, p, s)}
	}
	opt.Log("%s is a standby; its WAL ends at %s", p.name, pglogrepl.LSN(end))
	if err := waitReceived(ctx, opt.Timeout, s, end); err != nil {
		// The standby lacks WAL the old primary wrote: promoting it could
		// lose an acknowledged commit.  The old primary takes over again.
		opt.Log("%s: %v; %s becomes the primary again", s.name, err, p.name)
		res.Primary = promoteBack(ctx, opt, p, s)
		return res, &HintError{Err: fmt.Errorf("%s did not receive all of %s's WAL: %w", s.name, p.name, err),
			Hint: settleHint(res.Primary, p, s)}
	}
	if p.witnessConninfo != "" {
		qctx, cancel := context.WithTimeout(ctx, queryTimeout)
		if err := releaseWitnessLease(qctx, p.witnessConninfo, p.systemID); err != nil {
			opt.Log("could not end %s's lease at the witness (%v): the promotion waits for it to run out", p.name, err)
		} else {
			opt.Log("%s's lease at the witness ended: it is a standby", p.name)
		}
		cancel()
	}
	opt.Log("%s received all of it; promoting %s", s.name, s.name)
	err = run(ctx, s, "select pg_keeper_switchover_promote()")
	var tli uint32
	if err == nil {
		tli, err = waitWritable(ctx, opt.Timeout, s)
	}
	if err != nil {
		// The request may stand even when asking failed (an answer lost):
		// promoting the old primary now could make two.
		// If the standby does not promote, the old primary takes the
		// role back by itself once a request is over.
		opt.Log("%s has not taken writes; if it does not promote, %s takes the primary role back %s after its demotion", s.name, p.name, fsm.TakeBackAfter)
		res.Primary = settle(ctx, opt, p, s, fsm.TakeBackAfter+opt.Timeout)
		return res, &HintError{Err: fmt.Errorf("%s did not take writes: %w", s.name, err), Hint: settleHint(res.Primary, p, s)}
	}
	res.WriteRefused, res.Timeline, res.Primary = time.Since(start), tli, s.name
	opt.Log("%s takes writes on timeline %d: writes were refused for %s", s.name, tli, res.WriteRefused.Round(time.Millisecond))
	var newLSN string
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	if err := s.s.QueryRow(qctx, "select pg_current_wal_flush_lsn()::text", &newLSN); err != nil {
		newLSN = "0/0"
	}
	cancel()
	target, _ := pglogrepl.ParseLSN(newLSN)
	if err := waitStreamingFrom(ctx, opt.Timeout, p, tli, uint64(target)); err != nil {
		return res, &HintError{Err: fmt.Errorf("%s does not stream from %s: %w", p.name, s.name, err),
			Hint: "The switchover is done: " + s.name + " is the primary. See " + p.name + "'s server log; pg_keeper_go rejoin on its host makes it a standby again."}
	}
	res.Streaming = time.Since(start)
	opt.Log("%s streams from %s", p.name, s.name)
	return res, nil
}

// run runs one statement on n under the query deadline (a CHECKPOINT
// gets longer).
func run(ctx context.Context, n *switchNode, sql string) error {
	qctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := n.s.Exec(qctx, sql); err != nil {
		return errors.New(conninfo.ErrorLine(err))
	}
	return nil
}

// setPrimaryConninfo points n's primary_conninfo at value and waits until
// n's own session sees it reloaded (the postmaster reloads first).
func setPrimaryConninfo(ctx context.Context, n *switchNode, value string) error {
	lit := "'" + strings.ReplaceAll(value, "'", "''") + "'"
	if err := run(ctx, n, "alter system set primary_conninfo = "+lit); err != nil {
		return fmt.Errorf("ALTER SYSTEM SET primary_conninfo on %s: %w", n.name, err)
	}
	if err := run(ctx, n, "select pg_reload_conf()"); err != nil {
		return fmt.Errorf("pg_reload_conf() on %s: %w", n.name, err)
	}
	return poll(ctx, 10*time.Second, func(ctx context.Context) error {
		var got string
		if err := n.s.QueryRow(ctx, "select current_setting('primary_conninfo')", &got); err != nil {
			return err
		}
		if got != value {
			return errors.New("primary_conninfo is not reloaded yet")
		}
		return nil
	})
}

// demote runs pg_keeper_demote() on the primary: success is the end of
// the connection (the server reinitializes); an SQL error means it
// refused, writes open again, and nothing else changed.
func demote(ctx context.Context, p *switchNode) error {
	qctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := p.s.Exec(qctx, "select pg_keeper_demote(10000)")
	p.s.Failed(err)
	switch {
	case err == nil:
		return fmt.Errorf("pg_keeper_demote() on %s returned", p.name)
	case pgsession.IsServerError(err) && pgsession.SQLState(err) != "57P01" && pgsession.SQLState(err) != "57P02":
		return &HintError{Err: fmt.Errorf("%s refused to demote: %s", p.name, conninfo.ErrorLine(err)),
			Hint: p.name + " is the primary and takes writes again; nothing else changed."}
	}
	return nil // the connection ended: the server restarts
}

// promoteBack makes the old primary the primary again after a failed
// switchover (its keeper promotes it: its partner is a standby) and
// returns the node that ends up the primary.
func promoteBack(ctx context.Context, opt SwitchoverOptions, p, s *switchNode) string {
	if err := run(ctx, p, "select pg_keeper_switchover_promote()"); err != nil {
		opt.Log("asking %s to promote: %v", p.name, err)
	}
	return settle(ctx, opt, p, s, opt.Timeout)
}

// settle waits until one of the two nodes takes writes (their keepers
// promote one when the other is gone, and the demoted node takes the role
// back when its partner stays a standby) and returns it, "" if none does
// within wait.
func settle(ctx context.Context, opt SwitchoverOptions, p, s *switchNode, wait time.Duration) string {
	var primary string
	_ = poll(ctx, wait, func(ctx context.Context) error {
		for _, n := range []*switchNode{s, p} {
			if _, err := writable(ctx, n); err == nil {
				primary = n.name
				return nil
			}
		}
		return errors.New("no node takes writes")
	})
	if primary != "" {
		opt.Log("%s is the primary", primary)
	}
	return primary
}

func settleHint(primary string, p, s *switchNode) string {
	if primary == "" {
		return "Neither node takes writes: see both server logs and pg_keeper_go status; once a node is the primary, pg_keeper_go rejoin makes the other its standby."
	}
	other := p.name
	if primary == p.name {
		other = s.name
	}
	return primary + " is the primary; pg_keeper_go status shows whether " + other + " streams from it (pg_keeper_go rejoin on its host makes it do so)."
}
