package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// The three ways applications find the primary (docs/routing.md), each
// exercised by a client that writes every 50 ms, as the scenarios' writer
// does, while the primary fails.
const (
	viaHAProxy   = "HAProxy (Patroni's checks)"
	viaWatch     = "pg_keeper_go watch (YAML file)"
	viaMultiHost = "libpq multi-host (target_session_attrs=read-write)"
)

var clientPaths = []string{viaHAProxy, viaWatch, viaMultiHost}

// client writes through one path every 50 ms and records the server of
// every acknowledged write.
type client struct {
	path    string
	connect func(ctx context.Context) (*pgx.Conn, error)
	mu      sync.Mutex
	acked   []write // node: the server's address on the replication network
	stop    chan struct{}
	done    sync.WaitGroup
}

func (cl *client) loop() {
	defer cl.done.Done()
	// A connect may try both nodes, each for up to connect_timeout (1 s):
	// a hung node accepts the TCP connection and never answers.
	writeEvery(cl.stop, 2500*time.Millisecond, time.Second, true, cl.connect,
		func(ctx context.Context, conn *pgx.Conn) (string, error) {
			var server string
			err := conn.QueryRow(ctx, "insert into writes (node) values ($1) returning host(inet_server_addr())", cl.path).Scan(&server)
			return server, err
		},
		func(w write) {
			cl.mu.Lock()
			cl.acked = append(cl.acked, w)
			cl.mu.Unlock()
		})
}

// firstOn returns when the client's first write on server after since was
// acknowledged (zero if none).
func (cl *client) firstOn(server string, since time.Time) time.Time {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, w := range cl.acked {
		if w.node == server && w.at.After(since) {
			return w.at
		}
	}
	return time.Time{}
}

// cliOnce builds the pg_keeper_go command once per test process.
var cliOnce struct {
	sync.Once
	path string
	err  error
}

func buildCLI(t *testing.T) string {
	t.Helper()
	cliOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgk-cli")
		if err != nil {
			cliOnce.err = err
			return
		}
		cliOnce.path = filepath.Join(dir, "pg_keeper_go")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", cliOnce.path, "./gosrc/cmd/pg_keeper_go")
		cmd.Dir, cmd.Env = repoRoot(), append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliOnce.err = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	require.NoError(t, cliOnce.err)
	return cliOnce.path
}

// clients starts HAProxy and one client per path against the cluster, and
// waits until each has written to node1.  pg_keeper_go watch runs on the
// host and keeps a YAML file pointing at the primary, which its client
// reads before each connect.
func (c *cluster) clients() map[string]*client {
	t := c.t
	c.compose("up", "-d", "haproxy")
	n1, n2, proxy := c.ip("node1", "replication"), c.ip("node2", "replication"), c.ip("haproxy", "replication")
	conninfo := func(host string) string {
		return fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", host)
	}

	file := filepath.Join(t.TempDir(), "app.yaml")
	require.NoError(t, os.WriteFile(file, []byte("database:\n  host: "+n1+"\n"), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	watch := exec.CommandContext(ctx, buildCLI(t), "watch", "--node", conninfo(n1), "--node", conninfo(n2),
		"--file", file, "--set", "database.host={{.Host}}", "--interval", "100ms")
	var watchLog strings.Builder
	watch.Stdout, watch.Stderr = &watchLog, &watchLog
	require.NoError(t, watch.Start())
	t.Cleanup(func() {
		cancel()
		_ = watch.Wait()
		if t.Failed() {
			t.Logf("pg_keeper_go watch:\n%s", watchLog.String())
		}
	})
	hostLine := regexp.MustCompile(`(?m)^  host: (\S+)$`)

	cls := map[string]*client{
		viaHAProxy: {connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.Connect(ctx, fmt.Sprintf("host=%s port=5000 user=postgres dbname=postgres sslmode=disable", proxy))
		}},
		viaWatch: {connect: func(ctx context.Context) (*pgx.Conn, error) {
			b, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			m := hostLine.FindSubmatch(b)
			if m == nil {
				return nil, errors.New("no database.host in the file")
			}
			return pgx.Connect(ctx, conninfo(string(m[1])))
		}},
		viaMultiHost: {connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.Connect(ctx, fmt.Sprintf("host=%s,%s port=5432,5432 user=postgres dbname=postgres sslmode=disable target_session_attrs=read-write connect_timeout=1", n1, n2))
		}},
	}
	start := time.Now()
	for path, cl := range cls {
		cl.path, cl.stop = path, make(chan struct{})
		cl.done.Add(1)
		go cl.loop()
		t.Cleanup(func() { close(cl.stop); cl.done.Wait() })
	}
	for path, cl := range cls {
		eventually(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
			return !cl.firstOn(n1, start).IsZero(), path + ": no write on node1 yet"
		})
	}
	return cls
}

// followFailover fails the primary with inject and returns, per path, the
// time from the fault to the first write the new primary acknowledged
// through it, and fault → writable as the scenarios measure it.
func followFailover(t *testing.T, inject fault) (map[string]time.Duration, time.Duration) {
	c := standard(t)
	cls := c.clients()
	w := c.startWriter()
	eventually(t, 5*time.Second, 20*time.Millisecond, func() (bool, string) {
		return w.report(time.Time{}).node1After > 0, "the writer has not written to node1 yet"
	})
	n2 := c.ip("node2", "replication")
	at := inject(t, c)
	writable := waitNode2Writable(t, w, at, 20*time.Second)
	took := map[string]time.Duration{}
	for path, cl := range cls {
		eventually(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
			first := cl.firstOn(n2, at)
			took[path] = first.Sub(at)
			return !first.IsZero(), path + ": no write on node2 since the fault"
		})
	}
	return took, writable
}

// TestClientsFollowTheFailover: after a crash of the primary, writes go
// to the new primary through HAProxy, pg_keeper_go watch and a libpq
// multi-host string; it reports how long after the fault each path wrote.
func TestClientsFollowTheFailover(t *testing.T) {
	took, writable := followFailover(t, crash)
	var notes []string
	for _, path := range clientPaths {
		notes = append(notes, fmt.Sprintf("%s %.2f s", path, took[path].Seconds()))
	}
	record(t, result{scenario: "clients follow a crash", writable: writable,
		note: "fault → first write on the new primary: " + strings.Join(notes, "; ")})
}
