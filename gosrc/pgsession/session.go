// Package pgsession is the project's one way to talk SQL to a PostgreSQL
// server: a persistent session on pgx that survives the ordinary ways a
// connection breaks, under the caller's deadline, and the SQL expressions
// that more than one package needs.
//
// It knows nothing of the keeper or the watcher: the keeper's checks, its
// local actions, the witness and the pg_keeper_go command are built on it,
// as pgx is built on pgconn.
package pgsession

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
)

// ApplicationName is how the project's sessions appear in
// pg_stat_activity: the keeper's as it is, the command's with a suffix
// ("pg_keeper_go watch").  It identifies nothing: any client can choose it.
const ApplicationName = "pg_keeper_go"

// SessionTokenParam is the startup parameter with which a keeper's
// sessions to its own server pass the shim's connection gate while writes
// are closed there.  Its value is a secret of the server's shared memory
// that the keeper reads from the shim; no client can learn it.
const SessionTokenParam = "pg_keeper.session_token"

// closeTimeout bounds closing a connection: sending Terminate and closing
// the socket.  A server that does not read it cannot hold the caller up.
const closeTimeout = time.Second

// Session is one server reached over a persistent connection, reopened when
// it breaks.  It is not safe for concurrent use.
//
//   - Every call is bounded by its context: connecting and querying share
//     one deadline.
//   - A connection that broke while idle (a network error, or the server
//     ended the session: a restart, pg_terminate_backend) is replaced once
//     within the same deadline, so that it does not make a healthy server
//     look unreachable.
//   - A server error (a PgError on an open connection) keeps the connection;
//     so does pgx.ErrNoRows, which is an answer, not a failure.
//   - Close sends Terminate and waits for it at most a second.
type Session struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

// New parses connString (libpq keyword/value or URI) for a session that
// shows applicationName in pg_stat_activity unless the string sets one.  It
// does not connect.  Its errors never hold a password.
func New(connString, applicationName string) (*Session, error) {
	pc, err := conninfo.Parse(connString)
	if err != nil {
		return nil, err
	}
	cfg, err := NewConnConfig(pc, applicationName)
	if err != nil {
		return nil, err
	}
	return NewWithConfig(cfg), nil
}

// Pinned are the settings every session sets in its startup packet, where
// they win over what a role or database sets (ALTER ROLE ... SET): no
// setting made for the applications can hold up, break or redirect the
// project's queries.  search_path is PostgreSQL's default, with which the
// users created their tables (pg_catalog, not named, is searched first, so
// nothing shadows a built-in function).  The context deadline bounds each
// call more tightly; the timeouts bound what runs on in the server.
var Pinned = map[string]string{
	"search_path":                         `"$user", public`,
	"statement_timeout":                   "30s",
	"lock_timeout":                        "5s",
	"idle_in_transaction_session_timeout": "30s",
}

// ownCancelDelay is how long, after its deadline, a query on the keeper's
// own server may take to end once the server has been asked to cancel it.
const ownCancelDelay = 500 * time.Millisecond

// NewOwn is New for a keeper's session to its own server: it carries the
// server's session token (none when sessionToken is empty), commits with
// synchronous_commit = local (the keeper's own writes never wait for a
// standby, which may be the dead old primary), and when a call's deadline
// passes it asks the server to cancel the query before giving up on the
// connection.
func NewOwn(connString, sessionToken string) (*Session, error) {
	s, err := New(connString, ApplicationName)
	if err != nil {
		return nil, err
	}
	if sessionToken != "" {
		s.cfg.RuntimeParams[SessionTokenParam] = sessionToken
	}
	s.cfg.RuntimeParams["synchronous_commit"] = "local"
	s.cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: ownCancelDelay}
	}
	return s, nil
}

// NewWithConfig returns a session for a ready pgx configuration (see
// NewConnConfig).  It does not connect.
func NewWithConfig(cfg *pgx.ConnConfig) *Session { return &Session{cfg: cfg} }

