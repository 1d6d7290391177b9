// Package probe checks PostgreSQL servers under deadlines: the partner of
// the pair, and this node's replication facts.
//
// Every call takes a context whose deadline bounds connect and query
// together, so a crashed, a hung and a vanished server all fail a check in
// the same bounded time.
package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/keeper"
)

// ApplicationName is how the keeper's connections appear in
// pg_stat_activity.
const ApplicationName = "pg_keeper_go"

// Session is one server reached over a persistent connection, reopened when
// it breaks.  It is not safe for concurrent use.
type Session struct {
	cfg  *pgx.ConnConfig
	conn *pgx.Conn
}

// NewSession parses conninfo; it does not connect.
func NewSession(connString string) (*Session, error) {
	pc, err := conninfo.Parse(connString)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("default pgx config: %w", err)
	}
	cfg.Config = *pc
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = ApplicationName
	}
	// One round trip per query, and nothing cached across reconnects.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	// The caller's context bounds connecting.
	cfg.ConnectTimeout = 0
	return &Session{cfg: cfg}, nil
}

// QueryRow runs sql and scans its single row into dest.  A broken
// persistent connection is replaced once within the same deadline, so
// that a connection lost while idle does not count as a failed check.
func (s *Session) QueryRow(ctx context.Context, sql string, dest ...any) error {
	if s.conn != nil {
		err := s.conn.QueryRow(ctx, sql).Scan(dest...)
		if err == nil || isServerError(err) {
			return err
		}
		s.drop()
		if ctx.Err() != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.conn = conn
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		if !isServerError(err) {
			s.drop()
		}
		return fmt.Errorf("query: %w", err)
	}
	return nil
}

// Exec runs a statement on the session's connection.
func (s *Session) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := s.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		if !isServerError(err) {
			s.drop()
		}
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// Conn returns the open connection, checked with a round trip and
// reopened if it broke.
func (s *Session) Conn(ctx context.Context) (*pgx.Conn, error) {
	var one int
	if err := s.QueryRow(ctx, "select 1", &one); err != nil {
		return nil, err
	}
	return s.conn, nil
}

// Close closes the connection without waiting for a server that may hang.
func (s *Session) Close() { s.drop() }

func (s *Session) drop() {
	if s.conn == nil {
		return
	}
	c := s.conn
	s.conn = nil
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = c.Close(ctx)
	}()
}

// isServerError reports whether err came from the server itself (the
// connection is still usable).
func isServerError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// Prober implements keeper.Prober with one session to the partner and, on
// a primary, one to this node.
type Prober struct {
	partner *Session
	local   *Session
}

// NewProber prepares the sessions for s; it does not connect.
func NewProber(s keeper.Settings) (keeper.Prober, error) {
	partner, err := NewSession(s.PartnerConninfo)
	if err != nil {
		return nil, err
	}
	local, err := NewSession(s.MyConninfo)
	if err != nil {
		return nil, err
	}
	return &Prober{partner: partner, local: local}, nil
}

// CheckPrimary checks that the primary answers a query.
func (p *Prober) CheckPrimary(ctx context.Context) error {
	var inRecovery bool
	return classify(p.partner.QueryRow(ctx, "select pg_is_in_recovery()", &inRecovery))
}

// classify wraps the errors of a server that answered in
// keeper.AnsweredError, except those saying it is going away: shutting
// down, crashing, or not yet accepting connections (SQLSTATE class 57P).
func classify(err error) error {
	var pgErr *pgconn.PgError
	if err == nil || !errors.As(err, &pgErr) || strings.HasPrefix(pgErr.Code, "57P") {
		return err
	}
	return &keeper.AnsweredError{Err: err}
}

// CheckStandby reads this node's walsenders and synchronous setting, then
// checks that the standby answers.  A standby that answers but does not
// stream fails the check: synchronous commits would wait for it.
func (p *Prober) CheckStandby(ctx context.Context) (keeper.StandbyCheck, error) {
	var sc keeper.StandbyCheck
	err := p.local.QueryRow(ctx,
		`select (select count(*) from pg_stat_replication where state = 'streaming')::int,
		        current_setting('synchronous_standby_names')`,
		&sc.Streaming, &sc.SyncStandbyNames)
	if err != nil {
		return sc, fmt.Errorf("local node: %w", err)
	}
	var inRecovery bool
	err = classify(p.partner.QueryRow(ctx, "select pg_is_in_recovery()", &inRecovery))
	var answered *keeper.AnsweredError
	if err != nil && !errors.As(err, &answered) {
		return sc, err
	}
	// Even a standby that answers with an error must stream: synchronous
	// commits wait for the walsender, not for the answer.
	if sc.Streaming == 0 {
		return sc, errors.New("no walsender streams to the standby")
	}
	return sc, err
}

// Close closes both sessions.
func (p *Prober) Close() {
	p.partner.Close()
	p.local.Close()
}
