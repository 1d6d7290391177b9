package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// rejoinCLI runs pg_keeper_go rejoin as the data directory's owner on
// node's host, naming primary, and returns the exit code and the output.
func rejoinCLI(t *testing.T, p *pair, bin string, node, primary *pgtest.Node, extra ...string) (int, string) {
	t.Helper()
	args := append([]string{"rejoin", "--pgdata", node.DataDir, "--bindir", p.install.BinDir,
		"--primary", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", primary.Port),
		"--start-command", node.StartCommand()}, extra...)
	return node.RunOwnCLI(t, bin, 5*time.Minute, args...)
}

// waitRejoined waits until old streams from primary as a standby its
// keeper calls connected, the primary's keeper sees it, and old has the
// rows primary has in rejoin_t; it checks that old kept its own settings.
func waitRejoined(t *testing.T, p *pair, old, primary *pgtest.Node) {
	t.Helper()
	p.waitState(t, old, "standby", "connected", 30*time.Second)
	p.waitState(t, primary, "primary", "connected", 30*time.Second)
	want := primary.QueryString(t, "postgres", "select count(*) from rejoin_t")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := old.TryQueryString(t.Context(), "postgres", "select count(*) from rejoin_t")
		return err == nil && got == want, fmt.Sprintf("%s has %q rows of %s, err %v", old.Name, got, want, err)
	})
	assert.Equal(t, old.Name, old.QueryString(t, "postgres", "show cluster_name"), "the node's own postgresql.conf")
	fenced, err := status(t.Context(), old, "guard")
	require.NoError(t, err)
	assert.Empty(t, fenced, "a standby has no guard: the fence is lifted")
}

// TestRejoinAfterACrashByPgRewindThenFailBack crashes the primary; once
// the standby took over, the old primary (crashed, with wal_log_hints)
// rejoins by pg_rewind, streams, keeps its configuration, and a second
// failover in the other direction works.
func TestRejoinAfterACrashByPgRewindThenFailBack(t *testing.T) {
	p := startPair(t, map[string]string{"wal_log_hints": "on"})
	bin := pgtest.BuildCLI(t)
	p.primary.Exec(t, "postgres", "create table rejoin_t (id int)")
	p.primary.Exec(t, "postgres", "insert into rejoin_t select generate_series(1, 1000)")
	fault := time.Now()
	p.primary.Crash(t)
	waitWritable(t, p.standby, fault, failoverBound)
	p.standby.Exec(t, "postgres", "insert into rejoin_t values (1001)")

	code, out := rejoinCLI(t, p, bin, p.primary, p.standby, "--dry-run")
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `rejoin: primary host=127.0.0.1 port=\d+ dbname=postgres user=postgres: system \d+, timeline 2, WAL at [0-9A-F]+/[0-9A-F]+; history: timeline 1 until [0-9A-F]+/[0-9A-F]+`, out)
	assert.Contains(t, out, "dry run: 1. run crash recovery (postgres --single)")
	assert.Contains(t, out, "rejoin: dry run: pg_rewind if it diverged, else standby settings only")
	assert.False(t, strings.Contains(out, "stopping the node"), "a crashed node is not running")

	code, out = rejoinCLI(t, p, bin, p.primary, p.standby)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "crash recovery first")
	assert.Regexp(t, `pg_rewind: it diverged: the node's WAL on timeline 1 reaches [0-9A-F/]+, at or past [0-9A-F/]+, where the primary's history switched to timeline 2`, out)
	assert.Contains(t, out, "kept the node's files: pg_hba.conf, pg_ident.conf, pg_keeper_go.state, postgresql.auto.conf, postgresql.conf")
	assert.Contains(t, out, "rejoin: CHECKPOINT on the primary")
	assert.Contains(t, out, "rejoin: pg_rewind: Done!")
	assert.Regexp(t, `rejoin: done in [0-9.]+m?s by pg_rewind: the node streams from host=127.0.0.1 port=\d+ dbname=postgres user=postgres on timeline 2`, out)
	t.Logf("rejoin by pg_rewind:\n%s", out)
	waitRejoined(t, p, p.primary, p.standby)

	fault = time.Now()
	p.standby.Crash(t)
	took := waitWritable(t, p.primary, fault, failoverBound)
	t.Logf("failover back: the rejoined node writable %s after the crash", took)
}

