package keeper

import (
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// publish hands one snapshot of the keeper to shared memory
// (pg_keeper_status()) and to the HTTP API.
func (k *Keeper) publish() {
	snap := k.snapshot()
	k.host.Publish(snap)
	k.publishHTTP(snap)
}

// snapshot is the keeper's status now.
func (k *Keeper) snapshot() status.Snapshot {
	inRecovery := k.host.InRecovery()
	s := status.Snapshot{
		Role:                k.state.Role(),
		State:               k.state.Short(),
		Partner:             k.partner,
		ConsecutiveFailures: k.obs.Failures,
		KeepaliveTime:       k.settings.KeepaliveTime,
		KeepaliveCount:      k.settings.KeepaliveCount,
		FailoverAfter:       k.settings.FailoverAfter(),
		LastSuccess:         k.history.lastSuccess,
		LastFailure:         k.history.lastFailure,
		PromotedAt:          k.promo.at,
		Fenced:              k.guard.mode == host.GuardFenced || k.obs.Fenced != "",
		FenceReason:         k.obs.Fenced,
		Failovers:           k.promo.failovers,
		HedgedAnswers:       k.history.hedgedAnswers,
		LastFailoverAt:      k.promo.at,
		PromotionHeld:       k.hold,
		Paused:              !k.pausedSince.IsZero(),
		PausedSince:         k.pausedSince,
		WorkerPID:           k.self.workerPID,
		UpdatedAt:           time.Now(),
	}
	if k.obs.Failures > 0 {
		s.LastFailureReason = k.history.lastReason
	}
	if k.configErr != nil {
		s.ConfigError = k.configErr.Error()
		if s.Role == status.RoleUnknown {
			s.Role = map[bool]string{true: status.RoleStandby, false: status.RolePrimary}[inRecovery]
		}
	}
	if lsn, tli, err := k.host.WALPosition(); err == nil {
		s.LSN, s.Timeline = pgsession.FormatLSN(lsn), tli
	}
	if s.Fenced && s.FenceReason == "" {
		s.FenceReason = k.guard.reason
	}
	if inRecovery {
		// A standby streams while its WAL receiver heard from the primary
		// within two keepalive_time (the primary writes a heartbeat every
		// keepalive_time).
		s.Streaming = k.obs.Judged && k.obs.WALReceiverAge >= 0 && k.obs.WALReceiverAge <= 2*k.settings.KeepaliveTime
		s.ReplayLagSeconds = k.history.standby.ReplayLag.Seconds()
		s.ReplayLagBytes = -1
		if k.obs.Judged {
			s.ReplayLagBytes, s.SyncState = k.history.standby.ReplayLagBytes, k.history.standby.SyncState
		}
		// "streaming" means what Streaming means; otherwise the probe
		// says whether WAL comes from restore_command.
		switch {
		case s.Streaming:
			s.ReplicationState = "streaming"
		case k.history.standby.ReplicationState == "in archive recovery":
			s.ReplicationState = k.history.standby.ReplicationState
		}
		return s
	}
	s.Guard, s.GuardReason = k.guard.mode.String(), k.guard.reason
	switch k.guard.mode {
	case host.GuardOpen:
		s.Writable = true
	case host.GuardLeased:
		if left := k.obs.LeaseUntil - host.Boottime(); left > 0 {
			s.Writable = true
			s.WritableUntil = s.UpdatedAt.Add(left)
		}
	}
	readOnly, _, _ := k.host.Setting("default_transaction_read_only")
	s.Writable = s.Writable && readOnly != "on"
	return s
}
