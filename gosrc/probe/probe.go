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
	cfg, err := NewConnConfig(pc, ApplicationName)
	if err != nil {
		return nil, err
	}
	return &Session{cfg: cfg}, nil
}

// NewConnConfig makes the pgx configuration of a parsed connection string
// for the project's short, deadline-bound sessions: applicationName unless
// the string sets one, one round trip per query and nothing cached across
// reconnects (simple protocol), no connect timeout of its own (the
// caller's context bounds connecting).
func NewConnConfig(pc *pgconn.Config, applicationName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, fmt.Errorf("default pgx config: %w", err)
	}
	cfg.Config = *pc
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = applicationName
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cfg.ConnectTimeout = 0
	return cfg, nil
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

// Prober implements keeper.Prober with one session to the partner and one
// to this node.
type Prober struct {
	partner *Session
	local   *Session
	// noGrantUntil: the standby could not grant a lease (no
	// pg_keeper_grant_lease() there); ask again after this time.
	noGrantUntil time.Time
	grantErr     error
}

// grantRetry is how long a primary waits before asking a standby that
// could not grant a lease again.
const grantRetry = time.Minute

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

// partnerFacts asks a server whether it is in recovery, its system
// identifier and, on a primary, its current timeline.  The timeline comes
// from the name of the current WAL file: pg_control's checkpoint timeline
// lags behind a promotion until the next checkpoint.
const partnerFacts = `select pg_is_in_recovery(),
       (select system_identifier from pg_control_system()),
       case when pg_is_in_recovery() then 0
            else ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int end`

// ReplayLagSQL is a standby's replay lag in seconds, as an SQL expression:
// 0 when it has replayed everything it received, otherwise the age of the
// last replayed transaction (NULL before the first one).  The keeper's
// /replica and the pg_keeper_go command share this one definition.
const ReplayLagSQL = `case when pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn() then 0
            else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end`

// walReceiverAge is how long ago the WAL receiver heard from the primary,
// in seconds, or -1 when it does not stream; and the replay lag in seconds
// (0 before the first replayed transaction).
const walReceiverAge = `select coalesce((select extract(epoch from clock_timestamp() - last_msg_receipt_time)
                          from pg_stat_wal_receiver where status = 'streaming'), -1)::float8,
       coalesce(` + ReplayLagSQL + `, 0)`

// queryPartner runs sql (partnerFacts, optionally with more columns) on
// the partner and fills p.
func (p *Prober) queryPartner(ctx context.Context, sql string, extra ...any) (keeper.Partner, error) {
	var (
		pt       keeper.Partner
		sysid    int64
		timeline int32
	)
	dest := append([]any{&pt.InRecovery, &sysid, &timeline}, extra...)
	if err := classify(p.partner.QueryRow(ctx, sql, dest...)); err != nil {
		return pt, err
	}
	pt.Answered = true
	pt.SystemIdentifier = uint64(sysid) // pg_control_system() shows it as a signed bigint
	pt.Timeline = uint32(timeline)
	return pt, nil
}

// CheckPrimary checks that the primary answers, learns its identity, and
// reads this standby's WAL receiver (even when the primary does not
// answer: that is when it matters).
func (p *Prober) CheckPrimary(ctx context.Context) (keeper.PrimaryCheck, error) {
	var pc keeper.PrimaryCheck
	var age, lag float64
	if err := p.local.QueryRow(ctx, walReceiverAge, &age, &lag); err != nil {
		pc.WALReceiverAge, pc.WALReceiverErr = -1, fmt.Errorf("local node: %w", err)
	} else {
		pc.WALReceiverAge = time.Duration(age * float64(time.Second))
		pc.ReplayLag = time.Duration(max(lag, 0) * float64(time.Second))
	}
	var err error
	pc.Partner, err = p.queryPartner(ctx, partnerFacts)
	return pc, err
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

// CheckStandby reads this node's walsenders and synchronous setting,
// writes the WAL heartbeat its standby's keeper watches, then asks the
// standby for a lease.  A standby that answers but does not stream fails
// the check: synchronous commits would wait for it.
func (p *Prober) CheckStandby(ctx context.Context) (keeper.StandbyCheck, error) {
	var sc keeper.StandbyCheck
	err := p.local.QueryRow(ctx,
		`select (select count(*) from pg_stat_replication where state = 'streaming')::int,
		        current_setting('synchronous_standby_names')`,
		&sc.Streaming, &sc.SyncStandbyNames)
	if err != nil {
		return sc, fmt.Errorf("local node: %w", err)
	}
	// A flushed WAL message without a transaction, which the standby's
	// WAL receiver sees arrive (NULL on a fenced node, which writes none).
	var lsn *string
	if err := p.local.QueryRow(ctx, "select pg_keeper_heartbeat()::text", &lsn); err != nil {
		sc.HeartbeatErr = fmt.Errorf("local node: %w", err)
	}

	if time.Now().After(p.noGrantUntil) {
		sc.Partner, err = p.queryPartner(ctx, partnerFacts+", pg_keeper_grant_lease()", &sc.Granted)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42883" || pgErr.Code == "42501" || pgErr.Code == "3F000") {
			// No such function, or not allowed: the extension is missing
			// in that database, or the role lacks EXECUTE.
			p.grantErr = err
			p.noGrantUntil = time.Now().Add(grantRetry)
		} else {
			p.grantErr = nil
		}
	}
	if !time.Now().After(p.noGrantUntil) {
		sc.GrantErr = p.grantErr
		sc.Partner, err = p.queryPartner(ctx, partnerFacts)
	}
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
