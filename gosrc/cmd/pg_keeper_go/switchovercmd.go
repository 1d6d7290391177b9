package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/operate"
)

const switchoverUsage = `Usage: pg_keeper_go switchover --node CONNINFO --node CONNINFO [--dry-run]

Moves the primary to its standby on purpose, with no acknowledged write
lost, and makes the old primary a standby of the new one without a base
backup or a restart by hand.  It runs anywhere that reaches both nodes.

It refuses, before changing anything and saying why, unless one node is
the primary and the other its streaming standby at most --max-lag behind,
both keepers run, neither node is paused or fenced, the primary allows a
restart in place (restart_after_crash = on) and the witness, if one is
configured, answers.  Then:

  1. CHECKPOINT on the primary (its restart is then short).
  2. The primary's primary_conninfo is set to reach the standby
     (--primary-conninfo, default its pg_keeper.partner_conninfo).
  3. pg_keeper_demote() on the primary: writes are refused from here; once
     a standby has flushed every WAL record, the primary writes
     standby.signal and reinitializes in place (the server log shows it as
     the crash of a server process: the postmaster restarts the instance,
     which recovers as a standby).
  4. Once the old primary is in recovery and the standby has received all
     of its WAL, pg_keeper_switchover_promote() asks the standby's keeper
     to promote it (claiming the witness, recording failover_log, running
     after_command); writes go there.
  5. It waits until the old primary streams from the new one.

If a step fails after step 3, it makes sure one node takes writes (the old
primary again when the standby lacks some of its WAL), names it and says
what to do.  It prints how long writes were refused.

CONNINFO names one host and a superuser, without a password (~/.pgpass or
PGPASSWORD).  The primary's pg_hba.conf must already let the standby
connect for replication, and the standby's the primary (as it will
stream the other way).
`

func runSwitchover(ctx, _ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("switchover", switchoverUsage, stdout, stderr)
	var nodes stringsFlag
	var opt operate.SwitchoverOptions
	fs.Var(&nodes, "node", "a node's connection string, `CONNINFO` (one host, a superuser, no password); give both nodes")
	fs.Int64Var(&opt.MaxLag, "max-lag", 16<<20, "refuse while the standby replays more than this many `bytes` behind the primary")
	fs.DurationVar(&opt.Timeout, "timeout", time.Minute, "how long each step may wait")
	fs.StringVar(&opt.PrimaryConninfo, "primary-conninfo", "", "how the old primary reaches the new one for replication, `CONNINFO` (default its pg_keeper.partner_conninfo)")
	fs.BoolVar(&opt.DryRun, "dry-run", false, "check and say what would be done, change nothing")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case len(nodes) != 2:
		return usageError(fs, stderr, "give both nodes of the pair with --node")
	case opt.Timeout <= 0:
		return usageError(fs, stderr, "--timeout must be positive")
	}
	opt.Nodes = nodes
	opt.Log = func(format string, args ...any) {
		fmt.Fprintf(stdout, "switchover: %s\n", conninfo.RedactText(fmt.Sprintf(format, args...)))
	}
	res, err := operate.Switchover(ctx, opt)
	if err != nil {
		errorf(stderr, "switchover", "%s", conninfo.RedactError(err))
		var he *operate.HintError
		if errors.As(err, &he) && he.Hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", he.Hint)
		}
		return exitError
	}
	if opt.DryRun {
		fmt.Fprintf(stdout, "switchover: dry run: %s would become the primary; nothing changed\n", res.NewPrimary)
		return exitOK
	}
	fmt.Fprintf(stdout, "switchover: done: %s is the primary on timeline %d, %s streams from it; writes were refused for %s\n",
		res.NewPrimary, res.Timeline, res.OldPrimary, res.WriteRefused.Round(time.Millisecond))
	return exitOK
}
