package api

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
)

// Roles a Snapshot names.
const (
	RolePrimary = "primary"
	RoleStandby = "standby"
	RoleUnknown = "unknown"
)

// Snapshot is one view of the keeper and its node: the facts of
// pg_keeper_status() plus what routing needs.  The keeper fills it on its
// main goroutine and hands a copy to Server.Update; HTTP handlers only read
// copies.  It never holds a password: Update scrubs the free-text fields
// once more on the way in.
//
// In JSON, field names are snake_case, times are RFC 3339 and left out when
// zero, and KeepaliveTime is keepalive_time_seconds.
type Snapshot struct {
	// Role is "primary", "standby" or "unknown" (before the first decision).
	Role string `json:"role"`
	// State is the keeper's state without its role, as pg_keeper_status()
	// shows it: "connected", "failing", "promoting", "alone", ...
	State string `json:"state"`
	// Partner is a password-free summary of pg_keeper.partner_conninfo.
	Partner string `json:"partner"`
	// ConsecutiveFailures is how many checks of the partner failed in a row.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// KeepaliveTime is pg_keeper.keepalive_time.
	KeepaliveTime time.Duration `json:"-"`
	// KeepaliveCount is pg_keeper.keepalive_count.
	KeepaliveCount int `json:"keepalive_count"`
	// Timeline is the node's timeline: the insert timeline on a primary,
	// the replay timeline on a standby.
	Timeline uint32 `json:"timeline"`
	// LSN is the node's WAL position in PostgreSQL's text form ("0/3000148"):
	// the insert position on a primary, the replay position on a standby.
	LSN string `json:"lsn"`
	// LastSuccess is the time of the last good check of the partner.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastFailure is the time of the last failed check of the partner.
	LastFailure time.Time `json:"last_failure,omitzero"`
	// LastFailureReason says why the last check failed, while checks fail.
	LastFailureReason string `json:"last_failure_reason,omitempty"`
	// PromotedAt is when the keeper promoted this node, if it did.
	PromotedAt time.Time `json:"promoted_at,omitzero"`
	// Writable is true when the node accepts writes: it is out of
	// recovery, default_transaction_read_only is off, and its write guard
	// (if any) lets commits through.
	Writable bool `json:"writable"`
	// WritableUntil, when not zero, is when the node's write lease ends:
	// past it the node refuses write commits unless the keeper renews the
	// lease, so /primary answers 503 even if no newer snapshot came.
	WritableUntil time.Time `json:"writable_until,omitzero"`
	// Fenced is true when the keeper fenced this node: it must not receive
	// clients even if it is writable.
	Fenced bool `json:"fenced"`
	// FenceReason says why the node is fenced.
	FenceReason string `json:"fence_reason,omitempty"`
	// Streaming is true on a standby whose WAL receiver is streaming from
	// its primary (pg_stat_wal_receiver.status = 'streaming').
	Streaming bool `json:"streaming"`
	// ReplayLagSeconds is, on a standby, how far replay is behind: 0 when
	// everything received has been replayed, otherwise the age of the last
	// replayed transaction (now() - pg_last_xact_replay_timestamp()).  It
	// is 0 on a primary.
	ReplayLagSeconds float64 `json:"replay_lag_seconds"`
	// Failovers is the number of promotions this keeper made since the
	// worker started; it only grows (pg_keeper_failovers_total).
	Failovers int `json:"failovers"`
	// LastFailoverAt is the time of the newest failover known to the node
	// (its own promotion since the worker started; the CLI's status command
	// reads failover_log for the history).
	LastFailoverAt time.Time `json:"last_failover_at,omitzero"`
	// Guard is a primary's write guard, as pg_keeper_status() shows it:
	// "pending", "open", "leased" or "fenced"; "" on a standby.
	Guard string `json:"guard,omitempty"`
	// GuardReason says why the guard is in that mode.
	GuardReason string `json:"guard_reason,omitempty"`
	// PromotionHeld says why a standby that lost its primary does not
	// promote yet ("" when nothing holds it).
	PromotionHeld string `json:"promotion_held,omitempty"`
	// WorkerPID is the process ID of the keeper's background worker.
	WorkerPID int `json:"worker_pid,omitempty"`
	// ConfigError says what is wrong with the settings, if anything.
	ConfigError string `json:"config_error,omitempty"`
	// UpdatedAt is when the keeper made this snapshot.  A snapshot older
	// than the server's stale limit is not trusted for routing.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// plainSnapshot is Snapshot without its methods, for encoding/json.
type plainSnapshot Snapshot

// snapshotJSON is the wire form of a Snapshot.
type snapshotJSON struct {
	plainSnapshot
	KeepaliveTimeSeconds float64 `json:"keepalive_time_seconds"`
	// FailoverAfterSeconds is keepalive_time x keepalive_count, as
	// pg_keeper_status() shows failover_after.
	FailoverAfterSeconds float64 `json:"failover_after_seconds"`
}

// MarshalJSON encodes the snapshot with KeepaliveTime in seconds.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	return json.Marshal(s.wire())
}

// wire returns the wire form of s.
func (s Snapshot) wire() snapshotJSON {
	return snapshotJSON{plainSnapshot(s), s.KeepaliveTime.Seconds(), s.KeepaliveTime.Seconds() * float64(s.KeepaliveCount)}
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	var w snapshotJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Snapshot(w.plainSnapshot)
	s.KeepaliveTime = time.Duration(w.KeepaliveTimeSeconds * float64(time.Second))
	return nil
}

// scrubbed returns s with every free-text field passed through the password
// scrubber of package conninfo: the keeper fills them from error messages,
// which may quote a connection string.
func (s Snapshot) scrubbed() Snapshot {
	scrub := func(v string) string {
		if v == "" {
			return v
		}
		return conninfo.RedactError(errors.New(v))
	}
	s.Partner = conninfo.Redact(s.Partner)
	s.LastFailureReason = scrub(s.LastFailureReason)
	s.FenceReason = scrub(s.FenceReason)
	s.ConfigError = scrub(s.ConfigError)
	s.GuardReason = scrub(s.GuardReason)
	s.PromotionHeld = scrub(s.PromotionHeld)
	return s
}
