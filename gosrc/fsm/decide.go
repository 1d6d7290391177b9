package fsm

import (
	"fmt"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
)

// Observation is everything the keeper knows at one turn of its loop: its
// settings, facts of this node, the results of the last checks, and what
// it carried over from its last Decision.  Times on the Boottime clock are
// durations since the machine booted; no time here comes from another
// machine.
type Observation struct {
	// Current is the state the keeper is in.
	Current State

	// The settings.
	ConfigError   string        // why the settings are invalid; "" when they are valid
	Partner       string        // password-free summary of partner_conninfo, for messages
	Threshold     int           // keepalive_count
	KeepaliveTime time.Duration // keepalive_time
	FailoverAfter time.Duration // keepalive_time x keepalive_count
	Lease         time.Duration // how long a lease lasts
	Margin        time.Duration // added to a lease before a standby may take over
	Witness       bool          // a witness is configured
	Safety        bool          // split_brain_policy = safety

	// This node.
	InRecovery     bool
	SystemID       uint64        // this cluster's system identifier, 0 if unknown
	Timeline       uint32        // this node's timeline
	Now            time.Duration // Boottime at this turn
	PromiseUntil   time.Duration // a standby does not promote before this (Boottime): the end of its grants with their margin, 0 if none
	LeaseUntil     time.Duration // end of a primary's lease (Boottime)
	SyncConfigured bool          // synchronous_standby_names is not empty
	SwitchedAsync  bool          // the keeper switched synchronous replication off
	Paused         bool          // automatic failover is paused on this node (pg_keeper_pause())
	// SwitchoverRequested: pg_keeper_switchover_promote() asked this
	// standby to promote once its primary is a standby (a switchover
	// demoted it), within the last minute.
	SwitchoverRequested bool
	// DemotedFor: pg_keeper_demote() made this node a standby this long
	// ago and no primary has appeared since (0 when it did not).
	DemotedFor time.Duration

	// Carried over from the last Decision (and, for Fenced and Armed,
	// from the state file across restarts).
	Fenced       string // Decision.Fence
	ClusterError string // Decision.ClusterError
	Armed        bool   // a standby that can grant leases has followed this primary since it became primary

	// The checks.
	Judged   bool // a check has completed since the server started
	Failures int  // partner checks failed in a row
	// SilentFor is how long ago the last good check of the partner
	// started, taken at the end of a failed check that got no answer
	// until its deadline (0 otherwise, or when none ever succeeded).
	SilentFor      time.Duration
	EverConnected  bool          // a check of the primary succeeded since the node became a standby
	PartnerLost    bool          // a primary's last check of its standby failed or got no grant
	WALReceiverAge time.Duration // a standby's WAL receiver: age of its last message; negative when it does not stream
	WALReceiverErr string        // why the WAL receiver could not be read at the last check ("" when it was)

	// What the last check learnt of the partner.
	PartnerAnswered   bool
	PartnerIsThis     bool // the partner is this very server under another address
	PartnerSystemID   uint64
	PartnerInRecovery bool
	PartnerTimeline   uint32 // when not in recovery

	// What the last check learnt from the witness.
	WitnessErr    string // the witness could not be asked
	WitnessHolder string // another node whose primary lease there is valid (a standby's check)
	// WitnessRenewedUntil: a standby saw a primary's renewal at the witness
	// and, by its own clock, that lease may last until then (Boottime).
	WitnessRenewedUntil time.Duration
	SupersededBy        string // a node registered as primary on a newer timeline (a primary's check)
	SupersededTimeline  uint32
}

// Lost reports whether the partner is lost: keepalive_count checks of it
// failed in a row (a crash: each is refused at once), or a check failed
// after it had been silent for keepalive_time x keepalive_count since the
// start of its last good check, with at least keepalive_count-1 failed
// checks in that time (a hang or a vanished host: the last check runs into
// its deadline at that very moment; a keeper that did not check during the
// silence has not seen it).  Either way the keeper acts at most
// keepalive_time x keepalive_count after the partner's last good answer.
func (o Observation) Lost() bool {
	return o.Failures >= o.Threshold ||
		o.Failures > 0 && o.Failures >= o.Threshold-1 && o.FailoverAfter > 0 && o.SilentFor >= o.FailoverAfter
}

