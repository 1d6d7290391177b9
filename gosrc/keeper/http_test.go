package keeper

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
)

var listening = regexp.MustCompile(`HTTP API listening on (\S+)`)

// httpAddr waits for the keeper's n-th "listening" log line (from 1) and
// returns its address.
func (r *running) httpAddr(t *testing.T, n int) string {
	t.Helper()
	var addr string
	require.Eventually(t, func() bool {
		m := listening.FindAllStringSubmatch(r.host.logText(), -1)
		if len(m) >= n {
			addr = m[n-1][1]
		}
		return addr != ""
	}, 5*time.Second, 5*time.Millisecond, "the HTTP API did not start:\n%s", r.host.logText())
	return addr
}

// tryGet returns the code and body of GET path on addr.
func tryGet(addr, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// httpGet is tryGet that fails the test on an error.
func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	code, body, err := tryGet(addr, path)
	require.NoError(t, err)
	return code, body
}

// waitCode polls GET path until it answers code and returns the body.
func waitCode(t *testing.T, addr, path string, code int) string {
	t.Helper()
	var last string
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, body, err := tryGet(addr, path)
		if err == nil && got == code {
			return body
		}
		last = fmt.Sprintf("%d %s %v", got, body, err)
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d, last %s", path, code, last)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func TestHTTPAPIFollowsTheKeeperThroughAFailover(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": "127.0.0.1:0"})
	r.prober.walAge.Store(int64(10 * time.Millisecond)) // within 2 x keepalive_time (40ms)
	addr := r.httpAddr(t, 1)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))

	waitCode(t, addr, "/replica", 200)
	waitCode(t, addr, "/replica?max_lag=5s", 200)
	code, body := httpGet(t, addr, "/primary")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "not a primary (role standby)")
	code, _ = httpGet(t, addr, "/health")
	assert.Equal(t, 200, code)

	waitCode(t, addr, "/replica?replication_state=streaming", 200)

	// The WAL receiver stops hearing from the primary: still a replica,
	// as in Patroni, but not a streaming one.
	r.prober.walAge.Store(-1)
	waitCode(t, addr, "/replica?replication_state=streaming", 503)
	waitCode(t, addr, "/replica", 200)

	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	r.waitStatus(t, "the promotion", stateIs("primary", "alone"))
	waitCode(t, addr, "/primary", 200)
	code, _ = httpGet(t, addr, "/replica")
	assert.Equal(t, 503, code)

	code, body = httpGet(t, addr, "/status")
	require.Equal(t, 200, code)
	var st struct {
		Role, State    string
		Writable       bool
		Failovers      int
		LastFailoverAt time.Time `json:"last_failover_at"`
		Partner        string
		Timeline       uint32
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, "primary", st.Role)
	assert.True(t, st.Writable)
	assert.Equal(t, 1, st.Failovers)
	assert.False(t, st.LastFailoverAt.IsZero())
	assert.Contains(t, st.Partner, "host=127.0.0.2")
	assert.NotContains(t, body, "Pw123456", "no password in /status")

	_, metrics := httpGet(t, addr, "/metrics")
	assert.Contains(t, metrics, "pg_keeper_failovers_total 1\n")
	assert.Contains(t, metrics, `pg_keeper_role{role="primary"} 1`)
	assert.Regexp(t, `pg_keeper_check_duration_seconds_count\{result="failed"\} [1-9]`, metrics)
	assert.Regexp(t, `pg_keeper_check_duration_seconds_count\{result="ok"\} [1-9]`, metrics)

	// A read-only primary is not the primary.
	r.host.set("default_transaction_read_only", "on")
	waitCode(t, addr, "/primary", 503)
}

func TestHTTPAPIOfAPrimaryUnderALease(t *testing.T) {
	r := startKeeper(t, false, map[string]string{"pg_keeper.http_address": "127.0.0.1:0",
		"pg_keeper.split_brain_policy": "safety"})
	addr := r.httpAddr(t, 1)
	r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))
	body := waitCode(t, addr, "/primary", 200)
	assert.Contains(t, body, `"status":"ok"`)
	_, status := httpGet(t, addr, "/status")
	assert.Contains(t, status, `"writable_until"`, "a leased primary says until when it may write")

	// The standby stops granting: the lease ends and /primary says so.
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	body = waitCode(t, addr, "/primary", 503)
	assert.Contains(t, body, "unavailable")
}

