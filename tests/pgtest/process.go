package pgtest

// A server's processes: starting, stopping, signalling and reading its log.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
