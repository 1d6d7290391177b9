package watch

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors Decide wraps; test for them with errors.Is.
var (
	// ErrNoPrimary: no node is reachable, writable and unfenced.
	ErrNoPrimary = errors.New("no primary")
	// ErrAmbiguous: several nodes are writable and unfenced and nothing
	// tells which one is the primary (a split brain).
	ErrAmbiguous = errors.New("ambiguous primary")
)

// Decision is the node Decide chose and why.
type Decision struct {
	// Primary holds the facts of the chosen node.
	Primary NodeFacts
	// Why says what made it the primary, for the log.
	Why string
}

// Decide chooses the primary among the facts of one round of checks, the
// way a careful operator would:
//
//  1. candidates are the nodes that are reachable, writable (out of
//     recovery and not read-only) and not fenced by their keeper; a node
//     whose pg_keeper_status() exists but cannot be read (no privilege)
//     is not a candidate either, since it may be fenced, nor one whose
//     write guard is still pending (its keeper has not judged it since
//     it started: it may be an old primary, and its commits wait);
//  2. of several, those on the newest timeline remain;
//  3. of several still, the one whose failover_log holds the newest row
//     (by unixtime) wins: it recorded the latest promotion.
//
// If no node is a candidate the error wraps ErrNoPrimary; if two or more
// remain tied it wraps ErrAmbiguous: Decide never picks one at random.  The
// error text says what each node is, and is stable while the facts are.
func Decide(nodes []NodeFacts) (Decision, error) {
	if len(nodes) == 0 {
		return Decision{}, fmt.Errorf("%w: no nodes to check", ErrNoPrimary)
	}
	var cands []NodeFacts
	for _, n := range nodes {
		if n.Reachable && n.Writable && !n.Fenced() && n.KeeperError == "" && !n.guardPending() {
			cands = append(cands, n)
		}
	}
	switch len(cands) {
	case 0:
		return Decision{}, fmt.Errorf("%w: %s", ErrNoPrimary, describe(nodes))
	case 1:
		return Decision{Primary: cands[0], Why: "the only writable, unfenced node (" + describe(others(nodes, cands[0])) + ")"}, nil
	}

	newest := cands[0].Timeline
	for _, c := range cands[1:] {
		newest = max(newest, c.Timeline)
	}
	var onNewest []NodeFacts
	for _, c := range cands {
		if c.Timeline == newest {
			onNewest = append(onNewest, c)
		}
	}
	if len(onNewest) == 1 {
		return Decision{Primary: onNewest[0], Why: fmt.Sprintf("writable on the newest timeline %d (%s)",
			newest, describe(others(cands, onNewest[0])))}, nil
	}

	unix := func(n NodeFacts) int64 {
		if n.LastFailover == nil {
			return 0
		}
		return n.LastFailover.Unixtime
	}
	best, tied := onNewest[0], false
	for _, c := range onNewest[1:] {
		switch {
		case unix(c) > unix(best):
			best, tied = c, false
		case unix(c) == unix(best):
			tied = true
		}
	}
	if tied || unix(best) == 0 {
		names := make([]string, len(onNewest))
		for i, c := range onNewest {
			names[i] = c.Node
		}
		return Decision{}, fmt.Errorf("%w: %s are all writable and unfenced on timeline %d and no failover_log row is newer on one of them; refusing to choose",
			ErrAmbiguous, strings.Join(names, ", "), newest)
	}
	r := best.LastFailover
	return Decision{Primary: best, Why: fmt.Sprintf("writable on timeline %d with the newest failover_log row (%s, host %s; %s)",
		newest, r.Time().UTC().Format(time.RFC3339), r.Host, describe(others(onNewest, best)))}, nil
}

// others returns nodes without the one named like n.
func others(nodes []NodeFacts, n NodeFacts) []NodeFacts {
	var out []NodeFacts
	for _, o := range nodes {
		if o.Node != n.Node {
			out = append(out, o)
		}
	}
	return out
}

// describe says in one line what each node is: "db1:5432 is unreachable
// (...); db2:5432 is in recovery".
func describe(nodes []NodeFacts) string {
	if len(nodes) == 0 {
		return "no other node"
	}
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = n.Node + " " + state(n)
	}
	return strings.Join(parts, "; ")
}

// guardPending reports whether the node's write guard holds commits until
// its keeper has judged it.
func (f NodeFacts) guardPending() bool { return f.Keeper != nil && f.Keeper.Guard == "pending" }

// state describes one node for describe.
func state(n NodeFacts) string {
	switch {
	case !n.Reachable:
		return "is unreachable: " + n.Error
	case n.Fenced():
		if n.Keeper.FenceReason != "" {
			return "is fenced: " + n.Keeper.FenceReason
		}
		return "is fenced"
	case n.InRecovery:
		return "is in recovery"
	case n.ReadOnly:
		return "is read-only (default_transaction_read_only is on)"
	case n.KeeperError != "":
		return "is writable, but whether its keeper fenced it is unknown: " + n.KeeperError
	case n.guardPending():
		return "holds writes until its keeper has checked its partner (write guard pending)"
	}
	return fmt.Sprintf("is writable on timeline %d", n.Timeline)
}
