package bench

// The operator's commands, timed on real PostgreSQL pairs: how long a
// switchover refuses writes (as the command measures it, and as a client
// writing to both nodes every 5 ms sees it), and how long a rejoin by
// pg_rewind takes after a crash.
//
//	go test -v -count=1 -timeout 60m -run TestOperateTimes ./tests/bench -args -bench.operate.runs=5

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

var (
	operateRuns = flag.Int("bench.operate.runs", 0, "switchovers and rejoins to time (0 skips the benchmark)")
	operateOut  = flag.String("bench.operate.out", "", "also write the Markdown report to this file")
)

// lastAcks records, per node, the first and last acknowledged write.
type lastAcks struct {
	mu          sync.Mutex
	first, last map[string]time.Time
}

// writeBoth writes to both nodes every 5 ms until ctx ends.
func writeBoth(ctx context.Context, nodes ...*pgtest.Node) (*lastAcks, *sync.WaitGroup) {
	a := &lastAcks{first: map[string]time.Time{}, last: map[string]time.Time{}}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				_, err := n.TryQueryString(qctx, "postgres", "insert into writes default values returning 1")
				cancel()
				if err == nil {
					now := time.Now()
					a.mu.Lock()
					if a.first[n.Name].IsZero() {
						a.first[n.Name] = now
					}
					a.last[n.Name] = now
					a.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Millisecond): // the writer's pace
				}
			}
		}()
	}
	return a, &wg
}

func TestOperateTimes(t *testing.T) {
	if *operateRuns <= 0 {
		t.Skip("benchmark: run with -args -bench.operate.runs=N (make bench-operate)")
	}
	in := pgtest.Require(t, true)
	bin := pgtest.BuildCLI(t)
	var byCommand, byClient, rejoins []sample
	for i := 0; i < *operateRuns; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			primary, standby := in.NewKeeperPair(t, map[string]string{
				"pg_keeper.keepalive_time":  fmt.Sprintf("'%dms'", keepalive.Milliseconds()),
				"pg_keeper.keepalive_count": fmt.Sprint(*count),
				"wal_log_hints":             "on",
			}, func(primary *pgtest.Node) {
				primary.Exec(t, "postgres", "create table writes (at timestamptz default now())")
				primary.Exec(t, "postgres", "create extension pg_keeper_go")
			})
			standby.WaitLog(t, `to "standby:connected"`, 15*time.Second)
			primary.Exec(t, "postgres", "create table filler as select generate_series(1, 100000) id")

			ctx, stop := context.WithCancel(context.Background())
			acks, wg := writeBoth(ctx, primary, standby)
			pgtest.Eventually(t, 5*time.Second, 5*time.Millisecond, func() (bool, string) {
				acks.mu.Lock()
				defer acks.mu.Unlock()
				return !acks.first[primary.Name].IsZero(), "no write yet"
			})
			code, out := standby.RunOwnCLI(t, bin, 3*time.Minute, "switchover",
				"--node", primary.ConnString("postgres"), "--node", standby.ConnString("postgres"))
			require.Equal(t, 0, code, out)
			m := regexp.MustCompile(`writes were refused for (\S+)`).FindStringSubmatch(out)
			require.Len(t, m, 2, out)
			window, err := time.ParseDuration(m[1])
			require.NoError(t, err)
			pgtest.Eventually(t, 10*time.Second, 5*time.Millisecond, func() (bool, string) {
				acks.mu.Lock()
				defer acks.mu.Unlock()
				return !acks.first[standby.Name].IsZero(), "no write on the new primary yet"
			})
			stop()
			wg.Wait()
			client := acks.first[standby.Name].Sub(acks.last[primary.Name])
			byCommand = append(byCommand, sample{writable: window})
			byClient = append(byClient, sample{writable: client})

			// A crash of the new primary; the old one takes over; the
			// crashed node rejoins by pg_rewind.
			standby.Crash(t)
			pgtest.Eventually(t, 30*time.Second, 10*time.Millisecond, func() (bool, string) {
				_, err := primary.TryQueryString(context.Background(), "postgres", "insert into writes default values returning 1")
				return err == nil, fmt.Sprintf("no failover back: %v", err)
			})
			code, out = standby.RunOwnCLI(t, bin, 5*time.Minute, "rejoin", "--pgdata", standby.DataDir, "--bindir", in.BinDir,
				"--primary", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", primary.Port), "--start-command", standby.StartCommand())
			require.Equal(t, 0, code, out)
			m = regexp.MustCompile(`done in (\S+) by pg_rewind`).FindStringSubmatch(out)
			require.Len(t, m, 2, out)
			took, err := time.ParseDuration(m[1])
			require.NoError(t, err)
			rejoins = append(rejoins, sample{writable: took})
			t.Logf("switchover: writes refused %s (command), %s (client); rejoin by pg_rewind %s", window, client, took)
		})
	}
	get := func(s sample) time.Duration { return s.writable }
	var report strings.Builder
	fmt.Fprintf(&report, "# Switchover and rejoin times\n\nPostgreSQL %d on one machine (two cores), local pairs, keepalive_time = %s, keepalive_count = %d, wal_log_hints = on, a 100 000-row table, %d runs (`make bench-operate`).\n\n",
		in.Major, *keepalive, *count, *operateRuns)
	report.WriteString("| measure | min / median / max |\n|---|---|\n")
	fmt.Fprintf(&report, "| switchover: writes refused, as `pg_keeper_go switchover` reports it (demotion asked → new primary takes writes) | %s |\n", stats(byCommand, get))
	fmt.Fprintf(&report, "| switchover: writes refused, as a client writing to both nodes every 5 ms sees it (last write on the old primary → first on the new) | %s |\n", stats(byClient, get))
	fmt.Fprintf(&report, "| rejoin by pg_rewind after a crash, as `pg_keeper_go rejoin` reports it (start → streaming) | %s |\n", stats(rejoins, get))
	fmt.Println("\n" + report.String())
	if *operateOut != "" {
		require.NoError(t, os.MkdirAll(filepath.Dir(*operateOut), 0o755))
		require.NoError(t, os.WriteFile(*operateOut, []byte(report.String()), 0o644))
	}
}
