// Command pg_keeper_go is the command-line companion of the pg_keeper_go
// extension:
//
//	pg_keeper_go status --node CONNINFO --node CONNINFO [--json]
//	pg_keeper_go watch  --node CONNINFO --node CONNINFO --file app.yaml --set database.host={{.Host}} [--command CMD]
//	pg_keeper_go pause  --node CONNINFO --node CONNINFO
//	pg_keeper_go resume --node CONNINFO --node CONNINFO
//	pg_keeper_go switchover --node CONNINFO --node CONNINFO [--dry-run]
//	pg_keeper_go rejoin --pgdata DIR --primary CONNINFO [--basebackup] [--dry-run]
//	pg_keeper_go fsm
//
// status shows both nodes of a pair, watch keeps an application's YAML
// configuration pointing at the current primary, pause and resume stop
// and restart automatic failover for maintenance, switchover moves the
// primary to its standby on purpose, rejoin makes an old
// primary the standby of the new one, fsm prints the keeper's state
// machine.  Every command has --help; docs/cli.md has the details.
// Exit codes: 0 success, 1 error, 2 usage, 3 no primary, 4 ambiguous
// primary.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes, the same for every command.
const (
	exitOK        = 0 // success: for status and watch --once, a primary was identified
	exitError     = 1 // an error: unreadable or invalid file, failed command, ...
	exitUsage     = 2 // invalid command line
	exitNoPrimary = 3 // no node is a reachable, writable, unfenced primary
	exitAmbiguous = 4 // several nodes could be the primary: refusing to choose
)

const exitCodesHelp = `Exit codes:
  0  success (status, watch --once: a primary was identified)
  1  error (unreadable or invalid file, missing key, failed command, ...)
  2  invalid command line
  3  no primary: no node is reachable, writable and unfenced
  4  ambiguous: several writable, unfenced nodes and nothing to tell them apart
`

const mainUsage = `Usage: pg_keeper_go COMMAND [FLAGS]

pg_keeper_go finds the primary of a pg_keeper_go pair from outside, pauses its
automatic failover for maintenance, switches the primary over on purpose, and
brings an old primary back as the standby.

Commands:
  status      show both nodes: role, timeline, WAL position, lag, last failover, keeper state
  watch       keep a YAML configuration file pointing at the primary, and run a command on a change
  pause       stop automatic failover on both nodes (maintenance), across restarts
  resume      end the pause: the keepers act on what they see
  switchover  move the primary to its standby with no write lost; the old primary follows it
  rejoin      make this host's node (an old primary) a streaming standby of the current primary
  fsm         print the keeper's state machine as a Mermaid diagram
  help        show this help, or a command's help: pg_keeper_go help watch

Run 'pg_keeper_go COMMAND --help' for a command's flags.

` + exitCodesHelp

// subcommand is one command of the command line.
type subcommand struct {
	run func(ctx, hard context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]subcommand{
	"status":     {runStatus},
	"watch":      {runWatch},
	"pause":      {runPause},
	"resume":     {runResume},
	"rejoin":     {runRejoin},
	"switchover": {runSwitchover},
	"fsm":        {runFSM},
}

func main() {
	ctx, hard, stop := signalContexts()
	code := run(ctx, hard, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContexts returns a context that ends at the first SIGINT or
// SIGTERM and one that ends at the second: watch stops its loop at the
// first and kills a command in flight at the second.
func signalContexts() (ctx, hard context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	hard, cancelHard := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for range ch {
			if n++; n == 1 {
				cancel()
			} else {
				cancelHard()
			}
		}
	}()
	return ctx, hard, func() { signal.Stop(ch); cancel(); cancelHard() }
}

// run runs the command line args (without the program name) and returns
// the exit code.
func run(ctx, hard context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			if c, ok := commands[rest[0]]; ok {
				return c.run(ctx, hard, []string{"--help"}, stdout, stderr)
			}
			fmt.Fprintf(stderr, "pg_keeper_go: unknown command %q\n\n%s", rest[0], mainUsage)
			return exitUsage
		}
		fmt.Fprint(stdout, mainUsage)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "pg_keeper_go: unknown command %q\n\n%s", name, mainUsage)
		return exitUsage
	}
	return c.run(ctx, hard, rest, stdout, stderr)
}

// newFlags returns a flag set whose --help prints usage, the flags and the
// exit codes to stdout.
func newFlags(name, usage string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pg_keeper_go "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, usage)
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
		fmt.Fprint(w, "\n"+exitCodesHelp)
	}
	return fs
}

// printFlags is flag.PrintDefaults with the double-dash spelling used in
// the usage text (both spellings are accepted).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if typ != "" {
			line += " " + typ
		}
		line += "\n      " + usage
		if def := f.DefValue; def != "" && def != "false" && def != "[]" {
			line += fmt.Sprintf(" (default %q)", def)
		}
		fmt.Fprintln(w, line)
	})
}

// parseFlags parses args; done is true when the command must return code
// at once (after --help or an error, both already printed).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	// --help goes to stdout and exits 0; errors go to stderr.
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
	}
	fs.Usage = func() {} // flag prints the error itself; the hint follows
	if err := fs.Parse(args); err != nil {
		fmt.Fprintf(stderr, "run '%s --help' for usage\n", fs.Name())
		return exitUsage, true
	}
	if fs.NArg() > 0 {
		return usageError(fs, stderr, "unexpected argument %q", fs.Arg(0)), true
	}
	return 0, false
}

// usageError prints a command-line error and returns exitUsage.
func usageError(fs *flag.FlagSet, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\nrun '%s --help' for usage\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return exitUsage
}

// stringsFlag is a flag that may be given several times.
type stringsFlag []string

func (s *stringsFlag) String() string     { return "" } // never shows values: they may hold passwords
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// errorf prints an error of a command to stderr.
func errorf(stderr io.Writer, name, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(stderr, "pg_keeper_go %s: %s\n", name, strings.TrimRight(msg, "\n"))
}
