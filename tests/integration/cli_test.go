package integration

// Integration tests of the pg_keeper_go command (gosrc/cmd/pg_keeper_go)
// against a real primary and streaming standby.  The command reads every
// fact with SQL, so these tests run without the extension installed: the
// failover is a pg_promote() after the primary stops, and a stand-in
// pg_keeper_status() exercises the fenced columns.  The binary is built
// with the go command that runs the tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// cliSecret is a password put into every --node: trust authentication
// ignores it, and no output may contain it.
const cliSecret = "Cl1S3cretPw"

// cliPair is a primary and its standby, without the keeper.
type cliPair struct {
	install          *pgtest.Install
	primary, standby *pgtest.Node
	bin              string // the pg_keeper_go binary
}

// startCLIPair starts a primary with pg_state.failover_log (created by
// sql/pg_state.sql) and a streaming standby, and builds the command.
func startCLIPair(t *testing.T) *cliPair {
	t.Helper()
	in := pgtest.Require(t, false)
	p := &cliPair{install: in, bin: pgtest.BuildCLI(t)}
	p.primary = in.NewPrimary(t, "primary", nil)
	script, err := filepath.Abs(filepath.Join("..", "..", "sql", "pg_state.sql"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(in.BinDir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
		"-h", "127.0.0.1", "-p", strconv.Itoa(p.primary.Port), "-U", "postgres", "-d", "postgres", "-f", script).CombinedOutput()
	require.NoError(t, err, "psql -f %s: %s", script, out)
	p.standby = in.NewStandby(t, "standby", p.primary, nil)
	return p
}

// node returns n's connection string for the command, with a password.
func (p *cliPair) node(n *pgtest.Node) string {
	return n.ConnString("postgres") + " password=" + cliSecret
}

// name returns how the command names n.
func cliNodeName(n *pgtest.Node) string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// cli runs the command to completion and returns its exit code, stdout and
// stderr; no output may hold the password.
func (p *cliPair) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err)
	}
	assert.NotContains(t, out.String()+errOut.String(), cliSecret, "a password was printed")
	return code, out.String(), errOut.String()
}

// unreachableNode returns a connection string to a loopback port nothing
// listens on.
func cliUnreachableNode(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres password=%s", port, cliSecret)
}

// appConfig is an application's configuration whose database keys the
// watcher owns.
func cliAppConfig(port int) string {
	return fmt.Sprintf(`# app.yaml: written by hand.
server:
  listen: ":8080"   # all interfaces

database:
  # kept up to date by pg_keeper_go watch
  host: 127.0.0.1 # the primary
  port: %d
  name: app
`, port)
}

// writeConfig writes cliAppConfig(port) into a new directory and returns its path.
func cliWriteConfig(t *testing.T, port int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cliAppConfig(port)), 0o640))
	return path
}

func cliRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

// watchArgs are the flags of watch for p, the file and a command that
// appends the new primary's port to marker.
func (p *cliPair) watchArgs(file, marker string, nodes ...string) []string {
	if len(nodes) == 0 {
		nodes = []string{p.node(p.primary), p.node(p.standby)}
	}
	args := []string{"watch"}
	for _, n := range nodes {
		args = append(args, "--node", n)
	}
	return append(args, "--file", file, "--set", "database.host={{.Host}}", "--set", "database.port={{.Port}}",
		"--command", `echo "$PG_KEEPER_PRIMARY_PORT" >> `+marker, "--command-timeout", "10s")
}

