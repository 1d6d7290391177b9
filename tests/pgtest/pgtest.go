// Package pgtest starts real PostgreSQL servers on loopback for integration
// tests: a primary made with initdb and streaming standbys made with
// pg_basebackup. When the test runs as root, every PostgreSQL program runs as
// the user named by PGTEST_USER (default "postgres"), because initdb refuses
// to run as root.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Install describes a PostgreSQL installation found on this machine.
type Install struct {
	BinDir, PkgLibDir, ShareDir string
	Major                       int
}

// Find locates a PostgreSQL installation through pg_config: $PG_CONFIG if
// set, otherwise pg_config on PATH, then /usr/lib/postgresql/*/bin/pg_config
// from the highest major version down. The first installation whose BinDir
// holds initdb, pg_ctl, postgres and pg_basebackup wins.
func Find() (*Install, error) {
	var cands []string
	if pc := os.Getenv("PG_CONFIG"); pc != "" {
		cands = []string{pc}
	} else {
		if pc, err := exec.LookPath("pg_config"); err == nil {
			cands = append(cands, pc)
		}
		globbed, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_config")
		major := func(p string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p)))); return v }
		sort.Slice(globbed, func(a, b int) bool { return major(globbed[a]) > major(globbed[b]) })
		cands = append(cands, globbed...)
	}
	if len(cands) == 0 {
		return nil, errors.New("pgtest: pg_config not found: set PG_CONFIG, put pg_config on PATH or install PostgreSQL under /usr/lib/postgresql")
	}
	var errs []error
	for _, pc := range cands {
		inst, err := fromPgConfig(pc)
		if err == nil {
			return inst, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func fromPgConfig(pgConfig string) (*Install, error) {
	out, err := exec.Command(pgConfig, "--bindir", "--pkglibdir", "--sharedir", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s: %w", pgConfig, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 {
		return nil, fmt.Errorf("pgtest: %s: unexpected output %q", pgConfig, out)
	}
	inst := &Install{BinDir: lines[0], PkgLibDir: lines[1], ShareDir: lines[2]}
	if f := strings.Fields(lines[3]); len(f) >= 2 {
		end := strings.IndexFunc(f[1]+".", func(r rune) bool { return r < '0' || r > '9' })
		inst.Major, _ = strconv.Atoi(f[1][:end]) // "15.20", "17beta1"
	}
	if inst.Major == 0 {
		return nil, fmt.Errorf("pgtest: %s: cannot parse version %q", pgConfig, lines[3])
	}
	var missing []string
	for _, prog := range []string{"initdb", "pg_ctl", "postgres", "pg_basebackup"} {
		if _, err := os.Stat(filepath.Join(inst.BinDir, prog)); err != nil {
			missing = append(missing, prog)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("pgtest: %s (from %s) lacks %s; install the PostgreSQL server package", inst.BinDir, pgConfig, strings.Join(missing, ", "))
	}
	return inst, nil
}

// Require calls Find and skips the test with the reason if it fails, or if
// running as root and the PGTEST_USER account is unknown. With
// requireExtension it also skips unless pg_keeper_go.so and
// pg_keeper_go_core.so are installed in PkgLibDir.
func Require(t testing.TB, requireExtension bool) *Install {
	t.Helper()
	inst, err := Find()
	if err != nil {
		t.Skipf("PostgreSQL not available: %v", err)
	}
	if _, err := runAs(); err != nil {
		t.Skipf("cannot run PostgreSQL unprivileged: %v", err)
	}
	if requireExtension {
		for _, lib := range []string{"pg_keeper_go.so", "pg_keeper_go_core.so"} {
			if _, err := os.Stat(filepath.Join(inst.PkgLibDir, lib)); err != nil {
				t.Skipf("%s not installed in %s: run make install first", lib, inst.PkgLibDir)
			}
		}
	}
	return inst
}

// runAs returns the credential to run PostgreSQL programs with: nil when not
// root, otherwise the PGTEST_USER (default postgres) account.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	name := os.Getenv("PGTEST_USER")
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root and PGTEST_USER %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a free TCP port on 127.0.0.1 not yet handed out by this process.
func freePort() (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pgtest: free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pgtest: no free port found")
}

// Quote returns s as a single-quoted postgresql.conf literal.
func Quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(n.install.BinDir, prog), args...)
	cmd.Dir = n.Dir
	cmd.Env = []string{"PATH=" + n.install.BinDir + ":/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + n.Dir}
	cmd.WaitDelay = 5 * time.Second
	if n.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgtest: %s: %s %s: %w\n%s", n.Name, prog, strings.Join(args, " "), err, out)
	}
	return string(out), nil
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

// Start runs pg_ctl start -w and waits until the server accepts connections.
// Lock files naming a dead or zombie postmaster (after Crash; zombies linger
// where init reaps slowly) are removed first, as postgres would refuse them.
func (n *Node) Start(t testing.TB) {
	t.Helper()
	if pm, err := n.PostmasterPID(); err == nil && !alive(pm) {
		os.Remove(filepath.Join(n.DataDir, "postmaster.pid"))
		os.Remove(filepath.Join(n.SockDir, fmt.Sprintf(".s.PGSQL.%d.lock", n.Port)))
	}
	if _, err := n.run(time.Minute, "pg_ctl", "start", "-w", "-t", "30", "-D", n.DataDir, "-l", n.LogFile); err != nil {
		t.Fatalf("%v\nlog tail:\n%s", err, tail(n.Log(), 30))
	}
	Eventually(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := n.TryQueryString(ctx, "postgres", "select 1")
		return err == nil, fmt.Sprintf("%s does not accept connections: %v", n.Name, err)
	})
}

// Stop runs pg_ctl stop -m mode -t 10 -w and returns how long it took.
func (n *Node) Stop(t testing.TB, mode string) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	_, err := n.run(time.Minute, "pg_ctl", "stop", "-D", n.DataDir, "-m", mode, "-t", "10", "-w")
	return time.Since(start), err
}

