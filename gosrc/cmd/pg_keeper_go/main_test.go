package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/command"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
)

// runCLI runs the command line and returns its exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return fmt.Sprintf("host=127.0.0.1 port=%d user=app password=S3cretPw dbname=postgres sslmode=disable", port)
}

func TestEveryCommandHasHelpWithItsFlagsAndExitCodes(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"status": {"--node CONNINFO", "--json", "--timeout duration", "--failover-log-database string", "--failover-log-table string"},
		"watch": {"--node CONNINFO", "--file string", "--set KEY=TEMPLATE", "--command string", "--command-timeout duration",
			"--interval duration", "--timeout duration", "--once", "--log-level string", "--log-format string"},
		"pause":      {"--node CONNINFO", "--timeout duration"},
		"resume":     {"--node CONNINFO", "--timeout duration"},
		"switchover": {"--node CONNINFO", "--max-lag bytes", "--timeout duration", "--primary-conninfo CONNINFO", "--dry-run"},
		"rejoin": {"--pgdata DIR", "--primary CONNINFO", "--bindir DIR", "--config-file string", "--stop-command string",
			"--start-command string", "--node CONNINFO", "--basebackup", "--dry-run", "--timeout duration"},
		"fsm": nil,
	} {
		for _, args := range [][]string{{cmd, "--help"}, {cmd, "-h"}, {"help", cmd}, {cmd, "--node", "x", "--help"}} {
			code, out, errOut := runCLI(t, args...)
			assert.Equal(t, exitOK, code, "%v", args)
			assert.Empty(t, errOut, "%v", args)
			assert.True(t, strings.HasPrefix(out, "Usage: pg_keeper_go "+cmd), "%v: %s", args, out)
			assert.Contains(t, out, "Exit codes:\n  0  success", "%v", args)
			assert.Contains(t, out, "4  ambiguous", "%v", args)
			for _, f := range flags {
				assert.Contains(t, out, "\n  "+f+"\n      ", "%v lists %s", args, f)
			}
		}
	}
}

func TestTheMainHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		code, out, _ := runCLI(t, args...)
		assert.Equal(t, exitOK, code)
		assert.Contains(t, out, "Commands:\n  status")
		assert.Contains(t, out, "Exit codes:")
	}
	code, _, errOut := runCLI(t)
	assert.Equal(t, exitUsage, code, "no command")
	assert.Contains(t, errOut, "Usage: pg_keeper_go COMMAND")
	code, _, errOut = runCLI(t, "promote")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown command "promote"`)
	code, _, errOut = runCLI(t, "help", "promote")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown command "promote"`)
}

