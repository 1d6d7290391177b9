package api

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// rulesDir holds the alerting rules the project ships.
var rulesDir = filepath.Join("..", "..", "monitoring")

// promtool returns the path of Prometheus' promtool (Debian's prometheus
// package).  Without it the test is skipped with the reason, unless
// PGK_REQUIRE_PROMTOOL is set (make test sets it: CI must not skip).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("PGK_REQUIRE_PROMTOOL") != "" {
			t.Fatalf("promtool not found (PGK_REQUIRE_PROMTOOL is set): install the Debian package prometheus")
		}
		t.Skip("promtool not found: install the Debian package prometheus")
	}
	return path
}

func runPromtool(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool(t), args...)
	cmd.Dir = rulesDir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// snapshotsOfEveryKind are the snapshots whose metrics, together, include
// every series the server can export.
func snapshotsOfEveryKind() map[string]status.Snapshot {
	leased := primarySnap()
	leased.Guard, leased.WritableUntil = "leased", t0.Add(3*time.Second)
	fenced := primarySnap()
	fenced.Fenced, fenced.Guard, fenced.Writable = true, "fenced", false
	held := standbySnap()
	held.State, held.PromotionHeld = "held", "the WAL receiver still streams"
	return map[string]status.Snapshot{"primary": primarySnap(), "leased primary": leased, "fenced primary": fenced,
		"standby": standbySnap(), "held standby": held}
}

// TestMetricsPassPromtoolsLint runs promtool check metrics (Prometheus'
// naming and type conventions) on /metrics in every role.
func TestMetricsPassPromtoolsLint(t *testing.T) {
	promtool(t)
	for name, snap := range snapshotsOfEveryKind() {
		s, _ := newTestServer(t)
		s.Update(snap)
		s.ObserveCheck(30*time.Millisecond, true)
		code, body, _ := get(t, s, http.MethodGet, "/metrics")
		require.Equal(t, 200, code)
		out := runPromtool(t, body, "check", "metrics")
		assert.Empty(t, strings.TrimSpace(out), "%s: promtool check metrics:\n%s", name, out)
	}
}

// TestTheAlertingRulesLoadAndFire checks the rules file and runs its unit
// tests (each alert fires on the series it is written for), and that every
// pg_keeper metric a rule reads is one the server exports.
func TestTheAlertingRulesLoadAndFire(t *testing.T) {
	assert.Contains(t, runPromtool(t, "", "check", "rules", "pg_keeper_go.rules.yml"), "SUCCESS: 8 rules found")
	assert.Contains(t, runPromtool(t, "", "test", "rules", "pg_keeper_go.rules.test.yml"), "SUCCESS")

	exported := map[string]bool{}
	for _, snap := range snapshotsOfEveryKind() {
		s, _ := newTestServer(t)
		s.Update(snap)
		for name := range scrape(t, s) {
			exported[name] = true
		}
	}
	rules, err := os.ReadFile(filepath.Join(rulesDir, "pg_keeper_go.rules.yml"))
	require.NoError(t, err)
	used := regexp.MustCompile(`pg_keeper_[a-z_]+\(?`).FindAllString(string(rules), -1)
	require.NotEmpty(t, used)
	for _, name := range used {
		if name == "pg_keeper_go" || strings.HasSuffix(name, "(") { // the job's name, an SQL function
			continue
		}
		assert.True(t, exported[name], "the rules read %s, which /metrics does not export", name)
	}
}
