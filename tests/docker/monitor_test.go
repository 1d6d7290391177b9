package docker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runUsersMonitor runs our users' monitor script (testdata/users_monitor.py,
// Python with Debian's python3-psycopg2 and python3-yaml) in the witness
// container, which reaches both nodes by name as the application host
// does, and returns the host it chose and the settings file it left.
func (c *cluster) runUsersMonitor(t *testing.T) (string, string) {
	t.Helper()
	script, err := os.ReadFile(filepath.Join(repoRoot(), "tests", "docker", "testdata", "users_monitor.py"))
	require.NoError(t, err)
	witness := c.container("witness")
	docker(t, "exec", witness, "sh", "-c", `test -f /tmp/app.yaml || printf 'db_master:\n- address: node1:5432\ndb_slave:\n- address: node2:5432\n' > /tmp/app.yaml`)
	out, err := dockerTryStdin(string(script), "exec", "-i", witness, "python3", "-", "node1", "node2", "/tmp/app.yaml", "echo restarted >> /tmp/restarts")
	require.NoError(t, err, "users_monitor.py: %s", out)
	settings := docker(t, "exec", witness, "cat", "/tmp/app.yaml")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1], settings
}

// TestTheUsersMonitorFindsThePrimaryBeforeAndAfterAFailover: the users'
// cron script reads the newest failover_log row on both nodes; it finds
// the first primary before any failover (the keeper recorded it) and the
// new one after.
func TestTheUsersMonitorFindsThePrimaryBeforeAndAfterAFailover(t *testing.T) {
	c := standard(t)
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "pg_state", "select host from failover_log")
		return err == nil && out == "node1", "node2's failover_log: " + out
	})
	host, settings := c.runUsersMonitor(t)
	assert.Equal(t, "node1", host, "before any failover")
	assert.Contains(t, settings, "address: node1:5432")

	at := crash(t, c)
	c.waitState("node2", "primary", "alone", bound+leaseMargin+10*time.Second)
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "pg_state", "select host from failover_log order by unixtime desc limit 1")
		return err == nil && out == "node2", "node2's newest failover_log row: " + out
	})
	host, settings = c.runUsersMonitor(t)
	assert.Equal(t, "node2", host, "after the failover (node1's server is down)")
	assert.Contains(t, settings, "db_master:\n- address: node2:5432")
	assert.Contains(t, settings, "db_slave:\n- address: node1:5432")
	t.Logf("the monitor moved the application to node2 %s after the crash", time.Since(at).Round(time.Millisecond))

	// The old primary restarts (its keeper fences it): both nodes answer,
	// and node2's row is the newer one.
	docker(t, "restart", "-t", "2", c.container("node1"))
	c.waitState("node1", "primary", "fenced", 60*time.Second)
	host, _ = c.runUsersMonitor(t)
	assert.Equal(t, "node2", host, "both nodes answer: the newer row wins")
	restarts := docker(t, "exec", c.container("witness"), "cat", "/tmp/restarts")
	assert.Equal(t, 1, strings.Count(restarts, "restarted"), "the application was restarted once")
}