// StopOrFail is Stop that fails the test on error.
func (n *Node) StopOrFail(t testing.TB, mode string) time.Duration {
	t.Helper()
	d, err := n.Stop(t, mode)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PostmasterPID returns the pid on the first line of DataDir/postmaster.pid.
func (n *Node) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %s: %w", n.Name, err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, fmt.Errorf("pgtest: %s: postmaster.pid: %w", n.Name, err)
	}
	return pid, nil
}

type procStat struct {
	comm  string
	state byte
	ppid  int
}

// readStat parses /proc/pid/stat; comm may hold spaces and parentheses, so
// the remaining fields are taken after the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 {
		return procStat{}, fmt.Errorf("pgtest: malformed /proc/%d/stat", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	return procStat{comm: s[open+1 : end], state: f[0][0], ppid: ppid}, err
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// Pids returns the running postmaster followed by all its child processes.
func (n *Node) Pids() ([]int, error) {
	pm, err := n.PostmasterPID()
	if err != nil {
		return nil, err
	}
	if st, err := readStat(pm); err != nil || !alive(pm) || st.comm != "postgres" {
		return nil, fmt.Errorf("pgtest: %s: postmaster %d is not running", n.Name, pm)
	}
	pids := []int{pm}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			if st, err := readStat(pid); err == nil && st.ppid == pm && st.state != 'Z' {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

func (n *Node) signal(t testing.TB, sig syscall.Signal) []int {
	t.Helper()
	pids, err := n.Pids()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("pgtest: %s: kill %d %v: %v", n.Name, pid, sig, err)
		}
	}
	return pids
}

// Pause freezes the server with SIGSTOP to the postmaster and its children.
func (n *Node) Pause(t testing.TB) { t.Helper(); n.signal(t, syscall.SIGSTOP) }

// Resume continues a paused server with SIGCONT.
func (n *Node) Resume(t testing.TB) { t.Helper(); n.signal(t, syscall.SIGCONT) }

// Crash SIGKILLs the postmaster and all its children, like a host crash, and
// waits until the postmaster is gone.
func (n *Node) Crash(t testing.TB) {
	t.Helper()
	pm := n.signal(t, syscall.SIGKILL)[0]
	Eventually(t, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		return !alive(pm), fmt.Sprintf("%s: postmaster %d survived SIGKILL", n.Name, pm)
	})
}

// Reload runs select pg_reload_conf().
func (n *Node) Reload(t testing.TB) { t.Helper(); n.Exec(t, "postgres", "select pg_reload_conf()") }

// SetConf appends "key = value" (value verbatim) to postgresql.conf; call
// Reload or restart for it to take effect.
func (n *Node) SetConf(t testing.TB, key, value string) {
	t.Helper()
	if err := appendFile(filepath.Join(n.DataDir, "postgresql.conf"), key+" = "+value+"\n"); err != nil {
		t.Fatal(err)
	}
}

