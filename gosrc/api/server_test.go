package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// t0 is the fixed "now" of the handler tests.
var t0 = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)

func primarySnap() status.Snapshot {
	return status.Snapshot{Role: status.RolePrimary, State: "connected", Partner: "host=db2 port=5432 dbname=postgres user=keeper",
		KeepaliveTime: 2 * time.Second, KeepaliveCount: 3, FailoverAfter: 6 * time.Second, Timeline: 2, LSN: "0/3000148", Writable: true,
		Failovers: 1, LastFailoverAt: t0.Add(-time.Hour), LastSuccess: t0.Add(-time.Second), UpdatedAt: t0.Add(-time.Second),
		Guard: "open", GuardReason: "no standby has followed this primary yet"}
}

func standbySnap() status.Snapshot {
	return status.Snapshot{Role: status.RoleStandby, State: "connected", KeepaliveTime: 2 * time.Second, KeepaliveCount: 3,
		Timeline: 2, LSN: "0/3000148", Streaming: true, ReplicationState: "streaming", ReplayLagSeconds: 0.5,
		ReplayLagBytes: 4096, SyncState: "async", UpdatedAt: t0.Add(-time.Second)}
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
	with := func(base status.Snapshot, fn func(*status.Snapshot)) *status.Snapshot { fn(&base); return &base }
	tests := []struct {
		name                     string
		snap                     *status.Snapshot // nil: no Update
		primary, replica, health int
		reason                   string // in the body of the first 503
	}{
		{"before the first snapshot every check fails", nil, 503, 503, 503, "has not published"},
		{"a writable unfenced primary is the primary", with(primarySnap(), func(*status.Snapshot) {}), 200, 503, 200, "not a standby"},
		{"a fenced primary is not the primary", with(primarySnap(), func(s *status.Snapshot) { s.Fenced, s.FenceReason = true, "partner promoted" }), 503, 503, 200, "fenced: partner promoted"},
		{"a read-only primary is not the primary", with(primarySnap(), func(s *status.Snapshot) { s.Writable = false }), 503, 503, 200, "does not accept writes"},
		{"a primary within its write lease is the primary", with(primarySnap(), func(s *status.Snapshot) { s.WritableUntil = t0.Add(time.Millisecond) }), 200, 503, 200, "not a standby"},
		{"a primary whose write lease ended is not the primary", with(primarySnap(), func(s *status.Snapshot) { s.WritableUntil = t0.Add(-1500 * time.Millisecond) }), 503, 503, 200, "write lease ended 1.5s ago"},
		{"a primary in a failing state is still the primary", with(primarySnap(), func(s *status.Snapshot) { s.State, s.ConsecutiveFailures = "failing", 2 }), 200, 503, 200, "not a standby"},
		{"a streaming standby is a replica", with(standbySnap(), func(*status.Snapshot) {}), 503, 200, 200, "not a primary (role standby)"},
		{"a standby that does not stream is still a replica (as in Patroni)", with(standbySnap(), func(s *status.Snapshot) { s.Streaming, s.ReplicationState = false, "" }), 503, 200, 200, "not a primary"},
		{"a promoting standby is neither", with(standbySnap(), func(s *status.Snapshot) { s.State, s.Streaming = "promoting", false }), 503, 503, 200, "not a primary"},
		{"a fenced standby is not a replica", with(standbySnap(), func(s *status.Snapshot) { s.Fenced = true }), 503, 503, 200, "not a primary"},
		{"an unknown role is neither", with(standbySnap(), func(s *status.Snapshot) { s.Role, s.State = status.RoleUnknown, "init" }), 503, 503, 200, "role unknown"},
		{"invalid settings make the health check fail", with(primarySnap(), func(s *status.Snapshot) { s.ConfigError = "pg_keeper.partner_conninfo is not set" }), 200, 503, 503, "not a standby"},
		{"a stale primary snapshot fails every check", with(primarySnap(), func(s *status.Snapshot) { s.UpdatedAt = t0.Add(-time.Minute) }), 503, 503, 503, "stale: last updated 1m0s ago (limit 15s)"},
		{"a stale standby snapshot fails every check", with(standbySnap(), func(s *status.Snapshot) { s.UpdatedAt = t0.Add(-16 * time.Second) }), 503, 503, 503, "stale"},
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

func TestOnlyGetHeadAndOptionsAreAllowed(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, "BREW"} {
		for _, path := range []string{"/primary", "/metrics", "/status", "/nowhere"} {
			code, _, hdr := get(t, s, m, path)
			assert.Equal(t, http.StatusMethodNotAllowed, code, "%s %s", m, path)
			assert.Equal(t, "GET, HEAD, OPTIONS", hdr.Get("Allow"), "%s %s", m, path)
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

	var back status.Snapshot
	require.NoError(t, json.Unmarshal([]byte(body), &back))
	want := snap.Scrubbed()
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
	var back status.Snapshot
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, snap, back)
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
