package docker

// The operator's lifecycle in Docker, on every major: a switchover under
// load, rejoins after a crash (pg_rewind) and a partition (a base backup,
// or pg_rewind where the major turns data checksums on), each followed by
// a failover in the other direction.

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nodes are the --node flags that reach both nodes from a container.
var nodes = []string{"--node", "host=node1-repl user=postgres dbname=postgres", "--node", "host=node2-repl user=postgres dbname=postgres"}

// cli runs pg_keeper_go in service's container and returns its output and
// whether it exited 0.
func (c *cluster) cli(service string, args ...string) (string, bool) {
	out, err := dockerTry(append([]string{"exec", c.container(service), "pg_keeper_go"}, args...)...)
	return out, err == nil
}

// TestSwitchoverUnderLoad switches node1 over to node2 while pgbench runs
// on node1 and the writer writes to both nodes: no write both nodes took
// at once, none lost, node1 streams from node2 afterwards.
func TestSwitchoverUnderLoad(t *testing.T) {
	c := standard(t)
	c.psql("node1", "postgres", "select 1") // the pair is up
	_, err := dockerTry("exec", c.container("node1"), "pgbench", "-i", "-q", "-s", "2", "postgres")
	require.NoError(t, err)
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	// pgbench from node2's host against node1; its clients end when
	// node1 restarts as a standby.
	_, err = dockerTry("exec", "-d", c.container("node2"), "pgbench", "-n", "-c", "4", "-T", "60", "-h", "node1-repl", "postgres")
	require.NoError(t, err)
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, _ := c.tryPsql("node1", "postgres", "select count(*) from pg_stat_activity where application_name = 'pgbench'")
		return out == "4", "pgbench clients on node1: " + out
	})

	start := time.Now()
	out, ok := c.cli("node2", append([]string{"switchover"}, nodes...)...)
	require.True(t, ok, out)
	refused := regexp.MustCompile(`writes were refused for (\S+)`).FindStringSubmatch(out)
	require.Len(t, refused, 2, out)
	window, err := time.ParseDuration(refused[1])
	require.NoError(t, err)
	eventually(t, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(start).node2 > 0, "node2 has taken no write"
	})
	c.waitState("node2", "primary", "connected", 30*time.Second)
	c.waitState("node1", "standby", "connected", 30*time.Second)
	w.close()
	r := w.report(start)
	assert.Zero(t, r.overlap(), "both nodes acknowledged writes at once")
	assert.Zero(t, w.missingOn(c, "node2"), "acknowledged writes missing on the new primary")
	record(t, result{scenario: "switchover under pgbench load (pg_keeper_go switchover)", overlap: r.overlap(),
		note: fmt.Sprintf("writes refused for %s (measured by the command); writer: first write on node2 %s after the command started; %d acknowledged writes, none lost; node1 streams from node2",
			window, r.firstNode2.Sub(start).Round(10*time.Millisecond), w.acked("node1")+w.acked("node2"))})
}

// rejoinAndFailBack rejoins node1 (which lost the primary role) as node2's
// standby, checks that it streams and nothing the writer got acknowledged
// is missing, then crashes node2: node1 must take over again.
func rejoinAndFailBack(t *testing.T, c *cluster, w *writer, fault time.Time, scenario string, flags ...string) {
	args := append([]string{"rejoin", "--primary", "host=node2-repl user=postgres dbname=postgres"}, flags...)
	out, ok := c.cli("node1", args...)
	require.True(t, ok, out)
	m := regexp.MustCompile(`done in (\S+) by (.+): the node streams`).FindStringSubmatch(out)
	require.Len(t, m, 3, out)
	c.waitState("node1", "standby", "connected", 60*time.Second)
	c.waitState("node2", "primary", "connected", 30*time.Second)
	w.close()
	r := w.report(fault)
	assert.Zero(t, r.overlap())
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		n := w.missingOn(c, "node1")
		return n == 0, fmt.Sprintf("%d acknowledged writes are not on the rejoined node1", n)
	})

	back := crash2(t, c)
	eventually(t, bound+leaseMargin+10*time.Second, 20*time.Millisecond, func() (bool, string) {
		_, err := c.tryPsql("node1", "postgres", "insert into writes (node) values ('node1')")
		return err == nil, fmt.Sprintf("node1 takes no write: %v", err)
	})
	took := time.Since(back)
	record(t, result{scenario: scenario, writable: took,
		note: fmt.Sprintf("rejoin by %s in %s (the command's figure); then node2 crashed: node1 writable %s later (the column)", m[2], m[1], took.Round(10*time.Millisecond))})
}

// crash2 kills node2's postmaster.
func crash2(t *testing.T, c *cluster) time.Time {
	at := time.Now()
	docker(t, "exec", "-u", "root", c.container("node2"), "pkill", "-KILL", "-o", "-x", "postgres")
	return at
}

// TestRejoinAfterACrashThenFailBack: node1 crashes, node2 takes over,
// node1 (wal_log_hints on) rejoins by pg_rewind and takes over again when
// node2 crashes.
func TestRejoinAfterACrashThenFailBack(t *testing.T) {
	c := startCluster(t, options{keepaliveTime: int(keepaliveTime.Seconds()), keepaliveCount: keepaliveCount, extraConf: "wal_log_hints = on"})
	c.syncReplication() // no acknowledged write may be lost with the crash
	w, fault := failoverOn(t, c, "rejoin after a crash (failover part)", crash)
	rejoinAndFailBack(t, c, w, fault, "old primary crashed, rejoined by pg_rewind, then node2 crashed")
}

// TestRejoinAfterAPartitionThenFailBack: node1 is cut off from node2 and
// the witness, node2 takes over, the partition heals and node1 is fenced;
// it rejoins with --basebackup (wal_log_hints off here; on majors whose
// initdb turns data checksums on, pg_rewind) and takes over again when
// node2 crashes.
func TestRejoinAfterAPartitionThenFailBack(t *testing.T) {
	c := startCluster(t, options{keepaliveTime: int(keepaliveTime.Seconds()), keepaliveCount: keepaliveCount, extraConf: "wal_log_hints = off"})
	c.syncReplication() // no acknowledged write may be lost with the partition
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	fault := partition(t, c, "node1", "node2", "witness")
	waitNode2Writable(t, w, fault, bound+leaseMargin)
	docker(t, "exec", "-u", "root", c.container("node1"), "nft", "delete", "table", "inet", "partition")
	c.waitState("node1", "primary", "fenced", 30*time.Second)
	out, _ := c.cli("node1", "rejoin", "--primary", "host=node2-repl user=postgres dbname=postgres", "--dry-run")
	assert.True(t, strings.Contains(out, "base backup") || strings.Contains(out, "pg_rewind"), out)
	rejoinAndFailBack(t, c, w, fault, "old primary partitioned and fenced, rejoined (--basebackup), then node2 crashed", "--basebackup")
}
