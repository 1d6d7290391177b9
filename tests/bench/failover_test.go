// Package bench measures failover on real PostgreSQL pairs: for each kind
// of fault (crash, hang, vanished host) it starts a fresh pair, injects the
// fault at a random moment of the check cycle, and records when the keeper
// decided, when the promoted node accepted writes (keeper log) and when a
// client could write (client side).  It also runs a healthy primary under
// pgbench load and counts promotions, which must be zero.
//
// It is a benchmark, not a test: it prints figures and asserts nothing
// about them.  It runs only when asked:
//
//	go test -v -count=1 -timeout 60m ./tests/bench -args -bench.runs=5
package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

var (
	runs      = flag.Int("bench.runs", 0, "failovers per kind of fault (0 skips the benchmark)")
	keepalive = flag.Duration("bench.keepalive", time.Second, "pg_keeper.keepalive_time")
	count     = flag.Int("bench.count", 3, "pg_keeper.keepalive_count")
	loadFor   = flag.Duration("bench.load", 30*time.Second, "how long the healthy primary runs under pgbench")
	out       = flag.String("bench.out", "", "also write the Markdown report to this file")
)

// fault injects one kind of failure into the primary.
type fault struct {
	name   string
	inject func(t *testing.T, primary *pgtest.Node)
}

var faults = []fault{
	{"crash (SIGKILL of every server process)", func(t *testing.T, p *pgtest.Node) { p.Crash(t) }},
	{"hang (SIGSTOP of every server process)", func(t *testing.T, p *pgtest.Node) { p.Pause(t) }},
	{"vanished host (packets dropped, no reset)", dropPackets},
}

// sample is one failover, as durations from the fault.
// sample is one failover: from the fault to the keeper's decision, to the
// promotion and to a client's first write; and silence, how long the
// primary had not answered when the keeper decided (from the start of its
// last good check, as the keeper's log line says).
type sample struct{ detected, promoted, writable, silence time.Duration }

func TestFailoverTimes(t *testing.T) {
	if *runs <= 0 {
		t.Skip("benchmark: run with -args -bench.runs=N (make bench)")
	}
	in := pgtest.Require(t, true)
	var report strings.Builder
	bound := *keepalive * time.Duration(*count)
	fmt.Fprintf(&report, "# Failover times\n\nPostgreSQL %d, keepalive_time = %s, keepalive_count = %d, %d runs per fault, the fault at a random phase of the check cycle.\n",
		in.Major, *keepalive, *count, *runs)
	fmt.Fprintf(&report, "Target: median fault → writable within keepalive_time × keepalive_count + 0.3 s = %s.\n\n", bound+300*time.Millisecond)
	fmt.Fprintf(&report, "The keeper decides at most keepalive_time × keepalive_count = %s after the start of the primary's last good check, for every fault (the last column, from its log line).\n\n", bound)
	report.WriteString("| fault | fault → detected (min / median / max) | fault → promoted | fault → writable (client) | last good check → decided |\n|---|---|---|---|---|\n")
	for _, f := range faults {
		var samples []sample
		for i := 0; i < *runs; i++ {
			t.Run(fmt.Sprintf("%s/%d", strings.Fields(f.name)[0], i), func(t *testing.T) {
				s := failOnce(t, in, f)
				t.Logf("%s: detected %s, promoted %s, writable %s", f.name, s.detected, s.promoted, s.writable)
				samples = append(samples, s)
			})
		}
		fmt.Fprintf(&report, "| %s | %s | %s | %s | %s |\n", f.name,
			stats(samples, func(s sample) time.Duration { return s.detected }),
			stats(samples, func(s sample) time.Duration { return s.promoted }),
			stats(samples, func(s sample) time.Duration { return s.writable }),
			stats(samples, func(s sample) time.Duration { return s.silence }))
	}
	promotions, tx := healthyUnderLoad(t, in)
	fmt.Fprintf(&report, "\nHealthy primary under pgbench for %s (%s transactions): %d promotions.\n", *loadFor, tx, promotions)
	fmt.Println("\n" + report.String())
	if *out != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(*out), 0o755))
		require.NoError(t, os.WriteFile(*out, []byte(report.String()), 0o644))
	}
}

