package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// httpCode asks a node's HTTP API (port 8008, pg_keeper.http_address in
// docker/entrypoint.sh) from the host.
func (c *cluster) httpCode(service, path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s:8008%s", c.ip(service, "replication"), path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitHTTP polls a node's endpoint until it answers code.
func (c *cluster) waitHTTP(service, path string, code int, deadline time.Duration) {
	c.t.Helper()
	eventually(c.t, deadline, 50*time.Millisecond, func() (bool, string) {
		got, body := c.httpCode(service, path)
		return got == code, fmt.Sprintf("%s %s: want %d, got %d %s", service, path, code, got, body)
	})
}

// TestDemoAppFollowsTheFailover runs what the README's demo shows: the app
// container (docker/app.sh: an application reading a YAML file, and
// pg_keeper_go watch keeping it up to date) switches to node2 after
// "docker-compose stop node1", and the HTTP API of both keepers says which
// node is the primary; node1, started again, is fenced, rejoins as the
// standby, and a switchover makes it the primary again: the app follows.
func TestDemoAppFollowsTheFailover(t *testing.T) {
	c := startCluster(t, options{keepaliveTime: 1, keepaliveCount: 3})
	c.waitHTTP("node1", "/primary", 200, 10*time.Second)
	c.waitHTTP("node2", "/replica", 200, 10*time.Second)
	c.waitHTTP("node1", "/replica", 503, time.Second)
	c.waitHTTP("node2", "/primary", 503, time.Second)

	c.compose("up", "-d", "app")
	eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		return strings.Contains(c.logs("app"), "app: writes go to node1"), "app log:\n" + c.logs("app")
	})

	c.compose("stop", "-t", "5", "node1")
	eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		return strings.Contains(c.logs("app"), "app: writes go to node2"), "app log:\n" + c.logs("app")
	})
	c.waitHTTP("node2", "/primary", 200, 5*time.Second)
	logs := c.logs("app")
	assert.Equal(t, 1, strings.Count(logs, "primary changed: file rewritten"), logs)
	assert.Equal(t, 1, strings.Count(logs, "app: restarted by pg_keeper_go watch"), logs)
	assert.Contains(t, logs, "from=node1-repl:5432 to=node2-repl:5432")

	c.compose("start", "node1")
	c.waitState("node1", "primary", "fenced", 60*time.Second)
	out, ok := c.cli("node1", "rejoin", "--primary", "host=node2-repl user=postgres dbname=postgres")
	require.True(t, ok, out)
	t.Logf("rejoin:\n%s", out)
	c.waitState("node1", "standby", "connected", 60*time.Second)
	out, ok = c.cli("app", "switchover", "--node", "host=node1-repl user=postgres dbname=postgres", "--node", "host=node2-repl user=postgres dbname=postgres")
	require.True(t, ok, out)
	t.Logf("switchover:\n%s", out)
	eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		return strings.Count(c.logs("app"), "app: writes go to node1") == 2, "app log:\n" + c.logs("app")
	})
	c.waitHTTP("node1", "/primary", 200, 10*time.Second)
	c.waitState("node2", "standby", "connected", 30*time.Second)
	t.Logf("app log:\n%s", c.logs("app"))
}