func TestUsageErrorsExitWith2AndSayWhatIsWrong(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "app.yaml")
	require.NoError(t, os.WriteFile(file, []byte("database:\n  host: db1\n"), 0o644))
	node := "host=127.0.0.1 port=5432"
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"status needs a node", []string{"status"}, "give at least one --node"},
		{"status refuses an unknown flag", []string{"status", "--nodes", node}, "flag provided but not defined: -nodes"},
		{"status refuses extra arguments", []string{"status", "--node", node, "extra"}, `unexpected argument "extra"`},
		{"status refuses a bad timeout", []string{"status", "--node", node, "--timeout", "0s"}, "--timeout must be positive"},
		{"status refuses a bad connection string without showing its password", []string{"status", "--node", "host=db1 port=x password=S3cretPw"},
			`invalid connection string "host=db1 port=x password=********": invalid port`},
		{"status refuses a node with several hosts", []string{"status", "--node", "host=db1,db2"}, "names several hosts"},
		{"watch needs a node", []string{"watch", "--file", file, "--set", "database.host={{.Host}}"}, "give at least one --node"},
		{"watch needs a file", []string{"watch", "--node", node, "--set", "database.host={{.Host}}"}, "--file is required"},
		{"watch needs a key to set", []string{"watch", "--node", node, "--file", file}, "give at least one --set"},
		{"watch refuses a set without a template", []string{"watch", "--node", node, "--file", file, "--set", "database.host"}, "want key=TEMPLATE"},
		{"watch refuses a template with an unknown field", []string{"watch", "--node", node, "--file", file, "--set", "database.host={{.Hostname}}"},
			"can't evaluate field Hostname"},
		{"watch refuses a bad interval", []string{"watch", "--node", node, "--file", file, "--set", "database.host={{.Host}}", "--interval", "-1s"},
			"must be positive"},
		{"watch refuses a bad duration", []string{"watch", "--node", node, "--file", file, "--set", "database.host={{.Host}}", "--timeout", "soon"},
			`invalid value "soon" for flag -timeout`},
		{"watch refuses a bad log level", []string{"watch", "--node", node, "--file", file, "--set", "database.host={{.Host}}", "--log-level", "loud"},
			"invalid --log-level loud"},
		{"fsm takes no arguments", []string{"fsm", "x"}, `unexpected argument "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, tt.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tt.msg)
			assert.Contains(t, errOut, "--help' for usage")
			assert.NotContains(t, errOut, "S3cretPw")
		})
	}
}

func TestStatusWithNoReachableNodeExitsWith3(t *testing.T) {
	a, b := closedPort(t), closedPort(t)
	code, out, errOut := runCLI(t, "status", "--node", a, "--node", b)
	assert.Equal(t, exitNoPrimary, code)
	// A password on the command line still works, with a warning per node.
	assert.Equal(t, 2, strings.Count(errOut, "holds a password, which every user of this host can read in ps"), errOut)
	assert.Contains(t, errOut, "hint: Put it in ~/.pgpass or PGPASSWORD instead.")
	assert.NotContains(t, errOut, "S3cretPw")
	assert.Contains(t, out, "NODE")
	assert.Contains(t, out, "unreachable")
	assert.Contains(t, out, "connection refused")
	assert.Contains(t, out, "no primary: ")
	assert.NotContains(t, out, "S3cretPw")

	code, out, _ = runCLI(t, "status", "--json", "--node", a, "--node", b)
	assert.Equal(t, exitNoPrimary, code)
	assert.NotContains(t, out, "S3cretPw")
	var rep statusReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Len(t, rep.Nodes, 2)
	assert.False(t, rep.Nodes[0].Reachable)
	assert.Contains(t, rep.Nodes[0].Error, "connection refused")
	assert.Empty(t, rep.Primary)
	assert.Contains(t, rep.Error, "no primary")
}

func TestWatchOnceWithoutAPrimaryChangesNothingAndExitsWith3(t *testing.T) {
	file := filepath.Join(t.TempDir(), "app.yaml")
	marker := filepath.Join(t.TempDir(), "ran")
	require.NoError(t, os.WriteFile(file, []byte("database:\n  host: db1\n"), 0o644))
	code, out, errOut := runCLI(t, "watch", "--once", "--node", closedPort(t), "--file", file, "--set", "database.host={{.Host}}",
		"--command", "touch "+marker)
	assert.Equal(t, exitNoPrimary, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "cannot choose a primary; the file is left as it is")
	assert.Contains(t, errOut, "connection refused")
	assert.Contains(t, errOut, "pg_keeper_go watch: warning: --node \"host=127.0.0.1")
	assert.NotContains(t, errOut, "S3cretPw")
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "database:\n  host: db1\n", string(b))
	assert.NoFileExists(t, marker)
}

func TestWatchWithAMissingKeyOrABadFileExitsWith1BeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "app.yaml")
	require.NoError(t, os.WriteFile(good, []byte("database:\n  host: db1\n"), 0o644))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("database: [\n"), 0o644))
	for file, msg := range map[string]string{
		good:                            `key "database.port" not found: no "port" in database`,
		bad:                             "invalid YAML",
		filepath.Join(dir, "none.yaml"): "no such file or directory",
	} {
		code, _, errOut := runCLI(t, "watch", "--once", "--node", closedPort(t), "--file", file,
			"--set", "database.host={{.Host}}", "--set", "database.port={{.Port}}")
		assert.Equal(t, exitError, code, file)
		assert.Contains(t, errOut, "pg_keeper_go watch: "+file, file)
		assert.Contains(t, errOut, msg, file)
		assert.NotContains(t, errOut, "connection refused", "the file is checked before any node")
	}
}

func TestFsmPrintsTheMermaidDiagramOfTheTable(t *testing.T) {
	code, out, errOut := runCLI(t, "fsm")
	assert.Equal(t, exitOK, code)
	assert.Empty(t, errOut)
	assert.Equal(t, fsm.Mermaid(), out)
	assert.True(t, strings.HasPrefix(out, "stateDiagram-v2\n"))
}

func TestExitCodesFollowTheDecision(t *testing.T) {
	_, noPrimary := watch.Decide(nil)
	_, ambiguous := watch.Decide([]watch.NodeFacts{
		{Node: "a", Reachable: true, Writable: true, Timeline: 1},
		{Node: "b", Reachable: true, Writable: true, Timeline: 1},
	})
	assert.Equal(t, exitOK, decisionCode(nil))
	assert.Equal(t, exitNoPrimary, decisionCode(noPrimary))
	assert.Equal(t, exitAmbiguous, decisionCode(ambiguous))
	assert.Equal(t, exitOK, stepCode(nil))
	assert.Equal(t, exitNoPrimary, stepCode(noPrimary))
	assert.Equal(t, exitAmbiguous, stepCode(ambiguous))
	assert.Equal(t, exitError, stepCode(&command.Error{}))
	assert.Equal(t, exitError, stepCode(fmt.Errorf("app.yaml: %w", os.ErrPermission)))
}

func TestPauseNamesTheNodeItCouldNotPauseWithAHint(t *testing.T) {
	code, _, errOut := runCLI(t, "pause")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "give every node of the pair with --node")

	code, _, errOut = runCLI(t, "pause", "--node", closedPort(t))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "holds a password: put it in ~/.pgpass or PGPASSWORD")
	assert.NotContains(t, errOut, "S3cretPw")

	node := strings.Replace(closedPort(t), " password=S3cretPw", "", 1)
	code, out, errOut := runCLI(t, "pause", "--node", node, "--timeout", "2s")
	assert.Equal(t, exitError, code)
	assert.Regexp(t, `^127\.0\.0\.1:\d+: failed\n$`, out)
	assert.Contains(t, errOut, "pg_keeper_pause()")
	assert.Contains(t, errOut, "hint: Check that the node runs")
	assert.Contains(t, errOut, "a standby that is not paused still fails over")

	code, _, errOut = runCLI(t, "resume", "--node", node, "--node", node)
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "is given twice")
}

func TestRejoinRefusesAPasswordInEitherConnectionString(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600))
	for _, args := range [][]string{
		{"--primary", closedPort(t)},
		{"--primary", "host=127.0.0.1 user=postgres", "--node", closedPort(t)},
	} {
		code, _, errOut := runCLI(t, append([]string{"rejoin", "--pgdata", dir, "--dry-run"}, args...)...)
		assert.NotEqual(t, exitOK, code)
		assert.Contains(t, errOut, "holds a password: put it in ~/.pgpass or PGPASSWORD", args)
		assert.NotContains(t, errOut, "S3cretPw")
	}
}
