package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// routes builds the server's handler: Patroni's health-check paths (so
// that load balancer configurations written for Patroni work unchanged),
// /status and /metrics, behind a guard that allows GET, HEAD and OPTIONS
// and recovers panics.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for path, check := range map[string]check{
		"/{$}":          checkPrimary,
		"/primary":      checkPrimary,
		"/master":       checkPrimary,
		"/read-write":   checkPrimary,
		"/leader":       checkLeader,
		"/replica":      checkReplica,
		"/read-only":    checkReadOnly,
		"/synchronous":  checkSynchronous,
		"/sync":         checkSynchronous,
		"/asynchronous": checkAsynchronous,
		"/async":        checkAsynchronous,
		"/health":       checkHealth,
		"/liveness":     checkLiveness,
		"/readiness":    checkReadiness,
	} {
		mux.HandleFunc(path, s.serveCheck(check))
	}
	mux.HandleFunc("/status", s.serveStatus)
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{
		ErrorLog:            errorLogger{s.onError},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	}))
	return s.guard(mux)
}

// allowed is the Allow header: the methods a load balancer checks with.
const allowed = "GET, HEAD, OPTIONS"

// guard answers 405 to methods other than GET, HEAD and OPTIONS, answers
// OPTIONS with the status and headers of GET and no body (as Patroni does
// for HAProxy's "option httpchk"), marks every answer as not cacheable, and
// turns a panic in a handler into a 500 reported to the error handler
// instead of a crash of the server process.
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
		switch r.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodOptions:
			w.Header().Set("Allow", allowed)
			w = noBody{w}
		default:
			w.Header().Set("Allow", allowed)
			http.Error(w, "method not allowed: use GET, HEAD or OPTIONS", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// noBody sends the status and headers of an answer without its body.
type noBody struct{ http.ResponseWriter }

func (w noBody) WriteHeader(code int) {
	w.Header().Set("Content-Length", "0")
	w.ResponseWriter.WriteHeader(code)
}

func (w noBody) Write(p []byte) (int, error) { return len(p), nil }

func (s *Server) recoverValue(r *http.Request, rec any) {
	s.onError(fmt.Errorf("http server: panic serving %s %s: %v", r.Method, r.URL.Path, rec))
}

// verdict is the body of the health checks.
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

// serveCheck answers a health check: 200 when the check passes on a fresh
// snapshot, 503 with the reason otherwise, 400 for a malformed query.
func (s *Server) serveCheck(c check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := parseQuery(r.URL.Query())
		if err != nil {
			writeJSON(w, http.StatusBadRequest, verdict{Status: "bad request", Reason: err.Error()})
			return
		}
		snap, age, problem := s.current()
		if problem == "" {
			problem = c(*snap, q, s.now())
		}
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

// errorLogger adapts the error handler to promhttp's logger.
type errorLogger struct{ fn func(error) }

// Println passes one line of promhttp's log to the error handler.
func (l errorLogger) Println(v ...any) {
	l.fn(errors.New("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n")))
}
