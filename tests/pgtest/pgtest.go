// Package pgtest starts real PostgreSQL servers on loopback for integration
// tests: a primary made with initdb and streaming standbys made with
// pg_basebackup. When the test runs as root, every PostgreSQL program runs as
// the user named by PGTEST_USER (default "postgres"), because initdb refuses
// to run as root.
package pgtest

import (
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

// promotionSilence is the keeper's line about its decision to promote,
// which says how long the primary had not answered and the limit.
var promotionSilence = regexp.MustCompile(`to "standby:promoting": [^\n]*no answer for ([0-9.]+[a-zµ]+) \(limit ([0-9.]+[a-zµ]+)\)`)

// PromotionSilence finds, in a standby's log, how long its primary had
// been silent when the keeper decided to promote, and the limit
// (keepalive_time x keepalive_count), as the keeper wrote them.
func PromotionSilence(log string) (silent, limit time.Duration, err error) {
	m := promotionSilence.FindStringSubmatch(log)
	if m == nil {
		return 0, 0, errors.New("no promotion line saying how long the primary was silent")
	}
	if silent, err = time.ParseDuration(m[1]); err != nil {
		return 0, 0, err
	}
	limit, err = time.ParseDuration(m[2])
	return silent, limit, err
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