func TestHTTPAddressInUseIsLoggedAndTheKeeperRunsOn(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": busy.Addr().String()})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	require.Eventually(t, func() bool { return strings.Contains(r.host.logText(), "the HTTP API is not available") }, 5*time.Second, 5*time.Millisecond)
	logs := r.host.logText()
	assert.Contains(t, logs, "address already in use")
	assert.Contains(t, logs, "Free the port or change pg_keeper.http_address and reload")
	assert.Equal(t, 1, strings.Count(logs, "the HTTP API is not available"), "logged once")

	// Once the port is free, a reload starts it at once (not after the
	// 10 s retry); a reload onto another port moves it; '' stops it.
	busyAddr := busy.Addr().String()
	require.NoError(t, busy.Close())
	r.host.signal(host.EventReload)
	assert.Equal(t, busyAddr, r.httpAddr(t, 1))
	waitCode(t, busyAddr, "/health", 200)
	r.host.set("pg_keeper.http_address", "127.0.0.1:0")
	r.host.signal(host.EventReload)
	addr := r.httpAddr(t, 2)
	waitCode(t, addr, "/health", 200)
	_, err = net.DialTimeout("tcp", busyAddr, time.Second)
	assert.Error(t, err, "the old address is closed after the move")
	r.host.set("pg_keeper.http_address", "")
	r.host.signal(host.EventReload)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 5*time.Millisecond, "the HTTP API still listens after http_address = ''")
}

func TestReloadingOtherSettingsKeepsTheHTTPServer(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": "127.0.0.1:0"})
	addr := r.httpAddr(t, 1)
	waitCode(t, addr, "/metrics", 200)
	r.host.set("pg_keeper.keepalive_time", "50ms")
	r.host.signal(host.EventReload)
	require.Eventually(t, func() bool { return strings.Contains(r.host.logText(), "settings reloaded") }, 5*time.Second, 5*time.Millisecond)
	waitCode(t, addr, "/health", 200)
	assert.Len(t, listening.FindAllString(r.host.logText(), -1), 1, "the server was not restarted")
}

func TestInvalidHTTPAddressIsReported(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": "localhost"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	require.Eventually(t, func() bool {
		return strings.Contains(r.host.logText(), `invalid value for pg_keeper.http_address "localhost": is not host:port`)
	}, 5*time.Second, 5*time.Millisecond, r.host.logText())
	assert.Contains(t, r.host.logText(), "':8008' for every address")

	for _, bad := range []string{"host:port", "h:70000", "[::1"} {
		assert.Error(t, ValidateHTTPAddress(bad), bad)
	}
	for _, good := range []string{"", ":8008", "0.0.0.0:8008", "[::1]:8008", "node1:0"} {
		assert.NoError(t, ValidateHTTPAddress(good), good)
	}
}

func TestHTTPAPIOfAMisconfiguredKeeperFailsItsHealthCheck(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": "127.0.0.1:0", "pg_keeper.partner_conninfo": ""})
	addr := r.httpAddr(t, 1)
	body := waitCode(t, addr, "/health", 503)
	assert.Contains(t, body, "pg_keeper.partner_conninfo is not set")
	// It keeps publishing although it has nothing to check.
	first := httpStatusTime(t, addr)
	require.Eventually(t, func() bool { return httpStatusTime(t, addr).After(first) }, 5*time.Second, 10*time.Millisecond)
}

func httpStatusTime(t *testing.T, addr string) time.Time {
	_, body := httpGet(t, addr, "/status")
	var st struct {
		UpdatedAt time.Time `json:"updated_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	return st.UpdatedAt
}

func TestHTTPAPIStopsWithTheKeeper(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.http_address": "127.0.0.1:0"})
	addr := r.httpAddr(t, 1)
	waitCode(t, addr, "/health", 200)
	r.host.signal(host.EventShutdown)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("keeper did not stop")
	}
	r.done <- host.ExitShutdown // for the cleanup
	_, err := net.DialTimeout("tcp", addr, time.Second)
	assert.Error(t, err, fmt.Sprintf("%s still listens after the keeper stopped", addr))
}
