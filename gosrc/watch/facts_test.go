package watch

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFailoverRowReadsTheCurrentTable(t *testing.T) {
	r, err := ParseFailoverRow([]byte(`{"host": "db2", "reason": "3 of 3 checks of the primary failed", "unixtime": 1714557600,
		"old_primary": "host=db1 port=5432", "promote_lsn": "0/3000148", "promoted_at": "2024-05-01T10:00:00.123456+00:00", "new_timeline": 2}`))
	require.NoError(t, err)
	assert.Equal(t, FailoverRow{Unixtime: 1714557600, Host: "db2", OldPrimary: "host=db1 port=5432", NewTimeline: 2,
		PromoteLSN: "0/3000148", Reason: "3 of 3 checks of the primary failed",
		PromotedAt: time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC)}, withUTC(r))
}

// withUTC makes times comparable with assert.Equal.
func withUTC(r FailoverRow) FailoverRow {
	r.PromotedAt = r.PromotedAt.UTC()
	return r
}

func TestParseFailoverRowReadsPgKeepersTwoColumnTable(t *testing.T) {
	r, err := ParseFailoverRow([]byte(`{"unixtime": 1714557600, "host": "db2"}`))
	require.NoError(t, err)
	assert.Equal(t, FailoverRow{Unixtime: 1714557600, Host: "db2"}, r)
}

func TestParseFailoverRowToleratesNulls(t *testing.T) {
	r, err := ParseFailoverRow([]byte(`{"unixtime": 5, "host": "db2", "old_primary": null, "new_timeline": null, "promoted_at": null}`))
	require.NoError(t, err)
	assert.Equal(t, FailoverRow{Unixtime: 5, Host: "db2"}, r)
}

func TestParseFailoverRowRejectsRowsWithoutTheRequiredColumns(t *testing.T) {
	for _, in := range []string{`{"host": "db2"}`, `{"unixtime": 5}`, `{"unixtime": 1.5, "host": "x"}`, `[1]`, `{"unixtime": 5, "host": "x", "promoted_at": "yesterday"}`} {
		_, err := ParseFailoverRow([]byte(in))
		assert.Error(t, err, in)
	}
}

func TestParseKeeperStatus(t *testing.T) {
	tests := []struct {
		name string
		json string
		want KeeperStatus
	}{
		{"a version without fence columns is never fenced",
			`{"role": "primary", "state": "alone", "consecutive_failures": 3, "config_error": null}`,
			KeeperStatus{Role: "primary", State: "alone", ConsecutiveFailures: 3}},
		{"the fenced column decides",
			`{"role": "primary", "state": "alone", "fenced": true, "fence_reason": "db2 is the primary on timeline 2"}`,
			KeeperStatus{Role: "primary", State: "alone", Fenced: true, FenceReason: "db2 is the primary on timeline 2"}},
		{"a false fenced column wins over the state",
			`{"role": "primary", "state": "fenced", "fenced": false}`,
			KeeperStatus{Role: "primary", State: "fenced"}},
		{"a write guard column equal to fenced counts as fenced",
			`{"role": "primary", "state": "connected", "guard": "fenced", "guard_reason": "the partner is the primary"}`,
			KeeperStatus{Role: "primary", State: "connected", Guard: "fenced", Fenced: true, FenceReason: "the partner is the primary"}},
		{"another write guard is not fenced",
			`{"role": "primary", "state": "connected", "guard": "leased"}`,
			KeeperStatus{Role: "primary", State: "connected", Guard: "leased"}},
		{"the fenced state counts when there is no column",
			`{"role": "primary", "state": "fenced"}`,
			KeeperStatus{Role: "primary", State: "fenced", Fenced: true}},
		{"promoted_at and config_error are read",
			`{"role": "primary", "state": "misconfigured", "promoted_at": "2024-05-01T12:00:00+02:00", "config_error": "bad"}`,
			KeeperStatus{Role: "primary", State: "misconfigured", ConfigError: "bad", PromotedAt: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKeeperStatus([]byte(tt.json))
			require.NoError(t, err)
			got.PromotedAt = got.PromotedAt.UTC()
			if tt.want.PromotedAt.IsZero() {
				got.PromotedAt = time.Time{}
			}
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := ParseKeeperStatus([]byte(`{"state": "alone"}`))
	assert.Error(t, err, "role is required")
}

func TestErrTextIsOneLineWithoutPasswords(t *testing.T) {
	err := errors.New("failed to connect to `user=x database=y`:\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\nin postgresql://x:S3cret@h/db")
	got := errText(err)
	assert.Equal(t, "failed to connect to `user=x database=y`: 127.0.0.1:1 (127.0.0.1): dial error: refused: in postgresql://x:********@h/db", got)
}

func TestNewGathererChecksTheNodes(t *testing.T) {
	_, err := NewGatherer(nil, GatherOptions{})
	assert.EqualError(t, err, "no nodes given")
	_, err = NewGatherer([]string{"host=db1,db2 password=S3cret"}, GatherOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "names several hosts")
	assert.NotContains(t, err.Error(), "S3cret")
	_, err = NewGatherer([]string{"host=db1 port=x password=S3cret"}, GatherOptions{})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "S3cret")
	_, err = NewGatherer([]string{"host=db1", "postgresql://db1:5432/app"}, GatherOptions{})
	assert.EqualError(t, err, "node db1:5432 is given twice")
	_, err = NewGatherer([]string{"host=db1"}, GatherOptions{FailoverLogDatabase: "pg_state"})
	assert.EqualError(t, err, "no failover log table given")

	g, err := NewGatherer([]string{"host=db1 port=5433 sslmode=prefer", "host=::1 port=5432"}, GatherOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"db1:5433", "[::1]:5432"}, g.Nodes())
}
