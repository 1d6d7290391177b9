package pgtest

// A server: creating it, configuring it, and talking SQL to it.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Node is one PostgreSQL server started by NewPrimary or NewStandby.
type Node struct {
	Name    string
	Dir     string // per-node temporary directory holding everything below
	DataDir string
	SockDir string
	Port    int
	LogFile string

	install *Install
	t       testing.TB
	cred    *syscall.Credential
}

// newNode creates the node's directories, owned by the unprivileged user, and
// registers the cleanup that stops the server and removes Dir.
func (i *Install) newNode(t testing.TB, name string) *Node {
	t.Helper()
	cred, err := runAs()
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pgtest-"+name+"-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	n := &Node{Name: name, Dir: dir, DataDir: filepath.Join(dir, "data"), SockDir: filepath.Join(dir, "sock"),
		Port: port, LogFile: filepath.Join(dir, "postgres.log"), install: i, t: t, cred: cred}
	t.Cleanup(n.cleanup)
	for _, d := range []string{dir, n.SockDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	return n
}

// NewPrimary initializes a new cluster with initdb, writes the base
// configuration plus conf (values verbatim, see Quote), starts it and waits
// until it accepts connections. The server is stopped and its directory
// removed when the test ends.
func (i *Install) NewPrimary(t testing.TB, name string, conf map[string]string) *Node {
	t.Helper()
	n := i.newNode(t, name)
	if _, err := n.run(2*time.Minute, "initdb", "-D", n.DataDir, "-A", "trust", "-N", "-E", "UTF8", "--locale=C", "-U", "postgres"); err != nil {
		t.Fatal(err)
	}
	n.configure(t, conf)
	n.Start(t)
	return n
}

// NewStandby clones primary with pg_basebackup -R -X stream, appends the
// base configuration plus conf to the copied postgresql.conf (so the
// standby inherits the primary's settings unless conf overrides them),
// starts it and waits until it accepts connections and the primary reports
// it streaming in pg_stat_replication (application_name = name).
func (i *Install) NewStandby(t testing.TB, name string, primary *Node, conf map[string]string) *Node {
	t.Helper()
	n := i.newNode(t, name)
	if _, err := n.run(2*time.Minute, "pg_basebackup", "-D", n.DataDir, "-R", "-X", "stream", "-c", "fast", "-N",
		"-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres"); err != nil {
		t.Fatal(err)
	}
	n.configure(t, conf)
	n.Start(t)
	Eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := primary.TryQueryString(ctx, "postgres",
			"select count(*) from pg_stat_replication where application_name = $1 and state = 'streaming'", name)
		return err == nil && s == "1", fmt.Sprintf("standby %s not streaming from %s (count=%q, err=%v)", name, primary.Name, s, err)
	})
	return n
}

// configure appends the base settings merged with conf to postgresql.conf and
// writes a trusting pg_hba.conf.
func (n *Node) configure(t testing.TB, conf map[string]string) {
	t.Helper()
	base := [][2]string{{"listen_addresses", "'127.0.0.1'"}, {"port", strconv.Itoa(n.Port)},
		{"unix_socket_directories", Quote(n.SockDir)}, {"wal_level", "replica"}, {"max_wal_senders", "5"},
		{"hot_standby", "on"}, {"wal_keep_size", "'64MB'"}, {"fsync", "off"}, {"logging_collector", "off"},
		{"log_line_prefix", "'%m [%p] '"}, {"shared_buffers", "'16MB'"}, {"cluster_name", Quote(n.Name)}}
	var b strings.Builder
	b.WriteString("\n# pgtest node " + n.Name + "\n")
	seen := map[string]bool{}
	for _, kv := range base {
		if v, ok := conf[kv[0]]; ok {
			kv[1] = v
		}
		seen[kv[0]] = true
		fmt.Fprintf(&b, "%s = %s\n", kv[0], kv[1])
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, conf[k])
	}
	if err := appendFile(filepath.Join(n.DataDir, "postgresql.conf"), b.String()); err != nil {
		t.Fatal(err)
	}
	hba := "local all all trust\nlocal replication all trust\n" +
		"host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(n.DataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w", path, err)
	}
	return nil
}

