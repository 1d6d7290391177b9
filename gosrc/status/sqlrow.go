package status

import (
	"encoding/json"
	"fmt"
	"time"
)

// SQL reads pg_keeper_status() as one JSON object whose keys are the
// Snapshot's JSON names.  Its intervals are turned into seconds
// (keepalive_time_seconds, failover_after_seconds); a column an older
// version of the extension lacks is simply absent.
const SQL = `select (to_jsonb(s) || jsonb_build_object(
         'keepalive_time_seconds', extract(epoch from (to_jsonb(s)->>'keepalive_time')::interval),
         'failover_after_seconds', extract(epoch from (to_jsonb(s)->>'failover_after')::interval)))::text
  from pg_keeper_status() s`

// ParseSQLRow parses the JSON object SQL returns into a Snapshot.  Role and
// state are required; other columns are read when present.  Fenced is the
// fenced column where a version has one, else a write guard equal to
// "fenced", else the state "fenced".
func ParseSQLRow(b []byte) (Snapshot, error) {
	var raw struct {
		Role                 *string  `json:"role"`
		State                *string  `json:"state"`
		Partner              *string  `json:"partner"`
		ConsecutiveFailures  *int     `json:"consecutive_failures"`
		LastSuccess          *string  `json:"last_success"`
		LastFailure          *string  `json:"last_failure"`
		LastFailureReason    *string  `json:"last_failure_reason"`
		PromotedAt           *string  `json:"promoted_at"`
		WorkerPID            *int     `json:"worker_pid"`
		Timeline             *uint32  `json:"timeline"`
		KeepaliveTimeSeconds *float64 `json:"keepalive_time_seconds"`
		KeepaliveCount       *int     `json:"keepalive_count"`
		FailoverAfterSeconds *float64 `json:"failover_after_seconds"`
		ConfigError          *string  `json:"config_error"`
		UpdatedAt            *string  `json:"updated_at"`
		Guard                *string  `json:"guard"`
		GuardReason          *string  `json:"guard_reason"`
		Fenced               *bool    `json:"fenced"`
		FenceReason          *string  `json:"fence_reason"`
		Paused               *bool    `json:"paused"`
		PausedSince          *string  `json:"paused_since"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Snapshot{}, fmt.Errorf("pg_keeper_status(): %w", err)
	}
	if raw.Role == nil || raw.State == nil {
		return Snapshot{}, fmt.Errorf("pg_keeper_status() has no role or state: %s", b)
	}
	s := Snapshot{Role: *raw.Role, State: *raw.State}
	str := func(dst *string, p *string) {
		if p != nil {
			*dst = *p
		}
	}
	str(&s.Partner, raw.Partner)
	str(&s.LastFailureReason, raw.LastFailureReason)
	str(&s.ConfigError, raw.ConfigError)
	str(&s.Guard, raw.Guard)
	str(&s.GuardReason, raw.GuardReason)
	if raw.ConsecutiveFailures != nil {
		s.ConsecutiveFailures = *raw.ConsecutiveFailures
	}
	if raw.WorkerPID != nil {
		s.WorkerPID = *raw.WorkerPID
	}
	if raw.Timeline != nil {
		s.Timeline = *raw.Timeline
	}
	if raw.Paused != nil {
		s.Paused = *raw.Paused
	}
	if raw.KeepaliveCount != nil {
		s.KeepaliveCount = *raw.KeepaliveCount
	}
	if raw.KeepaliveTimeSeconds != nil {
		s.KeepaliveTime = seconds(*raw.KeepaliveTimeSeconds)
	}
	if raw.FailoverAfterSeconds != nil {
		s.FailoverAfter = seconds(*raw.FailoverAfterSeconds)
	}
	for _, t := range []struct {
		name string
		dst  *time.Time
		src  *string
	}{
		{"last_success", &s.LastSuccess, raw.LastSuccess},
		{"last_failure", &s.LastFailure, raw.LastFailure},
		{"promoted_at", &s.PromotedAt, raw.PromotedAt},
		{"updated_at", &s.UpdatedAt, raw.UpdatedAt},
		{"paused_since", &s.PausedSince, raw.PausedSince},
	} {
		if t.src == nil {
			continue
		}
		v, err := ParsePGTime(*t.src)
		if err != nil {
			return Snapshot{}, fmt.Errorf("pg_keeper_status(): %s: %w", t.name, err)
		}
		*t.dst = v
	}
	switch {
	case raw.Fenced != nil:
		s.Fenced = *raw.Fenced
		str(&s.FenceReason, raw.FenceReason)
	case s.Guard == "fenced":
		s.Fenced, s.FenceReason = true, s.GuardReason
	case s.State == "fenced":
		s.Fenced = true
	}
	s.LastFailoverAt = s.PromotedAt
	return s, nil
}

// ParsePGTime parses a timestamptz as to_jsonb writes it:
// "2024-05-01T10:00:00.123456+00:00" (ISO 8601 whatever DateStyle is; the
// offset may lack its minutes or carry seconds).
func ParsePGTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-07", "2006-01-02T15:04:05.999999999-07:00:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse time %q", s)
}
