package keeper

import (
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
)

// seenRenewal is a renewal of a primary's lease at the witness, with the
// time this standby first saw it (its own Boottime).
type seenRenewal struct {
	witness.Renewal
	at time.Duration
}

// observeRenewals keeps the primary rows a standby's heartbeat at the
// witness read (at now, a Boottime reading taken after the read) and
// returns the time before which, by this standby's own clock, the newest
// renewal of any of them may still be valid: when it was first seen plus
// its lease and margin.  The witness's clock is not used for it.
func (k *Keeper) observeRenewals(renewals []witness.Renewal, now time.Duration) time.Duration {
	seen := make(map[string]seenRenewal, len(renewals))
	var until time.Duration
	for _, r := range renewals {
		s, ok := k.witnessSeen[r.Node]
		if !ok || s.Token != r.Token {
			s = seenRenewal{Renewal: r, at: now}
		}
		seen[r.Node] = s
		until = max(until, s.at+s.Lease+host.LeaseMargin(s.Lease))
	}
	k.witnessSeen = seen
	return until
}

// seenRenewals are the renewals a claim at the witness is made with: any
// other renewal since refuses it.
func (k *Keeper) seenRenewals() []witness.Renewal {
	out := make([]witness.Renewal, 0, len(k.witnessSeen))
	for _, s := range k.witnessSeen {
		out = append(out, s.Renewal)
	}
	return out
}

// warnNamesake logs once that another live node of the pair has this
// node's host name and port.
func (k *Keeper) warnNamesake(other string) {
	msg := ""
	if other != "" {
		msg = witness.Name(other) + " (instance " + other + ")"
	}
	k.logOnce("namesake", msg, host.LevelWarning, "pg_keeper_go: another node of this pair has the same host name and port at the witness: ",
		"Give each node its own host name: the failover log's host column names nodes by it. The witness tells the two apart by their instances.")
}
