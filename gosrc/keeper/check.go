package keeper

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
)

// pauseSlack is how much longer than its deadline a check may seem to take
// before the keeper concludes that it was paused (a stopped process, a
// suspended machine) and discards the check.
const pauseSlack = time.Second

// check runs one check of the partner (and of the witness, at the same
// time) and writes what it learnt into the observation, under the deadline
// checkDeadline gives it.
func (k *Keeper) check(inRecovery bool) {
	o := &k.obs
	o.PartnerAnswered, o.PartnerSystemID, o.PartnerInRecovery, o.PartnerTimeline = false, 0, false, 0
	o.PartnerIsThis = false
	if err := k.ensureConns(); err != nil {
		o.WALReceiverErr = "no session to this node: " + conninfo.ErrorLine(err)
		k.countFailure(err, false)
		k.sched.nextCheck = time.Now().Add(k.settings.KeepaliveTime)
		return
	}
	start := time.Now()
	k.sched.lastCheck = start
	k.sched.nextCheck = start.Add(k.settings.KeepaliveTime)
	bootStart := host.Boottime()
	var (
		sc   probe.StandbyCheck
		pc   probe.PrimaryCheck
		wl   witness.Lease
		wErr error
		ws   witness.Standby
		wsAt time.Duration // when the standby's heartbeat at the witness returned
	)
	deadline := k.checkDeadline(start, inRecovery)
	_, timeline, _ := k.host.WALPosition()
	prober, w := k.conns.prober, k.conns.witness
	// The lease asked for, and taken: one length for both even if a
	// reload changes the settings during the check.
	lease, margin := k.settings.Lease(), k.settings.LeaseMargin()
	armed := o.Armed
	err := k.await(deadline, func(ctx context.Context) error {
		// The witness is asked at the same time as the partner: a primary
		// whose standby hangs must still renew its lease there in time.
		var wg sync.WaitGroup
		if w != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer k.recoverFatal()
				if inRecovery {
					ws, wErr = w.StandbyHeartbeat(ctx, timeline, margin)
					wsAt = host.Boottime() // after the read: no renewal it saw is later
				} else {
					wl, wErr = w.RenewPrimary(ctx, timeline, lease)
				}
			}()
		}
		defer wg.Wait()
		var err error
		if inRecovery {
			pc, err = prober.CheckPrimary(ctx)
		} else {
			sc, err = prober.CheckStandby(ctx, lease, armed)
		}
		return err
	})
	switch {
	case k.loop.shutdown:
		return
	case k.conns.stale:
		// The settings changed under the check: its result says nothing.
		k.closeConns()
		k.sched.nextCheck = time.Now()
		return
	}
	if took := time.Since(start); took > deadline+pauseSlack {
		// This process did not run for a while (a stopped process, a
		// suspended machine): what the check saw is stale, and counting
		// it could promote a standby over one pause.  Check again now.
		k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: a check took %s for a deadline of %s: the keeper was paused; the check is discarded and repeated",
			took.Round(time.Millisecond), deadline), "", "")
		k.sched.nextCheck = time.Now()
		// Nobody watched the partner meanwhile: its silence counts as if
		// it had answered one keepalive_time ago.
		if last := time.Now().Add(-k.settings.KeepaliveTime); !k.history.lastGoodStart.IsZero() && k.history.lastGoodStart.Before(last) {
			k.history.lastGoodStart = last
		}
		return
	}
	o.Judged = true
	o.WitnessErr, o.WitnessHolder, o.SupersededBy, o.SupersededTimeline = "", "", "", 0
	if w == nil || !inRecovery {
		o.WitnessRenewedUntil, k.witnessSeen = 0, nil
	}
	if w != nil {
		o.WitnessErr, o.WitnessHolder = conninfo.ErrorLine(wErr), ws.Holder
		if inRecovery && wErr == nil {
			o.WitnessRenewedUntil = k.observeRenewals(ws.Renewals, wsAt)
		}
		if wErr == nil {
			k.warnNamesake(ws.Namesake + wl.Namesake)
		}
		k.logOnce("witness", o.WitnessErr, host.LevelWarning, "pg_keeper_go: the witness cannot be reached: ",
			"Check pg_keeper.witness_conninfo; the witness's role needs CREATE on its schema once, or run sql/pg_keeper_witness.sql there.")
	}
	partner := sc.Partner
	if inRecovery {
		partner = pc.Partner
		if pc.HedgeAnswered {
			k.history.hedgedAnswers++
		}
		o.WALReceiverAge, o.WALReceiverErr, k.history.standby = pc.WALReceiverAge, conninfo.ErrorLine(pc.WALReceiverErr), pc
		k.logOnce("walreceiver", conninfo.ErrorLine(pc.WALReceiverErr), host.LevelWarning, "pg_keeper_go: cannot read the WAL receiver: ",
			"The role of pg_keeper.my_conninfo needs pg_read_all_stats (or superuser) to see pg_stat_wal_receiver.")
	} else {
		o.SyncConfigured = sc.SyncStandbyNames != ""
		k.primaryLease(bootStart, lease, sc, wl, wErr, err)
	}
	o.PartnerAnswered, o.PartnerSystemID, o.PartnerIsThis = partner.Answered, partner.SystemIdentifier, partner.IsThisServer
	o.PartnerInRecovery, o.PartnerTimeline = partner.InRecovery, partner.Timeline

	var answered *probe.AnsweredError
	if errors.As(err, &answered) {
		// Alive, but something is wrong that a failover would not cure.
		if msg := conninfo.RedactError(answered.Err); msg != k.history.lastAnswered {
			k.history.lastAnswered = msg
			hint := "Check pg_keeper.partner_conninfo and the partner's pg_hba.conf."
			if probe.IsGateRefusal(answered.Err) {
				hint = "The partner's keeper has closed writes there; only superusers and its own keeper pass its connection gate. Make the role of pg_keeper.partner_conninfo a superuser to check it fully."
			}
			k.host.Log(host.LevelWarning, "pg_keeper_go: the partner answers with an error: "+msg, "This does not count as a failed check.", hint)
		}
		err = nil
	}
	k.observeCheck(time.Since(start), err == nil)
	if err != nil {
		// Ran into its deadline: the partner was silent all along (a
		// failure that came sooner, such as a refusal, counts only in the
		// count of failed checks).
		k.countFailure(err, time.Since(start) >= deadline)
		return
	}
	if o.Failures > 0 {
		k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: the partner answered again after %d failed checks%s", o.Failures, k.silence()), "", "")
	}
	o.Failures, o.SilentFor = 0, 0
	k.history.firstFailure = time.Time{}
	k.history.lastSuccess = time.Now()
	k.history.lastGoodStart = start
	if inRecovery {
		o.EverConnected = true
	}
}

