package fsm

import (
	"fmt"
	"strings"
)

// Action is what the keeper does when it takes a transition.  The keeper
// runs it through its table of action functions; a transition whose action
// fails is not taken, and the keeper tries again on its next turn.
type Action string

// The keeper's actions.
const (
	// None: only log the transition.
	None Action = ""
	// Promote closes lease grants, decides once more with the last grant
	// read under that lock, claims the primary lease at the witness, sets
	// the promoted node's write guard and asks the server to leave
	// recovery.
	Promote Action = "promote"
	// FinishPromotion waits until the node accepts writes, records the
	// failover and runs after_command, in the background: the keeper
	// checks and publishes meanwhile.
	FinishPromotion Action = "finish-promotion"
	// DisableSync switches synchronous replication off, remembering the
	// setting it had.
	DisableSync Action = "disable-sync"
	// RestoreSync puts back the synchronous setting that DisableSync saved.
	RestoreSync Action = "restore-sync"
	// Fence refuses connections and writes and ends every session and
	// worker that could write.
	Fence Action = "fence"
	// RecordPrimary writes this node into the failover log as the primary
	// when the log has no row yet, so that readers of the log find the
	// primary before any failover.  It never holds the transition back.
	RecordPrimary Action = "record-primary"
)

// Actions lists every action but None.
var Actions = []Action{Promote, FinishPromotion, DisableSync, RestoreSync, Fence, RecordPrimary}

// Reasons that several rows share.
const (
	whyMisconfigured  = "the settings are invalid or the partner belongs to another cluster"
	whyPromotedByHand = "the node left recovery without the keeper"
	whyNewPartner     = "a new partner must answer before failover is armed again"
	whyHeld           = "the primary is lost to the checks, but it may still be alive: promotion waits"
	whyPromote        = "the primary is lost: keepalive_count checks failed in a row, or no answer for keepalive_time x keepalive_count"
	whyRaised         = "keepalive_count was raised above the failed checks"
	whyAlone          = "the standby is lost; replication is asynchronous, nothing to switch"
	whyAsync          = "the standby is lost with synchronous replication on"
	whyFence          = "the partner or the witness knows a primary on a newer timeline of this cluster"
)

// Transition is one row of the table.
type Transition struct {
	From, To State
	Why      string
	Action   Action
}

