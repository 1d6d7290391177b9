package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	keepaliveTime  = time.Second
	keepaliveCount = 3
	// bound is the keeper issue's bound: keepalive_time x keepalive_count + 1 s.
	bound = keepaliveTime*keepaliveCount + time.Second
	// leaseMargin is what a standby waits beyond the primary's lease:
	// 100 ms + 1 % of the lease, (keepalive_count - 1) x keepalive_time.
	leaseMargin = 100*time.Millisecond + (keepaliveCount-1)*keepaliveTime/100
)

func standard(t *testing.T) *cluster {
	return startCluster(t, options{keepaliveTime: int(keepaliveTime.Seconds()), keepaliveCount: keepaliveCount})
}

// waitNode2Writable waits until the writer's first acknowledged write on
// node2 and returns the time from the fault.
func waitNode2Writable(t *testing.T, w *writer, fault time.Time, deadline time.Duration) time.Duration {
	t.Helper()
	eventually(t, deadline, 20*time.Millisecond, func() (bool, string) {
		return !w.report(fault).firstNode2.IsZero(), "node2 has not accepted a write"
	})
	return w.report(fault).firstNode2.Sub(fault)
}

// A fault injects one failure into node1 and returns when it took effect:
// the container's own clock just before pkill, or the moment docker pause
// or docker network disconnect returned (the freeze or the cut happens at
// the end of the call).  Timing from before the docker CLI call would add
// the CLI's few hundred milliseconds to every figure.
type fault func(t *testing.T, c *cluster) time.Time

// crash kills the primary's postmaster with SIGKILL; the container stays
// up, so connections are refused, as on a host whose server crashed.
func crash(t *testing.T, c *cluster) time.Time {
	out := docker(t, "exec", "-u", "root", c.container("node1"), "sh", "-c", "date +%s.%N; exec pkill -KILL -o -x postgres")
	secs, err := strconv.ParseFloat(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]), 64)
	require.NoError(t, err, "container clock: %q", out)
	return time.Unix(0, int64(secs*1e9))
}

// hang freezes every process of the primary.
func hang(t *testing.T, c *cluster) time.Time {
	docker(t, "pause", c.container("node1"))
	return time.Now()
}

// vanish cuts the primary off every network: packets are lost, no reset.
func vanish(t *testing.T, c *cluster) time.Time {
	id := c.container("node1")
	docker(t, "network", "disconnect", c.network("heartbeat"), id)
	at := time.Now()
	docker(t, "network", "disconnect", c.network("replication"), id)
	return at
}

// failover runs one fault on a standard cluster that must end with node2
// promoted within bound.
func failover(t *testing.T, name string, inject fault) (*cluster, *writer, time.Time) {
	c := standard(t)
	w, at := failoverOn(t, c, name, inject)
	return c, w, at
}

// failoverOn is failover on cluster c.
func failoverOn(t *testing.T, c *cluster, name string, inject fault) (*writer, time.Time) {
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	at := inject(t, c)
	took := waitNode2Writable(t, w, at, bound+leaseMargin)
	c.waitState("node2", "primary", "alone", 10*time.Second)
	r := w.report(at)
	record(t, result{scenario: name, writable: took, overlap: r.overlap()})
	return w, at
}

func TestCrash(t *testing.T) {
	failover(t, "crash: postmaster killed with SIGKILL", crash)
}

func TestHang(t *testing.T) {
	failover(t, "hang: docker pause of the primary", hang)
}

func TestVanishedHost(t *testing.T) {
	failover(t, "vanished host: primary cut off from every network", vanish)
}

// noFailover watches for d that node2 stays a standby (its keeper may hold
// a promotion) and node1 keeps taking writes, then records the scenario.
func noFailover(t *testing.T, c *cluster, w *writer, fault time.Time, d time.Duration, scenario string) {
	t.Helper()
	eventually(t, d+10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "postgres", "select role || '/' || state from pg_keeper_status()")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, "standby/"), "node2 left the standby role: %s", out)
		return time.Since(fault) >= d, ""
	})
	r := w.report(fault)
	assert.Zero(t, r.node2, "writes acknowledged by node2")
	assert.Positive(t, r.node1After, "node1 must keep taking writes")
	logs := c.logs("node2")
	assert.NotContains(t, logs, `to "standby:promoting"`)
	held := "node2 never needed to hold"
	if i := strings.Index(logs, "promotion held: "); i >= 0 {
		held = "node2 held: " + firstLine(logs[i+len("promotion held: "):])
	}
	record(t, result{scenario: scenario, overlap: r.overlap(),
		note: fmt.Sprintf("no failover in %s; node1 took %d writes; %s", d, r.node1After, held)})
}