func TestCLIStatusShowsOnePrimaryAndOneStandby(t *testing.T) {
	p := startCLIPair(t)
	code, out, errOut := p.cli(t, "status", "--node", p.node(p.primary), "--node", p.node(p.standby))
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	t.Logf("pg_keeper_go status:\n%s", out)
	lines := strings.Split(out, "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	assert.Regexp(t, `^NODE\s+ROLE\s+WRITABLE\s+TIMELINE\s+LSN\s+LAG\s+LAST FAILOVER\s+KEEPER$`, lines[0])
	assert.Regexp(t, `^`+cliNodeName(p.primary)+`\s+primary\s+yes\s+1\s+\d+/[0-9A-F]+\s+-\s+-\s+-$`, lines[1])
	assert.Regexp(t, `^`+cliNodeName(p.standby)+`\s+standby\s+no\s+1\s+\d+/[0-9A-F]+\s+\d+(\.\d+)?m?s\s+-\s+-$`, lines[2])
	assert.Contains(t, out, "\nprimary: "+cliNodeName(p.primary)+": the only writable, unfenced node ("+cliNodeName(p.standby)+" is in recovery)\n")

	// A failover_log row (as the keeper writes after a promotion) shows on
	// both nodes once replicated.
	p.primary.Exec(t, "pg_state", `insert into failover_log (unixtime, host, new_timeline, reason, promoted_at)
		values (1714557600, 'db-test', 1, 'test row', '2024-05-01 10:00:00+00')`)
	var rep struct {
		Nodes   []watch.NodeFacts
		Primary string
		Error   string
	}
	pgtest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		code, out, _ = p.cli(t, "status", "--json", "--node", p.node(p.primary), "--node", p.node(p.standby))
		rep.Nodes = nil
		if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Nodes) != 2 {
			return false, fmt.Sprintf("bad JSON (%v): %s", err, out)
		}
		// Both, and the standby's replay lag: under load one node's read
		// may run past its deadline, and the facts are read before the
		// failover log (the standby may replay the row in between, its
		// first transaction: no replay lag before it).
		return rep.Nodes[0].LastFailover != nil && rep.Nodes[1].LastFailover != nil && rep.Nodes[1].ReplayLagSeconds != nil,
			"the failover_log row has not reached the standby, or a node's read failed: " + out
	})
	assert.Equal(t, 0, code)
	assert.Equal(t, cliNodeName(p.primary), rep.Primary)
	assert.Empty(t, rep.Error)
	pr, st := rep.Nodes[0], rep.Nodes[1]
	assert.True(t, pr.Reachable && pr.Writable && !pr.InRecovery && !pr.ReadOnly)
	assert.Equal(t, uint32(1), pr.Timeline)
	assert.NotEmpty(t, pr.LSN)
	assert.Nil(t, pr.ReplayLagSeconds)
	assert.Nil(t, pr.Keeper, "no pg_keeper_status() without the extension")
	assert.True(t, st.Reachable && st.InRecovery && !st.Writable && st.Streaming)
	assert.Equal(t, uint32(1), st.Timeline)
	require.NotNil(t, st.ReplayLagSeconds)
	assert.GreaterOrEqual(t, *st.ReplayLagSeconds, 0.0)
	for _, n := range rep.Nodes {
		require.NotNil(t, n.LastFailover, n.Node)
		assert.Equal(t, watch.FailoverRow{Unixtime: 1714557600, Host: "db-test", NewTimeline: 1, Reason: "test row",
			PromotedAt: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)}, cliUTC(*n.LastFailover), n.Node)
	}

	code, out, _ = p.cli(t, "status", "--node", p.node(p.primary))
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "2024-05-01T10:00:00Z db-test (timeline 1)")
}

func cliUTC(r watch.FailoverRow) watch.FailoverRow {
	r.PromotedAt = r.PromotedAt.UTC()
	return r
}

