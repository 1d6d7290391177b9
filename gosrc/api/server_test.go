package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// t0 is the fixed "now" of the handler tests.
var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func primarySnap() Snapshot {
	return Snapshot{Role: RolePrimary, State: "connected", Partner: "host=db2 port=5432 dbname=postgres user=keeper",
		KeepaliveTime: 2 * time.Second, KeepaliveCount: 3, Timeline: 2, LSN: "0/3000148", Writable: true,
		Failovers: 1, LastFailoverAt: t0.Add(-time.Hour), LastSuccess: t0.Add(-time.Second), UpdatedAt: t0.Add(-time.Second)}
}

func standbySnap() Snapshot {
	return Snapshot{Role: RoleStandby, State: "connected", KeepaliveTime: 2 * time.Second, KeepaliveCount: 3,
		Timeline: 2, LSN: "0/3000148", Streaming: true, ReplayLagSeconds: 0.5, UpdatedAt: t0.Add(-time.Second)}
}

// newTestServer returns a server whose clock stands at t0.
func newTestServer(t *testing.T, opts ...Option) (*Server, *[]error) {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	opts = append([]Option{withClock(func() time.Time { return t0 }), WithErrorHandler(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	})}, opts...)
	return New("127.0.0.1:0", opts...), &errs
}

// get runs one request through the handler and returns the code and body.
func get(t *testing.T, s *Server, method, target string) (int, string, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Code, rec.Body.String(), rec.Header()
}

func TestEndpointCodesFollowTheNodesRoleAndState(t *testing.T) {
	with := func(base Snapshot, fn func(*Snapshot)) *Snapshot { fn(&base); return &base }
	tests := []struct {
		name                     string
		snap                     *Snapshot // nil: no Update
		primary, replica, health int
		reason                   string // in the body of the first 503
	}{
		{"before the first snapshot every check fails", nil, 503, 503, 503, "has not published"},
		{"a writable unfenced primary is the primary", with(primarySnap(), func(*Snapshot) {}), 200, 503, 200, "not a standby"},
		{"a fenced primary is not the primary", with(primarySnap(), func(s *Snapshot) { s.Fenced, s.FenceReason = true, "partner promoted" }), 503, 503, 200, "fenced: partner promoted"},
		{"a read-only primary is not the primary", with(primarySnap(), func(s *Snapshot) { s.Writable = false }), 503, 503, 200, "does not accept writes"},
		{"a primary within its write lease is the primary", with(primarySnap(), func(s *Snapshot) { s.WritableUntil = t0.Add(time.Millisecond) }), 200, 503, 200, "not a standby"},
		{"a primary whose write lease ended is not the primary", with(primarySnap(), func(s *Snapshot) { s.WritableUntil = t0.Add(-1500 * time.Millisecond) }), 503, 503, 200, "write lease ended 1.5s ago"},
		{"a primary in a failing state is still the primary", with(primarySnap(), func(s *Snapshot) { s.State, s.ConsecutiveFailures = "failing", 2 }), 200, 503, 200, "not a standby"},
		{"a streaming standby is a replica", with(standbySnap(), func(*Snapshot) {}), 503, 200, 200, "not a primary (role standby)"},
		{"a standby that does not stream is not a replica", with(standbySnap(), func(s *Snapshot) { s.Streaming = false }), 503, 503, 200, "not a primary"},
		{"a promoting standby is neither", with(standbySnap(), func(s *Snapshot) { s.State, s.Streaming = "promoting", false }), 503, 503, 200, "not a primary"},
		{"a fenced standby is not a replica", with(standbySnap(), func(s *Snapshot) { s.Fenced = true }), 503, 503, 200, "not a primary"},
		{"an unknown role is neither", with(standbySnap(), func(s *Snapshot) { s.Role, s.State = RoleUnknown, "init" }), 503, 503, 200, "role unknown"},
		{"invalid settings make the health check fail", with(primarySnap(), func(s *Snapshot) { s.ConfigError = "pg_keeper.partner_conninfo is not set" }), 200, 503, 503, "not a standby"},
		{"a stale primary snapshot fails every check", with(primarySnap(), func(s *Snapshot) { s.UpdatedAt = t0.Add(-time.Minute) }), 503, 503, 503, "stale: last updated 1m0s ago (limit 15s)"},
		{"a stale standby snapshot fails every check", with(standbySnap(), func(s *Snapshot) { s.UpdatedAt = t0.Add(-16 * time.Second) }), 503, 503, 503, "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t)
			if tt.snap != nil {
				s.Update(*tt.snap)
			}
			var reasons []string
			for path, want := range map[string]int{"/primary": tt.primary, "/replica": tt.replica, "/health": tt.health} {
				code, body, hdr := get(t, s, http.MethodGet, path)
				assert.Equal(t, want, code, "%s: %s", path, body)
				assert.Equal(t, "application/json", hdr.Get("Content-Type"), path)
				assert.Equal(t, "no-store", hdr.Get("Cache-Control"), path)
				var v verdict
				require.NoError(t, json.Unmarshal([]byte(body), &v), body)
				if code == 200 {
					assert.Equal(t, "ok", v.Status, path)
					assert.Empty(t, v.Reason, path)
				} else {
					assert.Equal(t, "unavailable", v.Status, path)
					reasons = append(reasons, v.Reason)
				}
			}
			assert.Contains(t, strings.Join(reasons, " | "), tt.reason)
		})
	}
}

