package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// The operator API: a second server, off unless configured, that changes
// state: POST /pause and /resume (both nodes), POST /switchover (with
// ?dry_run=true to only check).  It serves HTTPS only and every request
// must authenticate, with a client certificate signed by the configured CA
// or with the configured bearer token.  The read-only health checks stay
// on the plain server (Server).

// operatorTimeout bounds one request: a switchover waits for each of its
// steps.
const operatorTimeout = 5 * time.Minute

// OperatorConfig is the operator API's settings (pg_keeper.operator_*).
type OperatorConfig struct {
	Addr         string // host:port; "" turns the API off
	CertFile     string // the server's certificate (PEM)
	KeyFile      string // its private key (PEM)
	ClientCAFile string // CA certificates whose client certificates authenticate; "" for none
	TokenFile    string // a file holding the bearer token; "" for none
}

// Operator is what the operator API runs: the keeper's actions.  Each
// writes its progress lines with say and returns an error with what to do
// when it failed.  They run on the server's goroutines.
type Operator interface {
	SetPause(ctx context.Context, pause bool, say func(string)) error
	Switchover(ctx context.Context, dryRun bool, say func(string)) error
}

// OperatorServer serves the operator API.
type OperatorServer struct {
	addr    string
	tls     *tls.Config
	token   []byte
	op      Operator
	onError func(error)
	busy    sync.Mutex // one operation at a time
	run     serving
}

// NewOperator reads the certificates and the token the configuration
// names and returns a server for them; it refuses a configuration that
// would serve without TLS or without authentication.
func NewOperator(cfg OperatorConfig, op Operator, onError func(error)) (*OperatorServer, error) {
	if onError == nil {
		onError = func(error) {}
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("the operator API needs pg_keeper.operator_tls_cert_file and pg_keeper.operator_tls_key_file: it serves HTTPS only")
	}
	if cfg.ClientCAFile == "" && cfg.TokenFile == "" {
		return nil, errors.New("the operator API needs pg_keeper.operator_client_ca_file or pg_keeper.operator_token_file: every request must authenticate")
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("operator API: TLS certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("operator API: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("operator API: client CA %s holds no PEM certificate", cfg.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	s := &OperatorServer{addr: cfg.Addr, tls: tc, op: op, onError: onError}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("operator API: token: %w", err)
		}
		s.token = bytes.TrimSpace(b)
		if len(s.token) < 16 {
			return nil, fmt.Errorf("operator API: the token in %s is shorter than 16 characters", cfg.TokenFile)
		}
	}
	return s, nil
}

// Handler returns the operator API's routes (authentication included).
func (s *OperatorServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/pause", s.action(func(ctx context.Context, _ *http.Request, say func(string)) error {
		return s.op.SetPause(ctx, true, say)
	}))
	mux.HandleFunc("/resume", s.action(func(ctx context.Context, _ *http.Request, say func(string)) error {
		return s.op.SetPause(ctx, false, say)
	}))
	mux.HandleFunc("/switchover", s.action(func(ctx context.Context, r *http.Request, say func(string)) error {
		return s.op.Switchover(ctx, r.URL.Query().Get("dry_run") == "true", say)
	}))
	return mux
}

// authenticated reports whether r carries a verified client certificate
// or the bearer token.
func (s *OperatorServer) authenticated(r *http.Request) bool {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if s.token == nil {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), s.token) == 1
}

// action wraps one operation: POST only, authenticated, one at a time; it
// answers 200 with the progress lines, or 409 with them and the error.
func (s *OperatorServer) action(run func(ctx context.Context, r *http.Request, say func(string)) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				s.onError(fmt.Errorf("operator API: panic in %s: %v", r.URL.Path, p))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		if !s.authenticated(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pg_keeper_go"`)
			http.Error(w, "authentication required: a client certificate or the bearer token", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if !s.busy.TryLock() {
			http.Error(w, "another operation is running", http.StatusConflict)
			return
		}
		defer s.busy.Unlock()
		ctx, cancel := context.WithTimeout(r.Context(), operatorTimeout)
		defer cancel()
		var out strings.Builder
		err := run(ctx, r, func(line string) { out.WriteString(line + "\n") })
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		_, _ = w.Write([]byte(out.String()))
	}
}

// Start listens with TLS on the configured address and serves in a
// goroutine; it never panics.
func (s *OperatorServer) Start() error {
	return s.run.start(s.addr, &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tls,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      operatorTimeout + 10*time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(errorWriter(s.onError), "operator API: ", 0),
	}, 8, s.onError, "operator API")
}

// Addr returns the address the server listens on, or "" before Start.
func (s *OperatorServer) Addr() string { return s.run.addr() }

// Shutdown stops the server; an operation in flight is cancelled when ctx
// ends.
func (s *OperatorServer) Shutdown(ctx context.Context) error {
	return s.run.shutdown(ctx, "operator API")
}
