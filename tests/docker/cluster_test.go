// Package docker runs the failure scenarios against the Docker cluster of
// docker-compose.yml, for one PostgreSQL major (env PG_MAJOR, default 15):
// each test starts its own compose project, injects a fault from outside,
// and reports fault → writable times and whether both nodes ever accepted
// writes in the same period.  Every container, volume and network a test
// creates is removed when it ends, also when it fails.
//
// The tests skip, saying why, without Docker or without the image
// pg_keeper_go:pgNN (make image-NN).
package docker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cluster is one compose project: node1 (primary), node2 (standby) and
// the witness.
type cluster struct {
	t       *testing.T
	project string
	major   string
	env     []string
	root    string
	file    string // the compose file, relative to root ("" is docker-compose.yml)
	// psqlAs, when set, is the role psql connects as over TCP to
	// 127.0.0.1 in a container (the peers' images: no local trust for
	// root).
	psqlAs string
	third  string // the third host (the peers' benchmark)
}

type options struct {
	keepaliveTime  int // seconds
	keepaliveCount int
	noWitness      bool   // the keepers run without pg_keeper.witness_conninfo
	extraConf      string // more postgresql.conf lines for both nodes
}

func major() string {
	if m := os.Getenv("PG_MAJOR"); m != "" {
		return m
	}
	return "15"
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// startCluster brings up the witness, node1 and node2 and waits until both
// keepers report "connected".
func startCluster(t *testing.T, o options) *cluster {
	t.Helper()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("docker-compose not found")
	}
	m := major()
	image := "pg_keeper_go:pg" + m
	if out, err := exec.Command("docker", "image", "inspect", image).CombinedOutput(); err != nil {
		t.Skipf("image %s not found (make image-%s): %s", image, m, firstLine(string(out)))
	}
	c := &cluster{
		t:       t,
		project: fmt.Sprintf("pgkt%dx%04d", os.Getpid(), rand.N(10000)),
		major:   m,
		root:    repoRoot(),
		env: append(os.Environ(), "PG_MAJOR="+m,
			fmt.Sprintf("KEEPALIVE_TIME=%d", o.keepaliveTime),
			fmt.Sprintf("KEEPALIVE_COUNT=%d", o.keepaliveCount)),
	}
	if o.noWitness {
		c.env = append(c.env, "WITNESS_HOST=")
	}
	if o.extraConf != "" {
		c.env = append(c.env, "EXTRA_CONF="+o.extraConf)
	}
	t.Cleanup(c.down)
	c.compose("up", "-d", "witness", "node1", "node2")
	c.waitState("node1", "primary", "connected", 90*time.Second)
	c.waitState("node2", "standby", "connected", 90*time.Second)
	// Under a lease (safety, a witness) the first writes wait for the
	// first grant or renewal.
	eventually(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql("node1", "postgres", "select guard = 'open' or (guard = 'leased' and lease_valid_for > '0') from pg_keeper_status()")
		return err == nil && out == "t", fmt.Sprintf("node1's guard lets no write through: %q %v", out, err)
	})
	c.psql("node1", "postgres", "create table writes (node text, at timestamptz default clock_timestamp(), id bigint)")
	return c
}

func (c *cluster) down() {
	if c.t.Failed() {
		out, _ := c.composeOut("logs", "--no-color", "--tail", "40", "node1", "node2")
		c.t.Logf("last log lines:\n%s", out)
	}
	// Paused or disconnected containers are stopped all the same.
	_, _ = c.composeOut("unpause")
	if out, err := c.composeOut("down", "-v", "-t", "2", "--remove-orphans"); err != nil {
		c.t.Errorf("docker-compose down: %v\n%s", err, out)
	}
}

func (c *cluster) composeOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	file := c.file
	if file == "" {
		file = "docker-compose.yml"
	}
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"-p", c.project, "-f", filepath.Join(c.root, file)}, args...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) compose(args ...string) string {
	c.t.Helper()
	out, err := c.composeOut(args...)
	require.NoError(c.t, err, "docker-compose %v: %s", args, out)
	return out
}

// docker runs the docker CLI with a deadline, failing the test on error.
func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerTry(args...)
	require.NoError(t, err, "docker %v: %s", args, out)
	return out
}