func TestReplicaHonoursMaxLag(t *testing.T) {
	s, _ := newTestServer(t)
	snap := standbySnap()
	snap.ReplayLagSeconds = 2.5
	s.Update(snap)
	tests := []struct {
		query string
		code  int
		body  string
	}{
		{"", 200, `"status":"ok"`},
		{"?max_lag=3", 200, `"status":"ok"`},
		{"?max_lag=2.5", 200, `"status":"ok"`},
		{"?max_lag=2", 503, "replay lag 2.500s exceeds max_lag 2s"},
		{"?max_lag=500ms", 503, "exceeds max_lag 500ms"},
		{"?max_lag=1m", 200, `"status":"ok"`},
		{"?max_lag=0", 503, "exceeds max_lag 0s"},
		{"?max_lag=-1", 400, "must not be negative"},
		{"?max_lag=soon", 400, `invalid max_lag \"soon\"`},
		{"?max_lag=NaN", 400, "not a finite number"},
		{"?max_lag=1e300", 400, "not a finite number"},
	}
	for _, tt := range tests {
		code, body, _ := get(t, s, http.MethodGet, "/replica"+tt.query)
		assert.Equal(t, tt.code, code, "%s: %s", tt.query, body)
		assert.Contains(t, body, tt.body, tt.query)
	}
}

func TestParseLagAcceptsSecondsAndDurations(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "0.25": 250 * time.Millisecond,
		"10s": 10 * time.Second, "1m30s": 90 * time.Second, " 2 ": 2 * time.Second, "0": 0} {
		got, err := ParseLag(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "x", "-1s", "-0.5", "Inf", "1e30"} {
		_, err := ParseLag(in)
		assert.Error(t, err, in)
	}
}

func TestOnlyGetAndHeadAreAllowed(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "BREW"} {
		for _, path := range []string{"/primary", "/metrics", "/status", "/nowhere"} {
			code, _, hdr := get(t, s, m, path)
			assert.Equal(t, http.StatusMethodNotAllowed, code, "%s %s", m, path)
			assert.Equal(t, "GET, HEAD", hdr.Get("Allow"), "%s %s", m, path)
		}
	}
	code, _, _ := get(t, s, http.MethodHead, "/primary")
	assert.Equal(t, 200, code)
	code, _, _ = get(t, s, http.MethodHead, "/replica")
	assert.Equal(t, 503, code)
	code, _, _ = get(t, s, http.MethodGet, "/nowhere")
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = get(t, s, http.MethodGet, "/primary/extra")
	assert.Equal(t, http.StatusNotFound, code)
}

