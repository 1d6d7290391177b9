package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/operate"
)

const rejoinUsage = `Usage: pg_keeper_go rejoin --pgdata DIR --primary CONNINFO [--basebackup] [--dry-run]

Makes the node of DIR (a fenced old primary, or any node that should
become the standby) a streaming standby of the current primary.  Run it on
the node's host as the owner of DIR (sudo -u postgres ...).

  1. Asks the primary who it is: not in recovery, and over the replication
     protocol IDENTIFY_SYSTEM (cluster, timeline, position) and
     TIMELINE_HISTORY (where each timeline of its history ended).
  2. Stops the node if it runs (--stop-command); after a crash, runs crash
     recovery (postgres --single) so that it is shut down cleanly.
  3. Compares the node's last checkpoint with the primary's history: a
     node whose WAL ends before the primary's history left its timeline
     did not diverge and only needs the standby settings; one that wrote
     past it is rewound with pg_rewind (it needs wal_log_hints = on or data
     checksums), or, only with --basebackup, replaced by a fresh base
     backup (the node's old files are kept in DIR/pg_keeper_go.old-TIME).
     The node's own configuration files in DIR, its pause and its keeper's
     state are kept.
  4. Writes standby.signal and primary_conninfo (the --primary string) into
     postgresql.auto.conf, starts the node (--start-command) and waits until
     it streams (--timeout).  As a standby its keeper lifts the fence.

--primary names one host; its role needs REPLICATION and, for pg_rewind,
superuser (or pg_rewind's documented grants); the primary's pg_hba.conf
needs a 'replication' line and a database line for it.  Passwords come
from ~/.pgpass or PGPASSWORD (a --primary with a password is refused: the
command line shows in ps, and primary_conninfo would keep it); the node's
WAL receiver reads the same ~/.pgpass of the node's owner.
`

func runRejoin(ctx, _ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rejoin", rejoinUsage, stdout, stderr)
	var opt operate.RejoinOptions
	fs.StringVar(&opt.DataDir, "pgdata", os.Getenv("PGDATA"), "the node's data directory, `DIR` (default $PGDATA)")
	fs.StringVar(&opt.Primary, "primary", "", "the current primary's connection string, `CONNINFO` (one host, no password)")
	fs.StringVar(&opt.BinDir, "bindir", "", "PostgreSQL's programs, `DIR` (default /usr/lib/postgresql/MAJOR/bin, the major of the data directory)")
	fs.StringVar(&opt.ConfigFile, "config-file", "", "the node's postgresql.conf when it is not in the data directory (Debian: /etc/postgresql/15/main/postgresql.conf), for crash recovery")
	fs.StringVar(&opt.StopCommand, "stop-command", "", "shell command that stops the node if it runs (default pg_ctl -D DIR -m fast -w stop)")
	fs.StringVar(&opt.StartCommand, "start-command", "", "shell command that starts the node (default pg_ctl -D DIR -l DIR/log/pg_keeper_go-rejoin.log -w start; e.g. 'sudo systemctl start postgresql@15-main')")
	fs.StringVar(&opt.Node, "node", "", "the node's own connection string, `CONNINFO`, to see it stream (default: socket and port from DIR/postmaster.pid)")
	fs.BoolVar(&opt.BaseBackup, "basebackup", false, "when pg_rewind cannot rewind the node or fails, copy the whole primary with pg_basebackup (the old files kept in DIR/pg_keeper_go.old-TIME)")
	fs.BoolVar(&opt.DryRun, "dry-run", false, "say what would be done, change nothing")
	fs.DurationVar(&opt.Timeout, "timeout", 5*time.Minute, "how long to wait until the started node streams")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case opt.DataDir == "":
		return usageError(fs, stderr, "give the node's data directory with --pgdata (or PGDATA)")
	case opt.Primary == "":
		return usageError(fs, stderr, "give the current primary with --primary")
	case opt.Timeout <= 0:
		return usageError(fs, stderr, "--timeout must be positive")
	}
	opt.Log = func(format string, args ...any) {
		fmt.Fprintf(stdout, "rejoin: %s\n", conninfo.RedactText(fmt.Sprintf(format, args...)))
	}
	res, err := operate.Rejoin(ctx, opt)
	if err != nil {
		errorf(stderr, "rejoin", "%s", conninfo.RedactError(err))
		var he *operate.HintError
		if errors.As(err, &he) && he.Hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", he.Hint)
		}
		if res.OldData != "" {
			fmt.Fprintf(stderr, "the node's old files are in %s\n", res.OldData)
		}
		return exitError
	}
	if opt.DryRun {
		fmt.Fprintf(stdout, "rejoin: dry run: %s (%s); nothing changed\n", res.Method, res.Why)
		return exitOK
	}
	fmt.Fprintf(stdout, "rejoin: done in %s by %s: the node streams from %s on timeline %d\n",
		res.Took.Round(10*time.Millisecond), res.Method, conninfo.Summary(opt.Primary), res.Timeline)
	return exitOK
}