// Table is every transition the keeper may take: one row per pair of
// states, no wildcards.  A test walks every observation Decide can see and
// fails on a change of state with no row and on a row no observation
// takes.
var Table = []Transition{
	{Init, Misconfigured, whyMisconfigured, None},
	{Init, StandbyConnecting, "the node is in recovery", None},
	{Init, PrimaryConnected, "the node is a primary and its standby streams", RecordPrimary},
	{Init, PrimaryFailing, "the node is a primary", None},
	{Init, PrimaryAlone, "the node is a primary", None},
	{Init, PrimaryAsync, "the node is a primary that switched to asynchronous replication before, or whose synchronous standby is lost", DisableSync},
	{Init, PrimaryFenced, "the node is a primary that was fenced before, or whose partner is the primary on a newer timeline", Fence},
	{Misconfigured, Init, "the settings are valid and the partner is of this cluster: starting over", None},

	{StandbyConnecting, StandbyConnected, "first good check of the primary: failover is armed", None},
	{StandbyConnecting, Misconfigured, whyMisconfigured, None},
	{StandbyConnecting, PrimaryConnected, whyPromotedByHand, None},
	{StandbyConnecting, PrimaryFailing, whyPromotedByHand, None},
	{StandbyConnecting, PrimaryAlone, whyPromotedByHand, None},

	{StandbyConnected, StandbyFailing, "a check of the primary failed", None},
	{StandbyConnected, StandbyHeld, whyHeld, None},
	{StandbyConnected, StandbyPromoting, whyPromote, Promote},
	{StandbyConnected, StandbyConnecting, whyNewPartner, None},
	{StandbyConnected, Misconfigured, whyMisconfigured, None},
	{StandbyConnected, PrimaryConnected, whyPromotedByHand, None},
	{StandbyConnected, PrimaryFailing, whyPromotedByHand, None},
	{StandbyConnected, PrimaryAlone, whyPromotedByHand, None},

	{StandbyFailing, StandbyConnected, "the primary answered again", None},
	{StandbyFailing, StandbyHeld, whyHeld, None},
	{StandbyFailing, StandbyPromoting, whyPromote, Promote},
	{StandbyFailing, StandbyConnecting, whyNewPartner, None},
	{StandbyFailing, Misconfigured, whyMisconfigured, None},
	{StandbyFailing, PrimaryConnected, whyPromotedByHand, None},
	{StandbyFailing, PrimaryFailing, whyPromotedByHand, None},
	{StandbyFailing, PrimaryAlone, whyPromotedByHand, None},

	{StandbyHeld, StandbyPromoting, "the primary is silent everywhere and its lease has expired", Promote},
	{StandbyHeld, StandbyConnected, "the primary answered again", None},
	{StandbyHeld, StandbyFailing, whyRaised, None},
	{StandbyHeld, StandbyConnecting, whyNewPartner, None},
	{StandbyHeld, Misconfigured, whyMisconfigured, None},
	{StandbyHeld, PrimaryConnected, whyPromotedByHand, None},
	{StandbyHeld, PrimaryFailing, whyPromotedByHand, None},
	{StandbyHeld, PrimaryAlone, whyPromotedByHand, None},

	{StandbyPromoting, PrimaryConnected, "recovery ended", FinishPromotion},
	{StandbyPromoting, PrimaryFailing, "recovery ended", FinishPromotion},
	{StandbyPromoting, PrimaryAlone, "recovery ended", FinishPromotion},
	{StandbyPromoting, Misconfigured, "recovery ended with invalid settings: the failover is not recorded and after_command does not run", None},

	{PrimaryConnected, PrimaryFailing, "a check of the standby failed", None},
	{PrimaryConnected, PrimaryAlone, whyAlone, None},
	{PrimaryConnected, PrimaryAsync, whyAsync, DisableSync},
	{PrimaryConnected, PrimaryFenced, whyFence, Fence},
	{PrimaryConnected, Misconfigured, whyMisconfigured, None},

	{PrimaryFailing, PrimaryConnected, "the standby answered and streams", RecordPrimary},
	{PrimaryFailing, PrimaryAlone, whyAlone, None},
	{PrimaryFailing, PrimaryAsync, whyAsync, DisableSync},
	{PrimaryFailing, PrimaryFenced, whyFence, Fence},
	{PrimaryFailing, Misconfigured, whyMisconfigured, None},

	{PrimaryAlone, PrimaryConnected, "the standby answered and streams", RecordPrimary},
	{PrimaryAlone, PrimaryFailing, whyRaised, None},
	{PrimaryAlone, PrimaryAsync, "synchronous replication was turned on while the standby is lost", DisableSync},
	{PrimaryAlone, PrimaryFenced, whyFence, Fence},
	{PrimaryAlone, Misconfigured, whyMisconfigured, None},

	{PrimaryAsync, PrimaryConnected, "the standby streams again", RestoreSync},
	{PrimaryAsync, PrimaryFenced, whyFence, Fence},
	{PrimaryAsync, Misconfigured, whyMisconfigured, None},

	{PrimaryFenced, Misconfigured, whyMisconfigured, None},
}

// Lookup returns the transition from one state to another, and false when
// the table has none (a bug: the table test makes sure Decide only
// returns states it has rows to).
func Lookup(from, to State) (Transition, bool) {
	for _, t := range Table {
		if t.From == from && t.To == to {
			return t, true
		}
	}
	return Transition{}, false
}

// Mermaid returns the table as a Mermaid state diagram.
func Mermaid() string {
	id := func(s State) string { return strings.ReplaceAll(string(s), ":", "_") }
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