// TestRejoinOfAFencedFrozenPrimaryNeedsARewindOrABaseBackup freezes the
// primary until the standby took over; the old primary resumes, fenced.
// Without wal_log_hints rejoin refuses before it changes anything, with
// the hint; with --basebackup it copies the primary, keeps the old data
// directory, and the node streams.
func TestRejoinOfAFencedFrozenPrimaryNeedsARewindOrABaseBackup(t *testing.T) {
	p := startPair(t, nil)
	bin := pgtest.BuildCLI(t)
	p.primary.Exec(t, "postgres", "create table rejoin_t (id int)")
	fault := time.Now()
	p.primary.Pause(t)
	waitWritable(t, p.standby, fault, failoverBound+time.Second)
	p.primary.Resume(t)
	p.waitState(t, p.primary, "primary", "fenced", 15*time.Second)
	p.standby.Exec(t, "postgres", "insert into rejoin_t values (1)")

	code, out := rejoinCLI(t, p, bin, p.primary, p.standby)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "pg_rewind needs wal_log_hints = on or data checksums, which the node has not")
	assert.Contains(t, out, "hint: Rerun with --basebackup")
	p.waitState(t, p.primary, "primary", "fenced", time.Second) // untouched: still running, fenced

	code, out = rejoinCLI(t, p, bin, p.primary, p.standby, "--basebackup", "--dry-run")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "dry run: 1. stop the node")
	assert.Contains(t, out, "rejoin: dry run: base backup (it diverged")

	code, out = rejoinCLI(t, p, bin, p.primary, p.standby, "--basebackup")
	require.Equal(t, 0, code, out)
	t.Logf("rejoin by base backup:\n%s", out)
	assert.Contains(t, out, "rejoin: stopping the node")
	assert.Regexp(t, `rejoin: done in [0-9.]+m?s by base backup`, out)
	old := regexpFind(t, `the node's old files are kept in (\S+)`, out)
	assert.FileExists(t, filepath.Join(old, "PG_VERSION"))
	waitRejoined(t, p, p.primary, p.standby)
}

// TestRejoinAfterACleanShutdownNeedsOnlyTheStandbySettings stops the
// primary cleanly (its shutdown checkpoint reaches the standby before the
// standby takes over): nothing diverged, rejoin only writes the standby
// settings.
func TestRejoinAfterACleanShutdownNeedsOnlyTheStandbySettings(t *testing.T) {
	p := startPair(t, nil)
	bin := pgtest.BuildCLI(t)
	p.primary.Exec(t, "postgres", "create table rejoin_t (id int)")
	fault := time.Now()
	p.primary.StopOrFail(t, "fast")
	waitWritable(t, p.standby, fault, failoverBound)
	p.standby.Exec(t, "postgres", "insert into rejoin_t values (1)")

	code, out := rejoinCLI(t, p, bin, p.primary, p.standby)
	require.Equal(t, 0, code, out)
	t.Logf("rejoin after a clean shutdown:\n%s", out)
	assert.Regexp(t, `standby settings only: it did not diverge: the node's WAL on timeline 1 ends before [0-9A-F/]+, where the primary's history switched to timeline 2`, out)
	assert.NotContains(t, out, "pg_rewind --target-pgdata")
	waitRejoined(t, p, p.primary, p.standby)
}

func regexpFind(t *testing.T, pattern, s string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(s)
	require.Len(t, m, 2, "%s in %s", pattern, s)
	return m[1]
}
