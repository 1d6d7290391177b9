package keeper

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
)

// Boottime reads CLOCK_BOOTTIME, the clock of leases in shared memory: it
// is shared by every process of the machine and keeps counting while the
// machine is suspended, so a lease never outlives a pause.
func Boottime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0 // a zero time makes every lease look expired
	}
	return time.Duration(ts.Nano())
}

// GuardInput is what the write guard of a primary depends on.
type GuardInput struct {
	Judged        bool   // a check has completed since the server started
	Fenced        string // why the node is fenced, "" if it is not
	Misconfigured string // why the keeper cannot judge ("" if it can)
	Witness       bool   // a witness is configured
	Policy        Policy // without a witness
	Armed         bool   // a standby has granted this primary a lease since it became primary
	PartnerLost   bool   // the last check of the standby failed or it did not grant
	LeaseUntil    time.Duration
}

// GuardFor decides the write guard of a primary.  It is pure.
//
//   - Fenced: no writes, no ordinary connections.
//   - A keeper that cannot judge (invalid settings, a partner of another
//     cluster) does not guard.
//   - Until the first check since start-up: pending (the node may be an
//     old primary).
//   - With a witness, or with split_brain_policy = safety once a standby
//     has followed this primary: writes only under the lease, which the
//     standby's grants and the witness's renewals extend.
//   - With availability (pg_keeper's behaviour): under the lease while the
//     standby grants it, open when the standby is lost.  The lease still
//     stops a primary that resumes after a pause from committing before
//     its keeper has looked at the partner again.
//   - A primary no standby has followed yet has nobody to split from.
func GuardFor(in GuardInput) (GuardMode, string) {
	lease := func(why string) (GuardMode, string) { return GuardLeased, why }
	switch {
	case in.Fenced != "":
		return GuardFenced, in.Fenced
	case in.Misconfigured != "":
		return GuardOpen, "not guarded: " + in.Misconfigured
	case !in.Judged:
		return GuardPending, "the keeper has not checked the partner since the server started"
	case in.Witness:
		return lease("writes commit while the standby or the witness renews the lease")
	case !in.Armed:
		return GuardOpen, "no standby has followed this primary yet"
	case in.Policy == Safety:
		return lease("split_brain_policy = safety: writes commit while the standby renews the lease")
	case in.PartnerLost:
		return GuardOpen, "split_brain_policy = availability: the standby is lost and writes go on without a lease"
	}
	return lease("writes commit while the standby renews the lease")
}

// PromotionInput is what may hold a standby's promotion back.
type PromotionInput struct {
	KeepaliveTime  time.Duration
	WALReceiverAge time.Duration // negative when the WAL receiver does not stream
	Now            time.Duration // Boottime
	LastGrant      time.Duration // Boottime of the last lease granted, 0 if none
	Lease          time.Duration
	Margin         time.Duration
	Witness        bool
	WitnessErr     error  // the witness could not be asked
	WitnessHolder  string // a node whose primary lease at the witness is valid
}

// PromotionHold says why a standby must not promote yet ("" when it may)
// and when to look again at the latest (0: at the next check).  It is pure.
//
// Promoting is safe only when the primary cannot commit any more: the
// lease this standby granted has expired with a margin, the primary's
// lease at the witness (if any) too, and no WAL arrives from it (the
// second signal: losing only the network the checks use is not a
// failover).
func PromotionHold(in PromotionInput) (string, time.Duration) {
	fresh := 2 * in.KeepaliveTime
	if in.WALReceiverAge >= 0 && in.WALReceiverAge < fresh {
		return fmt.Sprintf("the WAL receiver still streams from the primary (last message %s ago)",
			in.WALReceiverAge.Round(time.Millisecond)), fresh - in.WALReceiverAge
	}
	if in.LastGrant > 0 {
		if end := in.LastGrant + in.Lease + in.Margin; in.Now < end {
			return fmt.Sprintf("the lease this standby granted the primary has %s left",
				(end - in.Now).Round(time.Millisecond)), end - in.Now
		}
	}
	if in.Witness {
		switch {
		case in.WitnessErr != nil:
			return "the witness cannot be reached: " + in.WitnessErr.Error(), 0
		case in.WitnessHolder != "":
			return fmt.Sprintf("the primary's lease at the witness has not expired (%s)", in.WitnessHolder), 0
		}
	}
	return "", 0
}

// fenceHint tells the operator how to bring a fenced node back.
const fenceHint = "Rebuild this node as a standby of the new primary (pg_rewind, or a fresh pg_basebackup) and start it with standby.signal; see the README, \"Bringing a fenced node back\"."

// observePartner compares the partner's identity with this node's: a
// partner of another cluster stops the keeper from acting; a partner that
// is the primary on a newer timeline fences this primary.
func (k *Keeper) observePartner(p Partner) {
	if !p.Answered {
		return
	}
	if k.systemID != 0 && p.SystemIdentifier != 0 && p.SystemIdentifier != k.systemID {
		k.clusterErr = fmt.Sprintf("the partner %s belongs to another cluster (system identifier %d, this node %d)",
			k.partner, p.SystemIdentifier, k.systemID)
		k.logOnce("cluster", k.clusterErr, LevelWarning, "pg_keeper_go: ",
			"Point pg_keeper.partner_conninfo at this node's standby or primary; the keeper neither promotes nor fences until then.")
		return
	}
	k.clusterErr = ""
	k.logOnce("cluster", "", LevelInfo, "", "")
	if k.host.InRecovery() || p.InRecovery || k.fenced != "" {
		return
	}
	if _, mine, err := k.host.WALPosition(); err == nil && p.Timeline > mine {
		k.fenced = fmt.Sprintf("the partner %s is the primary on timeline %d; this node is on timeline %d", k.partner, p.Timeline, mine)
	}
}

