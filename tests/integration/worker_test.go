package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// TestFastShutdownIsQuickWhilePartnerHangs points both keepers at a
// listener that accepts connections and never answers, so a check is
// always in flight, and stops both servers with -m fast (pg_ctl gives up
// after 10 s).
func TestFastShutdownIsQuickWhilePartnerHangs(t *testing.T) {
	p := startPair(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	held := make(chan net.Conn, 100) // accepted, never answered
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c
		}
	}()
	defer func() {
		for len(held) > 0 {
			(<-held).Close()
		}
	}()
	blackhole := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres", ln.Addr().(*net.TCPAddr).Port)
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		n.AlterSystem(t, "pg_keeper.keepalive_time", "30")
		n.AlterSystem(t, "pg_keeper.partner_conninfo", pgtest.Quote(blackhole))
		n.Reload(t)
		n.WaitLog(t, "settings reloaded", 5*time.Second)
	}
	for _, n := range []*pgtest.Node{p.standby, p.primary} {
		took, err := n.Stop(t, "fast")
		require.NoError(t, err, "fast shutdown of %s", n.Name)
		t.Logf("fast shutdown of %s with a check in flight: %s", n.Name, took)
	}
}

// TestKeeperExitsWhenThePostmasterDies kills only the postmaster: the
// keeper must not linger as an orphan.
func TestKeeperExitsWhenThePostmasterDies(t *testing.T) {
	p := startPair(t, nil)
	pid := p.standby.QueryString(t, "postgres", "select worker_pid from pg_keeper_status()")
	pm, err := p.standby.PostmasterPID()
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pm, syscall.SIGKILL))
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		_, err := os.Stat("/proc/" + pid + "/status")
		if err == nil {
			b, _ := os.ReadFile("/proc/" + pid + "/status")
			if strings.Contains(string(b), "State:\tZ") {
				return true, "" // exited, waiting for its reaper
			}
		}
		return err != nil, "keeper process " + pid + " still runs"
	})
}

// TestLoadingOutsideSharedPreloadLibrariesIsRefused: LOAD or CREATE
// EXTENSION on a server without the library preloaded fails with a hint.
func TestLoadingOutsideSharedPreloadLibrariesIsRefused(t *testing.T) {
	in := pgtest.Require(t, true)
	n := in.NewPrimary(t, "plain", nil)
	for _, stmt := range []string{"load 'pg_keeper_go'", "create extension pg_keeper_go"} {
		_, err := n.TryQueryString(context.Background(), "postgres", stmt)
		require.Error(t, err, stmt)
		assert.Contains(t, err.Error(), "pg_keeper_go must be loaded via shared_preload_libraries", stmt)
	}
	assert.Contains(t, n.Log(), "HINT:  Add pg_keeper_go to shared_preload_libraries in postgresql.conf and restart the server.")
}

// TestPrivileges: pg_monitor members read the status; other roles neither
// the status nor the conninfos.
func TestPrivileges(t *testing.T) {
	p := startPair(t, nil)
	n := p.primary
	n.Exec(t, "postgres", "create role monitor login in role pg_monitor")
	n.Exec(t, "postgres", "create role app login")
	as := func(role, sql string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, strings.Replace(n.ConnString("postgres"), "user=postgres", "user="+role, 1))
		require.NoError(t, err)
		defer conn.Close(ctx)
		var s string
		err = conn.QueryRow(ctx, sql).Scan(&s)
		return s, err
	}
	got, err := as("monitor", "select role from pg_keeper_status()")
	require.NoError(t, err)
	assert.Equal(t, "primary", got)
	_, err = as("app", "select role from pg_keeper_status()")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied for function pg_keeper_status")
	_, err = as("app", "show pg_keeper.partner_conninfo")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be superuser or have privileges of pg_read_all_settings")
}