// countFailure counts a failed check; silent says it got no answer at all
// until its deadline, and then the partner's silence is noted from the
// start of its last good check (fsm.Observation.SilentFor).
func (k *Keeper) countFailure(err error, silent bool) {
	now := time.Now()
	if k.obs.Failures == 0 {
		k.history.firstFailure = now
	}
	k.obs.Failures++
	k.obs.SilentFor = 0
	if silent && !k.history.lastGoodStart.IsZero() {
		k.obs.SilentFor = now.Sub(k.history.lastGoodStart)
	}
	k.history.lastFailure = now
	k.history.lastReason = conninfo.ErrorLine(err)
}

// checkDeadline is the deadline of a check starting at start:
// keepalive_time, or less when the partner's silence would reach
// keepalive_time x keepalive_count before: that check ends then, so that a
// silent partner (a hang, a vanished host) is declared lost as soon as a
// crashed one, keepalive_time x keepalive_count after the start of its
// last good check (fsm.Observation.Lost).  When that moment has already
// passed (the earlier checks were refused at once, or keepalive_count is 1)
// the check gets keepalive_time again: a partner that answers slowly is
// alive.  A standby's check while it holds the promotion of a lost
// primary (the WAL receiver still streamed, a lease runs) only refreshes
// the facts of the hold: it gets a quarter of keepalive_time, so that a
// hung primary does not hold the promotion one keepalive_time longer.  (A
// primary's held switch keeps keepalive_time: its checks bring the
// standby's grants, which may end the hold.)
func (k *Keeper) checkDeadline(start time.Time, inRecovery bool) time.Duration {
	d := k.settings.KeepaliveTime
	if inRecovery && k.hold != "" && k.obs.Failures > 0 {
		return max(d/4, minCheckTimeout)
	}
	if k.history.lastGoodStart.IsZero() {
		return d
	}
	if left := k.history.lastGoodStart.Add(k.settings.FailoverAfter()).Sub(start); left > 0 && left < d {
		return max(left, minCheckTimeout)
	}
	return d
}

