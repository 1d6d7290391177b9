package watch

import (
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
