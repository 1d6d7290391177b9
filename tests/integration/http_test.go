package integration

// The keeper's HTTP API (pg_keeper.http_address) and the watch command on
// a real pair whose keepers fail over by themselves.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// httpPair is a keeper pair whose keepers serve the HTTP API.
type httpPair struct {
	*pair
	primaryAPI, standbyAPI string // host:port
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// startHTTPPair starts a keeper pair, then turns the HTTP API on with a
// reload (pg_keeper.http_address is a reloadable setting).
func startHTTPPair(t *testing.T) *httpPair {
	t.Helper()
	p := &httpPair{pair: startPair(t, nil), primaryAPI: freeAddr(t), standbyAPI: freeAddr(t)}
	p.primary.SetConf(t, "pg_keeper.http_address", pgtest.Quote(p.primaryAPI))
	p.primary.Reload(t)
	p.standby.SetConf(t, "pg_keeper.http_address", pgtest.Quote(p.standbyAPI))
	p.standby.Reload(t)
	p.primary.WaitLog(t, "HTTP API listening on "+p.primaryAPI, 10*time.Second)
	p.standby.WaitLog(t, "HTTP API listening on "+p.standbyAPI, 10*time.Second)
	return p
}

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

// waitCode polls GET path on addr until it answers code; it returns the
// body.
func waitCode(t *testing.T, addr, path string, code int, deadline time.Duration) string {
	t.Helper()
	var body string
	pgtest.Eventually(t, deadline, poll, func() (bool, string) {
		got, b, err := tryGet(addr, path)
		body = b
		return err == nil && got == code, fmt.Sprintf("GET http://%s%s: want %d, got %d %s %v", addr, path, code, got, b, err)
	})
	return body
}

func TestHTTPEndpointsInEachRoleOfARealPair(t *testing.T) {
	p := startHTTPPair(t)

	// Primary: /primary 200, /replica 503; standby: the other way round.
	waitCode(t, p.primaryAPI, "/primary", 200, 5*time.Second)
	waitCode(t, p.standbyAPI, "/replica", 200, 5*time.Second)
	waitCode(t, p.standbyAPI, "/replica?max_lag=30s", 200, 5*time.Second)
	for _, c := range []struct {
		addr, path string
		code       int
		reason     string
	}{
		{p.primaryAPI, "/replica", 503, "not a standby (role primary)"},
		{p.standbyAPI, "/primary", 503, "not a primary (role standby)"},
		{p.primaryAPI, "/health", 200, `"status":"ok"`},
		{p.standbyAPI, "/health", 200, `"status":"ok"`},
		{p.standbyAPI, "/replica?max_lag=soon", 400, "invalid max_lag"},
	} {
		code, body, err := tryGet(c.addr, c.path)
		require.NoError(t, err)
		assert.Equal(t, c.code, code, "GET %s on %s: %s", c.path, c.addr, body)
		assert.Contains(t, body, c.reason, "GET %s on %s", c.path, c.addr)
	}

	// /status holds the facts of pg_keeper_status(), without a password.
	_, body, err := tryGet(p.primaryAPI, "/status")
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	assert.Equal(t, "primary", st["role"])
	assert.Equal(t, "connected", st["state"])
	assert.Equal(t, true, st["writable"])
	assert.Equal(t, float64(1), st["timeline"])
	assert.Equal(t, float64(keepaliveCount), st["keepalive_count"])
	assert.Equal(t, keepaliveTime.Seconds(), st["keepalive_time_seconds"])
	assert.Contains(t, st["partner"], fmt.Sprintf("port=%d", p.standby.Port))
	assert.Equal(t, p.primary.QueryString(t, "postgres", "select timeline::text from pg_keeper_status()"), fmt.Sprint(st["timeline"]))
	assert.Regexp(t, `^[0-9A-F]+/[0-9A-F]+$`, st["lsn"])
	assert.Equal(t, (keepaliveTime * keepaliveCount).Seconds(), st["failover_after_seconds"])
	assert.Equal(t, p.primary.QueryString(t, "postgres", "select worker_pid::text from pg_keeper_status()"), fmt.Sprint(st["worker_pid"]))
	assert.Equal(t, p.primary.QueryString(t, "postgres", "select guard from pg_keeper_status()"), st["guard"])
	assert.NotEmpty(t, st["guard_reason"])
	assert.NotContains(t, strings.ToLower(body), "password")

	// /metrics parses as Prometheus text and has the metrics.
	fams := scrape(t, p.standbyAPI)
	for _, name := range []string{"pg_keeper_role", "pg_keeper_state", "pg_keeper_consecutive_failed_checks",
		"pg_keeper_check_duration_seconds", "pg_keeper_failovers_total", "pg_keeper_last_failover_timestamp_seconds"} {
		assert.Contains(t, fams, name)
	}
	assert.Equal(t, 1.0, gauge(fams, "pg_keeper_role", "role", "standby"))
	assert.Equal(t, 1.0, gauge(fams, "pg_keeper_state", "state", "connected"))
	assert.Equal(t, 1.0, gauge(fams, "pg_keeper_streaming", "", ""))
	// The histogram counts the checks made since the API started.
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		for _, m := range scrape(t, p.standbyAPI)["pg_keeper_check_duration_seconds"].GetMetric() {
			if label(m, "result") == "ok" && m.GetHistogram().GetSampleCount() > 0 {
				return true, ""
			}
		}
		return false, "no check in pg_keeper_check_duration_seconds"
	})

	// A hostile request (a 64 KiB header) is refused; the keeper does not care.
	conn, err := net.DialTimeout("tcp", p.primaryAPI, time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = fmt.Fprintf(conn, "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	require.NoError(t, err)
	reply, _ := io.ReadAll(io.LimitReader(conn, 64))
	assert.Contains(t, string(reply), "431", "a huge header is refused")
	p.waitState(t, p.primary, "primary", "connected", 5*time.Second)
	waitCode(t, p.primaryAPI, "/primary", 200, 5*time.Second)
}

// scrape reads /metrics on addr.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	_, body, err := tryGet(addr, "/metrics")
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(t, err, "/metrics must parse:\n%s", body)
	return fams
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// gauge returns the value of the gauge name whose label key is value (key
// "" for a gauge without labels), or -1.
func gauge(fams map[string]*dto.MetricFamily, name, key, value string) float64 {
	for _, m := range fams[name].GetMetric() {
		if key == "" || label(m, key) == value {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// cliBinary is the installed pg_keeper_go (make install), or one built now.
func cliBinary(t *testing.T, in *pgtest.Install) string {
	bin := filepath.Join(in.BinDir, "pg_keeper_go")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("%s not installed (make install): building the command", bin)
	return pgtest.BuildCLI(t)
}

func TestKeeperFailoverSeenByTheHTTPAPIAndByWatch(t *testing.T) {
	p := startHTTPPair(t)
	bin := cliBinary(t, p.install)
	file := cliWriteConfig(t, p.primary.Port)
	marker := filepath.Join(t.TempDir(), "ran")
	nodes := []string{p.primary.ConnString("postgres") + " password=" + cliSecret, p.standby.ConnString("postgres") + " password=" + cliSecret}
	cp := &cliPair{install: p.install, primary: p.primary, standby: p.standby, bin: bin}

	w := startWatch(t, bin, cp.watchArgs(file, marker, nodes...)...)
	errOut := &w.stderr
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		return errOut.count("the file already names the primary") == 1, "watch did not start: " + errOut.String()
	})

	// The primary crashes; the standby's keeper promotes it.
	p.primary.StopOrFail(t, "immediate")
	waitCode(t, p.standbyAPI, "/primary", 200, failoverBound+5*time.Second)
	promoted, err := pgtest.LogTime(p.standby.Log(), "promoted: the node accepts writes")
	require.NoError(t, err)
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		b, _ := os.ReadFile(file)
		return string(b) == cliAppConfig(p.standby.Port), "the file still names the old primary"
	})
	// The keeper logs with millisecond time stamps; the poll above sees the
	// file within one poll interval of its change.
	seen := time.Since(promoted)
	t.Logf("the file named the new primary %s after the keeper logged the promotion (poll %s)", seen.Round(time.Millisecond), poll)
	assert.Less(t, seen, time.Second+poll, "watch noticed the keeper's failover within a second")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		b, _ := os.ReadFile(marker)
		return string(b) == strconv.Itoa(p.standby.Port)+"\n", fmt.Sprintf("command output %q", b)
	})

	fams := scrape(t, p.standbyAPI)
	assert.Equal(t, 1.0, fams["pg_keeper_failovers_total"].GetMetric()[0].GetCounter().GetValue())
	assert.Positive(t, gauge(fams, "pg_keeper_last_failover_timestamp_seconds", "", ""))
	assert.Equal(t, 1.0, gauge(fams, "pg_keeper_role", "role", "primary"))

	// The old primary comes back as it was: its keeper fences it, /primary
	// never answers 200 there, and watch stays with the new primary.
	p.primary.Start(t)
	p.primary.WaitLog(t, "HTTP API listening on "+p.primaryAPI, 10*time.Second)
	p.waitState(t, p.primary, "primary", "fenced", 10*time.Second)
	body := waitCode(t, p.primaryAPI, "/primary", 503, 5*time.Second)
	assert.Contains(t, body, "fenced")
	code, _, err := tryGet(p.primaryAPI, "/replica")
	require.NoError(t, err)
	assert.Equal(t, 503, code, "a fenced node is no replica either")
	_, status, err := tryGet(p.primaryAPI, "/status")
	require.NoError(t, err)
	assert.Contains(t, status, `"fenced":true`)

	// Several rounds later: the command ran once, the file did not move.
	rounds := errOut.count("primary=" + cliNodeName(p.standby))
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		return errOut.count("primary="+cliNodeName(p.standby)) >= rounds+5, "watch stopped polling"
	})
	assert.Equal(t, strconv.Itoa(p.standby.Port)+"\n", cliRead(t, marker), "the command ran exactly once")
	assert.Equal(t, cliAppConfig(p.standby.Port), cliRead(t, file))
	assert.Equal(t, 1, errOut.count("primary changed: file rewritten"))

	w.stop(t)
}