// AlterSystem runs ALTER SYSTEM SET key = valueLiteral (verbatim); call
// Reload or restart for it to take effect.
func (n *Node) AlterSystem(t testing.TB, key, valueLiteral string) {
	t.Helper()
	n.Exec(t, "postgres", fmt.Sprintf("alter system set %s = %s", key, valueLiteral))
}

// Log returns the contents of LogFile ("" if unreadable).
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogFile)
	return string(b)
}

// WaitLog polls LogFile until it contains substr, failing the test with the
// log tail after deadline.
func (n *Node) WaitLog(t testing.TB, substr string, deadline time.Duration) {
	t.Helper()
	Eventually(t, deadline, 50*time.Millisecond, func() (bool, string) {
		log := n.Log()
		return strings.Contains(log, substr), fmt.Sprintf("%s log lacks %q; tail:\n%s", n.Name, substr, tail(log, 30))
	})
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// cleanup resumes, stops (killing if needed) and removes the node, logging
// its log tail when the test failed.
func (n *Node) cleanup() {
	if pids, err := n.Pids(); err == nil {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		n.run(30*time.Second, "pg_ctl", "stop", "-D", n.DataDir, "-m", "immediate", "-t", "10", "-w")
		if pids, err := n.Pids(); err == nil {
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			poll(10*time.Second, 20*time.Millisecond, func() (bool, string) { return !alive(pids[0]), "" })
		}
	}
	if n.t.Failed() {
		n.t.Logf("pgtest: %s: last 60 lines of %s:\n%s", n.Name, n.LogFile, tail(n.Log(), 60))
	}
	os.RemoveAll(n.Dir)
}

func poll(deadline, interval time.Duration, cond func() (bool, string)) (time.Duration, bool, string) {
	start := time.Now()
	for {
		ok, msg := cond()
		if ok || time.Since(start) >= deadline {
			return time.Since(start), ok, msg
		}
		time.Sleep(interval)
	}
}

// Eventually polls cond every interval until it returns true and returns the
// elapsed time; after deadline it fails the test with cond's last message.
func Eventually(t testing.TB, deadline, interval time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	d, ok, msg := poll(deadline, interval, cond)
	if !ok {
		t.Fatalf("pgtest: not true within %v: %s", deadline, msg)
	}
	return d
}

// logStamp matches the time stamp that log_line_prefix '%m' writes.
var logStamp = regexp.MustCompile(`(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+)`)

// LogTime returns the time stamp of the first line of a server log that
// contains substr (log_line_prefix must start with %m).
func LogTime(log, substr string) (time.Time, error) {
	for _, line := range strings.Split(log, "\n") {
		if m := logStamp.FindStringSubmatch(line); m != nil && strings.Contains(line, substr) {
			return time.Parse("2006-01-02 15:04:05.000 MST", m[1])
		}
	}
	return time.Time{}, fmt.Errorf("no log line with %q", substr)
}

// NewKeeperPair starts a primary and a pg_basebackup standby that both
// preload pg_keeper_go with conf (values verbatim, see Quote), each keeper
// pointed at its own node (pg_keeper.my_conninfo) and at the other one
// (pg_keeper.partner_conninfo).  setup, if not nil, runs on the primary
// before the standby is cloned, so that what it creates is replicated.  The
// standby's port is known only once it exists, so the primary learns its
// partner through a reload; callers wait for the keepers to connect.
func (i *Install) NewKeeperPair(t testing.TB, conf map[string]string, setup func(primary *Node)) (primary, standby *Node) {
	t.Helper()
	with := func(partner string) map[string]string {
		c := map[string]string{"shared_preload_libraries": "'pg_keeper_go'", "pg_keeper.my_conninfo": "''"}
		if partner != "" {
			c["pg_keeper.partner_conninfo"] = Quote(partner)
		}
		for k, v := range conf {
			c[k] = v
		}
		return c
	}
	primary = i.NewPrimary(t, "primary", with(""))
	primary.SetConf(t, "pg_keeper.my_conninfo", Quote(primary.ConnString("postgres")))
	if setup != nil {
		setup(primary)
	}
	// The standby's copy of postgresql.conf names the primary in
	// my_conninfo: the settings appended here override it.
	standby = i.NewStandby(t, "standby", primary, with(primary.ConnString("postgres")))
	standby.SetConf(t, "pg_keeper.my_conninfo", Quote(standby.ConnString("postgres")))
	standby.Reload(t)
	primary.SetConf(t, "pg_keeper.partner_conninfo", Quote(standby.ConnString("postgres")))
	primary.Reload(t)
	return primary, standby
}
