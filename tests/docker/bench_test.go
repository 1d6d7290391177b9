package docker

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

var (
	benchRuns   = flag.Int("bench.runs", 0, "failovers per kind of fault for TestBench (0 skips it; make bench)")
	benchReport = flag.Bool("bench.report", false, "only rewrite results/bench.md and bench.png from results/bench/*.json")
)

// benchSample is one failover, as seconds from the fault.
type benchSample struct {
	Fault    string  `json:"fault"`
	Detected float64 `json:"detected"`
	Promoted float64 `json:"promoted"`
	Writable float64 `json:"writable"`
	// Paths is, per way of finding the primary (clientPaths), the time
	// to the first write the new primary acknowledged through it.
	Paths map[string]float64 `json:"paths,omitempty"`
}

var benchFaults = []struct {
	name   string
	inject fault
}{{"crash", crash}, {"hang", hang}, {"vanished", vanish}}

// TestBench runs each timing fault bench.runs times on this major, saves
// the samples to results/bench/pgNN.json and rewrites results/bench.md and
// results/bench.png from the samples of every major measured so far.
func TestBench(t *testing.T) {
	if *benchReport {
		require.NoError(t, writeBenchReport(filepath.Join(repoRoot(), "results")))
		return
	}
	if *benchRuns <= 0 {
		t.Skip("benchmark: run with -args -bench.runs=N (make bench)")
	}
	var samples []benchSample
	for _, f := range benchFaults {
		for i := 0; i < *benchRuns; i++ {
			t.Run(fmt.Sprintf("%s/%d", f.name, i), func(t *testing.T) {
				c := standard(t)
				cls := c.clients()
				w := c.startWriter()
				// A random phase: real faults do not wait for the check cycle.
				time.Sleep(rand.N(keepaliveTime))
				fault := f.inject(t, c)
				writable := waitNode2Writable(t, w, fault, 3*bound)
				c.waitState("node2", "primary", "alone", 10*time.Second)
				logs := c.logs("node2")
				s := benchSample{Fault: f.name,
					Detected: logTime(t, logs, `to "standby:promoting"`).Sub(fault).Seconds(),
					Promoted: logTime(t, logs, "pg_keeper_go: promoted").Sub(fault).Seconds(),
					Writable: writable.Seconds(), Paths: map[string]float64{}}
				n2 := c.ip("node2", "replication")
				for path, cl := range cls {
					eventually(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
						first := cl.firstOn(n2, fault)
						s.Paths[path] = first.Sub(fault).Seconds()
						return !first.IsZero(), path + ": no write on node2 since the fault"
					})
				}
				t.Logf("%s: detected %.2f s, promoted %.2f s, writable %.2f s, through clients %v", f.name, s.Detected, s.Promoted, s.Writable, s.Paths)
				samples = append(samples, s)
			})
		}
	}
	dir := filepath.Join(repoRoot(), "results", "bench")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	b, err := json.MarshalIndent(samples, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pg"+major()+".json"), b, 0o644))
	require.NoError(t, writeBenchReport(filepath.Join(repoRoot(), "results")))
}

// logTime returns the server time stamp of the first log line with substr.
func logTime(t *testing.T, logs, substr string) time.Time {
	at, err := pgtest.LogTime(logs, substr)
	require.NoError(t, err)
	return at
}

// writeBenchReport writes bench.md and bench.png from results/bench/*.json.
func writeBenchReport(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "bench", "pg*.json"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	target := (keepaliveTime*keepaliveCount + 300*time.Millisecond).Seconds()
	var md strings.Builder
	fmt.Fprintf(&md, "# Failover benchmark (Docker)\n\nkeepalive_time = %s, keepalive_count = %d; the fault at a random phase of the check cycle. "+
		"Times in seconds from the fault, min / median / max. Target: median fault → writable within %.1f s.\n\n", keepaliveTime, keepaliveCount, target)
	md.WriteString("| major | fault | runs | fault → detected | fault → promoted | fault → writable |\n|---|---|---|---|---|---|\n")
	var clients strings.Builder
	clients.WriteString("\n## Through the clients\n\nFault → the first write the new primary acknowledged through each way of finding it " +
		"(docs/routing.md), next to fault → writable (a client that writes to node2 directly). Every client writes every 50 ms, " +
		"with a 1 s deadline per write and 2.5 s per connect (libpq multi-host: connect_timeout 1 s per host), and reconnects after an error; " +
		"HAProxy runs docker/haproxy.cfg (Patroni's checks, inter 1s fall 2 rise 2, timeout check 1s).\n\n")
	clients.WriteString("| major | fault | runs | fault → writable | " + strings.Join(clientPaths, " | ") + " |\n|---|---|---|---|" +
		strings.Repeat("---|", len(clientPaths)) + "\n")
	p := plot.New()
	p.Title.Text = "pg_keeper_go: fault → writable (Docker)"
	p.Y.Label.Text = "seconds"
	var names []string
	x := 0.0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var samples []benchSample
		if err := json.Unmarshal(b, &samples); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		major := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "pg"), ".json")
		for _, fault := range benchFaults {
			var det, pro, wri plotter.Values
			for _, s := range samples {
				if s.Fault == fault.name {
					det, pro, wri = append(det, s.Detected), append(pro, s.Promoted), append(wri, s.Writable)
				}
			}
			if len(wri) == 0 {
				continue
			}
			fmt.Fprintf(&md, "| %s | %s | %d | %s | %s | %s |\n", major, fault.name, len(wri), summary(det), summary(pro), summary(wri))
			var cols []string
			for _, path := range clientPaths {
				var v plotter.Values
				for _, s := range samples {
					if d, ok := s.Paths[path]; ok && s.Fault == fault.name {
						v = append(v, d)
					}
				}
				if len(v) == 0 {
					cols = append(cols, "-")
					continue
				}
				cols = append(cols, summary(v))
			}
			if strings.Trim(strings.Join(cols, ""), "-") != "" { // samples from before the clients were measured have none
				fmt.Fprintf(&clients, "| %s | %s | %d | %s | %s |\n", major, fault.name, len(wri), summary(wri), strings.Join(cols, " | "))
			}
			box, err := plotter.NewBoxPlot(vg.Points(18), x, wri)
			if err != nil {
				return err
			}
			p.Add(box)
			names = append(names, major+" "+fault.name)
			x++
		}
	}
	line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: target}, {X: x - 0.5, Y: target}})
	if err != nil {
		return err
	}
	line.Color = color.RGBA{R: 200, A: 255}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
	p.Add(line)
	p.Legend.Add(fmt.Sprintf("target %.1f s", target), line)
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = math.Max(p.Y.Max, target) + 0.6 // room for the title
	md.WriteString("\n![fault → writable per major and fault](bench.png)\n")
	md.WriteString(clients.String())
	if err := p.Save(vg.Length(80+60*len(names))*vg.Points(1), 4*vg.Inch, filepath.Join(dir, "bench.png")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench.md"), []byte(md.String()), 0o644)
}

func summary(v plotter.Values) string {
	s := append(plotter.Values(nil), v...)
	sort.Float64s(s)
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f", s[0], median, s[len(s)-1])
}