// primaryLease extends this primary's lease from what one check brought:
// a grant of the standby or a renewal at the witness; and notes what the
// witness said of a newer primary.
func (k *Keeper) primaryLease(start, lease time.Duration, sc probe.StandbyCheck, wl witness.Lease, wErr, checkErr error) {
	o := &k.obs
	if sc.Granted {
		o.LeaseUntil = max(o.LeaseUntil, start+lease)
	}
	if sc.CanGrant && sc.Partner.InRecovery {
		// A standby that may grant a lease follows this primary: from now
		// on (the state file keeps it, before any grant is asked for) it
		// may promote once the leases it granted have ended.
		o.Armed = true
	}
	o.PartnerLost = checkErr != nil || !sc.Granted
	if wErr == nil && wl.Renewed {
		o.LeaseUntil = max(o.LeaseUntil, start+lease)
	}
	o.SupersededBy, o.SupersededTimeline = wl.SupersededBy, wl.Timeline
	// While the keeper is about to create the extension itself, its
	// functions are missing for a check: nothing to warn about yet.
	grantErr, heartbeatErr := sc.GrantErr, sc.HeartbeatErr
	if k.settings.CreateExtension && !k.ext.done && !k.ext.failed {
		if errors.Is(grantErr, probe.ErrNoGrant) {
			grantErr = nil
		}
		if errors.Is(heartbeatErr, probe.ErrNoHeartbeat) {
			heartbeatErr = nil
		}
	}
	// A check that could not ask says nothing of these problems: only an
	// answer logs them, or logs them gone.
	if sc.Partner.Answered {
		k.logOnce("grant", conninfo.ErrorLine(grantErr), host.LevelWarning, "pg_keeper_go: the standby cannot grant a lease: ",
			"Run CREATE EXTENSION pg_keeper_go in the database of pg_keeper.partner_conninfo on the primary (it replicates to the standby), or leave pg_keeper.create_extension on. Until then writes are not guarded by the standby's lease.")
	}
	if sc.Heartbeat || heartbeatErr != nil {
		k.logOnce("heartbeat", conninfo.ErrorLine(heartbeatErr), host.LevelWarning, "pg_keeper_go: cannot write the WAL heartbeat: ",
			"Run CREATE EXTENSION pg_keeper_go in the database of pg_keeper.my_conninfo (its role must be a superuser), or leave pg_keeper.create_extension on; without the heartbeat the standby of an idle primary cannot tell a lost check network from a lost primary.")
	}
}

