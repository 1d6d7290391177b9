package docker

// The peers' benchmark (make bench-peers): pg_keeper_go next to Patroni,
// pg_auto_failover and repmgr, each on two PostgreSQL 15 nodes and a third
// host, with the same faults, the same writer and the same packet loss.
// Every run is appended to results/peers/TOOL-SETTING.json; the report
// (results/peers.md, results/peers.png) is written from all of them, so a
// tool or a setting can be measured again on its own.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

var (
	peersRuns     = flag.Int("peers.runs", 0, "runs per tool, setting and fault (0 skips the peers' benchmark; make bench-peers)")
	peersTools    = flag.String("peers.tools", "pg_keeper_go,patroni,pgaf,repmgr", "tools to measure, comma-separated")
	peersSettings = flag.String("peers.settings", "defaults,tuned", "settings to measure, comma-separated")
	peersFaults   = flag.String("peers.faults", "crash,kill,hang,vanish,isolate", "faults to inject, comma-separated")
	peersLoss     = flag.Duration("peers.loss", 3*time.Minute, "how long each tool and setting runs under 20 % packet loss (0 skips it)")
	peersIdle     = flag.Duration("peers.idle", time.Minute, "how long each tool's idle CPU is measured (0 skips it)")
	peersReport   = flag.Bool("peers.report", false, "only rewrite results/peers.md and peers.png from results/peers/*.json")
)

// peer is one HA tool's cluster: services node1 (the primary at the
// start), node2 and a third host, on a network named "replication".
type peer struct {
	key, name string
	file      string              // compose file, relative to the repository root
	third     string              // the third host's service
	env       map[string][]string // per setting, docker-compose's environment
	settings  map[string]string   // per setting, what it sets
	sync      string              // replication in this benchmark
	psqlAs    string              // see cluster.psqlAs
	procs     []string            // the tool's own processes on node1 and node2 (ps comm)
	third3    []string            // the tool's own processes on the third host ("postgres": its whole server)
	ready     func(c *cluster) (bool, string)
	setup     func(c *cluster) // after ready, before the writes table (pg_keeper_go: synchronous replication)
	caveats   string
}

