package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/operate"
)

const pauseUsage = `Usage: pg_keeper_go pause --node CONNINFO --node CONNINFO

Pauses automatic failover on every node given (both nodes of the pair):
until 'pg_keeper_go resume', also across restarts of either node, the
keepers neither promote a standby nor switch synchronous replication
(sync to async when the standby is lost, or back).  Fencing and the write
guard go on.  The pause shows in pg_keeper_status() (paused,
paused_since), /status, /metrics (pg_keeper_paused) and the keeper's
process title, and each node logs who paused it.

Each node runs SELECT pg_keeper_pause() (extension 1.3): the role must be
a superuser or have EXECUTE on it.  A node that could not be paused is
named with the reason, and the exit code is 1: a standby that is not
paused still fails over.

CONNINFO is a libpq connection string, keyword/value or URI, naming one
host.  Passwords come from ~/.pgpass or PGPASSWORD, never from a flag.
`

const resumeUsage = `Usage: pg_keeper_go resume --node CONNINFO --node CONNINFO

Ends the maintenance pause of 'pg_keeper_go pause' on every node given:
each keeper acts on what it then sees (a standby whose primary is still
lost promotes once its holds are gone).

Each node runs SELECT pg_keeper_resume() (extension 1.3): the role must
be a superuser or have EXECUTE on it.  The exit code is 1 when a node
could not be resumed.

CONNINFO is a libpq connection string, keyword/value or URI, naming one
host.  Passwords come from ~/.pgpass or PGPASSWORD, never from a flag.
`

func runPause(ctx, _ context.Context, args []string, stdout, stderr io.Writer) int {
	return setPause(ctx, "pause", pauseUsage, true, args, stdout, stderr)
}

func runResume(ctx, _ context.Context, args []string, stdout, stderr io.Writer) int {
	return setPause(ctx, "resume", resumeUsage, false, args, stdout, stderr)
}

func setPause(ctx context.Context, name, usage string, pause bool, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(name, usage, stdout, stderr)
	var nodes stringsFlag
	fs.Var(&nodes, "node", "a node's connection string, `CONNINFO` (libpq keyword/value or URI, one host); repeat for each node")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline for connecting to and updating all nodes")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if len(nodes) == 0 {
		return usageError(fs, stderr, "give every node of the pair with --node")
	}
	if *timeout <= 0 {
		return usageError(fs, stderr, "--timeout must be positive")
	}
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results, err := operate.SetPause(cctx, nodes, pause)
	if err != nil {
		return usageError(fs, stderr, "%v", err)
	}
	done, already := "paused", "already paused"
	if !pause {
		done, already = "resumed", "was not paused"
	}
	code := exitOK
	for _, r := range results {
		switch {
		case r.Err != nil:
			code = exitError
			fmt.Fprintf(stdout, "%s: failed\n", r.Node)
			errorf(stderr, name, "%s: %v", r.Node, r.Err)
			if r.Hint != "" {
				fmt.Fprintf(stderr, "hint: %s\n", r.Hint)
			}
		case r.Changed:
			fmt.Fprintf(stdout, "%s: %s\n", r.Node, done)
		default:
			fmt.Fprintf(stdout, "%s: %s\n", r.Node, already)
		}
	}
	if code != exitOK && pause {
		errorf(stderr, name, "automatic failover is not paused on every node: a standby that is not paused still fails over")
	}
	return code
}