// partition drops, inside node's container, every packet to or from the
// other services' addresses on every network.  The test's writer (the
// Docker host) still reaches every node.
func partition(t *testing.T, c *cluster, node string, from ...string) time.Time {
	var ips []string
	for _, other := range from {
		for _, net := range []string{"heartbeat", "replication"} {
			// A service may not be on every network (the witness).
			ip, err := dockerTry("inspect", "-f", fmt.Sprintf(`{{with index .NetworkSettings.Networks %q}}{{.IPAddress}}{{end}}`, c.network(net)), c.container(other))
			if err == nil && ip != "" {
				ips = append(ips, ip)
			}
		}
	}
	set := strings.Join(ips, ", ")
	docker(t, "exec", "-u", "root", c.container(node), "sh", "-c", fmt.Sprintf(`nft -f - <<'EOF'
table inet partition {
	chain partition_input {
		type filter hook input priority 0; policy accept;
		ip saddr { %s } drop
	}
	chain partition_output {
		type filter hook output priority 0; policy accept;
		ip daddr { %s } drop
	}
}
EOF`, set, set))
	return time.Now()
}

// TestHeartbeatOnlyLoss: the network the keepers check each other on
// fails, replication still flows: the standby's WAL receiver says the
// primary is alive, so nothing fails over.  No witness here, so that the
// WAL heartbeat alone holds the promotion, and no writer until the end of
// the hold (an idle primary, the hard case: only the keeper's heartbeat
// reaches the standby).
func TestHeartbeatOnlyLoss(t *testing.T) {
	c := startCluster(t, options{keepaliveTime: int(keepaliveTime.Seconds()), keepaliveCount: keepaliveCount, noWitness: true})
	docker(t, "network", "disconnect", c.network("heartbeat"), c.container("node1"))
	fault := time.Now()
	eventually(t, 2*bound, 100*time.Millisecond, func() (bool, string) {
		return strings.Contains(c.logs("node2"), "promotion held: the WAL receiver still streams"), "node2 has not held a promotion yet"
	})
	w := c.startWriter()
	noFailover(t, c, w, fault, 3*bound, "heartbeat-only loss (no witness, idle primary)")
}

// TestPartitionWithWitness: node1 and node2 lose each other on every
// network; both still reach the witness, where node1 keeps renewing its
// lease: node2 must not promote.
func TestPartitionWithWitness(t *testing.T) {
	c := standard(t)
	w := c.startWriter()
	fault := partition(t, c, "node1", "node2")
	noFailover(t, c, w, fault, 3*bound, "full partition between the nodes, both reach the witness")
}

// syncReplication turns synchronous replication on at node1 and waits
// until node2 is its synchronous standby.
func (c *cluster) syncReplication() {
	c.t.Helper()
	c.psql("node1", "postgres", "alter system set synchronous_standby_names = '*'")
	c.psql("node1", "postgres", "select pg_reload_conf()")
	eventually(c.t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		out, _ := c.tryPsql("node1", "postgres", "select sync_state from pg_stat_replication")
		return out == "sync", "sync_state " + out
	})
}

// TestPrimaryIsolated: node1 loses node2 and the witness, with synchronous
// replication on; the application still reaches it.  Its lease expires
// before node2 may promote: no overlapping writes, and no write node1
// acknowledged is missing on node2.
func TestPrimaryIsolated(t *testing.T) {
	primaryIsolated(t, standard(t), "primary isolated from standby and witness (synchronous replication)", "node2", "witness")
}