var peers = []peer{
	{
		key: "pg_keeper_go", name: "pg_keeper_go 1.3", file: "docker-compose.yml", third: "witness",
		env: map[string][]string{
			"defaults": {"KEEPALIVE_TIME=5", "KEEPALIVE_COUNT=4"},
			"tuned":    {"KEEPALIVE_TIME=2", "KEEPALIVE_COUNT=3"},
		},
		settings: map[string]string{
			"defaults": "keepalive_time 5 s, keepalive_count 4 (pg_keeper's defaults): acts after 20 s of silence",
			"tuned":    "keepalive_time 2 s, keepalive_count 3: acts after 6 s of silence",
		},
		sync:   "synchronous (`synchronous_standby_names = '*'`), switched to asynchronous when the standby is lost",
		procs:  []string{"pg_keeper_go"},
		third3: []string{"postgres"},
		ready: func(c *cluster) (bool, string) {
			out, err := c.tryPsql("node2", "postgres", "select role || '/' || state from pg_keeper_status()")
			if err != nil || out != "standby/connected" {
				return false, "node2: " + out
			}
			// Under the lease the first writes wait for the first grant.
			out, err = c.tryPsql("node1", "postgres", "select guard = 'open' or (guard = 'leased' and lease_valid_for > '0') from pg_keeper_status()")
			return err == nil && out == "t", "node1's guard lets no write through: " + out
		},
		setup:   func(c *cluster) { c.syncReplication() },
		caveats: "the witness is a plain PostgreSQL server (the keepers keep a lease row there)",
	},
	{
		key: "patroni", name: "Patroni 3.0 + etcd 3.4", file: "docker/peers/patroni/compose.yml", third: "etcd", psqlAs: "postgres",
		env: map[string][]string{
			"defaults": {"TIMING_PROFILE=default", "SYNC_MODE=true"},
			"tuned":    {"TIMING_PROFILE=tuned", "SYNC_MODE=true"},
		},
		settings: map[string]string{
			"defaults": "ttl 30, loop_wait 10, retry_timeout 10 (Patroni's defaults)",
			"tuned":    "ttl 6, loop_wait 1, retry_timeout 2 (loop_wait + 2 × retry_timeout ≤ ttl; Patroni 3.2 and later refuse a ttl under 20)",
		},
		sync:   "synchronous_mode (Patroni switches it off when the standby is lost)",
		procs:  []string{"patroni"},
		third3: []string{"etcd"},
		ready: func(c *cluster) (bool, string) {
			if ok, why := streaming(c); !ok {
				return false, why
			}
			out, err := c.tryPsql("node1", "postgres", "select sync_state from pg_stat_replication")
			return err == nil && out == "sync", fmt.Sprintf("node2 is not node1's synchronous standby yet: %q %v", out, err)
		},
		caveats: "a postmaster that dies is restarted by Patroni in place (primary_start_timeout 300 s): no failover, by design",
	},
	{
		key: "pgaf", name: "pg_auto_failover 2.0", file: "docker/peers/pgaf/compose.yml", third: "monitor", psqlAs: "postgres",
		env: map[string][]string{
			"defaults": {"TIMING_PROFILE=default"},
			"tuned":    {"TIMING_PROFILE=tuned"},
		},
		settings: map[string]string{
			"defaults": "health_check_period 5 s, node_considered_unhealthy_timeout 20 s, primary_demote_timeout 30 s (its defaults)",
			"tuned": "health_check_period 2 s (timeout 1 s, 2 retries 1 s apart), node_considered_unhealthy_timeout 6 s, primary_demote_timeout 6 s; " +
				"network_partition_timeout 4 s, wal_sender_timeout 6 s (the monitor accepts 1 ms; its authors advise 15–30 s)",
		},
		sync:   "synchronous (its default with one standby), switched to asynchronous (wait_primary) when the standby is lost",
		procs:  []string{"pg_autoctl"},
		third3: []string{"postgres", "pg_autoctl"},
		ready: func(c *cluster) (bool, string) {
			if ok, why := streaming(c); !ok {
				return false, why
			}
			out, err := c.tryPsql("monitor", "pg_auto_failover",
				"select string_agg(nodename || ':' || reportedstate || ':' || goalstate, ',' order by nodename) from pgautofailover.node")
			return err == nil && out == "node1:primary:primary,node2:secondary:secondary", fmt.Sprintf("monitor: %q %v", out, err)
		},
		caveats: "the new primary waits for the old one to report itself demoted, or for primary_demote_timeout; " +
			"a postmaster SIGKILL races pg_autoctl's local restart against its report to the monitor (either can win); shared_buffers capped at 128MB (pg_autoctl sizes it at 25 % of RAM)",
	},
	{
		key: "repmgr", name: "repmgr 5.3", file: "docker/peers/repmgr/compose.yml", third: "witness", psqlAs: "postgres",
		env: map[string][]string{
			"defaults": {"TIMING_PROFILE=default"},
			"tuned":    {"TIMING_PROFILE=tuned"},
		},
		settings: map[string]string{
			"defaults": "reconnect_attempts 6, reconnect_interval 10 s, monitor_interval_secs 2 (its defaults)",
			"tuned":    "reconnect_attempts 3, reconnect_interval 2 s, monitor_interval_secs 2 (each at least 1)",
		},
		sync:   "asynchronous: repmgr does not manage synchronous replication (a lost standby would block every commit)",
		procs:  []string{"repmgrd"},
		third3: []string{"postgres", "repmgrd"},
		ready: func(c *cluster) (bool, string) {
			if ok, why := streaming(c); !ok {
				return false, why
			}
			// Each repmgrd says once that it monitors.
			for svc, line := range map[string]string{"node1": `monitoring cluster primary "node1"`,
				"node2": `monitoring connection to upstream node "node1"`, "witness": `witness monitoring connection to primary node "node1"`} {
				if !strings.Contains(c.logs(svc), line) {
					return false, svc + "'s repmgrd does not monitor yet"
				}
			}
			return true, ""
		},
		caveats: "no fencing: an old primary that comes back, or that was only cut off, keeps taking writes; a node whose postmaster died stays down; " +
			"connect_timeout 2 s (libpq's least) per probe; the witness's veto (primary_visibility_consensus) stays off, as by default: repmgr never reruns a cancelled election",
	},
}