func TestCLIStatusWorksForAMonitoringRoleAndOldFailoverTables(t *testing.T) {
	p := startCLIPair(t)
	p.primary.Exec(t, "postgres", "create role monitor login in role pg_monitor")
	// pg_keeper's table: two columns, unixtime int.
	p.primary.Exec(t, "pg_state", "drop table failover_log")
	p.primary.Exec(t, "pg_state", "create table failover_log (unixtime int, host varchar(10))")
	p.primary.Exec(t, "pg_state", "grant select on failover_log to public")
	p.primary.Exec(t, "pg_state", "insert into failover_log values (100, 'old'), (200, 'newer')")
	asMonitor := func(n *pgtest.Node) string {
		return strings.Replace(p.node(n), "user=postgres", "user=monitor", 1)
	}
	var rep struct{ Nodes []watch.NodeFacts }
	pgtest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		code, out, errOut := p.cli(t, "status", "--json", "--node", asMonitor(p.primary), "--node", asMonitor(p.standby))
		if code != 0 {
			return false, fmt.Sprintf("exit %d: %s %s", code, out, errOut)
		}
		rep.Nodes = nil
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return false, err.Error()
		}
		return rep.Nodes[1].LastFailover != nil && rep.Nodes[1].LastFailover.Host == "newer", "not replicated yet: " + out
	})
	for _, n := range rep.Nodes {
		assert.True(t, n.Reachable, "%s: %s", n.Node, n.Error)
		assert.Empty(t, n.FailoverLogError, n.Node)
		assert.Equal(t, &watch.FailoverRow{Unixtime: 200, Host: "newer"}, n.LastFailover, n.Node)
		assert.Equal(t, uint32(1), n.Timeline, n.Node)
	}
	assert.True(t, rep.Nodes[1].Streaming, "pg_monitor sees the WAL receiver")

	// A role that may not read the table still gets the node's facts.
	p.primary.Exec(t, "pg_state", "revoke all on failover_log from public")
	p.primary.Exec(t, "postgres", "create role app login")
	asApp := strings.Replace(p.node(p.primary), "user=postgres", "user=app", 1)
	code, out, _ := p.cli(t, "status", "--node", asApp)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "permission denied for table failover_log")
}

func TestCLIStatusHonoursTheKeepersFence(t *testing.T) {
	p := startCLIPair(t)
	// A stand-in for the extension's function with the fence columns: the
	// primary says it is fenced.
	p.primary.Exec(t, "postgres", `create function pg_keeper_status(out role text, out state text, out fenced boolean, out fence_reason text)
		language sql as $$ select case when pg_is_in_recovery() then 'standby' else 'primary' end,
		                          case when pg_is_in_recovery() then 'connected' else 'alone' end,
		                          not pg_is_in_recovery(), 'test: the partner is the primary on timeline 2' $$`)
	pgtest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		ok, err := p.standby.TryQueryString(context.Background(), "postgres", "select to_regprocedure('pg_keeper_status()') is not null")
		return ok == "t", fmt.Sprintf("function not replicated: %q %v", ok, err)
	})
	code, out, _ := p.cli(t, "status", "--node", p.node(p.primary), "--node", p.node(p.standby))
	assert.Equal(t, 3, code, out)
	assert.Regexp(t, cliNodeName(p.primary)+`\s+primary\s+yes\s.*primary:alone, fenced: test: the partner is the primary on timeline 2\n`, out)
	assert.Regexp(t, cliNodeName(p.standby)+`\s+standby\s.*standby:connected\n`, out)
	assert.Contains(t, out, "no primary: "+cliNodeName(p.primary)+" is fenced: test: the partner is the primary on timeline 2; "+cliNodeName(p.standby)+" is in recovery")

	// Versions without the fence columns are never fenced.
	p.primary.Exec(t, "postgres", "drop function pg_keeper_status()")
	p.primary.Exec(t, "postgres", `create function pg_keeper_status(out role text, out state text)
		language sql as $$ select 'primary'::text, 'alone'::text $$`)
	code, out, _ = p.cli(t, "status", "--node", p.node(p.primary))
	assert.Equal(t, 0, code, out)
	assert.Regexp(t, `\sprimary:alone\n`, out)

	// The function exists but may not be called: the node may be fenced,
	// so it is not taken for the primary.
	p.primary.Exec(t, "postgres", "revoke all on function pg_keeper_status() from public")
	p.primary.Exec(t, "postgres", "create role app login")
	code, out, _ = p.cli(t, "status", "--node", strings.Replace(p.node(p.primary), "user=postgres", "user=app", 1))
	assert.Equal(t, 3, code, out)
	assert.Regexp(t, `\sprimary\s+yes\s.*\s\?
`, out, "the keeper column says it is unknown")
	assert.Contains(t, out, "is writable, but whether its keeper fenced it is unknown: pg_keeper_status(): ERROR: permission denied for function pg_keeper_status (SQLSTATE 42501)")
}
