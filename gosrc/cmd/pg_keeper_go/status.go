package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
)

const statusUsage = `Usage: pg_keeper_go status --node CONNINFO [--node CONNINFO ...] [--json]

Connects to every node, prints one line per node (role, whether it accepts
writes, timeline, WAL position, replay lag, the newest failover_log row,
the keeper's state) and says which node is the primary, decided as watch
does: the reachable, writable, unfenced node; of several, the newest
timeline, then the newest failover_log row.

CONNINFO is a libpq connection string, keyword/value or URI, naming one
host, e.g. 'host=db1 port=5432 user=monitor dbname=postgres'.  Passwords
are best kept in ~/.pgpass; they are never printed.  The role needs
pg_monitor (or superuser).
`

// addNodeFlags adds the flags that say how to reach the nodes.
func addNodeFlags(fs *flag.FlagSet, nodes *stringsFlag, opt *watch.GatherOptions) {
	fs.Var(nodes, "node", "a node's connection string, `CONNINFO` (libpq keyword/value or URI, one host); repeat for each node")
	fs.StringVar(&opt.FailoverLogDatabase, "failover-log-database", watch.DefaultFailoverLogDatabase,
		"database of the failover log table (pg_keeper.failover_log_database); empty: do not read it")
	fs.StringVar(&opt.FailoverLogTable, "failover-log-table", watch.DefaultFailoverLogTable,
		"failover log table, [schema.]table (pg_keeper.failover_log_table)")
}

// warnPasswords warns once per node given with a password: every user of
// the host sees a command line in ps.  status and watch still accept it
// (scripts that pass one keep working); the commands that change a node
// refuse it.
func warnPasswords(stderr io.Writer, name string, nodes []string) {
	for _, n := range nodes {
		if conninfo.HasPassword(n) {
			errorf(stderr, name, "warning: --node %q holds a password, which every user of this host can read in ps\n"+
				"hint: Put it in ~/.pgpass or PGPASSWORD instead.", conninfo.Redact(n))
		}
	}
}

// statusReport is the JSON form of status.
type statusReport struct {
	Nodes   []watch.NodeFacts `json:"nodes"`
	Primary string            `json:"primary,omitempty"` // host:port of the primary
	Why     string            `json:"why,omitempty"`     // why it is the primary
	Error   string            `json:"error,omitempty"`   // why there is none
}

func runStatus(ctx, _ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", statusUsage, stdout, stderr)
	var nodes stringsFlag
	var opt watch.GatherOptions
	addNodeFlags(fs, &nodes, &opt)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline for connecting to and querying all nodes")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if len(nodes) == 0 {
		return usageError(fs, stderr, "give at least one --node")
	}
	if *timeout <= 0 {
		return usageError(fs, stderr, "--timeout must be positive")
	}
	warnPasswords(stderr, "status", nodes)
	g, err := watch.NewGatherer(nodes, opt)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer g.Close()
	gctx, cancel := context.WithTimeout(ctx, *timeout)
	facts := g.Gather(gctx)
	cancel()
	if ctx.Err() != nil {
		errorf(stderr, "status", "interrupted")
		return exitError
	}
	d, derr := watch.Decide(facts)

	if *asJSON {
		rep := statusReport{Nodes: facts}
		if derr != nil {
			rep.Error = derr.Error()
		} else {
			rep.Primary, rep.Why = d.Primary.Node, d.Why
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			errorf(stderr, "status", "write: %v", err)
			return exitError
		}
	} else if err := writeTable(stdout, facts, d, derr); err != nil {
		errorf(stderr, "status", "write: %v", err)
		return exitError
	}
	return decisionCode(derr)
}

// decisionCode maps Decide's error to an exit code.
func decisionCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, watch.ErrAmbiguous):
		return exitAmbiguous
	case errors.Is(err, watch.ErrNoPrimary):
		return exitNoPrimary
	}
	return exitError
}

// writeTable prints the nodes as a table, their problems below it, and the
// decision.
func writeTable(w io.Writer, facts []watch.NodeFacts, d watch.Decision, derr error) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tWRITABLE\tTIMELINE\tLSN\tLAG\tLAST FAILOVER\tKEEPER")
	var notes []string
	for _, f := range facts {
		if !f.Reachable {
			fmt.Fprintf(tw, "%s\tunreachable\t-\t-\t-\t-\t-\t-\n", f.Node)
			notes = append(notes, f.Node+": "+f.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", f.Node, f.Role(), yesNo(f.Writable, f.ReadOnly && !f.InRecovery),
			f.Timeline, f.LSN, lagText(f), failoverText(f), keeperText(f))
		if f.KeeperError != "" {
			notes = append(notes, f.Node+": "+f.KeeperError)
		}
		if f.FailoverLogError != "" {
			notes = append(notes, f.Node+": "+f.FailoverLogError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString(n + "\n")
		}
	}
	b.WriteString("\n")
	if derr != nil {
		b.WriteString(derr.Error() + "\n")
	} else {
		fmt.Fprintf(&b, "primary: %s: %s\n", d.Primary.Node, d.Why)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func yesNo(b, readOnly bool) string {
	switch {
	case b:
		return "yes"
	case readOnly:
		return "no (read-only)"
	}
	return "no"
}

func lagText(f watch.NodeFacts) string {
	switch {
	case !f.InRecovery:
		return "-"
	case !f.Streaming:
		return "not streaming"
	case f.ReplayLagSeconds == nil:
		return "?"
	}
	return time.Duration(*f.ReplayLagSeconds * float64(time.Second)).Round(time.Millisecond).String()
}

func failoverText(f watch.NodeFacts) string {
	switch {
	case f.FailoverLogError != "":
		return "?"
	case f.LastFailover == nil:
		return "-"
	}
	r := f.LastFailover
	s := r.Time().UTC().Format(time.RFC3339) + " " + r.Host
	if r.NewTimeline > 0 {
		s += " (timeline " + strconv.FormatUint(uint64(r.NewTimeline), 10) + ")"
	}
	return s
}

func keeperText(f watch.NodeFacts) string {
	switch {
	case f.KeeperError != "":
		return "?"
	case f.Keeper == nil:
		return "-"
	}
	k := f.Keeper
	s := k.Role + ":" + k.State
	if k.Fenced {
		s += ", fenced"
		if k.FenceReason != "" {
			s += ": " + k.FenceReason
		}
	} else if k.Guard != "" {
		s += ", guard " + k.Guard
	}
	if k.Paused {
		s += ", paused"
	}
	if k.ConfigError != "" {
		s += ", misconfigured"
	}
	return s
}
