// Package operate runs the operator's commands on the nodes of a pair
// over SQL: the maintenance pause (pause, resume).  It shares only leaves
// with the keeper: the command's binary links no keeper code.
package operate

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
)

// ApplicationName is how the operator's sessions appear in
// pg_stat_activity, unless the connection string sets one.
const ApplicationName = pgsession.ApplicationName + " operate"

// PauseResult is what pausing or resuming did on one node.
type PauseResult struct {
	// Node is host:port.
	Node string
	// Changed is true when the node's pause changed, false when it was
	// already so.
	Changed bool
	// Err says why the node could not be paused or resumed.
	Err error
	// Hint says what to do about Err ("" when nothing helps).
	Hint string
}

// SetPause pauses (pause true) or resumes automatic failover on every
// node, concurrently, each under ctx.  It returns one result per node, in
// the order given; an invalid connection string is an error before any
// node is touched.
func SetPause(ctx context.Context, nodes []string, pause bool) ([]PauseResult, error) {
	return setPause(ctx, nodes, pause, false)
}

// SetPauseFromConfig is SetPause for connection strings from a server's
// configuration (a keeper's operator API), which may hold passwords.
func SetPauseFromConfig(ctx context.Context, nodes []string, pause bool) ([]PauseResult, error) {
	return setPause(ctx, nodes, pause, true)
}

func setPause(ctx context.Context, nodes []string, pause, fromConfig bool) ([]PauseResult, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no nodes given")
	}
	sessions := make([]*pgsession.Session, len(nodes))
	names := make([]string, len(nodes))
	seen := map[string]bool{}
	for i, s := range nodes {
		if err := refusePassword(s); err != nil && !fromConfig {
			return nil, err
		}
		cfg, err := watch.ParseNode(s, ApplicationName)
		if err != nil {
			return nil, err
		}
		names[i] = watch.NodeName(cfg.Host, cfg.Port)
		if seen[names[i]] {
			return nil, fmt.Errorf("node %s is given twice", names[i])
		}
		seen[names[i]] = true
		sessions[i] = pgsession.NewWithConfig(cfg)
	}
	defer pgsession.CloseAll(sessions...)

	fn := "pg_keeper_resume()"
	if pause {
		fn = "pg_keeper_pause()"
	}
	out := make([]PauseResult, len(nodes))
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := PauseResult{Node: names[i]}
			err := sessions[i].QueryRow(ctx, "select "+fn, &r.Changed)
			if err != nil {
				r.Err, r.Hint = fmt.Errorf("%s: %s", fn, conninfo.ErrorLine(err)), pauseHint(err, fn)
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out, nil
}

// refusePassword refuses a connection string that holds a password: a
// command line shows in ps.
func refusePassword(s string) error {
	if conninfo.HasPassword(s) {
		return fmt.Errorf("the connection string %q holds a password: put it in ~/.pgpass or PGPASSWORD (a command line shows in ps)", conninfo.Redact(s))
	}
	return nil
}

// pauseHint says what to do about an error of pg_keeper_pause() or
// pg_keeper_resume().
func pauseHint(err error, fn string) string {
	switch pgsession.SQLState(err) {
	case "42883": // undefined_function
		return "The extension on this node is older than 1.3: run ALTER EXTENSION pg_keeper_go UPDATE on the primary " +
			"(its keeper does it by itself once it runs the new library), or CREATE EXTENSION pg_keeper_go if it is missing."
	case "42501": // insufficient_privilege
		return "Connect as a superuser, or GRANT EXECUTE ON FUNCTION " + fn + " to the role."
	case "55000": // object_not_in_prerequisite_state
		return "Add pg_keeper_go to shared_preload_libraries and restart the server."
	case "":
		return "Check that the node runs and accepts the connection (pg_hba.conf, password in ~/.pgpass or PGPASSWORD)."
	}
	return ""
}
