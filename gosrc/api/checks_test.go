package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// patroniPaths are the health checks of Patroni's REST API, in the order
// of the columns of TestEveryPathInEveryRoleAndState.
var patroniPaths = []string{"/", "/primary", "/master", "/read-write", "/leader", "/replica", "/read-only",
	"/synchronous", "/sync", "/asynchronous", "/async", "/health", "/liveness", "/readiness"}

// TestEveryPathInEveryRoleAndState answers each of Patroni's health-check
// paths for a node in each role and state, with each method a load
// balancer uses: what HAProxy configurations written for Patroni rely on.
func TestEveryPathInEveryRoleAndState(t *testing.T) {
	with := func(base status.Snapshot, fn func(*status.Snapshot)) status.Snapshot { fn(&base); return base }
	sync := func(s *status.Snapshot) { s.SyncState = "sync" }
	// want is one code per path, in the order of patroniPaths:
	//                /    pri  mas  rw   lead repl ro   sync s    async a    hlth live ready
	tests := []struct {
		name string
		snap status.Snapshot
		want [14]int
	}{
		{"writable primary", primarySnap(),
			[14]int{200, 200, 200, 200, 200, 503, 200, 503, 503, 503, 503, 200, 200, 200}},
		{"primary under a running lease", with(primarySnap(), func(s *status.Snapshot) { s.Guard, s.WritableUntil = "leased", t0.Add(time.Second) }),
			[14]int{200, 200, 200, 200, 200, 503, 200, 503, 503, 503, 503, 200, 200, 200}},
		{"primary whose lease ended (writes held, still the pair's primary)", with(primarySnap(), func(s *status.Snapshot) { s.Guard, s.WritableUntil = "leased", t0.Add(-time.Second) }),
			[14]int{503, 503, 503, 503, 200, 503, 200, 503, 503, 503, 503, 200, 200, 200}},
		{"read-only primary", with(primarySnap(), func(s *status.Snapshot) { s.Writable = false }),
			[14]int{503, 503, 503, 503, 200, 503, 200, 503, 503, 503, 503, 200, 200, 200}},
		{"primary not judged since start-up (pending)", with(primarySnap(), func(s *status.Snapshot) { s.Writable, s.Guard = false, "pending" }),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 200, 503}},
		{"fenced old primary", with(primarySnap(), func(s *status.Snapshot) {
			s.Writable, s.Guard, s.Fenced, s.FenceReason = false, "fenced", true, "the partner is the primary on timeline 3"
		}),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 200, 503}},
		{"primary with invalid settings", with(primarySnap(), func(s *status.Snapshot) { s.ConfigError = "pg_keeper.partner_conninfo is not set" }),
			[14]int{200, 200, 200, 200, 200, 503, 200, 503, 503, 503, 503, 503, 200, 200}},
		{"asynchronous streaming standby", standbySnap(),
			[14]int{503, 503, 503, 503, 503, 200, 200, 503, 503, 200, 200, 200, 200, 200}},
		{"synchronous streaming standby", with(standbySnap(), sync),
			[14]int{503, 503, 503, 503, 503, 200, 200, 200, 200, 503, 503, 200, 200, 200}},
		{"quorum standby", with(standbySnap(), func(s *status.Snapshot) { s.SyncState = "quorum" }),
			[14]int{503, 503, 503, 503, 503, 200, 200, 200, 200, 503, 503, 200, 200, 200}},
		{"potential standby", with(standbySnap(), func(s *status.Snapshot) { s.SyncState = "potential" }),
			[14]int{503, 503, 503, 503, 503, 200, 200, 503, 503, 200, 200, 200, 200, 200}},
		{"standby whose primary is silent (not streaming, sync state unknown)", with(standbySnap(), func(s *status.Snapshot) {
			s.Streaming, s.ReplicationState, s.SyncState, s.ReplayLagBytes, s.State = false, "", "", -1, "failing"
		}),
			[14]int{503, 503, 503, 503, 503, 200, 200, 503, 503, 503, 503, 200, 200, 503}},
		{"standby in archive recovery", with(standbySnap(), func(s *status.Snapshot) { s.Streaming, s.ReplicationState = false, "in archive recovery" }),
			[14]int{503, 503, 503, 503, 503, 200, 200, 503, 503, 200, 200, 200, 200, 503}},
		{"standby holding its promotion", with(standbySnap(), func(s *status.Snapshot) { s.State, s.PromotionHeld = "held", "the WAL receiver still streams" }),
			[14]int{503, 503, 503, 503, 503, 200, 200, 503, 503, 200, 200, 200, 200, 200}},
		{"standby being promoted", with(standbySnap(), func(s *status.Snapshot) { s.State, s.Streaming, s.ReplicationState = "promoting", false, "" }),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 200, 503}},
		{"unknown role", with(standbySnap(), func(s *status.Snapshot) { s.Role, s.State = status.RoleUnknown, "init" }),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 200, 200, 503}},
		{"stale primary", with(primarySnap(), func(s *status.Snapshot) { s.UpdatedAt = t0.Add(-time.Minute) }),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503}},
		{"stale standby", with(standbySnap(), func(s *status.Snapshot) { s.UpdatedAt = t0.Add(-time.Minute) }),
			[14]int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestServer(t)
			s.Update(tt.snap)
			for i, path := range patroniPaths {
				code, body, hdr := get(t, s, http.MethodGet, path)
				assert.Equal(t, tt.want[i], code, "GET %s: %s", path, body)
				assert.Equal(t, "application/json", hdr.Get("Content-Type"), path)
				if code != 200 {
					assert.Contains(t, body, `"reason":`, "GET %s says why", path)
				}
				code, _, _ = get(t, s, http.MethodHead, path)
				assert.Equal(t, tt.want[i], code, "HEAD %s", path)
				code, body, hdr = get(t, s, http.MethodOptions, path)
				assert.Equal(t, tt.want[i], code, "OPTIONS %s", path)
				assert.Empty(t, body, "OPTIONS %s", path)
				assert.Equal(t, "0", hdr.Get("Content-Length"), "OPTIONS %s", path)
				assert.Equal(t, "GET, HEAD, OPTIONS", hdr.Get("Allow"), "OPTIONS %s", path)
			}
		})
	}
}