// TestPatroniHealthChecksOnARealPair asks a real pair the health checks
// load balancers copy from Patroni's configuration, then turns on
// synchronous replication and watches /synchronous and /asynchronous
// follow what the primary's pg_stat_replication says of its standby.
func TestPatroniHealthChecksOnARealPair(t *testing.T) {
	p := startHTTPPair(t)
	waitCode(t, p.standbyAPI, "/replica?replication_state=streaming", 200, 5*time.Second)
	for _, c := range []struct {
		addr, path string
		code       int
	}{
		{p.primaryAPI, "/", 200}, {p.primaryAPI, "/master", 200}, {p.primaryAPI, "/read-write", 200},
		{p.primaryAPI, "/leader", 200}, {p.primaryAPI, "/read-only", 200}, {p.primaryAPI, "/replica", 503},
		{p.primaryAPI, "/readiness", 200}, {p.primaryAPI, "/liveness", 200},
		{p.standbyAPI, "/master", 503}, {p.standbyAPI, "/leader", 503}, {p.standbyAPI, "/read-only", 200},
		{p.standbyAPI, "/replica?lag=16MB", 200}, {p.standbyAPI, "/readiness", 200},
		{p.standbyAPI, "/asynchronous", 200}, {p.standbyAPI, "/synchronous", 503},
		{p.standbyAPI, "/replica?lag=1GiB", 400},
	} {
		code, body, err := tryGet(c.addr, c.path)
		require.NoError(t, err)
		assert.Equal(t, c.code, code, "GET %s on %s: %s", c.path, c.addr, body)
	}
	// What HAProxy sends: OPTIONS, a status and no body.
	req, err := http.NewRequest(http.MethodOptions, "http://"+p.primaryAPI+"/master", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Empty(t, b)

	_, body, err := tryGet(p.standbyAPI, "/status")
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	assert.Equal(t, "streaming", st["replication_state"], body)
	assert.Equal(t, "async", st["sync_state"], body)
	assert.GreaterOrEqual(t, st["replay_lag_bytes"], float64(0), body)

	// The standby's walreceiver shows the primary its cluster_name.
	p.primary.AlterSystem(t, "synchronous_standby_names", pgtest.Quote(p.standby.Name))
	p.primary.Reload(t)
	waitCode(t, p.standbyAPI, "/synchronous", 200, 10*time.Second)
	waitCode(t, p.standbyAPI, "/sync", 200, time.Second)
	waitCode(t, p.standbyAPI, "/asynchronous", 503, time.Second)
	p.primary.AlterSystem(t, "synchronous_standby_names", "''")
	p.primary.Reload(t)
	waitCode(t, p.standbyAPI, "/async", 200, 10*time.Second)
}
