package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

var (
	lossyFor     = flag.Duration("bench.lossy.duration", 0, "how long the standby's checks cross a lossy link (0 skips it)")
	lossyPercent = flag.Int("bench.lossy.percent", 20, "packets dropped on the link, in percent, each way")
	lossyOut     = flag.String("bench.lossy.out", "", "also write the Markdown report to this file")
	lossyLabel   = flag.String("bench.lossy.label", "", "what is measured, for the report's title (a build, a setting)")
)

// streakEnd is the keeper's line when the partner answers after failed
// checks: how many, and how long it had been silent.
var streakEnd = regexp.MustCompile(`answered again after (\d+) failed checks, no answer for ([0-9.]+[a-zµ]+)`)

// TestLossyLink drops a share of the packets between the standby and its
// primary (both ways, nftables on loopback) for a while; the standby should
// not promote (a promotion ends the run and is reported).  It reports how
// close the keeper came: the failed-check
// streaks, the longest silence against keepalive_time x keepalive_count,
// and the checks a second connection saved.
func TestLossyLink(t *testing.T) {
	if *lossyFor <= 0 {
		t.Skip("benchmark: run with -args -bench.lossy.duration=3m (make bench-lossy)")
	}
	in := pgtest.Require(t, true)
	primary, standby := startPair(t, in)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	api := l.Addr().String()
	require.NoError(t, l.Close())
	standby.SetConf(t, "pg_keeper.http_address", pgtest.Quote(api))
	standby.Reload(t)
	standby.WaitLog(t, "HTTP API listening on "+api, 10*time.Second)
	table := fmt.Sprintf("pgk_lossy_%d", primary.Port)
	rules := fmt.Sprintf(`table inet %s {
	chain input { type filter hook input priority -10; tcp dport %d numgen random mod 100 < %d drop; tcp sport %d numgen random mod 100 < %d drop; }
}`, table, primary.Port, *lossyPercent, primary.Port, *lossyPercent)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	outp, err := cmd.CombinedOutput()
	require.NoError(t, err, "nft: %s (the lossy link needs root and nftables)", outp)
	t.Cleanup(func() { _ = exec.Command("nft", "delete", "table", "inet", table).Run() })

	start := time.Now()
	falseFailover := "0"
	pgtest.Eventually(t, *lossyFor+time.Minute, time.Second, func() (bool, string) {
		if strings.Contains(standby.Log(), `to "standby:promoting"`) {
			// Reported, not failed: the benchmark compares builds and
			// loss rates, some of which do fail over.
			falseFailover = fmt.Sprintf("1, after %s", time.Since(start).Round(time.Second))
			return true, ""
		}
		return time.Since(start) >= *lossyFor, ""
	})
	require.NoError(t, exec.Command("nft", "delete", "table", "inet", table).Run())
	log := standby.Log()
	var longest time.Duration
	most := 0
	streaks := streakEnd.FindAllStringSubmatch(log, -1)
	for _, m := range streaks {
		var n int
		fmt.Sscan(m[1], &n)
		d, err := time.ParseDuration(m[2])
		require.NoError(t, err)
		longest, most = max(longest, d), max(most, n)
	}
	limit := *keepalive * time.Duration(*count)
	report := fmt.Sprintf("# Lossy link%s\n\nPostgreSQL %d, keepalive_time = %s, keepalive_count = %d (the keeper acts after %s without an answer). "+
		"%d %% of the packets between the standby and its primary dropped each way (nftables on loopback) for %s.\n\n"+
		"| false failovers | failed-check streaks | most failed checks in a row | longest silence | checks answered over the second connection |\n|---|---|---|---|---|\n"+
		"| %s | %d | %d | %s | %s |\n",
		label(), in.Major, *keepalive, *count, limit, *lossyPercent, *lossyFor, falseFailover, len(streaks), most, longest.Round(time.Millisecond), hedgedAnswers(t, api))
	fmt.Println("\n" + report)
	if *lossyOut != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(*lossyOut), 0o755))
		require.NoError(t, os.WriteFile(*lossyOut, []byte(report), 0o644))
	}
}

// hedgedAnswers reads pg_keeper_hedged_answers_total from the keeper's
// metrics.
func hedgedAnswers(t *testing.T, api string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/metrics", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^pg_keeper_hedged_answers_total (\d+)`).FindSubmatch(body)
	if m == nil {
		return "-" // a build before the second connection
	}
	return string(m[1])
}

func label() string {
	if *lossyLabel == "" {
		return ""
	}
	return ": " + *lossyLabel
}