// dockerTry runs the docker CLI with a deadline.
func dockerTry(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// dockerTryStdin is dockerTry with stdin.
func dockerTryStdin(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// container returns the container id of a service.
func (c *cluster) container(service string) string {
	return strings.TrimSpace(c.compose("ps", "-q", service))
}

// network returns the full name of a compose network ("heartbeat").
func (c *cluster) network(name string) string { return c.project + "_" + name }

// ip returns a service's address on a network, as the host reaches it.
func (c *cluster) ip(service, network string) string {
	return docker(c.t, "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, c.network(network)), c.container(service))
}

// tryPsql runs one statement in a service with psql and returns its output.
func (c *cluster) tryPsql(service, db, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := []string{"exec", c.container(service), "psql", "-X", "-A", "-t", "-d", db, "-c", sql}
	if c.psqlAs != "" {
		args = append([]string{"exec", c.container(service), "psql", "-h", "127.0.0.1", "-U", c.psqlAs}, args[3:]...)
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (c *cluster) psql(service, db, sql string) string {
	c.t.Helper()
	out, err := c.tryPsql(service, db, sql)
	require.NoError(c.t, err, "%s: %s: %s", service, sql, out)
	return out
}

// waitState polls pg_keeper_status() of a service.
func (c *cluster) waitState(service, role, state string, deadline time.Duration) {
	c.t.Helper()
	eventually(c.t, deadline, 50*time.Millisecond, func() (bool, string) {
		out, err := c.tryPsql(service, "postgres", "select role || '/' || state from pg_keeper_status()")
		return err == nil && out == role+"/"+state, fmt.Sprintf("%s: %q %v", service, out, err)
	})
}

// logs returns a service's log.
func (c *cluster) logs(service string) string {
	out, _ := c.composeOut("logs", "--no-color", service)
	return out
}

// eventually polls cond until it holds, failing the test after deadline.
func eventually(t *testing.T, deadline, every time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var msg string
	for {
		var ok bool
		if ok, msg = cond(); ok {
			return time.Since(start)
		}
		if time.Since(start) > deadline {
			t.Fatalf("not true within %s: %s", deadline, msg)
		}
		time.Sleep(every) // the poll interval
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// result is one scenario's outcome, written to results/ by writeResults.
type result struct {
	scenario string
	writable time.Duration // fault → node2 accepted a write; 0 if it did not
	overlap  time.Duration
	note     string
}

var (
	resultsMu sync.Mutex
	results   []result
)

func record(t *testing.T, r result) {
	t.Logf("%s: fault → writable %s, both nodes writable for %s. %s", r.scenario, r.writable.Round(time.Millisecond), r.overlap.Round(time.Millisecond), r.note)
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, r)
}

func TestMain(m *testing.M) {
	removeStaleProjects()
	code := m.Run()
	if len(results) > 0 {
		writeResults()
	}
	os.Exit(code)
}

// removeStaleProjects removes what test processes that no longer run left
// behind (a test killed by a timeout runs no cleanup): compose projects
// named pgkt<pid>x<n>.
func removeStaleProjects() {
	out, err := exec.Command("docker", "ps", "-a", "--format", `{{.Label "com.docker.compose.project"}}`).Output()
	if err != nil {
		return
	}
	seen := map[string]bool{}
	for _, project := range strings.Fields(string(out)) {
		var pid, n int
		if seen[project] {
			continue
		}
		seen[project] = true
		switch {
		case strings.HasPrefix(project, "pgkt"):
			if _, err := fmt.Sscanf(project, "pgkt%dx%d", &pid, &n); err != nil || processAlive(pid) {
				continue
			}
			c := &cluster{t: nil, project: project, root: repoRoot(), env: os.Environ()}
			_, _ = c.composeOut("down", "-v", "-t", "1", "--remove-orphans")
		case strings.HasPrefix(project, "pgkp"):
			// The peers' benchmark: another compose file, so by label.
			if _, err := fmt.Sscanf(project, "pgkp%dx", &pid); err != nil || processAlive(pid) {
				continue
			}
			removeByLabel(project)
		}
	}
}

// removeByLabel removes a compose project's containers, their volumes and
// its networks without its compose file.
func removeByLabel(project string) {
	label := "label=com.docker.compose.project=" + project
	if ids, err := dockerTry("ps", "-aq", "--filter", label); err == nil && ids != "" {
		_, _ = dockerTry(append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
	}
	if ids, err := dockerTry("network", "ls", "-q", "--filter", label); err == nil && ids != "" {
		_, _ = dockerTry(append([]string{"network", "rm"}, strings.Fields(ids)...)...)
	}
	if ids, err := dockerTry("volume", "ls", "-q", "--filter", label); err == nil && ids != "" {
		_, _ = dockerTry(append([]string{"volume", "rm"}, strings.Fields(ids)...)...)
	}
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// writeResults writes this run's table to results/scenarios-pgNN.md,
// replacing the previous run's.
func writeResults() {
	sort.SliceStable(results, func(i, j int) bool { return results[i].scenario < results[j].scenario })
	var b strings.Builder
	fmt.Fprintf(&b, "# Failure scenarios, PostgreSQL %s\n\nkeepalive_time = 1 s (2 s for the lossy link), keepalive_count = 3. Written by `go test ./tests/docker` on %s.\n\n",
		major(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| scenario | fault → standby writable | both nodes writable for | notes |\n|---|---|---|---|\n")
	for _, r := range results {
		w := "-"
		if r.writable > 0 {
			w = strconv.FormatFloat(r.writable.Seconds(), 'f', 2, 64) + " s"
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f s | %s |\n", r.scenario, w, r.overlap.Seconds(), r.note)
	}
	dir := filepath.Join(repoRoot(), "results")
	path := filepath.Join(dir, "scenarios-pg"+major()+".md")
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, []byte(b.String()), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "could not write %s: %v\n", path, err)
	}
}
