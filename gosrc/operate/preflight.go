package operate

// A switchover's preflight: what it reads from both nodes and what makes
// it refuse before changing anything.

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// readFacts reads what the preflight needs from one node.
func readFacts(ctx context.Context, n *switchNode) error {
	var has bool
	if err := n.s.QueryRow(ctx, "select to_regprocedure('pg_keeper_demote(integer)') is not null", &has); err != nil {
		return err
	}
	if !has {
		return &HintError{Err: fmt.Errorf("%s: the extension pg_keeper_go is older than 1.3 (no pg_keeper_demote())", n.name),
			Hint: "Install this version of pg_keeper_go on both nodes; the primary's keeper updates the extension by itself."}
	}
	var lsn string
	var worker *int32
	err := n.s.QueryRow(ctx, `select pg_is_in_recovery(), k.paused, coalesce(k.guard, ''), k.state, k.worker_pid,
	        (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text,
	        coalesce((select status from pg_stat_wal_receiver), ''),
	        current_setting('restart_after_crash')::bool,
	        coalesce(current_setting('pg_keeper.partner_conninfo', true), ''),
	        coalesce(current_setting('pg_keeper.witness_conninfo', true), ''),
	        (select system_identifier from pg_control_system())::text
	   from pg_keeper_status() k`,
		&n.inRecovery, &n.paused, &n.guard, &n.state, &worker, &lsn, &n.receiver, &n.restartAfterCrash, &n.partnerConninfo, &n.witnessConninfo, &n.systemID)
	if err != nil {
		return err
	}
	n.keeper = worker != nil && *worker > 0
	l, err := pglogrepl.ParseLSN(lsn)
	n.lsn = uint64(l)
	return err
}

// preflight reads both nodes and refuses, changing nothing, unless one is
// a primary with a streaming standby close behind, both keepers run,
// neither is paused or fenced, the primary can restart in place, and the
// witness (if any) answers.  It returns the primary and the standby.
func preflight(ctx context.Context, opt SwitchoverOptions, nodes []*switchNode) (p, s *switchNode, err error) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	for _, n := range nodes {
		if err := readFacts(qctx, n); err != nil {
			var he *HintError
			if errors.As(err, &he) {
				return nil, nil, err
			}
			return nil, nil, &HintError{Err: fmt.Errorf("%s: %s", n.name, conninfo.ErrorLine(err)),
				Hint: "Both nodes must answer a superuser (the password in ~/.pgpass or PGPASSWORD)."}
		}
	}
	refuse := func(hint, format string, args ...any) (*switchNode, *switchNode, error) {
		return nil, nil, hinted(hint+" Nothing changed.", "refused: "+format, args...)
	}
	a, b := nodes[0], nodes[1]
	switch {
	case !a.inRecovery && b.inRecovery:
		p, s = a, b
	case a.inRecovery && !b.inRecovery:
		p, s = b, a
	case a.inRecovery:
		return refuse("pg_keeper_go status shows the pair.", "both nodes are standbys: there is no primary to switch over from")
	default:
		return refuse("Rejoin the old primary first (pg_keeper_go rejoin).", "both nodes are primaries")
	}
	for _, n := range []*switchNode{p, s} {
		switch {
		case !n.keeper:
			return refuse("Check the server log of "+n.name+".", "the keeper does not run on %s", n.name)
		case n.paused:
			return refuse("pg_keeper_go resume ends the pause.", "%s is paused", n.name)
		}
	}
	lag := lagBytes(p, s)
	switch {
	case p.guard == "fenced":
		return refuse("Rejoin it as a standby (pg_keeper_go rejoin).", "%s is fenced", p.name)
	case s.receiver != "streaming":
		return refuse("Wait until the standby streams (pg_keeper_go status).", "%s is not streaming from %s (WAL receiver: %q)", s.name, p.name, s.receiver)
	case opt.MaxLag >= 0 && lag > opt.MaxLag:
		return refuse("Wait until it catches up, or raise --max-lag.", "%s replays %d bytes behind %s, more than --max-lag (%d)", s.name, lag, p.name, opt.MaxLag)
	case !p.restartAfterCrash:
		return refuse("Set restart_after_crash = on and reload.", "restart_after_crash is off on %s: it cannot restart in place as a standby", p.name)
	case opt.PrimaryConninfo == "" && p.partnerConninfo == "":
		return refuse("Give --primary-conninfo.", "%s has no pg_keeper.partner_conninfo to take its primary_conninfo from", p.name)
	}
	if p.witnessConninfo != "" {
		if err := pingWitness(qctx, p.witnessConninfo); err != nil {
			return refuse("Bring the witness back first: the standby must claim the primary role there.", "the witness does not answer: %s", err)
		}
	}
	return p, s, nil
}

func lagBytes(p, s *switchNode) int64 {
	if p.lsn <= s.lsn {
		return 0
	}
	return int64(p.lsn - s.lsn)
}

// pingWitness connects to the witness and runs one query.
func pingWitness(ctx context.Context, witness string) error {
	return onWitness(ctx, witness, "select 1")
}

// onWitness runs one statement on the witness.
func onWitness(ctx context.Context, witness, sql string, args ...any) error {
	pc, err := conninfo.Parse(witness)
	if err != nil {
		return err
	}
	cfg, err := pgsession.NewConnConfig(pc, ApplicationName)
	if err != nil {
		return err
	}
	w := pgsession.NewWithConfig(cfg)
	defer w.Close()
	if err := w.Exec(ctx, sql, args...); err != nil {
		return errors.New(conninfo.ErrorLine(err))
	}
	return nil
}

// releaseWitnessLease ends, at the witness, the primary leases of the
// pair's cluster, once the old primary answers from recovery (it cannot
// write): the standby's claim then need not wait for the lease the old
// primary renewed last.  A failure only makes the claim wait.
func releaseWitnessLease(ctx context.Context, witness, systemID string) error {
	return onWitness(ctx, witness, `update pg_keeper_witness set lease_until = clock_timestamp() - interval '1 hour'
	  where system_identifier = $1::numeric and role = 'primary' and lease_until > clock_timestamp() - interval '1 hour'`, systemID)
}