// NewConnConfig makes the pgx configuration of a parsed connection string
// for the project's short, deadline-bound sessions: applicationName unless
// the string sets one, the Pinned settings, one round trip per query and nothing cached across
// reconnects (simple protocol), no connect timeout of its own (the
// caller's context bounds connecting).
func NewConnConfig(pc *pgconn.Config, applicationName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("default pgx config: %w", err)
	}
	cfg.Config = *pc
	cfg.RuntimeParams = maps.Clone(pc.RuntimeParams)
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = applicationName
	}
	maps.Copy(cfg.RuntimeParams, Pinned)
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.ConnectTimeout = 0
	return cfg, nil
}

// QueryRow runs sql and scans its single row into dest.  No row is
// pgx.ErrNoRows (test it with errors.Is); the connection stays open.  A
// server error is returned as the server gave it, other errors say whether
// connecting or the query failed.
func (s *Session) QueryRow(ctx context.Context, sql string, dest ...any) error {
	return s.QueryRowArgs(ctx, sql, nil, dest...)
}

// QueryRowArgs is QueryRow for a query with arguments ($1, $2, ...).
func (s *Session) QueryRowArgs(ctx context.Context, sql string, args []any, dest ...any) error {
	reused, err := s.connect(ctx)
	if err != nil {
		return err
	}
	err = s.conn.QueryRow(ctx, sql, args...).Scan(dest...)
	if reused && s.broken(err) && ctx.Err() == nil {
		s.drop()
		if _, err := s.connect(ctx); err != nil {
			return err
		}
		err = s.conn.QueryRow(ctx, sql, args...).Scan(dest...)
	}
	if err == nil || errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	s.Failed(err)
	if IsServerError(err) {
		return err // the server's own words say what failed
	}
	return fmt.Errorf("query: %w", err)
}

// Exec runs a statement on the session's connection.
func (s *Session) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := s.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		s.Failed(err)
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// Conn returns the open connection, checked with a round trip and
// reopened if it broke, for a caller that runs several statements on it
// (a transaction).  The caller reports errors with Failed.
func (s *Session) Conn(ctx context.Context) (*pgx.Conn, error) {
	var one int
	if err := s.QueryRow(ctx, "select 1", &one); err != nil {
		return nil, err
	}
	return s.conn, nil
}

// Failed drops the connection after err unless the server answered err
// and the connection is still open.
func (s *Session) Failed(err error) {
	if s.conn != nil && s.broken(err) {
		s.drop()
	}
}

// broken reports whether err left the connection unusable.
func (s *Session) broken(err error) bool {
	return err != nil && !errors.Is(err, pgx.ErrNoRows) && (!IsServerError(err) || s.conn.IsClosed())
}

// connect opens a connection unless an open one is there; reused says the
// connection existed before the call.
func (s *Session) connect(ctx context.Context) (reused bool, err error) {
	if s.conn != nil && !s.conn.IsClosed() {
		return true, nil
	}
	s.conn = nil
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	s.conn = conn
	return false, nil
}

// Close closes the connection, sending Terminate, and waits for it at most
// a second.
func (s *Session) Close() {
	if s.conn != nil {
		closeConn(s.conn)
		s.conn = nil
	}
}

// CloseAll closes several sessions at once, within one Close's bound; nil
// sessions are skipped.
func CloseAll(sessions ...*Session) {
	var wg sync.WaitGroup
	for _, s := range sessions {
		if s == nil || s.conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = recover() }() // pgx does not panic here; the rule is that no goroutine may take the process down
			s.Close()
		}()
	}
	wg.Wait()
}

// drop closes the connection in the background: a hung server must not
// hold the caller up.
func (s *Session) drop() {
	if s.conn == nil {
		return
	}
	c := s.conn
	s.conn = nil
	go func() {
		defer func() { _ = recover() }()
		closeConn(c)
	}()
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}

// SQLState returns the SQLSTATE of a server error, "" for other errors.
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsServerError reports whether err came from the server itself.
func IsServerError(err error) bool { return SQLState(err) != "" }