// observe completes the observation with the facts of this turn (the
// settings, the node, the clock) and returns it.
func (k *Keeper) observe(inRecovery bool) fsm.Observation {
	o := &k.obs
	s := k.settings
	o.Current = k.state
	o.ConfigError = ""
	if k.configErr != nil {
		o.ConfigError = k.configErr.Error()
	}
	o.Partner = k.partner
	o.Threshold, o.KeepaliveTime, o.FailoverAfter = s.KeepaliveCount, s.KeepaliveTime, s.FailoverAfter()
	o.Lease, o.Margin = s.Lease(), s.LeaseMargin()
	o.Witness, o.Safety = s.WitnessConninfo != "", s.SplitBrainPolicy == Safety
	o.InRecovery = inRecovery
	o.SystemID = k.self.systemID
	o.Timeline = 0 // unknown: no fence from the partner's timeline
	if _, tli, err := k.host.WALPosition(); err == nil {
		o.Timeline = tli
	}
	o.Now = host.Boottime()
	o.SwitchedAsync = k.sync != nil
	o.Paused = k.readPause()
	o.SwitchoverRequested = inRecovery && k.switchoverRequested()
	o.DemotedFor = k.demotedFor(inRecovery)
	o.PromiseUntil = 0
	if inRecovery {
		until, err := k.host.LeaseGrants(host.GrantsRead)
		if err != nil {
			until = o.Now + o.Lease + o.Margin // cannot tell: assume a grant just now
		}
		o.PromiseUntil = until
	}
	return *o
}

// apply keeps what a decision carries over to the next turn, logs what it
// found once, and brings the next check forward to when a hold may end.
func (k *Keeper) apply(d fsm.Decision) {
	o := &k.obs
	o.Fenced, o.ClusterError, o.Armed = d.Fence, d.ClusterError, d.Armed
	k.saveState()
	k.logOnce("cluster", d.ClusterError, host.LevelWarning, "pg_keeper_go: ",
		"Point pg_keeper.partner_conninfo at this node's standby or primary; the keeper neither promotes nor fences until then.")
	if d.Hold != "" && d.Hold != k.hold {
		what := "promotion held: "
		switch {
		case !o.InRecovery && d.State == fsm.PrimaryAsync:
			what = "return to synchronous replication held: "
		case !o.InRecovery:
			what = "switch to asynchronous replication held: "
		}
		k.host.Log(host.LevelInfo, "pg_keeper_go: "+what+d.Hold, k.facts(), "")
	}
	k.hold = d.Hold
	if d.RecheckIn > 0 {
		if at := time.Now().Add(d.RecheckIn); at.Before(k.sched.nextCheck) {
			k.sched.nextCheck = at
		}
	}
}

// applyGuard sets the write guard of this primary in shared memory when
// it changes (and, under a lease, whenever the lease moves).
func (k *Keeper) applyGuard(d fsm.Decision) {
	if d.GuardReason == "" || d.Guard == k.guard.mode && d.GuardReason == k.guard.reason && d.Guard != host.GuardLeased {
		return
	}
	if err := k.host.SetGuard(d.Guard, k.obs.LeaseUntil, d.GuardReason); err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: could not set the write guard: "+err.Error(), "", "")
		return
	}
	if d.Guard != k.guard.mode || d.GuardReason != k.guard.reason {
		k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: write guard %s: %s", d.Guard, d.GuardReason), "", "")
	}
	k.guard = appliedGuard{d.Guard, d.GuardReason}
}

// facts describes the checks behind a decision, for its log line.
func (k *Keeper) facts() string {
	if k.obs.Failures == 0 {
		if k.history.lastSuccess.IsZero() {
			return ""
		}
		return fmt.Sprintf("last good check %s ago", time.Since(k.history.lastSuccess).Round(time.Millisecond))
	}
	return fmt.Sprintf("%d of %d checks failed in a row over %s%s, last: %s",
		k.obs.Failures, k.settings.KeepaliveCount, time.Since(k.history.firstFailure).Round(time.Millisecond), k.silence(), k.history.lastReason)
}

// silence says how long the partner has not answered, counted from the
// start of its last good check ("" when none succeeded).
func (k *Keeper) silence() string {
	if k.history.lastGoodStart.IsZero() {
		return ""
	}
	return fmt.Sprintf(", no answer for %s (limit %s)", time.Since(k.history.lastGoodStart).Round(time.Millisecond), k.settings.FailoverAfter())
}