// primaryIsolated cuts node1 off from the others with synchronous
// replication on, while the application still reaches it: node2 takes
// over, no write overlaps, no write node1 acknowledged is missing on node2.
func primaryIsolated(t *testing.T, c *cluster, scenario string, from ...string) {
	c.syncReplication()
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	fault := partition(t, c, "node1", from...)
	took := waitNode2Writable(t, w, fault, bound+leaseMargin)
	// Give the old primary time to show whether it still commits.
	eventually(t, 3*bound, 100*time.Millisecond, func() (bool, string) {
		return time.Since(fault) > 2*bound, ""
	})
	w.close()
	r := w.report(fault)
	assert.Zero(t, r.overlap(), "both nodes acknowledged writes at once")
	acked := w.acked("node1")
	onNode2, err := strconv.Atoi(c.psql("node2", "postgres", "select count(*) from writes where node = 'node1'"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, onNode2, acked, "writes node1 acknowledged that node2 does not have")
	record(t, result{scenario: scenario, writable: took, overlap: r.overlap(),
		note: fmt.Sprintf("node1 acknowledged %d writes after the cut; all %d it ever acknowledged are on node2", r.node1After, acked)})
}

// TestFrozenPrimaryResumed: node1 freezes, node2 takes over, node1
// resumes with its sessions open: it must not commit a single write.
func TestFrozenPrimaryResumed(t *testing.T) {
	frozenPrimaryResumed(t, standard(t), "frozen primary resumed after the failover")
}

// frozenPrimaryResumed freezes node1 until node2 has taken over, then
// resumes it: it is fenced and acknowledges no write after the freeze.
func frozenPrimaryResumed(t *testing.T, c *cluster, scenario string) {
	w, fault := failoverOn(t, c, scenario+" (failover part)", hang)
	docker(t, "unpause", c.container("node1"))
	c.waitState("node1", "primary", "fenced", 20*time.Second)
	w.close()
	r := w.report(fault)
	assert.Zero(t, r.node1After, "writes node1 acknowledged after it was frozen")
	assert.Zero(t, r.overlap())
	record(t, result{scenario: scenario, writable: r.firstNode2.Sub(fault), overlap: r.overlap(),
		note: fmt.Sprintf("node1 fenced on resume; it acknowledged %d writes after the freeze", r.node1After)})
}

// dropIn starts the users' pg_keeper configuration with only the library
// name changed (the nodes run no CREATE EXTENSION: the keeper creates it)
// and no witness, plus extraConf.
func dropIn(t *testing.T, extraConf string) *cluster {
	return startCluster(t, options{keepaliveTime: int(keepaliveTime.Seconds()), keepaliveCount: keepaliveCount,
		noWitness: true, extraConf: extraConf})
}

// TestDropInPrimaryIsolated: the users' configuration with
// split_brain_policy = safety: primaryIsolated without a witness.
func TestDropInPrimaryIsolated(t *testing.T) {
	primaryIsolated(t, dropIn(t, "pg_keeper.split_brain_policy = safety"),
		"drop-in configuration (no CREATE EXTENSION), safety: primary isolated (synchronous replication)", "node2")
}

// TestDropInFrozenPrimaryResumed: the users' configuration as it is
// (availability, no witness): frozenPrimaryResumed.
func TestDropInFrozenPrimaryResumed(t *testing.T) {
	frozenPrimaryResumed(t, dropIn(t, ""), "drop-in configuration (no CREATE EXTENSION): frozen primary resumed")
}

func TestSyncStandbyLoss(t *testing.T) {
	c := standard(t)
	c.syncReplication()
	conninfo := fmt.Sprintf("host=%s user=postgres dbname=postgres sslmode=disable", c.ip("node1", "replication"))
	fault := time.Now()
	docker(t, "kill", c.container("node2"))
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	conn, err := pgx.Connect(ctx, conninfo)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "insert into writes (node) values ('node1')")
	require.NoError(t, err, "commit on node1 did not resume within %s", bound)
	took := time.Since(fault)
	c.waitState("node1", "primary", "async", 5*time.Second)

	docker(t, "start", c.container("node2"))
	c.waitState("node1", "primary", "connected", 60*time.Second)
	eventually(t, 10*time.Second, 50*time.Millisecond, func() (bool, string) {
		out, _ := c.tryPsql("node1", "postgres", "show synchronous_standby_names")
		return out == "*", "synchronous_standby_names " + out
	})
	record(t, result{scenario: "sync standby lost: commit resumed on the primary", writable: took,
		note: "synchronous_standby_names restored when node2 streamed again"})
}