func TestStatusIsTheSnapshotAsJSONWithoutPasswords(t *testing.T) {
	s, _ := newTestServer(t)
	code, body, _ := get(t, s, http.MethodGet, "/status")
	assert.Equal(t, 503, code, "no snapshot yet")
	assert.Contains(t, body, "has not published")

	snap := primarySnap()
	snap.Partner = "host=db2 password=S3cretPw user=keeper"
	snap.ConfigError = `invalid value for pg_keeper.partner_conninfo "host=db2 password=S3cretPw": invalid port`
	snap.LastFailureReason = "cannot connect to postgresql://keeper:S3cretPw@db2/postgres"
	snap.FenceReason = "fenced with password=S3cretPw"
	snap.GuardReason = "leased: password=S3cretPw"
	snap.Guard, snap.WorkerPID = "leased", 4242
	s.Update(snap)
	code, body, _ = get(t, s, http.MethodGet, "/status")
	require.Equal(t, 200, code)
	assert.NotContains(t, body, "S3cretPw")

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &raw))
	for _, k := range []string{"role", "state", "partner", "consecutive_failures", "keepalive_time_seconds", "keepalive_count",
		"timeline", "lsn", "writable", "fenced", "streaming", "replay_lag_seconds", "failovers", "last_failover_at",
		"config_error", "updated_at", "stale", "age_seconds", "last_success", "guard", "guard_reason", "worker_pid",
		"failover_after_seconds"} {
		assert.Contains(t, raw, k)
	}
	assert.NotContains(t, raw, "promoted_at", "zero times are left out")
	assert.Equal(t, 2.0, raw["keepalive_time_seconds"])
	assert.Equal(t, 6.0, raw["failover_after_seconds"], "keepalive_time x keepalive_count")
	assert.Equal(t, false, raw["stale"])
	assert.Equal(t, 1.0, raw["age_seconds"])

	var back Snapshot
	require.NoError(t, json.Unmarshal([]byte(body), &back))
	want := snap.scrubbed()
	assert.Equal(t, want, back, "the JSON decodes to the snapshot")
	assert.Contains(t, back.ConfigError, "password=********")
}