// Decision is what Decide made of an Observation.
type Decision struct {
	// State is the state the keeper should be in.
	State State
	// Fence says why this primary is fenced ("" when it is not).  It is
	// sticky: the keeper persists it and passes it back as
	// Observation.Fenced until the node is a standby again.
	Fence string
	// ClusterError says why the partner is not this node's partner (it
	// belongs to another cluster); kept until the partner answers again.
	ClusterError string
	// Armed is Observation.Armed, cleared on a standby.
	Armed bool
	// Hold says why the keeper does not act on a lost partner yet: why a
	// standby does not promote, or why a primary does not switch to
	// asynchronous replication ("" when nothing holds it).
	Hold string
	// RecheckIn is when the reason of a hold may be gone: the keeper
	// checks again then at the latest (0: at the next check).
	RecheckIn time.Duration
	// Guard and GuardReason are the write guard this node must have: on a
	// primary, and on a standby about to promote (the guard it takes
	// writes under once recovery ends).  GuardReason is empty when the
	// guard is left as it is.
	Guard       host.GuardMode
	GuardReason string
	// Why, when set, says why this transition is taken better than its
	// table row (a switchover's promotion).
	Why string
}

// Decide returns what the keeper should do with what it knows.  It is
// pure: all it knows comes from the observation.
func Decide(o Observation) Decision {
	d := Decision{ClusterError: clusterError(o), Armed: o.Armed && !o.InRecovery}
	d.Fence = fence(o, d.ClusterError)
	if !o.InRecovery {
		d.Guard, d.GuardReason = primaryGuard(o, d)
	}
	d.State, d.Hold, d.RecheckIn = decideState(o, d)
	if o.InRecovery && d.State == StandbyPromoting && o.Current != StandbyPromoting {
		switch {
		case switchover(o):
			d.Why = WhySwitchover
		case takeBack(o):
			d.Why = WhyTakeBack
		}
	}
	if o.InRecovery && d.State == StandbyPromoting && o.Current != StandbyPromoting {
		d.Guard, d.GuardReason = promotedGuard(o)
	}
	return d
}

// decideState chooses the state, and what holds the keeper back.
func decideState(o Observation, d Decision) (State, string, time.Duration) {
	if o.InRecovery && o.Current == StandbyPromoting {
		return StandbyPromoting, "", 0 // waiting for the end of recovery
	}
	switch {
	case o.ConfigError != "" || d.ClusterError != "":
		return Misconfigured, "", 0
	case o.Current == Misconfigured:
		return Init, "", 0 // start over from what the node is
	}
	if o.InRecovery {
		switch {
		case o.Current.Role() != "standby" || !o.EverConnected,
			o.Current == StandbyConnecting && o.Failures > 0:
			return StandbyConnecting, "", 0 // armed only by a good check
		case switchover(o), takeBack(o):
			return StandbyPromoting, "", 0
		case o.Lost():
			if hold, after := PromotionHold(o); hold != "" {
				return StandbyHeld, hold, after
			}
			return StandbyPromoting, "", 0
		case o.Failures > 0:
			return StandbyFailing, "", 0
		}
		return StandbyConnected, "", 0
	}
	if o.Current.Role() == "standby" {
		// Recovery ended (or someone promoted the node without the
		// keeper): the node is first a primary by its count of failed
		// checks, which carries over from the standby's checks of the
		// old primary; the promotion is finished (recorded, after_command
		// run) before anything else happens, such as switching to
		// asynchronous replication or a fence.
		switch {
		case o.Failures == 0:
			return PrimaryConnected, "", 0
		case !o.Lost():
			return PrimaryFailing, "", 0
		}
		return PrimaryAlone, "", 0
	}
	if d.Fence != "" {
		return PrimaryFenced, "", 0
	}
	switch {
	case o.SwitchedAsync && o.Current == PrimaryAsync && o.Failures == 0:
		if o.Paused {
			return PrimaryAsync, PausedHold, 0
		}
		return PrimaryConnected, "", 0
	case o.SwitchedAsync:
		return PrimaryAsync, "", 0
	case o.Lost() && o.SyncConfigured:
		if o.Paused {
			if o.Current == PrimaryAlone {
				return PrimaryAlone, PausedHold, 0
			}
			return PrimaryFailing, PausedHold, 0
		}
		if d.Guard == host.GuardLeased && o.Now >= o.LeaseUntil {
			// The standby may be promoting: releasing the commits that
			// wait for it would acknowledge writes it never received.
			hold := "the lease has expired: commits keep waiting for the standby rather than be acknowledged without it"
			if o.Current == PrimaryAlone {
				return PrimaryAlone, hold, 0
			}
			return PrimaryFailing, hold, 0
		}
		return PrimaryAsync, "", 0
	case o.Lost():
		return PrimaryAlone, "", 0
	case o.Failures > 0:
		return PrimaryFailing, "", 0
	}
	return PrimaryConnected, "", 0
}