// TestLossyLink puts 20 % packet loss on the heartbeat network for several
// minutes (PGK_LOSSY_DURATION, default 3m): the keeper must not fail over.
// With the kernel's netem the link also gets 20±10 ms of jitter; kernels
// without sch_netem (such as this project's CI machines) get the loss alone,
// from an nftables rule that drops 20 % of what each node receives on it.
func TestLossyLink(t *testing.T) {
	duration := 3 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("PGK_LOSSY_DURATION")); err == nil {
		duration = d
	}
	c := startCluster(t, options{keepaliveTime: 2, keepaliveCount: keepaliveCount})
	how := "netem: 20 % loss, 20±10 ms jitter"
	for _, node := range []string{"node1", "node2"} {
		id := c.container(node)
		dev := docker(t, "exec", id, "sh", "-c",
			fmt.Sprintf(`ip -o -4 addr show | awk '$4 ~ /^%s\// {print $2}'`, c.ip(node, "heartbeat")))
		if _, err := dockerTry("exec", "-u", "root", id, "tc", "qdisc", "add", "dev", dev, "root", "netem", "loss", "20%", "delay", "20ms", "10ms"); err != nil {
			how = "nftables: 20 % loss on receipt, no jitter (no sch_netem in this kernel)"
			docker(t, "exec", "-u", "root", id, "sh", "-c", fmt.Sprintf(`nft -f - <<'EOF'
table inet lossy {
	chain lossy_input {
		type filter hook input priority 0; policy accept;
		iifname "%s" numgen random mod 100 < 20 drop
	}
}
EOF`, dev))
		}
	}
	start := time.Now()
	eventually(t, duration+time.Minute, time.Second, func() (bool, string) {
		out, err := c.tryPsql("node2", "postgres", "select role || '/' || state from pg_keeper_status()")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, "standby/"), "node2 left the standby role under packet loss: %s", out)
		return time.Since(start) >= duration, ""
	})
	logs := c.logs("node2")
	assert.NotContains(t, logs, `to "standby:promoting"`)
	code, body := c.httpCode("node2", "/status")
	require.Equal(t, 200, code, body)
	var st struct {
		HedgedAnswers int `json:"hedged_answers"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	record(t, result{scenario: fmt.Sprintf("lossy heartbeat link for %s (%s)", duration, how),
		note: fmt.Sprintf("no failover; %d streaks of failed checks, none lost the primary; %d checks answered over the second connection",
			strings.Count(logs, `to "standby:failing"`), st.HedgedAnswers)})
}

// TestOldPrimaryRestarted: the old primary is started again after a
// failover, as it was: it must not take a single write, and its keeper
// fences it.
func TestOldPrimaryRestarted(t *testing.T) {
	c, w, fault := failover(t, "old primary restarted after a failover (failover part)", crash)
	restart := time.Now()
	docker(t, "restart", "-t", "2", c.container("node1"))
	c.waitState("node1", "primary", "fenced", 60*time.Second)
	reason := c.psql("node1", "postgres", "select guard_reason from pg_keeper_status()")
	w.close()
	r := w.report(restart)
	assert.Zero(t, r.node1After, "writes the restarted old primary acknowledged")
	record(t, result{scenario: "old primary restarted after a failover", writable: w.report(fault).firstNode2.Sub(fault),
		overlap: r.overlap(), note: fmt.Sprintf("node1 fenced (%s); it acknowledged %d writes", reason, r.node1After)})
}

// TestPauseHeldThroughACrash: both nodes paused with the command (run on
// node2's host), the primary crashes: node2 stays a standby for twice the
// failover bound; resumed, it takes over.
func TestPauseHeldThroughACrash(t *testing.T) {
	c := standard(t)
	nodes := []string{"--node", "host=node1-repl user=postgres dbname=postgres", "--node", "host=node2-repl user=postgres dbname=postgres"}
	out := docker(t, append([]string{"exec", c.container("node2"), "pg_keeper_go", "pause"}, nodes...)...)
	require.Equal(t, "node1-repl:5432: paused\nnode2-repl:5432: paused", out)
	eventually(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "postgres", "select paused from pg_keeper_status()")
		return err == nil && out == "t", fmt.Sprintf("node2 paused: %q %v", out, err)
	})
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	fault := crash(t, c)
	eventually(t, 2*bound+10*time.Second, 100*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "postgres", "select role || '/' || state from pg_keeper_status()")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, "standby/"), "paused node2 left the standby role: %s", out)
		return time.Since(fault) >= 2*bound, ""
	})
	assert.Equal(t, "standby/held", c.psql("node2", "postgres", "select role || '/' || state from pg_keeper_status()"))
	assert.Zero(t, w.report(fault).node2, "writes acknowledged by the paused node2")

	out = docker(t, "exec", c.container("node2"), "pg_keeper_go", "resume", "--node", "host=node2-repl user=postgres dbname=postgres")
	require.Equal(t, "node2-repl:5432: resumed", out)
	resumed := time.Now()
	took := waitNode2Writable(t, w, resumed, bound+leaseMargin)
	c.waitState("node2", "primary", "alone", 10*time.Second)
	r := w.report(fault)
	record(t, result{scenario: "pause held through a crash of the primary, then resume", overlap: r.overlap(),
		note: fmt.Sprintf("no promotion while paused (%s watched); node2 writable %s after resume", 2*bound, took.Round(10*time.Millisecond))})
}
