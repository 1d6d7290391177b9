// Package watch finds the current primary of a pg_keeper_go pair from
// outside, the way a careful operator would, and points applications at it:
// it gathers facts from every node (Gatherer), decides which one is the
// primary (Decide), rewrites keys of a YAML configuration file in place
// (UpdateYAML) and runs a command after a change (package command).  Watcher
// ties these together for the pg_keeper_go watch command.
//
// Nothing here ever prints or returns a password: nodes are named by
// host:port, and connection errors pass through conninfo.RedactError.
package watch

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// NodeFacts is what one node said about itself in one round of checks.
type NodeFacts struct {
	// Node names the node as host:port (never the connection string).
	Node string `json:"node"`
	// Host and Port are the node's address from its connection string.
	Host string `json:"host"`
	Port uint16 `json:"port"`
	// Reachable is true when the node answered the facts query; Error
	// says why not otherwise.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// InRecovery is pg_is_in_recovery(): the node is a standby.
	InRecovery bool `json:"in_recovery"`
	// ReadOnly is default_transaction_read_only = on.
	ReadOnly bool `json:"read_only"`
	// Writable is true when the node accepts writes: not in recovery and
	// not read-only.
	Writable bool `json:"writable"`
	// Timeline is the insert timeline on a primary; on a standby, the
	// timeline its WAL receiver receives (the latest checkpoint's when it
	// does not stream).
	Timeline uint32 `json:"timeline"`
	// LSN is pg_current_wal_lsn() on a primary, pg_last_wal_replay_lsn()
	// on a standby.
	LSN string `json:"lsn"`
	// Streaming is true on a standby whose WAL receiver streams.
	Streaming bool `json:"streaming"`
	// ReplayLagSeconds is, on a standby, 0 when everything received was
	// replayed, else now() - pg_last_xact_replay_timestamp(); nil on a
	// primary or when unknown.
	ReplayLagSeconds *float64 `json:"replay_lag_seconds,omitempty"`
	// LastFailover is the newest row of the failover log, nil when the
	// database or table does not exist or is empty.
	LastFailover *FailoverRow `json:"last_failover,omitempty"`
	// FailoverLogError says why the failover log could not be read, when
	// it exists but the query failed.
	FailoverLogError string `json:"failover_log_error,omitempty"`
	// Keeper is what pg_keeper_status() returned, in the keeper's own
	// snapshot type (the fields that function has), nil when it does not
	// exist on the node.
	Keeper *status.Snapshot `json:"keeper,omitempty"`
	// KeeperError says why pg_keeper_status() could not be read, when it
	// exists but the call failed (no privilege: grant pg_monitor).
	KeeperError string `json:"keeper_error,omitempty"`
}

// Fenced reports whether the node's keeper fenced it.
func (f NodeFacts) Fenced() bool { return f.Keeper != nil && f.Keeper.Fenced }

// Role returns "primary", "standby" or "unreachable".
func (f NodeFacts) Role() string {
	switch {
	case !f.Reachable:
		return "unreachable"
	case f.InRecovery:
		return "standby"
	}
	return "primary"
}

// FailoverRow is a row of pg_state.failover_log.  Only Unixtime and Host
// exist in every version of the table (pg_keeper created it with those
// two); the other fields are zero when their column is missing or NULL.
type FailoverRow struct {
	Unixtime    int64     `json:"unixtime"`
	Host        string    `json:"host"`
	OldPrimary  string    `json:"old_primary,omitempty"`
	NewTimeline uint32    `json:"new_timeline,omitempty"`
	PromoteLSN  string    `json:"promote_lsn,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	PromotedAt  time.Time `json:"promoted_at,omitzero"`
}

// Time returns PromotedAt, or Unixtime when the table has no promoted_at.
func (r FailoverRow) Time() time.Time {
	if !r.PromotedAt.IsZero() {
		return r.PromotedAt
	}
	return time.Unix(r.Unixtime, 0)
}

// ParseFailoverRow parses a failover_log row given as to_jsonb(row): the
// columns present are read, missing ones stay zero.  unixtime and host
// are required.
func ParseFailoverRow(b []byte) (FailoverRow, error) {
	var raw struct {
		Unixtime    *json.Number `json:"unixtime"`
		Host        *string      `json:"host"`
		OldPrimary  *string      `json:"old_primary"`
		NewTimeline *int64       `json:"new_timeline"`
		PromoteLSN  *string      `json:"promote_lsn"`
		Reason      *string      `json:"reason"`
		PromotedAt  *string      `json:"promoted_at"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return FailoverRow{}, fmt.Errorf("failover_log row: %w", err)
	}
	if raw.Unixtime == nil || raw.Host == nil {
		return FailoverRow{}, fmt.Errorf("failover_log row has no unixtime or host: %s", b)
	}
	unix, err := strconv.ParseInt(raw.Unixtime.String(), 10, 64)
	if err != nil {
		return FailoverRow{}, fmt.Errorf("failover_log row: unixtime %s: %w", raw.Unixtime, err)
	}
	r := FailoverRow{Unixtime: unix, Host: *raw.Host}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	r.OldPrimary, r.PromoteLSN, r.Reason = str(raw.OldPrimary), str(raw.PromoteLSN), str(raw.Reason)
	if raw.NewTimeline != nil && *raw.NewTimeline > 0 && *raw.NewTimeline <= 1<<32-1 {
		r.NewTimeline = uint32(*raw.NewTimeline)
	}
	if raw.PromotedAt != nil {
		if r.PromotedAt, err = status.ParsePGTime(*raw.PromotedAt); err != nil {
			return FailoverRow{}, fmt.Errorf("failover_log row: promoted_at: %w", err)
		}
	}
	return r, nil
}