func TestBeforeTheFirstSnapshotEveryCheckFails(t *testing.T) {
	s, _ := newTestServer(t)
	for _, path := range patroniPaths {
		code, body, _ := get(t, s, http.MethodGet, path)
		assert.Equal(t, 503, code, path)
		assert.Contains(t, body, "has not published", path)
	}
}

func TestLagAndReplicationStateQueries(t *testing.T) {
	s, _ := newTestServer(t)
	snap := standbySnap()
	snap.ReplayLagBytes = 2 << 20 // 2 MB
	snap.SyncState = "sync"
	s.Update(snap)
	tests := []struct {
		target string
		code   int
		body   string
	}{
		{"/replica?lag=2MB", 200, `"status":"ok"`},
		{"/replica?lag=2097152", 200, `"status":"ok"`},
		{"/replica?lag=1MB", 503, "replay lag 2097152 bytes exceeds lag 1048576 bytes"},
		{"/replica?lag=2047kB", 503, "exceeds lag"},
		{"/replica?lag=1GB", 200, `"status":"ok"`},
		{"/read-only?lag=1MB", 503, "exceeds lag"},
		{"/synchronous?lag=1MB", 503, "exceeds lag"},
		{"/sync?lag=16MB", 200, `"status":"ok"`},
		{"/readiness?lag=1MB", 503, "exceeds lag"},
		{"/replica?lag=10mb", 400, `invalid lag \"10mb\"`},
		{"/replica?lag=1PB", 400, "invalid lag"},
		{"/replica?lag=-1", 400, "invalid lag"},
		{"/replica?replication_state=streaming", 200, `"status":"ok"`},
		{"/replica?replication_state=in%20archive%20recovery", 503, `replication_state is \"streaming\", not \"in archive recovery\"`},
		{"/replica?replication_state=catching-up", 400, "invalid replication_state"},
		{"/primary?lag=oops", 400, "invalid lag"},
	}
	for _, tt := range tests {
		code, body, _ := get(t, s, http.MethodGet, tt.target)
		assert.Equal(t, tt.code, code, "%s: %s", tt.target, body)
		assert.Contains(t, body, tt.body, tt.target)
	}

	// A lag the keeper could not measure (the primary did not answer)
	// passes a lag limit, as in Patroni; replication_state still decides.
	snap.ReplayLagBytes, snap.Streaming, snap.ReplicationState = -1, false, ""
	s.Update(snap)
	code, body, _ := get(t, s, http.MethodGet, "/replica?lag=1kB")
	assert.Equal(t, 200, code, body)
	code, body, _ = get(t, s, http.MethodGet, "/replica?replication_state=streaming")
	assert.Equal(t, 503, code, body)
	code, body, _ = get(t, s, http.MethodGet, "/readiness")
	assert.Equal(t, 503, code, "a standby that does not stream is not ready: %s", body)
}

func TestParseLagBytesTakesPatronisUnits(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "10B": 10, "10kB": 10 << 10, "16MB": 16 << 20,
		" 16 MB ": 16 << 20, "1GB": 1 << 30, "1TB": 1 << 40, "1.5MB": 3 << 19} {
		got, err := ParseLagBytes(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "MB", "10mb", "10KB", "10kb", "1PB", "10 MB x", "-5", "1e3", "0x10", "9999999999TB"} {
		_, err := ParseLagBytes(in)
		assert.Error(t, err, in)
	}
}

func TestUnknownPathsAre404(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	for _, path := range []string{"/nowhere", "/primary/extra", "/standby-leader", "/patroni"} {
		code, body, _ := get(t, s, http.MethodGet, path)
		assert.Equal(t, http.StatusNotFound, code, path)
		assert.True(t, strings.Contains(body, "404"), "%s: %s", path, body)
	}
}
