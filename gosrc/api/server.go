// Package api is the keeper's HTTP interface, served on
// pg_keeper.http_address: Patroni's health checks for load balancers
// (/primary, /replica, /leader, ...: checks.go), the keeper's status as
// JSON (/status) and Prometheus metrics (/metrics).
//
// The server runs inside a PostgreSQL background worker, so it follows the
// worker's rules (docs/design.md, "The C/Go boundary"): its goroutines never call
// PostgreSQL functions, never panic out (every goroutine and handler
// recovers), and never log by themselves.  They only read the last status.Snapshot
// the keeper handed to Update; errors are passed to the function given with
// WithErrorHandler, which must not call PostgreSQL either.  Hostile clients
// are bounded by the server's timeouts, header size limit and connection
// limit, and cannot delay the keeper, which never waits for the server.
package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// Defaults of the options.
const (
	// DefaultStaleAfter is how old a snapshot may be before the health
	// checks stop trusting it.
	DefaultStaleAfter = 15 * time.Second
	// DefaultMaxConns bounds the open client connections.
	DefaultMaxConns = 64

	readHeaderTimeout = 2 * time.Second
	readTimeout       = 5 * time.Second
	writeTimeout      = 5 * time.Second
	idleTimeout       = 30 * time.Second
	// maxHeaderBytes bounds the request line and headers.  net/http allows
	// 4 KiB more than this before answering 431.
	maxHeaderBytes = 8 << 10
)

// Option configures a Server.
type Option func(*Server)

// WithStaleAfter sets how old a snapshot may be (by its UpdatedAt) before
// every health check answers 503 (/status still shows it, marked stale).  The
// keeper updates its snapshot every keepalive_time, so a few times that is
// a good value.  d <= 0 keeps DefaultStaleAfter.
func WithStaleAfter(d time.Duration) Option {
	return func(s *Server) {
		if d > 0 {
			s.staleAfter.Store(int64(d))
		}
	}
}

// WithErrorHandler sets the function that receives the server's errors: a
// failure of the accept loop, a recovered panic, net/http's own error log.
// It is called from the server's goroutines, so it must be safe for
// concurrent use and must not call PostgreSQL functions; the keeper queues
// the error and logs it from its main goroutine.  Without it errors are
// dropped.
func WithErrorHandler(fn func(error)) Option {
	return func(s *Server) {
		if fn != nil {
			s.onError = fn
		}
	}
}

// WithMaxConns bounds the number of open client connections; more clients
// wait in the listen backlog.  n <= 0 keeps DefaultMaxConns.
func WithMaxConns(n int) Option {
	return func(s *Server) {
		if n > 0 {
			s.maxConns = n
		}
	}
}

// withClock replaces time.Now, for tests.
func withClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// withReadHeaderTimeout shortens the header timeout, for tests.
func withReadHeaderTimeout(d time.Duration) Option {
	return func(s *Server) { s.readHeaderTimeout = d }
}

// Server serves the keeper's HTTP endpoints from the last status.Snapshot.
type Server struct {
	addr       string
	staleAfter atomic.Int64 // a time.Duration
	maxConns   int
	onError    func(error)
	now        func() time.Time

	readHeaderTimeout time.Duration

	snap     atomic.Pointer[status.Snapshot]
	registry *prometheus.Registry
	checks   *prometheus.HistogramVec
	handler  http.Handler

	run serving
}

// New returns a server that will listen on addr ("host:port", as
// net.Listen takes it) once started.  It serves 503 until the first Update.
func New(addr string, opts ...Option) *Server {
	s := &Server{
		addr:     addr,
		maxConns: DefaultMaxConns,
		onError:  func(error) {},
		now:      time.Now,

		readHeaderTimeout: readHeaderTimeout,
	}
	s.staleAfter.Store(int64(DefaultStaleAfter))
	for _, o := range opts {
		o(s)
	}
	s.registry = prometheus.NewRegistry()
	s.checks = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pg_keeper_check_duration_seconds",
		Help:    "Duration of the keeper's checks of its partner (connect and query), by result.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"result"})
	s.checks.WithLabelValues("ok") // both series exist from the start
	s.checks.WithLabelValues("failed")
	// Register, not MustRegister: nothing here may panic inside a backend.
	for _, c := range []prometheus.Collector{
		s.checks,
		&snapshotCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := s.registry.Register(c); err != nil {
			s.onError(fmt.Errorf("http server: metrics: %w", err))
		}
	}
	s.handler = s.routes()
	return s
}

// SetStaleAfter changes the stale limit of WithStaleAfter while the server
// runs (the keeper's keepalive_time was reloaded).  d <= 0 does nothing.
func (s *Server) SetStaleAfter(d time.Duration) {
	if d > 0 {
		s.staleAfter.Store(int64(d))
	}
}

// Update makes snap the snapshot every following request sees.  It is safe
// to call from any goroutine and never blocks on a request.
func (s *Server) Update(snap status.Snapshot) {
	c := snap.Scrubbed()
	s.snap.Store(&c)
}

// status.Snapshot returns the last snapshot given to Update and false if there was
// none.
func (s *Server) Snapshot() (status.Snapshot, bool) {
	p := s.snap.Load()
	if p == nil {
		return status.Snapshot{}, false
	}
	return *p, true
}

// ObserveCheck records one check of the partner that took d: ok is false
// when the check failed.  It feeds pg_keeper_check_duration_seconds.
func (s *Server) ObserveCheck(d time.Duration, ok bool) {
	result := "ok"
	if !ok {
		result = "failed"
	}
	s.checks.WithLabelValues(result).Observe(d.Seconds())
}

// Handler returns the server's routes, for tests and for embedding in
// another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on the address given to New and serves in a goroutine.  A
// listen error (address in use, bad address, no permission) is returned;
// it never panics.  Start may be called once.
func (s *Server) Start() error {
	return s.run.start(s.addr, &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(errorWriter(s.onError), "http server: ", 0),
	}, s.maxConns, s.onError, "http server")
}

// Addr returns the address the server listens on (with the port chosen by
// the system for ":0"), or "" before Start.
func (s *Server) Addr() string { return s.run.addr() }

// Shutdown stops accepting connections and waits for the requests in
// flight until ctx ends; then it closes the remaining connections.  It
// returns ctx's error in that case.  Shutdown before Start does nothing.
func (s *Server) Shutdown(ctx context.Context) error { return s.run.shutdown(ctx, "http server") }

// errorWriter adapts the error handler to net/http's ErrorLog.
type errorWriter func(error)

// Write passes one line of net/http's log to the error handler.
func (w errorWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	w(errors.New(msg))
	return len(p), nil
}

var _ io.Writer = errorWriter(nil)
