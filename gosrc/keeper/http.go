package keeper

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/api"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

const (
	// httpRetry is how often the keeper tries again to listen on
	// pg_keeper.http_address after it failed (a port still in use).
	httpRetry = 10 * time.Second
	// httpShutdown bounds stopping the HTTP server; its handlers only
	// read a snapshot, so requests in flight end at once.
	httpShutdown = time.Second
	// httpErrorEvery is the shortest interval between two log lines about
	// errors of the HTTP server: hostile clients cannot flood the log.
	httpErrorEvery = time.Minute
	// publishEvery is the longest interval between two snapshots while the
	// HTTP server runs, so that its answers stay fresh even when the
	// keeper has nothing to check (invalid settings).
	publishEvery = time.Second
)

// httpAPI is the keeper's side of the HTTP API (package api), which it
// starts, stops and feeds from its main goroutine.
type httpAPI struct {
	addr     string      // pg_keeper.http_address, "" when off
	srv      *api.Server // nil while not listening
	retryAt  time.Time   // when to try listening again after a failure
	reported time.Time   // when errors were last logged
	errs     httpErrors
}

// httpErrors collects the HTTP server's errors from its goroutines until
// the main goroutine logs them.
type httpErrors struct {
	mu    sync.Mutex
	first error
	n     int
}

func (e *httpErrors) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 {
		e.first = err
	}
	e.n++
}

func (e *httpErrors) take() (first error, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	first, n = e.first, e.n
	e.first, e.n = nil, 0
	return first, n
}

// ValidateHTTPAddress checks a value of pg_keeper.http_address: empty, or
// host:port with a numeric port (the host may be empty: every address).
func ValidateHTTPAddress(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &SettingError{Setting: "pg_keeper.http_address", Value: addr, Problem: "is not host:port",
			Hint: "Use host:port such as '10.0.0.11:8008', or ':8008' for every address; '' turns the HTTP API off."}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return &SettingError{Setting: "pg_keeper.http_address", Value: addr, Problem: "has no valid port number",
			Hint: "Use host:port such as '10.0.0.11:8008', or ':8008' for every address; '' turns the HTTP API off."}
	}
	return nil
}

// reloadHTTP reads pg_keeper.http_address and, when it changed, stops the
// server and starts one on the new address.  It runs whatever the state of
// the other settings: /health is how an invalid configuration shows.
func (k *Keeper) reloadHTTP() {
	addr, _, _ := k.host.Setting("pg_keeper.http_address")
	addr = strings.TrimSpace(addr)
	if err := ValidateHTTPAddress(addr); err != nil {
		k.logOnce("http_address", err.Error(), host.LevelWarning, "pg_keeper_go: ", err.(*SettingError).Hint)
		addr = k.http.addr // keep serving where it serves
	} else {
		k.logOnce("http_address", "", host.LevelWarning, "", "")
	}
	if addr == k.http.addr {
		if k.http.srv == nil {
			k.http.retryAt = time.Time{} // a reload retries at once
		} else {
			k.http.srv.SetStaleAfter(k.staleAfter())
		}
		return
	}
	k.stopHTTP()
	k.http.addr, k.http.retryAt = addr, time.Time{}
	k.logged["http"] = ""
	k.startHTTP()
}

// staleAfter is how old a snapshot may be before the HTTP API stops
// trusting it: three keepalive_time (checks may take that long) plus 2 s.
func (k *Keeper) staleAfter() time.Duration {
	return 3*k.settings.KeepaliveTime + 2*time.Second
}

// startHTTP tries to listen, unless the API is off, running, or failed
// too recently; a failure is logged once per distinct error.
func (k *Keeper) startHTTP() {
	if k.http.addr == "" || k.http.srv != nil || time.Now().Before(k.http.retryAt) {
		return
	}
	srv := api.New(k.http.addr, api.WithStaleAfter(k.staleAfter()), api.WithErrorHandler(k.http.errs.add))
	if err := srv.Start(); err != nil {
		k.http.retryAt = time.Now().Add(httpRetry)
		k.logOnce("http", err.Error(), host.LevelWarning, "pg_keeper_go: the HTTP API is not available: ",
			fmt.Sprintf("Free the port or change pg_keeper.http_address and reload; the keeper works without the HTTP API and tries again every %s.", httpRetry))
		return
	}
	k.http.srv = srv
	k.logged["http"] = ""
	k.host.Log(host.LevelInfo, "pg_keeper_go: HTTP API listening on "+srv.Addr(), "", "")
}

// stopHTTP stops the server, if one runs.
func (k *Keeper) stopHTTP() {
	if k.http.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdown)
	defer cancel()
	if err := k.http.srv.Shutdown(ctx); err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: "+err.Error(), "", "")
	}
	k.http.srv = nil
	k.reportHTTPErrors(true)
}

// reportHTTPErrors logs the HTTP server's errors since the last report, at
// most once per httpErrorEvery unless now is set.
func (k *Keeper) reportHTTPErrors(now bool) {
	if !now && time.Since(k.http.reported) < httpErrorEvery {
		return
	}
	first, n := k.http.errs.take()
	if n == 0 {
		return
	}
	k.http.reported = time.Now()
	detail := ""
	if n > 1 {
		detail = fmt.Sprintf("%d errors since the last report; this is the first.", n)
	}
	k.host.Log(host.LevelWarning, "pg_keeper_go: "+conninfo.RedactError(first), detail,
		"Errors of the HTTP API come from its clients or the network; the keeper is not affected.")
}

// observeCheck feeds the check latency histogram.
func (k *Keeper) observeCheck(d time.Duration, ok bool) {
	if k.http.srv != nil {
		k.http.srv.ObserveCheck(d, ok)
	}
}

// publishHTTP hands the HTTP server the snapshot, and retries listening
// when it failed before.
func (k *Keeper) publishHTTP(snap status.Snapshot) {
	k.startHTTP()
	k.reportHTTPErrors(false) // the operator API's errors too
	if k.http.srv == nil {
		return
	}
	k.http.srv.Update(snap)
}