func TestSnapshotJSONRoundTrips(t *testing.T) {
	snap := standbySnap()
	snap.PromotedAt = t0
	b, err := json.Marshal(snap)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"keepalive_time_seconds":2`)
	assert.NotContains(t, string(b), "KeepaliveTime")
	var back Snapshot
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, snap, back)
}

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
	snap.State, snap.ConsecutiveFailures, snap.Failovers = "failing", 2, 3
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
	assert.Equal(t, float64(t0.Add(-time.Hour).Unix()), value(t, fams, "pg_keeper_last_failover_timestamp_seconds"))
	assert.Equal(t, float64(t0.Add(-time.Second).Unix()), value(t, fams, "pg_keeper_last_successful_check_timestamp_seconds"))
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_fenced"))
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
	st.Fenced = true
	st.UpdatedAt = t0.Add(-time.Minute)
	s.Update(st)
	fams = scrape(t, s)
	assert.Equal(t, 0.0, value(t, fams, "pg_keeper_up"), "stale")
	assert.Equal(t, 60.0, value(t, fams, "pg_keeper_snapshot_age_seconds"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_role", "role", "standby"))
	assert.Equal(t, 1.0, value(t, fams, "pg_keeper_fenced"))
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

func TestAPanickingHandlerAnswers500AndIsReported(t *testing.T) {
	s, errs := newTestServer(t)
	h := s.guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	rec := httptest.NewRecorder()
	require.NotPanics(t, func() { h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/primary", nil)) })
	assert.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Len(t, *errs, 1)
	assert.Contains(t, (*errs)[0].Error(), "panic serving GET /primary: boom")
}

// startServer starts s on a free loopback port and shuts it down when the
// test ends.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	return "http://" + s.Addr()
}

func TestStartReportsListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	s := New(busy.Addr().String())
	err = s.Start()
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.Contains(t, err.Error(), fmt.Sprintf("http server: listen on %q", busy.Addr().String()))
	assert.Equal(t, "", s.Addr())
	assert.NoError(t, s.Shutdown(context.Background()), "shutdown of a server that never started")

	err = New("not-an-address").Start()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `listen on "not-an-address"`)

	s = New("127.0.0.1:0")
	startServer(t, s)
	assert.EqualError(t, s.Start(), "http server: already started")
}

func TestARealServerAnswersAndShutsDown(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(standbySnap())
	require.NoError(t, s.Start())
	base := "http://" + s.Addr()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/replica")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	for path, want := range map[string]int{"/replica": 200, "/primary": 503} {
		resp, err = client.Head(base + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, want, resp.StatusCode, "HEAD %s", path)
		assert.Empty(t, body, "HEAD %s has no body", path)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	_, err = client.Get(base + "/replica")
	assert.Error(t, err, "no longer listening")
}

func TestHugeHeadersAreRejectedWith431(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	base := startServer(t, s)
	req, err := http.NewRequest(http.MethodGet, base+"/primary", nil)
	require.NoError(t, err)
	req.Header.Set("X-Huge", strings.Repeat("x", 64<<10))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// The server still answers normal requests.
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get(base + "/primary")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestASlowClientIsCutOffWithoutBlockingOthers(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	s, _ := newTestServer(t, withReadHeaderTimeout(headerTimeout), WithMaxConns(2))
	s.Update(primarySnap())
	base := startServer(t, s)

	slow, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer slow.Close()
	opened := time.Now()
	_, err = io.WriteString(slow, "GET /primary HTTP/1.1\r\nHost: keeper\r\nX-Half: ")
	require.NoError(t, err)

	// Other clients are served at once while the slow one holds its connection.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		start := time.Now()
		resp, err := client.Get(base + "/primary")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Less(t, time.Since(start), headerTimeout, "a request waited for the slow client")
	}

	// The slow client is cut off after the header timeout: the server
	// closes its connection (possibly after a 408) without answering it.
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(slow).ReadString('\n')
	cut := time.Since(opened)
	if err == nil {
		assert.Contains(t, line, "408", "the only answer a half-sent request may get")
	} else {
		assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "connection closed, not timed out on our side: %v", err)
	}
	assert.GreaterOrEqual(t, cut, headerTimeout)
	assert.Less(t, cut, headerTimeout+5*time.Second)
}

func TestTheStaleLimitIsAnOption(t *testing.T) {
	s, _ := newTestServer(t, WithStaleAfter(time.Minute))
	snap := primarySnap()
	snap.UpdatedAt = t0.Add(-30 * time.Second)
	s.Update(snap)
	code, _, _ := get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 200, code, "30 s old is fresh with a 1 min limit")

	s.SetStaleAfter(10 * time.Second)
	code, body, _ := get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 503, code, "the limit changes while the server runs")
	assert.Contains(t, body, "(limit 10s)")
	s.SetStaleAfter(0)
	code, _, _ = get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 503, code, "a limit <= 0 is ignored")

	snap.UpdatedAt = t0.Add(time.Second) // the keeper's clock is ahead
	s.Update(snap)
	code, body, _ = get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"age_seconds":0`, "never a negative age")
}

func TestUpdatesWhileServingAreSafe(t *testing.T) {
	s, _ := newTestServer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			snap := primarySnap()
			snap.ConsecutiveFailures = i
			s.Update(snap)
			s.ObserveCheck(time.Millisecond, i%2 == 0)
		}
	}()
	for range 100 {
		for _, path := range []string{"/primary", "/status", "/metrics"} {
			code, _, _ := get(t, s, http.MethodGet, path)
			assert.Contains(t, []int{200, 503}, code)
		}
	}
	<-done
	got, ok := s.Snapshot()
	require.True(t, ok)
	assert.Equal(t, 499, got.ConsecutiveFailures)
}

// BenchmarkHealthChecks measures what one health check costs the server
// process, handler only (no network): go test -bench . ./gosrc/api
func BenchmarkHealthChecks(b *testing.B) {
	s := New("127.0.0.1:0", withClock(func() time.Time { return t0 }))
	s.Update(primarySnap())
	for _, path := range []string{"/primary", "/replica?max_lag=10s", "/status", "/metrics"} {
		b.Run(path, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, req)
				if rec.Code >= 500 && path != "/replica?max_lag=10s" {
					b.Fatalf("%s: %d", path, rec.Code)
				}
			}
		})
	}
}