// SwitchoverRequestLasts is how long pg_keeper_switchover_promote()'s
// request holds; TakeBackAfter, longer, is when a demoted node whose
// partner is still a standby takes the primary role back (the switchover
// stopped after the demotion): the partner can no longer promote on the
// request by then, so the two never both promote.
const (
	SwitchoverRequestLasts = 20 * time.Second
	TakeBackAfter          = 30 * time.Second
)

// WhyTakeBack is why a demoted node promotes itself again.
const WhyTakeBack = "switchover not finished: this node was demoted, and its partner is still a standby; taking the primary role back (no WAL is lost: the partner has only what this node wrote)"

// takeBack reports whether a node a switchover demoted takes the primary
// role back: its partner answered from recovery TakeBackAfter after the
// demotion, and the node is not paused.
func takeBack(o Observation) bool {
	return o.DemotedFor >= TakeBackAfter && o.PartnerAnswered && o.PartnerInRecovery && !o.Paused && o.Current != StandbyConnecting
}

// WhySwitchover is why a switchover promotes a standby.
const WhySwitchover = "switchover: pg_keeper_switchover_promote() asked for this node and the primary answered from recovery (it cannot write)"

// switchover reports whether a switchover's promotion may go ahead: it was
// asked for, the old primary answered the last check from recovery, and
// the node is not paused.
func switchover(o Observation) bool {
	return o.SwitchoverRequested && o.PartnerAnswered && o.PartnerInRecovery && !o.Paused && o.Current != StandbyConnecting
}

// clusterError compares the partner's identity with this node's: a
// partner of another cluster stops the keeper from acting.  A partner that
// did not answer changes nothing.
func clusterError(o Observation) string {
	switch {
	case !o.PartnerAnswered:
		return o.ClusterError
	case o.PartnerIsThis:
		return fmt.Sprintf("the partner %s is this very server, not its partner", o.Partner)
	case o.SystemID != 0 && o.PartnerSystemID != 0 && o.PartnerSystemID != o.SystemID:
		return fmt.Sprintf("the partner %s belongs to another cluster (system identifier %d, this node %d)",
			o.Partner, o.PartnerSystemID, o.SystemID)
	}
	return ""
}

// fence says why this primary is fenced: once fenced it stays fenced
// until it is a standby again; it becomes fenced when its partner is the
// primary on a newer timeline of the same cluster, or when the witness
// knows a primary on a newer timeline.
func fence(o Observation, clusterErr string) string {
	switch {
	case o.InRecovery:
		return ""
	case o.Fenced != "":
		return o.Fenced
	case o.PartnerAnswered && clusterErr == "" && !o.PartnerInRecovery && o.PartnerTimeline > o.Timeline:
		return fmt.Sprintf("the partner %s is the primary on timeline %d; this node is on timeline %d", o.Partner, o.PartnerTimeline, o.Timeline)
	case o.SupersededBy != "":
		return fmt.Sprintf("the witness knows %s as the primary on timeline %d; this node is on timeline %d", o.SupersededBy, o.SupersededTimeline, o.Timeline)
	}
	return ""
}
