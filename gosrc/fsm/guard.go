package fsm

import (
	"fmt"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
)

// primaryGuard decides the write guard of a primary.
//
//   - Fenced: no writes, no ordinary connections.
//   - A keeper that cannot judge (invalid settings, a partner of another
//     cluster) keeps a primary that a standby has followed closed: it
//     cannot tell whether that standby took over.  One that was never
//     armed does not guard.
//   - Until the first check since start-up: pending (the node may be an
//     old primary).
//   - With a witness: writes only under the lease, which the standby's
//     grants and the witness's renewals extend.
//   - With split_brain_policy = safety, once a standby has followed this
//     primary (the state file remembers it across restarts): writes only
//     under the lease.
//   - With availability (pg_keeper's behaviour): under the lease while the
//     standby grants it, open when the standby is lost.  The lease still
//     stops a primary that resumes after a pause from committing before
//     its keeper has looked at the partner again.
//   - A primary no standby has followed yet has nobody to split from.
func primaryGuard(o Observation, d Decision) (host.GuardMode, string) {
	switch {
	case d.Fence != "":
		return host.GuardFenced, d.Fence
	case o.ConfigError != "" && d.Armed:
		return host.GuardPending, "the keeper's settings are invalid, and a standby has followed this primary: no writes until they are fixed"
	case o.ConfigError != "":
		return host.GuardOpen, "not guarded: the keeper's settings are invalid"
	case d.ClusterError != "" && d.Armed:
		return host.GuardPending, d.ClusterError + ", and a standby has followed this primary: no writes until this is fixed"
	case d.ClusterError != "":
		return host.GuardOpen, "not guarded: " + d.ClusterError
	case !o.Judged:
		return host.GuardPending, "the keeper has not checked the partner since the server started"
	case o.Witness:
		return host.GuardLeased, "writes commit while the standby or the witness renews the lease"
	case !d.Armed:
		return host.GuardOpen, "no standby has followed this primary yet"
	case o.Safety:
		return host.GuardLeased, "split_brain_policy = safety: writes commit while the standby renews the lease"
	case o.PartnerLost:
		return host.GuardOpen, "split_brain_policy = availability: the standby is lost and writes go on without a lease"
	}
	return host.GuardLeased, "writes commit while the standby renews the lease"
}

// promotedGuard is the guard a standby sets just before it promotes: the
// promoted node must take writes at once, under the lease that its claim
// registers at the witness, or open (its partner was the primary, and no
// standby follows it yet).
func promotedGuard(o Observation) (host.GuardMode, string) {
	if o.Witness {
		return host.GuardLeased, "promoted: lease registered at the witness"
	}
	return host.GuardOpen, "promoted by the keeper: no standby has followed this primary yet"
}

// PausedHold is the hold of a keeper whose node is paused: it neither
// promotes nor switches synchronous replication, either way.
const PausedHold = "automatic failover is paused (pg_keeper_pause(); pg_keeper_go resume ends it)"

// PromotionHold says why a standby must not promote yet ("" when it may)
// and when to look again at the latest (0: at the next check).
//
// Promoting is safe only when the primary cannot commit any more: the
// lease this standby granted has expired with a margin, the primary's
// lease at the witness (if any) too, and no WAL arrives from it (the
// second signal: losing only the network the checks use is not a
// failover).  A WAL receiver that could not be read holds the promotion:
// not knowing is not "not streaming".
func PromotionHold(o Observation) (string, time.Duration) {
	if o.Paused {
		return PausedHold, 0
	}
	if o.WALReceiverErr != "" {
		return "the WAL receiver could not be read: " + o.WALReceiverErr, 0
	}
	fresh := 2 * o.KeepaliveTime
	if o.WALReceiverAge >= 0 && o.WALReceiverAge < fresh {
		return fmt.Sprintf("the WAL receiver still streams from the primary (last message %s ago)",
			o.WALReceiverAge.Round(time.Millisecond)), fresh - o.WALReceiverAge
	}
	if o.Safety && !o.Witness && o.PromiseUntil == 0 {
		// The primary may never have asked: it may write unleased.
		return "this standby has granted its primary no lease since it started (split_brain_policy = safety)", 0
	}
	if end := o.PromiseUntil; end > 0 && o.Now < end {
		return fmt.Sprintf("the lease this standby granted the primary has %s left",
			(end - o.Now).Round(time.Millisecond)), end - o.Now
	}
	if o.Witness {
		switch {
		case o.WitnessErr != "":
			return "the witness cannot be reached: " + o.WitnessErr, 0
		case o.WitnessHolder != "":
			return fmt.Sprintf("the primary's lease at the witness has not expired (%s)", o.WitnessHolder), 0
		case o.Now < o.WitnessRenewedUntil:
			left := o.WitnessRenewedUntil - o.Now
			return fmt.Sprintf("the primary's last renewal at the witness may last %s more by this standby's clock",
				left.Round(time.Millisecond)), left
		}
	}
	return "", 0
}
