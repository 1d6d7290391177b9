// Package status is the keeper's status snapshot: the one type that the
// keeper publishes to shared memory (pg_keeper_status()), that the HTTP
// API serves as /status, and that the pg_keeper_go command reads back from
// pg_keeper_status() and prints as JSON.
//
// It never holds a password: Scrubbed passes every free-text field through
// package conninfo's scrubber, and the HTTP API scrubs once more on the way
// in.
package status

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
// main goroutine once per turn; readers only get copies.
//
// In JSON, field names are snake_case, times are RFC 3339 and left out when
// zero, and durations are in seconds (keepalive_time_seconds,
// failover_after_seconds).
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
	// FailoverAfter is keepalive_time x keepalive_count, as the keeper's
	// settings compute it (pg_keeper_status() shows it as failover_after).
	FailoverAfter time.Duration `json:"-"`
	// Timeline is the node's timeline: the insert timeline on a primary,
	// the replay timeline on a standby.
	Timeline uint32 `json:"timeline"`
	// LSN is the node's WAL position in PostgreSQL's text form ("0/3000148"):
	// the insert position on a primary, the replay position on a standby.
	LSN string `json:"lsn,omitempty"`
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
	// its primary.
	Streaming bool `json:"streaming"`
	// ReplayLagSeconds is, on a standby, how far replay is behind: 0 when
	// everything received has been replayed, otherwise the age of the last
	// replayed transaction.  It is 0 on a primary.
	ReplayLagSeconds float64 `json:"replay_lag_seconds"`
	// ReplayLagBytes is, on a standby, how many bytes of WAL its primary
	// had written beyond what this standby had replayed at the last check
	// (Patroni's ?lag= compares with it); -1 when unknown (the primary did
	// not answer) and 0 on a primary.
	ReplayLagBytes int64 `json:"replay_lag_bytes"`
	// ReplicationState is, on a standby, "streaming" while its WAL
	// receiver streams, "in archive recovery" while it replays WAL from
	// restore_command instead, and "" otherwise (Patroni's names).
	ReplicationState string `json:"replication_state,omitempty"`
	// SyncState is, on a standby, what its primary's pg_stat_replication
	// says of it at the last check: "sync", "quorum", "potential" or
	// "async"; "" when unknown.
	SyncState string `json:"sync_state,omitempty"`
	// Failovers is the number of promotions this keeper made since the
	// worker started; it only grows (pg_keeper_failovers_total).
	Failovers int `json:"failovers"`
	// HedgedAnswers is the number of a standby's checks of its primary
	// that got their answer only over a second connection, opened when
	// the first had none halfway to the deadline (a lossy network); it
	// only grows (pg_keeper_hedged_answers_total).
	HedgedAnswers int `json:"hedged_answers"`
	// LastFailoverAt is the time of the newest failover known to the node
	// (its own promotion since the worker started; the command's status
	// reads failover_log for the history).
	LastFailoverAt time.Time `json:"last_failover_at,omitzero"`
	// Guard is a primary's write guard, as pg_keeper_status() shows it:
	// "pending", "open", "leased" or "fenced"; "" on a standby.
	Guard string `json:"guard,omitempty"`
	// GuardReason says why the guard is in that mode.
	GuardReason string `json:"guard_reason,omitempty"`
	// PromotionHeld says why the keeper does not act on a lost partner
	// yet: why a standby does not promote, or why a primary does not
	// switch to asynchronous replication ("" when nothing holds it).
	PromotionHeld string `json:"promotion_held,omitempty"`
	// Paused is true while automatic failover is paused on this node
	// (pg_keeper_pause()): the keeper neither promotes it nor switches
	// synchronous replication; fencing and the write guard go on.
	Paused bool `json:"paused"`
	// PausedSince is when the pause began.
	PausedSince time.Time `json:"paused_since,omitzero"`
	// WorkerPID is the process ID of the keeper's background worker.
	WorkerPID int `json:"worker_pid,omitempty"`
	// ConfigError says what is wrong with the settings, if anything.
	ConfigError string `json:"config_error,omitempty"`
	// UpdatedAt is when the keeper made this snapshot.  A snapshot older
	// than the HTTP API's stale limit is not trusted for routing.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// plain is Snapshot without its methods, for encoding/json.
type plain Snapshot

// Wire is the JSON form of a Snapshot: its fields with the durations in
// seconds.
type Wire struct {
	plain
	KeepaliveTimeSeconds float64 `json:"keepalive_time_seconds"`
	FailoverAfterSeconds float64 `json:"failover_after_seconds"`
}

// Wire returns the JSON form of s, to embed in a larger JSON object.
func (s Snapshot) Wire() Wire {
	return Wire{plain(s), s.KeepaliveTime.Seconds(), s.FailoverAfter.Seconds()}
}

// MarshalJSON encodes the snapshot's Wire form.
func (s Snapshot) MarshalJSON() ([]byte, error) { return json.Marshal(s.Wire()) }

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	var w Wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = Snapshot(w.plain)
	s.KeepaliveTime = seconds(w.KeepaliveTimeSeconds)
	s.FailoverAfter = seconds(w.FailoverAfterSeconds)
	return nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// Scrubbed returns s with every free-text field passed through the password
// scrubber of package conninfo: the keeper fills them from error messages,
// which may quote a connection string.
func (s Snapshot) Scrubbed() Snapshot {
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
