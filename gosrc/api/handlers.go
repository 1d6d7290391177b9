package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// routes builds the server's handler: the endpoints behind a guard that
// allows only GET and HEAD and recovers panics.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/primary", s.servePrimary)
	mux.HandleFunc("/replica", s.serveReplica)
	mux.HandleFunc("/health", s.serveHealth)
	mux.HandleFunc("/status", s.serveStatus)
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog:            errorLogger{s.onError},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	return s.guard(mux)
}

// guard answers 405 to methods other than GET and HEAD, marks every answer
// as not cacheable, and turns a panic in a handler into a 500 reported to
// the error handler instead of a crash of the server process.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec) // net/http's own way to abort a response; it recovers it
				}
				s.recoverValue(r, rec)
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) recoverValue(r *http.Request, rec any) {
	s.onError(fmt.Errorf("http server: panic serving %s %s: %v", r.Method, r.URL.Path, rec))
}

// verdict is the body of /primary, /replica and /health.
type verdict struct {
	Status     string  `json:"status"` // "ok" or "unavailable"
	Role       string  `json:"role,omitempty"`
	State      string  `json:"state,omitempty"`
	Reason     string  `json:"reason,omitempty"` // why not ok
	AgeSeconds float64 `json:"age_seconds"`      // age of the snapshot
}

// current returns the snapshot, its age, and a reason not to trust it: no
// snapshot yet, or one older than the stale limit.
func (s *Server) current() (snap *status.Snapshot, age time.Duration, problem string) {
	snap = s.snap.Load()
	if snap == nil {
		return nil, 0, "the keeper has not published its state yet"
	}
	age = max(s.now().Sub(snap.UpdatedAt), 0)
	if limit := time.Duration(s.staleAfter.Load()); age > limit {
		return snap, age, fmt.Sprintf("the keeper's state is stale: last updated %s ago (limit %s)",
			age.Round(time.Millisecond), limit)
	}
	return snap, age, ""
}

// PrimaryProblem returns why a node with this snapshot must not receive
// writes, or "" when it is a writable, unfenced primary.
func PrimaryProblem(snap status.Snapshot) string {
	switch {
	case snap.Role != status.RolePrimary:
		return fmt.Sprintf("the node is not a primary (role %s)", orUnknown(snap.Role))
	case !snap.Writable:
		return "the node does not accept writes (in recovery or default_transaction_read_only is on)"
	case snap.Fenced:
		return "the node is fenced: " + orUnknown(snap.FenceReason)
	}
	return ""
}

// ReplicaProblem returns why a node with this snapshot must not receive
// reads meant for a standby, or "" when it is an unfenced standby that
// streams with a replay lag of at most maxLag (maxLag < 0: any lag).
func ReplicaProblem(snap status.Snapshot, maxLag time.Duration) string {
	switch {
	case snap.Role != status.RoleStandby:
		return fmt.Sprintf("the node is not a standby (role %s)", orUnknown(snap.Role))
	case snap.Fenced:
		return "the node is fenced: " + orUnknown(snap.FenceReason)
	case !snap.Streaming:
		return "the standby is not streaming from a primary"
	case maxLag >= 0 && snap.ReplayLagSeconds > maxLag.Seconds():
		return fmt.Sprintf("replay lag %.3fs exceeds max_lag %s", snap.ReplayLagSeconds, maxLag)
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// servePrimary answers 200 on a writable, unfenced primary, 503 otherwise.
func (s *Server) servePrimary(w http.ResponseWriter, r *http.Request) {
	snap, age, problem := s.current()
	if problem == "" {
		problem = PrimaryProblem(*snap)
	}
	if problem == "" && !snap.WritableUntil.IsZero() && !s.now().Before(snap.WritableUntil) {
		problem = fmt.Sprintf("the node's write lease ended %s ago and the keeper has not renewed it",
			s.now().Sub(snap.WritableUntil).Round(time.Millisecond))
	}
	s.writeVerdict(w, snap, age, problem)
}

// serveReplica answers 200 on a streaming, unfenced standby whose replay
// lag is at most the max_lag query parameter (if given), 503 otherwise,
// and 400 for a malformed max_lag.
func (s *Server) serveReplica(w http.ResponseWriter, r *http.Request) {
	maxLag := time.Duration(-1)
	if v := r.URL.Query().Get("max_lag"); v != "" {
		d, err := ParseLag(v)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, verdict{Status: "bad request", Reason: err.Error()})
			return
		}
		maxLag = d
	}
	snap, age, problem := s.current()
	if problem == "" {
		problem = ReplicaProblem(*snap, maxLag)
	}
	s.writeVerdict(w, snap, age, problem)
}

// serveHealth answers 200 while the keeper publishes fresh snapshots with
// valid settings, 503 otherwise.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	snap, age, problem := s.current()
	if problem == "" && snap.ConfigError != "" {
		problem = "the keeper's settings are invalid: " + snap.ConfigError
	}
	s.writeVerdict(w, snap, age, problem)
}

// statusBody is the body of /status: the snapshot and its freshness.
type statusBody struct {
	status.Wire
	Stale      bool    `json:"stale"`
	AgeSeconds float64 `json:"age_seconds"`
}

// serveStatus answers the last snapshot as JSON, even when stale (it says
// so); 503 before the first snapshot.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	snap, age, problem := s.current()
	if snap == nil {
		writeJSON(w, http.StatusServiceUnavailable, verdict{Status: "unavailable", Reason: problem})
		return
	}
	writeJSON(w, http.StatusOK, statusBody{
		Wire:       snap.Wire(),
		Stale:      problem != "",
		AgeSeconds: age.Seconds(),
	})
}

func (s *Server) writeVerdict(w http.ResponseWriter, snap *status.Snapshot, age time.Duration, problem string) {
	v := verdict{Status: "ok", Reason: problem, AgeSeconds: age.Seconds()}
	if snap != nil {
		v.Role, v.State = snap.Role, snap.State
	}
	code := http.StatusOK
	if problem != "" {
		v.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	writeJSON(w, code, v)
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	b, err := json.Marshal(body)
	if err != nil { // not reached: the bodies are plain structs
		http.Error(w, "cannot encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// ParseLag parses a lag limit: a Go duration ("500ms", "10s", "1m") or a
// number of seconds ("5", "0.5").  Negative, infinite and NaN values are
// errors.
func ParseLag(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	var d time.Duration
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("invalid max_lag %q: not a finite number of seconds", v)
		}
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, fmt.Errorf("invalid max_lag %q: want seconds (5, 0.5) or a duration (500ms, 10s)", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid max_lag %q: must not be negative", v)
	}
	return d, nil
}

// errorLogger adapts the error handler to promhttp's logger.
type errorLogger struct{ fn func(error) }

// Println passes one line of promhttp's log to the error handler.
func (l errorLogger) Println(v ...any) {
	l.fn(errors.New("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n")))
}
