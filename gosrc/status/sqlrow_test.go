package status

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSQLRow(t *testing.T) {
	tests := []struct {
		name string
		json string
		want Snapshot
	}{
		{"a version without fence columns is never fenced",
			`{"role": "primary", "state": "alone", "consecutive_failures": 3, "config_error": null}`,
			Snapshot{Role: "primary", State: "alone", ConsecutiveFailures: 3}},
		{"the fenced column decides",
			`{"role": "primary", "state": "alone", "fenced": true, "fence_reason": "db2 is the primary on timeline 2"}`,
			Snapshot{Role: "primary", State: "alone", Fenced: true, FenceReason: "db2 is the primary on timeline 2"}},
		{"a false fenced column wins over the state",
			`{"role": "primary", "state": "fenced", "fenced": false}`,
			Snapshot{Role: "primary", State: "fenced"}},
		{"a write guard column equal to fenced counts as fenced",
			`{"role": "primary", "state": "connected", "guard": "fenced", "guard_reason": "the partner is the primary"}`,
			Snapshot{Role: "primary", State: "connected", Guard: "fenced", GuardReason: "the partner is the primary", Fenced: true, FenceReason: "the partner is the primary"}},
		{"another write guard is not fenced",
			`{"role": "primary", "state": "connected", "guard": "leased"}`,
			Snapshot{Role: "primary", State: "connected", Guard: "leased"}},
		{"the pause of extension 1.3 is read",
			`{"role": "standby", "state": "held", "paused": true, "paused_since": "2026-12-03T03:00:00.5+00:00"}`,
			Snapshot{Role: "standby", State: "held", Paused: true, PausedSince: time.Date(2026, 12, 3, 3, 0, 0, 500000000, time.UTC)}},
		{"the fenced state counts when there is no column",
			`{"role": "primary", "state": "fenced"}`,
			Snapshot{Role: "primary", State: "fenced", Fenced: true}},
		{"durations in seconds, times and texts are read",
			`{"role": "standby", "state": "connected", "partner": "host=db1", "keepalive_time_seconds": 2, "keepalive_count": 3,
			  "failover_after_seconds": 6, "worker_pid": 42, "timeline": 2, "last_failure_reason": "refused"}`,
			Snapshot{Role: "standby", State: "connected", Partner: "host=db1", KeepaliveTime: 2 * time.Second, KeepaliveCount: 3,
				FailoverAfter: 6 * time.Second, WorkerPID: 42, Timeline: 2, LastFailureReason: "refused"}},
		{"promoted_at and config_error are read",
			`{"role": "primary", "state": "misconfigured", "promoted_at": "2024-05-01T12:00:00+02:00", "config_error": "bad"}`,
			Snapshot{Role: "primary", State: "misconfigured", ConfigError: "bad", PromotedAt: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSQLRow([]byte(tt.json))
			require.NoError(t, err)
			got.PromotedAt, got.LastFailoverAt = got.PromotedAt.UTC(), got.LastFailoverAt.UTC()
			if tt.want.PromotedAt.IsZero() {
				got.PromotedAt, got.LastFailoverAt = time.Time{}, time.Time{}
			}
			if !got.PausedSince.IsZero() {
				got.PausedSince = got.PausedSince.UTC()
			}
			tt.want.LastFailoverAt = tt.want.PromotedAt
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := ParseSQLRow([]byte(`{"state": "alone"}`))
	assert.Error(t, err, "role is required")
}