// run executes a PostgreSQL program as the unprivileged user with an explicit
// environment and returns its combined output, included in the error too.
func (n *Node) run(timeout time.Duration, prog string, args ...string) (string, error) {
	return n.RunProgram(timeout, filepath.Join(n.install.BinDir, prog), nil, args...)
}

// RunProgram runs prog (a path the unprivileged user may execute) as that
// user, in n.Dir, with PATH on PostgreSQL's bindir, HOME at n.Dir and env
// added, and returns its combined output (in the error too).
func (n *Node) RunProgram(timeout time.Duration, prog string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = n.Dir
	cmd.Env = append([]string{"PATH=" + n.install.BinDir + ":/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + n.Dir}, env...)
	cmd.WaitDelay = 5 * time.Second
	if n.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgtest: %s: %s %s: %w\n%s", n.Name, filepath.Base(prog), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// StartCommand is the shell command that starts n as Start does, for a
// program that starts the node itself.
func (n *Node) StartCommand() string {
	return fmt.Sprintf("%s start -w -t 30 -D %s -l %s", filepath.Join(n.install.BinDir, "pg_ctl"), Quote(n.DataDir), Quote(n.LogFile))
}

// Own gives path (a file or a directory, not recursively) to the
// unprivileged user.
func (n *Node) Own(path string) error {
	if n.cred == nil {
		return nil
	}
	return os.Chown(path, int(n.cred.Uid), int(n.cred.Gid))
}

// ConnString returns a libpq connection string for dbname as user postgres over TCP.
func (n *Node) ConnString(dbname string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=%s sslmode=disable connect_timeout=5", n.Port, dbname)
}

// Connect opens a new connection to dbname.
func (n *Node) Connect(ctx context.Context, dbname string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, n.ConnString(dbname))
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s: connect: %w", n.Name, err)
	}
	return conn, nil
}

// MustConnect opens a connection to dbname, failing the test on error; the
// connection is closed when the test ends.
func (n *Node) MustConnect(t testing.TB, dbname string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.Connect(ctx, dbname)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs sql on a fresh connection with a 10 s deadline, failing the test on error.
func (n *Node) Exec(t testing.TB, dbname, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := n.Connect(ctx, dbname)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %s: %v", n.Name, sql, err)
	}
}

// TryQueryString runs sql on a fresh connection and returns the first column
// of the first row in PostgreSQL's text form ("" for NULL); no rows is an error.
func (n *Node) TryQueryString(ctx context.Context, dbname, sql string, args ...any) (string, error) {
	conn, err := n.Connect(ctx, dbname)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return "", fmt.Errorf("pgtest: %s: %s: %w", n.Name, sql, err)
	}
	defer rows.Close()
	if !rows.Next() || len(rows.RawValues()) == 0 {
		if err := rows.Err(); err != nil {
			return "", fmt.Errorf("pgtest: %s: %s: %w", n.Name, sql, err)
		}
		return "", fmt.Errorf("pgtest: %s: %s: no rows or columns", n.Name, sql)
	}
	v := string(rows.RawValues()[0])
	rows.Close()
	if err := rows.Err(); err != nil {
		return "", fmt.Errorf("pgtest: %s: %s: %w", n.Name, sql, err)
	}
	return v, nil
}

// QueryString is TryQueryString with a 10 s deadline that fails the test on error.
func (n *Node) QueryString(t testing.TB, dbname, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := n.TryQueryString(ctx, dbname, sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// IsInRecovery reports pg_is_in_recovery().
func (n *Node) IsInRecovery(ctx context.Context) (bool, error) {
	v, err := n.TryQueryString(ctx, "postgres", "select pg_is_in_recovery()")
	return v == "t", err
}
