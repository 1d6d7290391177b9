// Package fsm is the keeper's state machine, kept as data: a table of
// transitions that the keeper runs, logs and draws.
//
// Deciding is kept apart from doing: Decide is a pure function of an
// Observation, and the keeper looks up the transition to the decided state
// in Table to find what to do and what to log.
package fsm

import (
	"fmt"
	"strings"
)

// State is a state of the keeper.  Its name is "role:state"; the process
// title shows it the way pg_keeper did, e.g. "(standby:connected)" or
// "(master:async)".
type State string

// The keeper's states.
const (
	// Any is the wildcard of Table: it matches every state.
	Any State = "*"
	// Init is the state before the first decision.
	Init State = "init"
	// Misconfigured means the settings are invalid; the keeper waits for a reload.
	Misconfigured State = "misconfigured"

	// StandbyConnecting: in recovery, no good check of the primary yet, so
	// failover is not armed (a standby that never saw its primary must not
	// promote itself on a typo in partner_conninfo).
	StandbyConnecting State = "standby:connecting"
	// StandbyConnected: the last check of the primary succeeded.
	StandbyConnected State = "standby:connected"
	// StandbyFailing: 1 to keepalive_count-1 checks failed in a row.
	StandbyFailing State = "standby:failing"
	// StandbyHeld: keepalive_count checks failed, but promoting now could
	// make two primaries: the WAL receiver still streams from the primary,
	// the lease the primary holds has not expired, or the witness does not
	// allow it.
	StandbyHeld State = "standby:held"
	// StandbyPromoting: promotion was requested; waiting for recovery to end.
	StandbyPromoting State = "standby:promoting"

	// PrimaryConnected: the standby is reachable and streaming.
	PrimaryConnected State = "primary:connected"
	// PrimaryFailing: 1 to keepalive_count-1 checks of the standby failed.
	PrimaryFailing State = "primary:failing"
	// PrimaryAsync: the standby was lost with synchronous replication on;
	// the keeper switched to asynchronous replication.
	PrimaryAsync State = "primary:async"
	// PrimaryAlone: the standby was lost; replication is asynchronous, so
	// there is nothing to switch.
	PrimaryAlone State = "primary:alone"
	// PrimaryFenced: the partner is the primary now, on a newer timeline of
	// the same cluster: this node takes no connections and no writes until
	// it is rebuilt as a standby.
	PrimaryFenced State = "primary:fenced"
)

// States lists every state but the wildcard, in the order of the diagram.
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

// Action is what the keeper does when it takes a transition.  A transition
// whose action fails is not taken; the keeper tries again on its next turn.
type Action string

// The keeper's actions.
const (
	// None: only log the transition.
	None Action = ""
	// Promote asks the server to leave recovery.
	Promote Action = "promote"
	// FinishPromotion waits until the node accepts writes, records the
	// failover and runs after_command.
	FinishPromotion Action = "finish-promotion"
	// DisableSync switches synchronous replication off, remembering the
	// setting it had.
	DisableSync Action = "disable-sync"
	// RestoreSync puts back the synchronous setting that DisableSync saved.
	RestoreSync Action = "restore-sync"
	// Fence refuses connections and writes and ends client sessions.
	Fence Action = "fence"
)

// Transition is one row of the table.
type Transition struct {
	From, To State
	Why      string
	Action   Action
}

// Table is every transition the keeper may take.  Lookup prefers an exact
// row, then a row whose From is Any, then a row whose To is Any.
var Table = []Transition{
	{Any, Misconfigured, "the settings are invalid", None},
	{Misconfigured, Any, "the settings are valid again", None},

	{Init, StandbyConnecting, "the node is in recovery", None},
	{StandbyConnecting, StandbyConnected, "first good check of the primary: failover is armed", None},
	{StandbyConnected, StandbyFailing, "a check of the primary failed", None},
	{StandbyFailing, StandbyConnected, "the primary answered again", None},
	{StandbyFailing, StandbyPromoting, "keepalive_count checks of the primary failed in a row", Promote},
	{StandbyConnected, StandbyPromoting, "keepalive_count checks of the primary failed in a row", Promote},
	{StandbyFailing, StandbyHeld, "keepalive_count checks failed, but the primary may still be alive: promotion waits", None},
	{StandbyConnected, StandbyHeld, "keepalive_count checks failed, but the primary may still be alive: promotion waits", None},
	{StandbyHeld, StandbyPromoting, "the primary is silent everywhere and its lease has expired", Promote},
	{StandbyHeld, StandbyConnected, "the primary answered again", None},
	{StandbyHeld, StandbyFailing, "keepalive_count was raised above the failed checks", None},
	{StandbyPromoting, PrimaryConnected, "recovery ended", FinishPromotion},
	{StandbyPromoting, PrimaryFailing, "recovery ended", FinishPromotion},
	{StandbyPromoting, PrimaryAsync, "recovery ended", FinishPromotion},
	{StandbyPromoting, PrimaryAlone, "recovery ended", FinishPromotion},

	{Init, PrimaryConnected, "the node is a primary", None},
	{Init, PrimaryFailing, "the node is a primary", None},
	{Init, PrimaryAlone, "the node is a primary", None},
	{PrimaryConnected, PrimaryFailing, "a check of the standby failed", None},
	{PrimaryFailing, PrimaryConnected, "the standby answered and streams", None},
	{PrimaryFailing, PrimaryAsync, "keepalive_count checks of the standby failed with synchronous replication on", DisableSync},
	{PrimaryConnected, PrimaryAsync, "keepalive_count checks of the standby failed with synchronous replication on", DisableSync},
	{PrimaryAlone, PrimaryAsync, "synchronous replication was turned on while the standby is lost", DisableSync},
	{PrimaryFailing, PrimaryAlone, "keepalive_count checks of the standby failed; replication is asynchronous, nothing to switch", None},
	{PrimaryConnected, PrimaryAlone, "keepalive_count checks of the standby failed; replication is asynchronous, nothing to switch", None},
	{PrimaryAlone, PrimaryConnected, "the standby answered and streams", None},
	{PrimaryAsync, PrimaryConnected, "the standby streams again", RestoreSync},
	{Any, PrimaryFenced, "the partner is the primary on a newer timeline of this cluster", Fence},

	{Any, StandbyConnecting, "the node is in recovery again", None},
	{Any, PrimaryConnected, "the node left recovery without the keeper", None},
	{Any, PrimaryFailing, "the node left recovery without the keeper", None},
	{Any, PrimaryAlone, "the node left recovery without the keeper", None},
	{Any, PrimaryAsync, "the node is a primary that had switched to asynchronous replication", None},
}