func stats(samples []sample, get func(sample) time.Duration) string {
	if len(samples) == 0 {
		return "-"
	}
	d := make([]time.Duration, len(samples))
	for i, s := range samples {
		d[i] = get(s)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	median := d[len(d)/2]
	if len(d)%2 == 0 {
		median = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	f := func(x time.Duration) string { return fmt.Sprintf("%.2f s", x.Seconds()) }
	return f(d[0]) + " / " + f(median) + " / " + f(d[len(d)-1])
}

// startPair starts a primary and a standby whose keepers are connected.
func startPair(t *testing.T, in *pgtest.Install) (primary, standby *pgtest.Node) {
	primary, standby = in.NewKeeperPair(t, map[string]string{
		"pg_keeper.keepalive_time":  fmt.Sprintf("'%dms'", keepalive.Milliseconds()),
		"pg_keeper.keepalive_count": fmt.Sprint(*count),
	}, func(primary *pgtest.Node) {
		primary.Exec(t, "postgres", "create table writes (at timestamptz default now())")
		primary.Exec(t, "postgres", "create extension pg_keeper_go") // the standby grants leases with it
	})
	standby.WaitLog(t, `to "standby:connected"`, 15*time.Second)
	return primary, standby
}

func failOnce(t *testing.T, in *pgtest.Install, f fault) sample {
	primary, standby := startPair(t, in)
	// A random phase: real faults do not wait for the check cycle.
	time.Sleep(rand.N(*keepalive))
	start := time.Now()
	f.inject(t, primary)
	var writable time.Time
	pgtest.Eventually(t, 10*(*keepalive)*time.Duration(*count), 5*time.Millisecond, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := standby.TryQueryString(ctx, "postgres", "insert into writes default values returning 1")
		writable = time.Now()
		return err == nil, fmt.Sprintf("standby not writable: %v", err)
	})
	standby.WaitLog(t, "pg_keeper_go: promoted", 5*time.Second)
	log := standby.Log()
	quiet, _, err := pgtest.PromotionSilence(log)
	require.NoError(t, err, "the promotion's log line says how long the primary was silent")
	return sample{
		silence:  quiet,
		detected: logTime(t, log, `to "standby:promoting"`).Sub(start),
		promoted: logTime(t, log, "pg_keeper_go: promoted").Sub(start),
		writable: writable.Sub(start),
	}
}

// logTime returns the time of the first log line containing substr.
func logTime(t *testing.T, log, substr string) time.Time {
	at, err := pgtest.LogTime(log, substr)
	require.NoError(t, err)
	return at
}

// dropPackets makes the primary vanish from the network: an nftables rule
// drops every packet to or from its loopback port, so connections neither
// complete nor get reset.  The rule is removed when the run ends.
func dropPackets(t *testing.T, p *pgtest.Node) {
	table := fmt.Sprintf("pgk_bench_%d", p.Port)
	rules := fmt.Sprintf(`table inet %s {
	chain input { type filter hook input priority -10; ip daddr 127.0.0.1 tcp dport %d drop; ip saddr 127.0.0.1 tcp sport %d drop; }
}`, table, p.Port, p.Port)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	outp, err := cmd.CombinedOutput()
	require.NoError(t, err, "nft: %s (the vanished-host fault needs root and nftables)", outp)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", table).Run() })
}

// healthyUnderLoad runs pgbench against a healthy primary and returns how
// many times the standby promoted (it must not) and how many transactions
// pgbench made.
func healthyUnderLoad(t *testing.T, in *pgtest.Install) (int, string) {
	primary, standby := startPair(t, in)
	pgbench := filepath.Join(in.BinDir, "pgbench")
	args := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(primary.Port), "-U", "postgres"}
	outp, err := exec.Command(pgbench, append(args, "-i", "-s", "10", "-q", "postgres")...).CombinedOutput()
	require.NoError(t, err, "pgbench -i: %s", outp)
	outp, err = exec.Command(pgbench, append(args, "-c", "8", "-j", "2", "-T", fmt.Sprint(int(loadFor.Seconds())), "postgres")...).CombinedOutput()
	require.NoError(t, err, "pgbench: %s", outp)
	tx := "?"
	if m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(outp); m != nil {
		tx = string(m[1])
	}
	return strings.Count(standby.Log(), `to "standby:promoting"`), tx
}
