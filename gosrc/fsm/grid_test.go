package fsm

import "time"

// grid calls fn with every observation built from a product of values for
// each fact Decide reads, Current taking every state: several values where
// a fact changes the outcome, one otherwise.
func grid(fn func(Observation)) {
	const T = time.Second
	now := 100 * time.Second
	type opt func(*Observation)
	dims := [][]opt{
		{func(o *Observation) {}, func(o *Observation) { o.ConfigError = "bad" }},
		{func(o *Observation) {}, func(o *Observation) { o.InRecovery = true }},
		{func(o *Observation) {}, func(o *Observation) { o.Failures = 1 }, func(o *Observation) { o.Failures = 3 }},
		{func(o *Observation) {}, func(o *Observation) { o.EverConnected = true }},
		{func(o *Observation) {}, func(o *Observation) { o.SyncConfigured = true }},
		{func(o *Observation) {}, func(o *Observation) { o.SwitchedAsync = true }},
		{func(o *Observation) {}, func(o *Observation) { o.Paused = true }},
		{func(o *Observation) {}, func(o *Observation) { o.SwitchoverRequested = true }, func(o *Observation) { o.DemotedFor = TakeBackAfter }},
		{func(o *Observation) {}, func(o *Observation) { o.Fenced = "fenced before" }},
		{ // the partner
			func(o *Observation) {},
			func(o *Observation) { o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline = true, 1, 1 },
			func(o *Observation) { o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline = true, 1, 2 },
			func(o *Observation) { o.PartnerAnswered, o.PartnerSystemID, o.PartnerInRecovery = true, 1, true },
			func(o *Observation) { o.PartnerAnswered, o.PartnerSystemID = true, 2 },
		},
		{func(o *Observation) {}, func(o *Observation) { o.ClusterError = "other cluster before" }},
		{ // what holds a promotion
			func(o *Observation) {},
			func(o *Observation) { o.WALReceiverAge = T },
			func(o *Observation) { o.PromiseUntil = now + T },
			func(o *Observation) { o.Witness, o.WitnessErr = true, "unreachable" },
			func(o *Observation) { o.Witness, o.WitnessHolder = true, "db1:5432" },
			func(o *Observation) { o.Witness = true },
		},
		{ // the guard
			func(o *Observation) {},
			func(o *Observation) { o.Judged, o.Armed, o.LeaseUntil = true, true, now+T },
			func(o *Observation) { o.Judged, o.Armed, o.LeaseUntil = true, true, now-T },
			func(o *Observation) { o.Judged, o.Armed, o.PartnerLost = true, true, true },
			func(o *Observation) { o.Judged, o.Armed, o.PartnerLost, o.Safety = true, true, true, true },
		},
		{func(o *Observation) {}, func(o *Observation) { o.SupersededBy, o.SupersededTimeline = "db2:5432", 3 }},
	}
	var walk func(i int, o Observation)
	walk = func(i int, o Observation) {
		if i == len(dims) {
			for _, s := range States {
				o.Current = s
				if consistent(o) {
					fn(o)
				}
			}
			return
		}
		for _, set := range dims[i] {
			next := o
			set(&next)
			walk(i+1, next)
		}
	}
	walk(0, Observation{Partner: "host=db2", Threshold: 3, KeepaliveTime: T, Lease: 2 * T, Margin: 120 * time.Millisecond,
		SystemID: 1, Timeline: 1, Now: now, WALReceiverAge: -1})
}

// consistent reports whether the keeper can be in o.Current with the
// facts it carries over from its earlier decisions: the grid leaves out
// what no run of the keeper can observe, so that a row of the table only
// such an observation would take counts as a row that can never be taken.
func consistent(o Observation) bool {
	switch {
	case o.Current == PrimaryAsync && !o.SwitchedAsync:
		// Async is entered by switching (or, at start-up, with a switch
		// saved in the state file); only restoring leaves the switch.
		return false
	case o.SwitchedAsync && (o.Current == PrimaryConnected || o.Current == PrimaryFailing || o.Current == PrimaryAlone):
		// Switching moves the keeper to async, and it stays there until
		// it restores.
		return false
	case o.Current == PrimaryFenced && !o.InRecovery && o.Fenced == "":
		// Fenced is sticky until the node is a standby again.
		return false
	case o.InRecovery && (o.Current.Role() == "primary" || o.Fenced != ""):
		// A primary does not go back into recovery without a restart,
		// which starts the keeper again in init; a fence is loaded from
		// the state file only out of recovery.
		return false
	case o.Fenced != "" && o.Current.Role() == "standby":
		// A standby's decision clears the fence.
		return false
	case o.ClusterError != "" && o.Current != Misconfigured && o.Current != StandbyPromoting:
		// A partner of another cluster makes the keeper misconfigured
		// within the same turn (a promotion in flight finishes first).
		return false
	}
	return true
}
