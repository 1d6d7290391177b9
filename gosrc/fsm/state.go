// Package fsm is the keeper's state machine, kept as data: a pure Decide
// that turns one Observation into a Decision (the state to be in, the
// write guard, what holds an action back, whether the node is fenced), and
// a Table of transitions, each with the action the keeper runs when it
// takes it and the reason it logs.  The same table draws the diagram in
// docs/state-machine.md.
//
// Deciding is kept apart from doing: this package knows nothing of
// connections, the server or the clock; the keeper gathers the facts,
// calls Decide, and runs the row's action through its own table of action
// functions.
package fsm

import "strings"

// State is a state of the keeper.  Its name is "role:state"; the process
// title shows it the way pg_keeper did, e.g. "(standby:connected)" or
// "(master:async)".
type State string

// The keeper's states.
const (
	// Init is the state before the first decision.
	Init State = "init"
	// Misconfigured means the settings are invalid or the partner belongs
	// to another cluster; the keeper neither promotes nor fences until
	// that is fixed.
	Misconfigured State = "misconfigured"

	// StandbyConnecting: in recovery, no good check of the primary yet, so
	// failover is not armed (a standby that never saw its primary must not
	// promote itself on a typo in partner_conninfo).
	StandbyConnecting State = "standby:connecting"
	// StandbyConnected: the last check of the primary succeeded.
	StandbyConnected State = "standby:connected"
	// StandbyFailing: checks of the primary failed, not yet enough to call
	// it lost (Observation.Lost).
	StandbyFailing State = "standby:failing"
	// StandbyHeld: the primary is lost to the checks, but promoting now could
	// make two primaries: the WAL receiver still streams from the primary,
	// the lease the primary holds has not expired, or the witness does not
	// allow it.
	StandbyHeld State = "standby:held"
	// StandbyPromoting: promotion was requested; waiting for recovery to end.
	StandbyPromoting State = "standby:promoting"

	// PrimaryConnected: the standby is reachable and streaming.
	PrimaryConnected State = "primary:connected"
	// PrimaryFailing: checks of the standby failed, not yet enough to call
	// it lost, or it is lost while switching to asynchronous replication is
	// held.
	PrimaryFailing State = "primary:failing"
	// PrimaryAsync: the standby was lost with synchronous replication on;
	// the keeper switched to asynchronous replication.
	PrimaryAsync State = "primary:async"
	// PrimaryAlone: the standby was lost; replication is asynchronous, so
	// there is nothing to switch.
	PrimaryAlone State = "primary:alone"
	// PrimaryFenced: the partner (or the witness) knows a primary on a
	// newer timeline of the same cluster: this node takes no connections
	// and no writes until it is rebuilt as a standby.
	PrimaryFenced State = "primary:fenced"
)

// States lists every state, in the order of the diagram.
var States = []State{
	Init, Misconfigured,
	StandbyConnecting, StandbyConnected, StandbyFailing, StandbyHeld, StandbyPromoting,
	PrimaryConnected, PrimaryFailing, PrimaryAsync, PrimaryAlone, PrimaryFenced,
}

// Role returns "standby", "primary" or "unknown".
func (s State) Role() string {
	switch {
	case strings.HasPrefix(string(s), "standby:"):
		return "standby"
	case strings.HasPrefix(string(s), "primary:"):
		return "primary"
	}
	return "unknown"
}

// Short returns the state without its role: "connected" for
// "standby:connected".
func (s State) Short() string {
	if i := strings.IndexByte(string(s), ':'); i >= 0 {
		return string(s[i+1:])
	}
	return string(s)
}

// Title returns the process title pg_keeper showed for this state, such as
// "(standby:connected)" or "(master:async)".
func (s State) Title() string {
	role := s.Role()
	switch role {
	case "primary":
		role = "master"
	case "unknown":
		return "(" + string(s) + ")"
	}
	return "(" + role + ":" + s.Short() + ")"
}
