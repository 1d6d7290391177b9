package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

var (
	leaseRounds = flag.Int("bench.lease.rounds", 0, "pgbench rounds per guard mode for the lease cost (0 skips it)")
	leaseFor    = flag.Duration("bench.lease.duration", 15*time.Second, "length of one pgbench round")
	leaseOut    = flag.String("bench.lease.out", "", "also write the Markdown report to this file")
)

// TestLeaseCost measures what checking the lease at every commit costs: the
// same primary, streaming to the same standby, runs pgbench with its write
// guard "leased" (a clock read per write commit) and "open" (the check
// returns after one atomic read), in rounds that alternate which mode goes
// first, so that both see the same cache and disk states.  synchronous_commit = off keeps the commit
// path short, so that the check weighs as much as it can.
func TestLeaseCost(t *testing.T) {
	if *leaseRounds <= 0 {
		t.Skip("benchmark: run with -args -bench.lease.rounds=N (make bench-lease)")
	}
	in := pgtest.Require(t, true)
	primary, _ := startPair(t, in)
	primary.AlterSystem(t, "synchronous_commit", "'off'")
	primary.Reload(t)
	pgbench := filepath.Join(in.BinDir, "pgbench")
	args := []string{"-h", "127.0.0.1", "-p", fmt.Sprint(primary.Port), "-U", "postgres"}
	outp, err := exec.Command(pgbench, append(args, "-i", "-s", "10", "-q", "postgres")...).CombinedOutput()
	require.NoError(t, err, "pgbench -i: %s", outp)

	partner := primary.QueryString(t, "postgres", "select current_setting('pg_keeper.partner_conninfo')")
	guard := func(mode string) {
		// open: the partner "is lost" (a closed port), availability
		// policy; leased: the real standby again.
		conninfo := partner
		if mode == "open" {
			conninfo = "host=127.0.0.1 port=1 user=postgres dbname=postgres connect_timeout=1"
		}
		primary.AlterSystem(t, "pg_keeper.partner_conninfo", pgtest.Quote(conninfo))
		primary.Reload(t)
		pgtest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			g, err := primary.TryQueryString(ctx, "postgres", "select guard from pg_keeper_status()")
			return g == mode, fmt.Sprintf("guard %q, err %v", g, err)
		})
	}
	tps := map[string][]float64{}
	for round := 0; round < *leaseRounds; round++ {
		// Alternate which mode goes first: a later round runs on warmer
		// caches and a different point of the checkpoint cycle.
		modes := []string{"leased", "open"}
		if round%2 == 1 {
			modes = []string{"open", "leased"}
		}
		for _, mode := range modes {
			guard(mode)
			outp, err := exec.Command(pgbench, append(args, "-n", "-M", "prepared", "-c", "4", "-j", "2",
				"-T", fmt.Sprint(int(leaseFor.Seconds())), "postgres")...).CombinedOutput()
			require.NoError(t, err, "pgbench: %s", outp)
			m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(outp)
			require.NotNil(t, m, "no tps in: %s", outp)
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			tps[mode] = append(tps[mode], v)
			t.Logf("round %d, guard %s: %.0f tps", round+1, mode, v)
		}
	}
	med := func(v []float64) float64 {
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	leased, open := med(tps["leased"]), med(tps["open"])
	var b strings.Builder
	fmt.Fprintf(&b, "# Cost of lease-guarded commits\n\n")
	fmt.Fprintf(&b, "pgbench -M prepared -c 4 -j 2, TPC-B-like, scale 10, synchronous_commit = off, %d rounds of %s per mode,\n", *leaseRounds, *leaseFor)
	fmt.Fprintf(&b, "alternating (and alternating which goes first), on a local PostgreSQL primary streaming to its standby\n(tests/bench/leasecost_test.go, make bench-lease).\n\n")
	fmt.Fprintf(&b, "| write guard | tps per round | median |\n|---|---|---|\n")
	for _, mode := range []string{"leased", "open"} {
		var parts []string
		for _, v := range tps[mode] {
			parts = append(parts, fmt.Sprintf("%.0f", v))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f |\n", mode, strings.Join(parts, ", "), med(tps[mode]))
	}
	// Paired rounds: each leased round against the open round next to it.
	var diffs []string
	lo, hi := 0.0, 0.0
	for i := range tps["leased"] {
		d := (tps["leased"][i] - tps["open"][i]) / tps["open"][i] * 100
		if i == 0 || d < lo {
			lo = d
		}
		if i == 0 || d > hi {
			hi = d
		}
		diffs = append(diffs, fmt.Sprintf("%+.1f %%", d))
	}
	fmt.Fprintf(&b, "\nMedian difference: %+.2f %% (leased vs open); per pair of rounds: %s (from %+.1f %% to %+.1f %%).\n",
		(leased-open)/open*100, strings.Join(diffs, ", "), lo, hi)
	if d := (leased - open) / open * 100; d > lo && d < hi {
		fmt.Fprintf(&b, "The difference is inside the spread of the pairs: pgbench on this machine cannot resolve it; the direct measurement below bounds it.\n")
	}

	// What the check adds to a commit, measured directly: one
	// CLOCK_BOOTTIME read.  Go reads it with a system call, the C shim
	// through the vDSO, so this is an upper bound.
	const reads = 1_000_000
	start := time.Now()
	for range reads {
		host.Boottime()
	}
	perRead := time.Since(start) / reads
	perTx := time.Duration(float64(time.Second) * 4 / leased) // 4 clients
	fmt.Fprintf(&b, "\nOne CLOCK_BOOTTIME read costs at most %s here (system call; the shim's goes through the vDSO), "+
		"against %s per pgbench transaction: at most %.3f %% of a commit.\n", perRead, perTx.Round(time.Microsecond),
		float64(perRead)/float64(perTx)*100)
	fmt.Print(b.String())
	if *leaseOut != "" {
		require.NoError(t, os.WriteFile(*leaseOut, []byte(b.String()), 0o644))
	}
}