// primaryLease extends this primary's lease from what one check brought:
// a grant of the standby, a renewal at the witness, or the witness naming
// a newer primary.
func (k *Keeper) primaryLease(start time.Duration, sc StandbyCheck, wl WitnessLease, wErr, checkErr error) {
	lease := k.settings.Lease()
	if sc.Granted {
		k.leaseUntil = max(k.leaseUntil, start+lease)
		if !k.armed {
			k.armed = true
			k.saveState()
		}
	}
	k.partnerLost = checkErr != nil || !sc.Granted
	if wErr == nil && wl.Renewed {
		k.leaseUntil = max(k.leaseUntil, start+lease)
	}
	if wl.SupersededBy != "" && k.fenced == "" {
		_, mine, _ := k.host.WALPosition()
		k.fenced = fmt.Sprintf("the witness knows %s as the primary on timeline %d; this node is on timeline %d", wl.SupersededBy, wl.Timeline, mine)
	}
	k.logOnce("grant", errText(sc.GrantErr), LevelWarning, "pg_keeper_go: the standby cannot grant a lease: ",
		"Run CREATE EXTENSION pg_keeper_go in the database of pg_keeper.partner_conninfo on the primary (it replicates to the standby). Until then writes are not guarded by the standby's lease.")
	k.logOnce("heartbeat", errText(sc.HeartbeatErr), LevelWarning, "pg_keeper_go: cannot write the WAL heartbeat: ",
		"Run CREATE EXTENSION pg_keeper_go in the database of pg_keeper.my_conninfo (its role must be a superuser); without the heartbeat the standby of an idle primary cannot tell a lost check network from a lost primary.")
}

// updateGuard sets the write guard of this primary in shared memory when
// it changes (and, under a lease, whenever the lease moves).
func (k *Keeper) updateGuard() {
	misconfigured := k.clusterErr
	if k.configErr != nil {
		misconfigured = "the keeper's settings are invalid"
	}
	mode, reason := GuardFor(GuardInput{
		Judged:        k.judged,
		Fenced:        k.fenced,
		Misconfigured: misconfigured,
		Witness:       k.settings.WitnessConninfo != "",
		Policy:        k.settings.SplitBrainPolicy,
		Armed:         k.armed,
		PartnerLost:   k.partnerLost,
		LeaseUntil:    k.leaseUntil,
	})
	if mode == k.guard && reason == k.guardReason && mode != GuardLeased {
		return
	}
	if err := k.host.SetGuard(mode, k.leaseUntil, reason); err != nil {
		k.host.Log(LevelWarning, "pg_keeper_go: could not set the write guard: "+err.Error(), "", "")
		return
	}
	if mode != k.guard || reason != k.guardReason {
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: write guard %s: %s", mode, reason), "", "")
	}
	k.guard, k.guardReason = mode, reason
}

// updateHold decides whether a standby that lost its primary must still
// wait before promoting, and brings the next check forward to when the
// reason may be gone.
func (k *Keeper) updateHold() {
	last, err := k.host.LeaseGrants(GrantsRead)
	if err != nil {
		last = Boottime() // cannot tell: assume a grant just now
	}
	hold, after := PromotionHold(PromotionInput{
		KeepaliveTime:  k.settings.KeepaliveTime,
		WALReceiverAge: k.walAge,
		Now:            Boottime(),
		LastGrant:      last,
		Lease:          k.settings.Lease(),
		Margin:         k.settings.LeaseMargin(),
		Witness:        k.witness != nil,
		WitnessErr:     k.witnessErr,
		WitnessHolder:  k.holder,
	})
	if hold != "" && hold != k.hold {
		k.host.Log(LevelInfo, "pg_keeper_go: promotion held: "+hold, k.facts(), "")
	}
	k.hold = hold
	if after > 0 {
		if at := time.Now().Add(after); at.Before(k.nextCheck) {
			k.nextCheck = at
		}
	}
}

// fence makes this primary refuse connections and writes, persists it, and
// ends the sessions of ordinary clients.
func (k *Keeper) fence() error {
	if err := k.host.SetGuard(GuardFenced, 0, k.fenced); err != nil {
		return err
	}
	k.guard, k.guardReason = GuardFenced, k.fenced
	k.saveState()
	k.host.Log(LevelWarning, "pg_keeper_go: this node is fenced: "+k.fenced,
		"It refuses ordinary connections and write commits.", fenceHint)
	var n int
	err := k.await(fenceTimeout, func(ctx context.Context) (err error) {
		n, err = k.node.TerminateClients(ctx)
		return err
	})
	if err != nil {
		k.host.Log(LevelWarning, "pg_keeper_go: could not end client sessions of the fenced node: "+err.Error(), "",
			"Their writes cannot commit anyway; the role of pg_keeper.my_conninfo needs pg_signal_backend to end them.")
	} else {
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: ended %d client sessions of the fenced node", n), "", "")
	}
	return nil
}

// logOnce logs prefix+msg when msg differs from what was last logged for
// topic; an empty msg (the problem is gone) is not logged.
func (k *Keeper) logOnce(topic, msg string, level Level, prefix, hint string) {
	if k.logged[topic] == msg {
		return
	}
	k.logged[topic] = msg
	if msg != "" {
		k.host.Log(level, prefix+msg, "", hint)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return oneLine(conninfo.RedactError(err))
}
