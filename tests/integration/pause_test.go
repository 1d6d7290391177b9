package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// TestAPauseHoldsFailoverThroughRestartsUntilResumed pauses a pair with
// the command, restarts the primary for "maintenance" (down longer than a
// failover takes: the standby does not promote, and both nodes are still
// paused after their restarts), crashes the primary (the standby holds
// its promotion however many checks fail), resumes (it promotes), and
// restarts the old primary, still paused: it is fenced all the same.
func TestAPauseHoldsFailoverThroughRestartsUntilResumed(t *testing.T) {
	p := startPair(t, nil)
	bin := pgtest.BuildCLI(t)
	nodes := []string{"--node", p.primary.ConnString("postgres"), "--node", p.standby.ConnString("postgres")}
	cli := func(args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		require.NoError(t, err, out.String())
		return 0, out.String()
	}

	code, out := cli(append([]string{"pause"}, nodes...)...)
	require.Equal(t, 0, code, out)
	assert.Equal(t, fmt.Sprintf("%s: paused\n%s: paused\n", cliNodeName(p.primary), cliNodeName(p.standby)), out)
	code, out = cli(append([]string{"pause"}, nodes...)...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, cliNodeName(p.standby)+": already paused")
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		waitPaused(t, n, true)
		n.WaitLog(t, `automatic failover paused by role "postgres"`, 5*time.Second)
	}
	code, out = cli(append([]string{"status"}, nodes...)...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "standby:connected, paused")

	// Maintenance: the primary is down for longer than a failover takes.
	p.primary.StopOrFail(t, "fast")
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.standby, "consecutive_failures")
		n, _ := strconv.Atoi(got)
		return err == nil && n >= 2*keepaliveCount, fmt.Sprintf("consecutive_failures %q, err %v", got, err)
	})
	held, err := status(t.Context(), p.standby, "state")
	require.NoError(t, err)
	assert.Equal(t, "held", held)
	p.standby.WaitLog(t, "promotion held: automatic failover is paused", 5*time.Second)
	p.primary.Start(t)
	p.waitState(t, p.standby, "standby", "connected", 15*time.Second)
	p.waitState(t, p.primary, "primary", "connected", 15*time.Second)
	waitPaused(t, p.primary, true)
	p.primary.WaitLog(t, "pg_keeper_go: automatic failover is paused", time.Second)

	// The standby's pause survives its restart too.
	p.standby.StopOrFail(t, "fast")
	p.standby.Start(t)
	waitPaused(t, p.standby, true)
	p.waitState(t, p.standby, "standby", "connected", 15*time.Second)

	// A crash while paused: no promotion, however long it lasts.
	p.primary.Crash(t)
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.standby, "consecutive_failures")
		n, _ := strconv.Atoi(got)
		return err == nil && n >= 2*keepaliveCount, fmt.Sprintf("consecutive_failures %q, err %v", got, err)
	})
	inRecovery, err := p.standby.IsInRecovery(t.Context())
	require.NoError(t, err)
	require.True(t, inRecovery, "a paused standby promoted")
	reason, err := status(t.Context(), p.standby, "state")
	require.NoError(t, err)
	assert.Equal(t, "held", reason)
	assert.Contains(t, keeperTitle(t, p.standby), "(standby:held) paused")

	resumed := time.Now()
	code, out = cli("resume", "--node", p.standby.ConnString("postgres"))
	require.Equal(t, 0, code, out)
	assert.Equal(t, cliNodeName(p.standby)+": resumed\n", out)
	took := waitWritable(t, p.standby, resumed, failoverBound)
	t.Logf("resume → standby writable: %s", took)
	p.standby.WaitLog(t, `automatic failover resumed by role "postgres"`, time.Second)
	waitPaused(t, p.standby, false)

	// The old primary comes back still paused: fencing goes on.
	p.primary.Start(t)
	p.waitState(t, p.primary, "primary", "fenced", 15*time.Second)
	waitPaused(t, p.primary, true)
	code, out = cli(append([]string{"resume"}, nodes...)...)
	require.Equal(t, 0, code, out)
	assert.Equal(t, fmt.Sprintf("%s: resumed\n%s: was not paused\n", cliNodeName(p.primary), cliNodeName(p.standby)), out)
}

// waitPaused waits until pg_keeper_status() says n is paused (or not).
func waitPaused(t *testing.T, n *pgtest.Node, paused bool) {
	t.Helper()
	want := strconv.FormatBool(paused)
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), n, "paused")
		return err == nil && got == want, fmt.Sprintf("%s: paused %q, err %v", n.Name, got, err)
	})
}

// keeperTitle returns the process title of n's keeper (the child of its
// background worker).
func keeperTitle(t *testing.T, n *pgtest.Node) string {
	t.Helper()
	var titles []string
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		titles = titles[:0]
		pids, err := n.Pids()
		if err != nil {
			return false, err.Error()
		}
		for _, pid := range pids {
			for _, p := range append([]int{pid}, children(pid)...) {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				if err == nil && strings.Contains(string(b), "pg_keeper_go") {
					titles = append(titles, strings.TrimRight(string(b), "\x00 "))
				}
			}
		}
		return len(titles) > 0, "no keeper process"
	})
	return strings.Join(titles, "\n")
}

// children returns the pids of pid's children.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}