// TestAMissingCoreLibraryIsReportedOnceAndPickedUpWhenInstalled: without
// pg_keeper_go_core.so the worker says so once, opens the guard with the
// reason, and keeps trying (it is restarted, not unregistered), so that
// installing the library is enough.  The test moves the installed library
// aside for a while.
func TestAMissingCoreLibraryIsReportedOnceAndPickedUpWhenInstalled(t *testing.T) {
	in := pgtest.Require(t, true)
	core := filepath.Join(in.PkgLibDir, "pg_keeper_go_core.so")
	aside := core + ".moved-by-test"
	require.NoError(t, os.Rename(core, aside))
	restored := false
	restore := func() {
		if !restored {
			restored = true
			require.NoError(t, os.Rename(aside, core))
		}
	}
	t.Cleanup(restore)

	n := in.NewPrimary(t, "nocore", map[string]string{
		"shared_preload_libraries":   "'pg_keeper_go'",
		"pg_keeper.partner_conninfo": pgtest.Quote("host=127.0.0.1 port=1 user=postgres dbname=postgres"),
	})
	n.Exec(t, "postgres", "create extension pg_keeper_go")
	const warning = "WARNING:  pg_keeper_go: could not load"
	n.WaitLog(t, warning, 10*time.Second)
	first := n.QueryString(t, "postgres", "select worker_pid from pg_keeper_status()")
	assert.Equal(t, "misconfigured|open", n.QueryString(t, "postgres", "select state || '|' || guard from pg_keeper_status()"))
	assert.Contains(t, n.QueryString(t, "postgres", "select guard_reason from pg_keeper_status()"), "the keeper is not running: could not load")
	pgtest.Eventually(t, 20*time.Second, poll, func() (bool, string) {
		pid := n.QueryString(t, "postgres", "select coalesce(worker_pid::text, '') from pg_keeper_status()")
		return pid != "" && pid != first, "the worker was not started again (pid " + pid + ")"
	})
	assert.Equal(t, 1, strings.Count(n.Log(), warning), "the same problem is logged once")

	restore()
	n.WaitLog(t, "pg_keeper_go: the Go core library loads again", 20*time.Second)
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		e := n.QueryString(t, "postgres", "select config_error from pg_keeper_status()")
		return !strings.Contains(e, "could not load"), "config_error " + e
	})
}

// TestATerminatedKeeperComesBack: a SIGTERM that does not come from the
// postmaster (a kill by hand) is not a shutdown of the server: the worker
// is started again (it used to exit 0, which unregisters a background
// worker until the next restart of the server).
func TestATerminatedKeeperComesBack(t *testing.T) {
	p := startPair(t, nil)
	first := p.primary.QueryString(t, "postgres", "select worker_pid from pg_keeper_status()")
	pid, err := strconv.Atoi(first)
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	p.primary.WaitLog(t, "pg_keeper_go: the keeper was terminated by process", 10*time.Second)
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		pid := p.primary.QueryString(t, "postgres", "select coalesce(worker_pid::text, '') from pg_keeper_status()")
		return pid != "" && pid != first, "the worker was not started again (pid " + pid + ", was " + first + ")"
	})
	p.waitState(t, p.primary, "primary", "connected", 15*time.Second)
	// A shutdown of the server is not such a termination.
	p.primary.StopOrFail(t, "fast")
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "the keeper was terminated by process"))
}

// TestAFatalErrorOfTheGoRuntimeRestartsTheKeeperNotTheServer: a fatal
// error of the Go runtime, which no recover catches (exit status 2), ends
// the keeper's process; the worker restarts it and the server runs on (it
// used to be a crash of a background worker, which restarts the instance
// and ends every session).
func TestAFatalErrorOfTheGoRuntimeRestartsTheKeeperNotTheServer(t *testing.T) {
	p := startPair(t, nil)
	n := p.primary
	first := n.QueryString(t, "postgres", "select worker_pid from pg_keeper_status()")
	started := n.QueryString(t, "postgres", "select pg_postmaster_start_time()")
	session := n.MustConnect(t, "postgres")

	n.Exec(t, "postgres", "alter system set pg_keeper.test_fatal_error = on")
	n.Exec(t, "postgres", "select pg_reload_conf()")
	n.WaitLog(t, "fatal error: sync: unlock of unlocked mutex", 10*time.Second)
	// The runtime aborts (SIGABRT) in a shared library: the worker says so.
	n.WaitLog(t, "pg_keeper_go: the keeper's process", 10*time.Second)
	assert.Regexp(t, `pg_keeper_go: the keeper's process \d+ (was terminated by signal 6|ended with exit code 2)`, n.Log())
	n.Exec(t, "postgres", "alter system reset pg_keeper.test_fatal_error")
	n.Exec(t, "postgres", "select pg_reload_conf()")

	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		pid := n.QueryString(t, "postgres", "select coalesce(worker_pid::text, '') from pg_keeper_status()")
		return pid != "" && pid != first, "the worker was not started again (pid " + pid + ", was " + first + ")"
	})
	p.waitState(t, n, "primary", "connected", 15*time.Second)
	assert.Equal(t, started, n.QueryString(t, "postgres", "select pg_postmaster_start_time()"), "the server restarted")
	_, err := session.Exec(t.Context(), "select 1")
	assert.NoError(t, err, "a session from before the fatal error")
	assert.NotContains(t, n.Log(), "terminating any other active server processes")
}
