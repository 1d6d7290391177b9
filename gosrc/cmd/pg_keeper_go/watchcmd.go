package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
)

const watchUsage = `Usage: pg_keeper_go watch --node CONNINFO --node CONNINFO --file FILE --set KEY=TEMPLATE [--set ...] [--command CMD] [--once]

Keeps keys of an application's YAML file pointing at the current primary.
Every --interval it asks every node (within --timeout) and chooses the
primary as a careful operator would: a reachable, writable node that its
keeper has not fenced; of several, the one on the newest timeline, then
the one with the newest failover_log row.  When two remain tied, or none
qualifies, it changes nothing and logs why (once per distinct reason).

When the chosen primary's values differ from the file's, it rewrites only
those values (comments, order and layout are kept; the new file replaces
the old atomically, with its mode and owner), logs one line, and runs
--command once with /bin/sh, killing it after --command-timeout.  At
start-up it writes and runs the command only if the file's values differ.
A failed command is logged and not retried until the primary changes.

KEY is a dotted path to an existing scalar (database.host, or
replicas.0.host into a sequence).  TEMPLATE is a Go template over the
primary: {{.Host}}, {{.Port}}, {{.Node}} (host:port), {{.Timeline}}; e.g.
  --set database.host={{.Host}} --set database.port={{.Port}}
  --set database.url=postgres://app@{{.Host}}:{{.Port}}/app
The command gets PG_KEEPER_PRIMARY_HOST, PG_KEEPER_PRIMARY_PORT,
PG_KEEPER_PRIMARY_TIMELINE and PG_KEEPER_FILE in its environment.

A promotion is noticed within --interval plus the time nodes take to
answer (a few ms on a LAN), and within two --timeout when the old primary
hangs instead of refusing connections: under a second with the defaults.
SIGINT or SIGTERM stops the watcher after a command in flight has
finished; a second signal kills the command.
With --once it does one round and exits with the codes below.
`

func runWatch(ctx, hard context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("watch", watchUsage, stdout, stderr)
	var nodes, sets stringsFlag
	var opt watch.GatherOptions
	addNodeFlags(fs, &nodes, &opt)
	file := fs.String("file", "", "the YAML file to rewrite (required)")
	fs.Var(&sets, "set", "`KEY=TEMPLATE`: a key of the file and its value for the primary; repeat for each key (at least one)")
	cmdLine := fs.String("command", "", "shell command to run once after each rewrite of the file, e.g. 'systemctl restart app'")
	cmdTimeout := fs.Duration("command-timeout", 30*time.Second, "kill the command (its whole process group) after this long")
	interval := fs.Duration("interval", 250*time.Millisecond, "time between two rounds of checks")
	timeout := fs.Duration("timeout", 400*time.Millisecond, "deadline of one round of checks of all nodes (connect and query)")
	once := fs.Bool("once", false, "do one round and exit")
	level := fs.String("log-level", "info", "log level: debug (a line per round), info, warn or error")
	format := fs.String("log-format", "text", "log format: text or json (on stderr)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	switch {
	case len(nodes) == 0:
		return usageError(fs, stderr, "give at least one --node")
	case *file == "":
		return usageError(fs, stderr, "--file is required")
	case len(sets) == 0:
		return usageError(fs, stderr, "give at least one --set KEY=TEMPLATE")
	case *interval <= 0 || *timeout <= 0 || *cmdTimeout <= 0:
		return usageError(fs, stderr, "--interval, --timeout and --command-timeout must be positive")
	}
	logger, err := newLogger(stderr, *level, *format)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	var settings []watch.Setting
	for _, s := range sets {
		st, err := watch.ParseSetting(s)
		if err != nil {
			return usageError(fs, stderr, "%v", err)
		}
		settings = append(settings, st)
	}
	warnPasswords(stderr, "watch", nodes)
	g, err := watch.NewGatherer(nodes, opt)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	defer g.Close()
	w, err := watch.NewWatcher(watch.Config{
		Source: g, File: *file, Set: settings, Command: *cmdLine, CommandTimeout: *cmdTimeout,
		Timeout: *timeout, Interval: *interval, Log: logger,
	})
	if err != nil {
		errorf(stderr, "watch", "%v", err)
		return exitError
	}

	if *once {
		_, err := w.Step(ctx, hard)
		return stepCode(err)
	}
	logger.Info("watching", "nodes", strings.Join(g.Nodes(), ","), "file", *file, "interval", *interval, "timeout", *timeout,
		"command", *cmdLine)
	w.Run(ctx, hard)
	logger.Info("stopped")
	return exitOK
}

// stepCode maps the error of watch --once to an exit code: no primary and
// ambiguous as for status, anything else (the file, the command) 1.
func stepCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, watch.ErrNoPrimary), errors.Is(err, watch.ErrAmbiguous):
		return decisionCode(err)
	}
	return exitError
}

// newLogger returns a slog logger writing to w.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, errors.New("invalid --log-level " + level + ": want debug, info, warn or error")
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, errors.New("invalid --log-format " + format + ": want text or json")
}
