package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServer starts s on a free loopback port and shuts it down when the
// test ends.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, s.Shutdown(ctx))
	})
	return "http://" + s.Addr()
}

func TestStartReportsListenErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()

	s := New(busy.Addr().String())
	err = s.Start()
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	assert.Contains(t, err.Error(), fmt.Sprintf("http server: listen on %q", busy.Addr().String()))
	assert.Equal(t, "", s.Addr())
	assert.NoError(t, s.Shutdown(context.Background()), "shutdown of a server that never started")

	err = New("not-an-address").Start()
	require.Error(t, err)
	assert.Contains(t, err.Error(), `listen on "not-an-address"`)

	s = New("127.0.0.1:0")
	startServer(t, s)
	assert.EqualError(t, s.Start(), "http server: already started")
}

func TestARealServerAnswersAndShutsDown(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(standbySnap())
	require.NoError(t, s.Start())
	base := "http://" + s.Addr()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/replica")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	for path, want := range map[string]int{"/replica": 200, "/primary": 503} {
		resp, err = client.Head(base + path)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, want, resp.StatusCode, "HEAD %s", path)
		assert.Empty(t, body, "HEAD %s has no body", path)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Shutdown(ctx))
	_, err = client.Get(base + "/replica")
	assert.Error(t, err, "no longer listening")
}

func TestHugeHeadersAreRejectedWith431(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	base := startServer(t, s)
	req, err := http.NewRequest(http.MethodGet, base+"/primary", nil)
	require.NoError(t, err)
	req.Header.Set("X-Huge", strings.Repeat("x", 64<<10))
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)

	// The server still answers normal requests.
	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get(base + "/primary")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestASlowClientIsCutOffWithoutBlockingOthers(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	s, _ := newTestServer(t, withReadHeaderTimeout(headerTimeout), WithMaxConns(2))
	s.Update(primarySnap())
	base := startServer(t, s)

	slow, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer slow.Close()
	opened := time.Now()
	_, err = io.WriteString(slow, "GET /primary HTTP/1.1\r\nHost: keeper\r\nX-Half: ")
	require.NoError(t, err)

	// Other clients are served at once while the slow one holds its connection.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		start := time.Now()
		resp, err := client.Get(base + "/primary")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, 200, resp.StatusCode)
		assert.Less(t, time.Since(start), headerTimeout, "a request waited for the slow client")
	}

	// The slow client is cut off after the header timeout: the server
	// closes its connection (possibly after a 408) without answering it.
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	line, err := bufio.NewReader(slow).ReadString('\n')
	cut := time.Since(opened)
	if err == nil {
		assert.Contains(t, line, "408", "the only answer a half-sent request may get")
	} else {
		assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "connection closed, not timed out on our side: %v", err)
	}
	assert.GreaterOrEqual(t, cut, headerTimeout)
	assert.Less(t, cut, headerTimeout+5*time.Second)
}

func TestTheStaleLimitIsAnOption(t *testing.T) {
	s, _ := newTestServer(t, WithStaleAfter(time.Minute))
	snap := primarySnap()
	snap.UpdatedAt = t0.Add(-30 * time.Second)
	s.Update(snap)
	code, _, _ := get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 200, code, "30 s old is fresh with a 1 min limit")

	s.SetStaleAfter(10 * time.Second)
	code, body, _ := get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 503, code, "the limit changes while the server runs")
	assert.Contains(t, body, "(limit 10s)")
	s.SetStaleAfter(0)
	code, _, _ = get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 503, code, "a limit <= 0 is ignored")

	snap.UpdatedAt = t0.Add(time.Second) // the keeper's clock is ahead
	s.Update(snap)
	code, body, _ = get(t, s, http.MethodGet, "/primary")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, `"age_seconds":0`, "never a negative age")
}

func TestUpdatesWhileServingAreSafe(t *testing.T) {
	s, _ := newTestServer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 500 {
			snap := primarySnap()
			snap.ConsecutiveFailures = i
			s.Update(snap)
			s.ObserveCheck(time.Millisecond, i%2 == 0)
		}
	}()
	for range 100 {
		for _, path := range []string{"/primary", "/status", "/metrics"} {
			code, _, _ := get(t, s, http.MethodGet, path)
			assert.Contains(t, []int{200, 503}, code)
		}
	}
	<-done
	got, ok := s.Snapshot()
	require.True(t, ok)
	assert.Equal(t, 499, got.ConsecutiveFailures)
}

// TestHAProxysCheckRequestGetsABareStatus sends what HAProxy sends for
// Patroni's documented configuration ("option httpchk OPTIONS /master",
// HTTP/1.0) over a real connection and reads the answer as HAProxy does:
// the status line, no body.
func TestHAProxysCheckRequestGetsABareStatus(t *testing.T) {
	s, _ := newTestServer(t)
	s.Update(primarySnap())
	addr := strings.TrimPrefix(startServer(t, s), "http://")
	for request, want := range map[string]string{
		"OPTIONS /master HTTP/1.0\r\n\r\n":                              "HTTP/1.0 200 OK",
		"OPTIONS / HTTP/1.0\r\n\r\n":                                    "HTTP/1.0 200 OK",
		"OPTIONS /replica HTTP/1.0\r\n\r\n":                             "HTTP/1.0 503 Service Unavailable",
		"GET /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n": "HTTP/1.1 200 OK",
	} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		require.NoError(t, err)
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		_, err = conn.Write([]byte(request))
		require.NoError(t, err)
		answer, err := io.ReadAll(conn) // the server closes an HTTP/1.0 connection after the answer
		conn.Close()
		require.NoError(t, err)
		head, body, _ := strings.Cut(string(answer), "\r\n\r\n")
		assert.Equal(t, want, strings.SplitN(head, "\r\n", 2)[0], "%q", request)
		if strings.HasPrefix(request, "OPTIONS") {
			assert.Empty(t, body, "%q", request)
		}
	}
}
