package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scrape returns the metric families /metrics serves, parsed as Prometheus
// does.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, hdr := get(t, s, http.MethodGet, "/metrics")
	require.Equal(t, 200, code, body)
	assert.Contains(t, hdr.Get("Content-Type"), "text/plain")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err, body)
	return fams
}

// value returns the value of the series of fam whose labels are labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	fam, ok := fams[name]
	require.True(t, ok, "metric %s missing", name)
next:
	for _, m := range fam.GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		for i, l := range m.GetLabel() {
			if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		}
		t.Fatalf("%s%v is neither a gauge nor a counter", name, labels)
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestMetricsParseAndReportTheSnapshot(t *testing.T) {
	s, _ := newTestServer(t)
	fams := scrape(t, s)
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_up"), "no snapshot yet")
	assert.NotContains(t, fams, "pg_keeper_role")

	snap := primarySnap()
	snap.State, snap.ConsecutiveFailures, snap.Failovers, snap.HedgedAnswers = "failing", 2, 3, 5
	s.Update(snap)
	s.ObserveCheck(3*time.Millisecond, true)
	s.ObserveCheck(30*time.Millisecond, true)
	s.ObserveCheck(2*time.Second, false)
	fams = scrape(t, s)
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_up"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_snapshot_age_seconds"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_role", "role", "primary"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_role", "role", "standby"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_role", "role", "unknown"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_state", "state", "failing"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_state", "state", "connected"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_state", "state", "promoting"))
	assert.Equal(t, 2.0, value(t, fams, "pg_keeper_consecutive_failed_checks"))
	assert.Equal(t, dto.MetricType_COUNTER, fams["pg_keeper_failovers_total"].GetType())
	assert.Equal(t, 3.0, value(t, fams, "pg_keeper_failovers_total"))
	assert.Equal(t, 5.0, value(t, fams, "pg_keeper_hedged_answers_total"))
	assert.Equal(t, float64(t0.Add(-time.Hour).Unix()), value(t, fams, "pg_keeper_last_failover_timestamp_seconds"))
	assert.Equal(t, float64(t0.Add(-time.Second).Unix()), value(t, fams, "pg_keeper_last_successful_check_timestamp_seconds"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_fenced"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_paused"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_writable"))
	assert.Equal(t, 2.0, value(t, fams, "pg_keeper_timeline"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_config_error"))
	assert.NotContains(t, fams, "pg_keeper_replay_lag_seconds", "only on a standby")
	assert.Contains(t, fams, "go_goroutines")
	assert.Contains(t, fams, "process_resident_memory_bytes")

	hist := fams["pg_keeper_check_duration_seconds"]
	require.NotNil(t, hist)
	require.Equal(t, dto.MetricType_HISTOGRAM, hist.GetType())
	counts := map[string]uint64{}
	for _, m := range hist.GetMetric() {
		require.Len(t, m.GetLabel(), 1)
		counts[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
		if m.GetLabel()[0].GetValue() == "ok" {
			assert.InDelta(t, 0.033, m.GetHistogram().GetSampleSum(), 1e-9)
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() == 0.005 {
					assert.Equal(t, uint64(1), b.GetCumulativeCount(), "3 ms is in the 5 ms bucket")
				}
			}
		}
	}
	assert.Equal(t, map[string]uint64{"ok": 2, "failed": 1}, counts)

	st := standbySnap()
	st.Fenced, st.Paused = true, true
	st.UpdatedAt = t0.Add(-time.Minute)
	s.Update(st)
	fams = scrape(t, s)
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_up"), "stale")
	assert.Equal(t, 60.0, value(t, fams, "pg_keeper_snapshot_age_seconds"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_role", "role", "standby"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_fenced"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_paused"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_streaming"))
	assert.Equal(t, 0.5, value(t, fams, "pg_keeper_replay_lag_seconds"))
}

func TestAStateOutsideTheTableIsStillExported(t *testing.T) {
	s, _ := newTestServer(t)
	snap := primarySnap()
	snap.State = "fenced"
	s.Update(snap)
	fams := scrape(t, s)
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_state", "state", "fenced"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_state", "state", "connected"))
}
