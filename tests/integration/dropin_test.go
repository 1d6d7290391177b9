package integration

// Our users' pg_keeper configuration with only the library name changed:
// no CREATE EXTENSION, which pg_keeper never needed.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// startDropInPair starts a keeper pair whose primary has pg_state (the
// users made it by hand) but not the extension.
func startDropInPair(t *testing.T, extra map[string]string) *pair {
	t.Helper()
	in := pgtest.Require(t, true)
	p := &pair{install: in}
	p.primary, p.standby = in.NewKeeperPair(t, keeperConf(extra), func(primary *pgtest.Node) {
		p.psql(t, primary, "postgres", "-f", filepath.Join(in.ShareDir, "extension", "pg_state.sql"))
	})
	return p
}

// missingFunctionErrors are server log lines of calls to functions of the
// extension that do not exist.
var missingFunctionErrors = regexp.MustCompile(`ERROR:.*function .*pg_keeper_(heartbeat|grant_lease)\([^)]*\) does not exist`)

// TestTheUsersConfigurationGetsLeasesWithoutCreateExtension: the keeper of
// the primary creates the extension itself; leases and the WAL heartbeat
// then work, and neither server logs an error at any check.
func TestTheUsersConfigurationGetsLeasesWithoutCreateExtension(t *testing.T) {
	p := startDropInPair(t, nil)
	p.primary.WaitLog(t, `created the extension pg_keeper_go `+extensionVersion(t)+` in database "postgres"`, 15*time.Second)
	p.waitState(t, p.primary, "primary", "connected", 15*time.Second)
	p.waitState(t, p.standby, "standby", "connected", 15*time.Second)
	p.waitLeasedWithTheCurrentExtension(t)
	// Several more checks: no error in either server's log, no warning.
	waitGoodChecks(t, p.primary, 3)
	waitGoodChecks(t, p.standby, 3)
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		assert.Empty(t, missingFunctionErrors.FindAllString(n.Log(), -1), "%s's log", n.Name)
		assert.NotContains(t, n.Log(), "cannot write the WAL heartbeat")
		assert.NotContains(t, n.Log(), "cannot grant a lease")
	}
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "created the extension pg_keeper_go"))
}

// TestAnOlderExtensionIsUpdatedAndItsGrantsCountMeanwhile: a pair whose
// extension is 1.1 (grants that say neither length nor cluster) is leased
// through the old grant, then the keeper updates the extension to the
// current version and asks with the new one.
func TestAnOlderExtensionIsUpdatedAndItsGrantsCountMeanwhile(t *testing.T) {
	in := pgtest.Require(t, true)
	p := &pair{install: in}
	p.primary, p.standby = in.NewKeeperPair(t, keeperConf(nil), func(primary *pgtest.Node) {
		primary.Exec(t, "postgres", "create extension pg_keeper_go version '1.1'")
	})
	p.primary.WaitLog(t, `updated the extension pg_keeper_go from 1.1 to `+extensionVersion(t)+` in database "postgres"`, 15*time.Second)
	p.waitLeasedWithTheCurrentExtension(t)
	waitGoodChecks(t, p.primary, 3)
	assert.Empty(t, missingFunctionErrors.FindAllString(p.standby.Log(), -1), "the standby's log")
	assert.NotContains(t, p.primary.Log(), "cannot grant a lease")
}

// TestWithCreateExtensionOffTheKeeperSaysOnceWhatIsMissing: the keeper
// leaves the extension alone, logs what is missing once, and no server
// logs an error at every check.
func TestWithCreateExtensionOffTheKeeperSaysOnceWhatIsMissing(t *testing.T) {
	p := startDropInPair(t, map[string]string{"pg_keeper.create_extension": "off"})
	p.primary.WaitLog(t, "cannot write the WAL heartbeat: the function public.pg_keeper_heartbeat() does not exist", 15*time.Second)
	p.primary.WaitLog(t, "the standby cannot grant a lease", 10*time.Second)
	got, err := p.primary.TryQueryString(t.Context(), "postgres", "select count(*) from pg_extension where extname = 'pg_keeper_go'")
	assert.NoError(t, err)
	assert.Equal(t, "0", got, "the keeper left the extension alone")

	// The operator creates it: the keepers use it from their next check
	// (the checks ran all along: pg_keeper_status() now shows them).
	p.primary.Exec(t, "postgres", "create extension pg_keeper_go")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.primary, "guard")
		return err == nil && got == "leased", fmt.Sprintf("guard %q %v: the standby grants no lease", got, err)
	})
	waitGoodChecks(t, p.primary, 3)
	waitGoodChecks(t, p.standby, 3)
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		assert.Empty(t, missingFunctionErrors.FindAllString(n.Log(), -1), "%s's log", n.Name)
	}
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "cannot write the WAL heartbeat"))
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "the standby cannot grant a lease"))
	assert.NotContains(t, p.primary.Log(), "created the extension")
	// ... and once that each problem is gone.
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "pg_keeper_go: the WAL heartbeat is written"))
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "pg_keeper_go: the standby grants leases"))
}

// waitLeasedWithTheCurrentExtension waits until the primary writes under
// the standby's lease and the standby has the extension at its current
// version.
func (p *pair) waitLeasedWithTheCurrentExtension(t *testing.T) {
	t.Helper()
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.primary, "guard")
		return err == nil && got == "leased", fmt.Sprintf("guard %q %v: the standby grants no lease", got, err)
	})
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		v, err := p.standby.TryQueryString(t.Context(), "postgres", "select extversion from pg_extension where extname = 'pg_keeper_go'")
		return err == nil && v == extensionVersion(t), fmt.Sprintf("the standby's extension: %q %v", v, err)
	})
}

// waitGoodChecks waits until n's keeper has made n more good checks of its
// partner (last_success moved n times).
func waitGoodChecks(t *testing.T, node *pgtest.Node, n int) {
	t.Helper()
	var last string
	seen := -1
	pgtest.Eventually(t, time.Duration(n+2)*2*keepaliveTime, poll, func() (bool, string) {
		got, err := status(t.Context(), node, "last_success")
		if err == nil && got != last {
			last, seen = got, seen+1
		}
		return seen >= n, fmt.Sprintf("%s: %d of %d good checks seen (%v)", node.Name, seen, n, err)
	})
}

// extensionVersion is the extension's current version, the control
// file's default_version.
func extensionVersion(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "pg_keeper_go.control"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^default_version = '([0-9.]+)'`).FindSubmatch(b)
	require.Len(t, m, 2, "default_version in pg_keeper_go.control")
	return string(m[1])
}