// Lookup returns the transition from one state to another, and false when
// the table has none (a bug: Decide must only return reachable states).
func Lookup(from, to State) (Transition, bool) {
	var fromAny, toAny *Transition
	for i := range Table {
		t := &Table[i]
		switch {
		case t.From == from && t.To == to:
			return *t, true
		case t.From == Any && t.To == to && fromAny == nil:
			fromAny = t
		case t.From == from && t.To == Any && toAny == nil && to != from:
			toAny = t
		}
	}
	if fromAny != nil {
		return *fromAny, true
	}
	if toAny != nil {
		return *toAny, true
	}
	return Transition{}, false
}

// Observation is what the keeper knows at one turn of its loop.
type Observation struct {
	Current        State // the state the keeper is in
	ConfigValid    bool  // the settings passed validation
	InRecovery     bool  // the server is a standby
	Failures       int   // partner checks failed in a row
	Threshold      int   // keepalive_count
	EverConnected  bool  // a check of the primary has succeeded since the node became a standby
	SyncConfigured bool  // synchronous_standby_names is not empty
	SwitchedAsync  bool  // the keeper switched synchronous replication off
	// PromotionHeld: promoting now could make two primaries (the WAL
	// receiver streams, a lease has not expired, the witness says no).
	PromotionHeld bool
	// Fenced: the partner (or the witness) knows a primary on a newer
	// timeline of this cluster, now or before a restart.
	Fenced bool
}

// Decide returns the state the keeper should be in.  It is pure: all it
// knows comes from the observation.
func Decide(o Observation) State {
	if o.InRecovery && o.Current == StandbyPromoting {
		return StandbyPromoting // waiting for the end of recovery
	}
	if !o.ConfigValid {
		return Misconfigured
	}
	if o.InRecovery {
		switch {
		case o.Current.Role() != "standby" || !o.EverConnected,
			o.Current == StandbyConnecting && o.Failures > 0:
			return StandbyConnecting // armed only by a good check
		case o.Failures >= o.Threshold && o.PromotionHeld:
			return StandbyHeld
		case o.Failures >= o.Threshold:
			return StandbyPromoting
		case o.Failures > 0:
			return StandbyFailing
		}
		return StandbyConnected
	}
	switch {
	case o.Fenced:
		return PrimaryFenced
	case o.SwitchedAsync && o.Current == PrimaryAsync && o.Failures == 0:
		return PrimaryConnected
	case o.SwitchedAsync:
		return PrimaryAsync
	case o.Failures >= o.Threshold && o.SyncConfigured:
		return PrimaryAsync
	case o.Failures >= o.Threshold:
		return PrimaryAlone
	case o.Failures > 0:
		return PrimaryFailing
	}
	return PrimaryConnected
}

// Mermaid returns the table as a Mermaid state diagram; "any" stands for
// the wildcard.
func Mermaid() string {
	id := func(s State) string {
		if s == Any {
			return "any"
		}
		return strings.ReplaceAll(string(s), ":", "_")
	}
	var b strings.Builder
	b.WriteString("stateDiagram-v2\n")
	for _, s := range States {
		fmt.Fprintf(&b, "    %s: %s\n", id(s), s)
	}
	b.WriteString("    [*] --> init\n")
	for _, t := range Table {
		label := t.Why
		if t.Action != None {
			label = string(t.Action) + ": " + label
		}
		fmt.Fprintf(&b, "    %s --> %s: %s\n", id(t.From), id(t.To), label)
	}
	return b.String()
}