// streaming: node1 is writable and node2's WAL receiver streams from it.
func streaming(c *cluster) (bool, string) {
	out, err := c.tryPsql("node1", "postgres", "select pg_is_in_recovery()")
	if err != nil || out != "f" {
		return false, fmt.Sprintf("node1 not a primary: %q %v", out, err)
	}
	out, err = c.tryPsql("node2", "postgres", "select status from pg_stat_wal_receiver")
	return err == nil && out == "streaming", fmt.Sprintf("node2 not streaming: %q %v", out, err)
}

// peerFault is a fault of the peers' benchmark.
type peerFault struct {
	key, name string
	inject    fault
}

var peerFaults = []peerFault{
	{"crash", "PostgreSQL crash (postmaster SIGKILL)", crash},
	{"kill", "node lost (container killed)", killNode},
	{"hang", "hung node (docker pause)", hang},
	{"vanish", "vanished node (all its traffic dropped, no reset)", vanishAll},
	{"isolate", "primary isolated from node2 and the third host, still running", isolate},
}

// killNode kills node1's container.
func killNode(t *testing.T, c *cluster) time.Time {
	docker(t, "kill", c.container("node1"))
	return time.Now()
}

// vanishAll disconnects node1 from every network it is on: its packets
// are lost, nobody resets a connection.
func vanishAll(t *testing.T, c *cluster) time.Time {
	id := c.container("node1")
	nets := strings.Fields(docker(t, "inspect", "-f", `{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, id))
	var at time.Time
	for _, n := range nets {
		docker(t, "network", "disconnect", n, id)
		if at.IsZero() {
			at = time.Now()
		}
	}
	return at
}

// isolate cuts node1 off from node2 and the third host; the writer, on
// the Docker host, still reaches it.
func isolate(t *testing.T, c *cluster) time.Time {
	return partition(t, c, "node1", "node2", c.third)
}

// peerSample is one run, in seconds from the fault.
type peerSample struct {
	Tool    string `json:"tool"`
	Setting string `json:"setting"`
	Fault   string `json:"fault"`
	// Writable: fault → node2's first acknowledged write; -1 when node2
	// took none within the run (no failover).
	Writable float64 `json:"writable"`
	// Gap: the longest time without any acknowledged write (either node)
	// from the fault on: what an application that follows the primary
	// waits at least.
	Gap     float64 `json:"gap"`
	Overlap float64 `json:"overlap"` // both nodes acknowledged writes in this window
	Lost    int     `json:"lost"`    // acknowledged writes missing on the node that is primary at the end
	Acked   int     `json:"acked"`
	// For the loss runs: how often the primary changed under 20 % loss.
	FalseFailovers int     `json:"false_failovers,omitempty"`
	LossMinutes    float64 `json:"loss_minutes,omitempty"`
	// For the idle runs: the tool's own processes, per host.
	CPU map[string]float64 `json:"cpu_percent,omitempty"`
	MiB map[string]float64 `json:"mib,omitempty"`
}

// startPeer brings up a tool's cluster with one setting and waits until
// node1 is the primary and node2 streams from it, with the writes table.
func startPeer(t *testing.T, p peer, setting string) *cluster {
	t.Helper()
	c := &cluster{
		t:       t,
		project: fmt.Sprintf("pgkp%dx%s", os.Getpid(), strings.ReplaceAll(p.key, "_", "")),
		major:   "15",
		root:    repoRoot(),
		file:    p.file,
		psqlAs:  p.psqlAs,
		third:   p.third,
		env:     append(append(os.Environ(), "PG_MAJOR=15", "WITNESS_HOST=witness"), p.env[setting]...),
	}
	t.Cleanup(c.down)
	c.compose("up", "-d", "node1", "node2", p.third)
	eventually(t, 4*time.Minute, 500*time.Millisecond, func() (bool, string) { return p.ready(c) })
	if p.setup != nil {
		p.setup(c)
	}
	c.psql("node1", "postgres", "create table writes (node text, at timestamptz default clock_timestamp(), id bigint)")
	eventually(t, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node2", "postgres", "select count(*) from pg_class where relname = 'writes'")
		return err == nil && out == "1", "node2 has not replayed the writes table"
	})
	return c
}

// peerRun injects one fault under the writer and measures the run.
func peerRun(t *testing.T, p peer, setting string, f peerFault) peerSample {
	c := startPeer(t, p, setting)
	w := c.startWriter()
	eventually(t, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	time.Sleep(rand.N(2 * time.Second)) // a random phase of the tool's cycle
	at := f.inject(t, c)
	// Watch long enough for the slowest defaults (pg_auto_failover's and
	// repmgr's take about a minute), then 10 s more for overlaps; or 30 s
	// after node1 took writes again (a tool that restarted it in place)
	// while node2 took none.
	limit := 150 * time.Second
	var settled time.Time
	for time.Since(at) < limit {
		if r := w.report(at); !r.firstNode2.IsZero() {
			if settled.IsZero() {
				settled = time.Now()
			}
			if time.Since(settled) > 10*time.Second {
				break
			}
		} else if back := w.backAfterGap("node1", at, time.Second); !back.IsZero() && time.Since(back) > 30*time.Second {
			break
		}
		time.Sleep(100 * time.Millisecond) // the poll interval
	}
	w.close()
	r := w.report(at)
	s := peerSample{Tool: p.key, Setting: setting, Fault: f.key, Writable: -1, Overlap: r.overlap().Seconds()}
	if !r.firstNode2.IsZero() {
		s.Writable = r.firstNode2.Sub(at).Seconds()
	}
	s.Gap = w.longestGap(at).Seconds()
	final := "node1"
	if s.Writable >= 0 {
		final = "node2"
	}
	if out, err := c.tryPsql(final, "postgres", "select 1"); err == nil && out == "1" {
		s.Lost = w.missingOn(c, final)
	} else {
		s.Lost = -1 // the final primary cannot be read (a killed node1 that nobody replaced)
	}
	s.Acked = w.acked("node1") + w.acked("node2")
	t.Logf("%s %s %s: node2 writable %.2f s, longest gap %.2f s, overlap %.2f s, %d of %d acknowledged writes lost",
		p.key, setting, f.key, s.Writable, s.Gap, s.Overlap, s.Lost, s.Acked)
	return s
}

// backAfterGap is when node acknowledged a write again after going at
// least gap without one, from at on (zero if it did not).
func (w *writer) backAfterGap(node string, at time.Time, gap time.Duration) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	last := at
	for _, wr := range w.writes {
		if wr.node != node || wr.at.Before(at) {
			continue
		}
		if wr.at.Sub(last) >= gap {
			return wr.at
		}
		last = wr.at
	}
	return time.Time{}
}

// longestGap is the longest time without an acknowledged write, from at
// to the last write.
func (w *writer) longestGap(at time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var times []time.Time
	for _, wr := range w.writes {
		if !wr.at.Before(at) {
			times = append(times, wr.at)
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	gap, last := time.Duration(0), at
	for _, t := range times {
		gap, last = max(gap, t.Sub(last)), t
	}
	return gap
}

// peerLoss drops 20 % of what every container of the cluster receives, for
// d, and counts the primary's changes (a false failover each).
func peerLoss(t *testing.T, p peer, setting string, d time.Duration) peerSample {
	c := startPeer(t, p, setting)
	for _, svc := range []string{"node1", "node2", p.third} {
		docker(t, "exec", "-u", "root", c.container(svc), "sh", "-c", `nft -f - <<'EOF'
table inet lossy {
	chain lossy_input {
		type filter hook input priority 0; policy accept;
		iifname != "lo" numgen random mod 100 < 20 drop
	}
}
EOF`)
	}
	primary, changes := "node1", 0
	start := time.Now()
	for time.Since(start) < d {
		for _, n := range []string{"node1", "node2"} {
			if out, err := c.tryPsql(n, "postgres", "select not pg_is_in_recovery()"); err == nil && out == "t" && n != primary {
				changes++
				primary = n
			}
		}
		time.Sleep(time.Second) // the poll interval
	}
	t.Logf("%s %s: %d primary changes under 20 %% loss in %s", p.key, setting, changes, d)
	return peerSample{Tool: p.key, Setting: setting, Fault: "loss", FalseFailovers: changes, LossMinutes: d.Minutes()}
}

// peerIdle measures the CPU and memory of the tool's own processes on
// each host while nothing happens.
func peerIdle(t *testing.T, p peer, d time.Duration) peerSample {
	c := startPeer(t, p, "tuned")
	hosts := map[string][]string{"node1": p.procs, "node2": p.procs, p.third: p.third3}
	before := map[string]float64{}
	for h, names := range hosts {
		before[h], _ = procUsage(t, c, h, names)
	}
	time.Sleep(d) // the measurement window
	s := peerSample{Tool: p.key, Setting: "tuned", Fault: "idle", CPU: map[string]float64{}, MiB: map[string]float64{}}
	for h, names := range hosts {
		ticks, mib := procUsage(t, c, h, names)
		s.CPU[h] = 100 * (ticks - before[h]) / 100 / d.Seconds() // USER_HZ is 100
		s.MiB[h] = mib
	}
	t.Logf("%s idle: CPU %% %v, MiB %v", p.key, s.CPU, s.MiB)
	return s
}

// procUsage sums, over the processes of a host whose name (ps comm, or
// for pg_keeper_go its background worker's title) matches, the CPU ticks
// they used and their proportional memory (Pss) in MiB.  A process's
// smaps_rollup is readable by its own user only (without CAP_SYS_PTRACE):
// the script runs as root and as postgres, and each process's Pss is taken
// from whichever could read it.
func procUsage(t *testing.T, c *cluster, host string, names []string) (float64, float64) {
	script := `for p in /proc/[0-9]*; do
	comm=$(cat $p/comm 2>/dev/null) || continue
	args=$(tr '\0' ' ' < $p/cmdline 2>/dev/null)
	echo "${p#/proc/}|$comm|$args|$(cut -d' ' -f14,15 $p/stat 2>/dev/null)|$(awk '/^Pss:/ {print $2}' $p/smaps_rollup 2>/dev/null)"
done`
	ticks, pss := map[string]float64{}, map[string]float64{}
	for _, user := range []string{"root", "postgres"} {
		out, err := dockerTry("exec", "-u", user, c.container(host), "sh", "-c", script)
		if err != nil {
			continue // no such user there (etcd's image)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Split(line, "|")
			if len(f) != 5 || !matches(f[1], f[2], names) {
				continue
			}
			var n float64
			for _, v := range strings.Fields(f[3]) {
				x, _ := strconv.ParseFloat(v, 64)
				n += x
			}
			ticks[f[0]] = n
			if kib, err := strconv.ParseFloat(strings.TrimSpace(f[4]), 64); err == nil {
				pss[f[0]] = max(pss[f[0]], kib)
			}
		}
	}
	var sumTicks, sumKiB float64
	for pid, n := range ticks {
		sumTicks += n
		sumKiB += pss[pid]
	}
	require.NotEmpty(t, ticks, "no process of %v on %s", names, host)
	return sumTicks, sumKiB / 1024
}

// matches tells whether a process is one of the tool's: by its name, or
// for a background worker by its title ("postgres: pg_keeper_go ...").
func matches(comm, args string, names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(comm, n) || strings.HasPrefix(args, "postgres:") && strings.Contains(args, " "+n) || strings.Contains(args, "/"+n+" ") {
			return true
		}
	}
	return false
}

// TestPeers runs the peers' benchmark (make bench-peers).
func TestPeers(t *testing.T) {
	dir := filepath.Join(repoRoot(), "results", "peers")
	if *peersReport {
		require.NoError(t, writePeersReport(filepath.Join(repoRoot(), "results")))
		return
	}
	if *peersRuns <= 0 {
		t.Skip("benchmark: run with -args -peers.runs=N (make bench-peers)")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	want := func(list, v string) bool { return slices.Contains(strings.Split(list, ","), v) }
	for _, p := range peers {
		if !want(*peersTools, p.key) {
			continue
		}
		t.Run(p.key, func(t *testing.T) {
			for _, setting := range []string{"defaults", "tuned"} {
				if !want(*peersSettings, setting) {
					continue
				}
				save := func(s peerSample) { require.NoError(t, appendSample(filepath.Join(dir, p.key+"-"+setting+".json"), s)) }
				for _, f := range peerFaults {
					if !want(*peersFaults, f.key) {
						continue
					}
					for i := 0; i < *peersRuns; i++ {
						t.Run(fmt.Sprintf("%s/%s/%d", setting, f.key, i), func(t *testing.T) { save(peerRun(t, p, setting, f)) })
					}
				}
				if *peersLoss > 0 {
					t.Run(setting+"/loss", func(t *testing.T) { save(peerLoss(t, p, setting, *peersLoss)) })
				}
			}
			if *peersIdle > 0 {
				t.Run("idle", func(t *testing.T) {
					require.NoError(t, appendSample(filepath.Join(dir, p.key+"-idle.json"), peerIdle(t, p, *peersIdle)))
				})
			}
		})
	}
	require.NoError(t, writePeersReport(filepath.Join(repoRoot(), "results")))
}

// appendSample adds one sample to a JSON file of samples.
func appendSample(file string, s peerSample) error {
	var all []peerSample
	if b, err := os.ReadFile(file); err == nil {
		if err := json.Unmarshal(b, &all); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b, err := json.MarshalIndent(append(all, s), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// writePeersReport writes peers.md and peers.png from results/peers/*.json.
func writePeersReport(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "peers", "*.json"))
	if err != nil {
		return err
	}
	var all []peerSample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var samples []peerSample
		if err := json.Unmarshal(b, &samples); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		all = append(all, samples...)
	}
	pick := func(tool, setting, fault string) []peerSample {
		var out []peerSample
		for _, s := range all {
			if s.Tool == tool && (setting == "" || s.Setting == setting) && s.Fault == fault {
				out = append(out, s)
			}
		}
		return out
	}
	var md strings.Builder
	md.WriteString("# pg_keeper_go next to Patroni, pg_auto_failover and repmgr\n\n" +
		"Written by `make bench-peers` (tests/docker/peers_test.go) from results/peers/*.json. Every tool runs on two PostgreSQL 15 nodes " +
		"(Debian bookworm's packages, the same base image) and a third host, in Docker on one machine; node1 is the primary when a run starts. " +
		"A writer on the Docker host inserts into both nodes every 50 ms (200 ms deadlines) and records every acknowledged write. " +
		"Times in seconds from the fault, min / median / max over the runs.\n\n" +
		"- **node2 writable**: the fault → node2's first acknowledged write (\"no failover\": node2 took none within 150 s; how many runs so).\n" +
		"- **longest gap**: the longest time without any acknowledged write on either node from the fault on: what an application that follows the primary waits at least.\n" +
		"- **both writable**: how long both nodes acknowledged writes at once (the largest over the runs; a run ends 10 s after node2's first write, so 10 s means the old primary never stopped).\n" +
		"- **lost**: acknowledged writes missing on the node that is primary at the end (the largest; \"?\" when it cannot be read).\n\n")
	md.WriteString("## The tools and their settings\n\n| tool | third host | setting | what it sets | replication | what to know |\n|---|---|---|---|---|---|\n")
	for _, p := range peers {
		for _, setting := range []string{"defaults", "tuned"} {
			fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s |\n", p.name, p.third, setting, p.settings[setting], p.sync, p.caveats)
		}
	}
	p := plot.New()
	p.Title.Text = "fault → writes again (the longest gap), tuned settings, one dot a run"
	p.Y.Label.Text = "seconds"
	colors := []color.Color{color.RGBA{R: 31, G: 119, B: 180, A: 255}, color.RGBA{R: 255, G: 127, B: 14, A: 255},
		color.RGBA{R: 44, G: 160, B: 44, A: 255}, color.RGBA{R: 214, G: 39, B: 40, A: 255}}
	var ticks []plot.Tick
	legend := map[string]bool{}
	plotted := 0
	for fi, f := range peerFaults {
		ticks = append(ticks, plot.Tick{Value: float64(fi*(len(peers)+1)) + float64(len(peers)-1)/2, Label: f.key})
		fmt.Fprintf(&md, "\n## %s\n\n| tool | setting | runs | node2 writable | longest gap | both writable | lost / acknowledged |\n|---|---|---|---|---|---|---|\n", f.name)
		for _, pr := range peers {
			for _, setting := range []string{"defaults", "tuned"} {
				ss := pick(pr.key, setting, f.key)
				if len(ss) == 0 {
					continue
				}
				var wri, gap plotter.Values
				none, overlap, lost, acked := 0, 0.0, 0, 0
				unknown := false
				for _, s := range ss {
					if s.Writable < 0 {
						none++
					} else {
						wri = append(wri, s.Writable)
					}
					gap = append(gap, s.Gap)
					overlap = max(overlap, s.Overlap)
					if s.Lost < 0 {
						unknown = true
					}
					lost, acked = max(lost, s.Lost), max(acked, s.Acked)
				}
				w := "-"
				if len(wri) > 0 {
					w = summary(wri)
				}
				if none > 0 {
					w += fmt.Sprintf(" (no failover: %d of %d)", none, len(ss))
				}
				l := fmt.Sprintf("%d / %d", lost, acked)
				if unknown {
					l += " (?)"
				}
				fmt.Fprintf(&md, "| %s | %s | %d | %s | %s | %.2f | %s |\n", pr.name, setting, len(ss), w, summary(gap), overlap, l)
				if setting == "tuned" {
					ti := slices.IndexFunc(peers, func(q peer) bool { return q.key == pr.key })
					// A run that left two writable primaries never stopped
					// writing: its gap says nothing, a cross marks it.
					var ok, split plotter.XYs
					for _, s := range ss {
						xy := plotter.XY{X: float64(fi*(len(peers)+1) + ti), Y: s.Gap}
						if s.Overlap > 0 || s.Lost > 0 {
							split = append(split, xy)
						} else {
							ok = append(ok, xy)
						}
					}
					for _, set := range []struct {
						pts        plotter.XYs
						shape      draw.GlyphDrawer
						key, label string // the legend's entry, once
					}{{ok, draw.CircleGlyph{}, pr.key, pr.name}, {split, draw.CrossGlyph{}, "split", "× two writable primaries, writes lost"}} {
						if len(set.pts) == 0 {
							continue
						}
						dots, err := plotter.NewScatter(set.pts)
						if err != nil {
							return err
						}
						dots.GlyphStyle.Color = colors[ti%len(colors)]
						dots.GlyphStyle.Shape = set.shape
						dots.GlyphStyle.Radius = vg.Points(4)
						p.Add(dots)
						if !legend[set.key] {
							p.Legend.Add(set.label, dots)
							legend[set.key] = true
						}
					}
					plotted++
				}
			}
		}
	}
	md.WriteString("\n## False failovers under 20 % packet loss\n\nEvery container drops 20 % of the packets it receives on its network interfaces " +
		"(nftables; this kernel has no netem), so every link the tools use is lossy; the primary's changes are counted.\n\n" +
		"| tool | setting | minutes | primary changes |\n|---|---|---|---|\n")
	for _, pr := range peers {
		for _, setting := range []string{"defaults", "tuned"} {
			for _, s := range pick(pr.key, setting, "loss") {
				fmt.Fprintf(&md, "| %s | %s | %.1f | %d |\n", pr.name, setting, s.LossMinutes, s.FalseFailovers)
			}
		}
	}
	md.WriteString("\n## Cost while idle\n\nCPU (percent of one core, over the measurement window) and memory (Pss, MiB) of each tool's own processes, " +
		"tuned settings. On the third host of pg_keeper_go, pg_auto_failover and repmgr that includes the whole PostgreSQL server it runs.\n\n" +
		"| tool | node1 CPU % | node1 MiB | node2 CPU % | node2 MiB | third host | CPU % | MiB |\n|---|---|---|---|---|---|---|---|\n")
	for _, pr := range peers {
		for _, s := range pick(pr.key, "", "idle") {
			fmt.Fprintf(&md, "| %s | %.2f | %.1f | %.2f | %.1f | %s | %.2f | %.1f |\n", pr.name,
				s.CPU["node1"], s.MiB["node1"], s.CPU["node2"], s.MiB["node2"], pr.third, s.CPU[pr.third], s.MiB[pr.third])
		}
	}
	if plotted > 0 {
		budget, err := plotter.NewLine(plotter.XYs{{X: -1, Y: 6}, {X: float64(len(peerFaults)*(len(peers)+1) - 1), Y: 6}})
		if err != nil {
			return err
		}
		budget.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(budget)
		p.Legend.Add("detection budget 2 s × 3", budget)
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -1, float64(len(peerFaults)*(len(peers)+1)-1)
		p.Y.Min = 0
		p.Y.Max *= 1.25 // room for the legend
		p.Legend.Top = true
		if err := p.Save(9*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, "peers.png")); err != nil {
			return err
		}
		md.WriteString("\n![fault → writes again per tool and fault, tuned settings, one dot a run](peers.png)\n")
	}
	return os.WriteFile(filepath.Join(dir, "peers.md"), []byte(md.String()), 0o644)
}
