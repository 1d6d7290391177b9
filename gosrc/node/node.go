// Package node runs the keeper's actions on the local PostgreSQL server
// over pg_keeper.my_conninfo: confirming a promotion, writing the failover
// record, switching synchronous replication and ending the client sessions
// of a fenced node.  Each action is idempotent.
package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// retryEvery is the pause between two attempts while waiting for writes.
const retryEvery = 10 * time.Millisecond

// ErrNoTable means the failover log table (or its database) does not exist.
var ErrNoTable = errors.New("failover log table not found")

// SyncSetting is the synchronous_standby_names that the keeper turned off.
type SyncSetting struct {
	Value        string `json:"synchronous_standby_names"`
	FromAutoConf bool   `json:"from_auto_conf"` // set with ALTER SYSTEM, not in postgresql.conf
}

// FailoverRecord is the row written to the failover log after a promotion,
// or, with Initial, the row that names the first primary of a pair.
type FailoverRecord struct {
	PromotedAt  time.Time
	Host        string // this node's host name
	OldPrimary  string // the former primary, "host=... port=..." (no password)
	NewTimeline uint32
	PromoteLSN  uint64 // last WAL position replayed before the promotion
	Reason      string
	// Initial: this node is the primary the pair started with; the row
	// is written only into an empty log, and has no old primary and no
	// promotion LSN.
	Initial bool
}

// Local is the keeper's session to its own node.  Its methods must not be
// called concurrently.
type Local struct {
	myConninfo string
	token      string // the server's session token (pgsession.NewOwn)
	logDB      string // pg_keeper.failover_log_database
	logTable   string // pg_keeper.failover_log_table, [schema.]table
	session    *pgsession.Session
}

// New prepares the session to this node over myConninfo, with the
// server's session token (see pgsession.NewOwn) and the failover log in
// logTable of database logDB; it does not connect.
func New(myConninfo, sessionToken, logDB, logTable string) (*Local, error) {
	session, err := pgsession.NewOwn(myConninfo, sessionToken)
	if err != nil {
		return nil, err
	}
	return &Local{myConninfo: myConninfo, token: sessionToken, logDB: logDB, logTable: logTable, session: session}, nil
}

// in prepares a session to database db of this node.
func (l *Local) in(db string) (*pgsession.Session, error) {
	return pgsession.NewOwn(conninfo.WithDatabase(l.myConninfo, db), l.token)
}

// WaitWritable polls until the server is out of recovery and not read-only.
func (l *Local) WaitWritable(ctx context.Context) error {
	for {
		var inRecovery bool
		var readOnly string
		err := l.session.QueryRow(ctx, "select pg_is_in_recovery(), current_setting('transaction_read_only')", &inRecovery, &readOnly)
		switch {
		case err == nil && !inRecovery && readOnly == "off":
			return nil
		case err == nil:
			err = fmt.Errorf("in recovery: %t, transaction_read_only: %s", inRecovery, readOnly)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node not writable: %w", err)
		case <-time.After(retryEvery):
		}
	}
}

// failoverColumns are the columns of sql/pg_state.sql, in order.  Only
// those the table has are written, so a pg_keeper-era table with just
// (unixtime, host) keeps working.
var failoverColumns = []string{"unixtime", "host", "old_primary", "new_timeline", "promote_lsn", "reason", "promoted_at"}

// RecordFailover appends rec to the failover log table, in its own
// connection to the failover log's database; recorded is false, with a
// reason in err, when the table or database is missing, and without an
// error when rec is Initial and the log already has a row.
func (l *Local) RecordFailover(ctx context.Context, rec FailoverRecord) (recorded bool, err error) {
	s, err := l.in(l.logDB)
	if err != nil {
		return false, err
	}
	defer s.Close()
	conn, err := s.Conn(ctx)
	if pgsession.SQLState(err) == "3D000" {
		return false, fmt.Errorf("%w: database %q does not exist", ErrNoTable, l.logDB)
	}
	if err != nil {
		return false, err
	}
	rows, err := conn.Query(ctx, `select attname::text from pg_attribute
		where attrelid = to_regclass($1) and attnum > 0 and not attisdropped`, l.logTable)
	if err != nil {
		return false, fmt.Errorf("read columns of %s: %w", l.logTable, err)
	}
	have, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return false, fmt.Errorf("read columns of %s: %w", l.logTable, err)
	}
	if len(have) == 0 {
		return false, fmt.Errorf("%w: no table %q in database %q", ErrNoTable, l.logTable, l.logDB)
	}
	values := map[string]any{
		"unixtime":     rec.PromotedAt.Unix(),
		"host":         rec.Host,
		"old_primary":  rec.OldPrimary,
		"new_timeline": int64(rec.NewTimeline),
		"promote_lsn":  pgsession.FormatLSN(rec.PromoteLSN),
		"reason":       rec.Reason,
		"promoted_at":  rec.PromotedAt,
	}
	if rec.Initial {
		values["old_primary"], values["promote_lsn"] = nil, nil
	}
	var cols, params []string
	var args []any
	for _, c := range failoverColumns {
		for _, h := range have {
			if h == c {
				args = append(args, values[c])
				cols = append(cols, pgx.Identifier{c}.Sanitize())
				params = append(params, fmt.Sprintf("$%d", len(args)))
			}
		}
	}
	if len(cols) == 0 {
		return false, fmt.Errorf("%w: %s has none of the columns %s", ErrNoTable, l.logTable, strings.Join(failoverColumns, ", "))
	}
	table := pgx.Identifier(strings.Split(l.logTable, ".")).Sanitize()
	sql := fmt.Sprintf("insert into %s (%s) values (%s)", table, strings.Join(cols, ", "), strings.Join(params, ", "))
	if rec.Initial {
		return l.insertIntoEmpty(ctx, conn, table, sql, args)
	}
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return false, fmt.Errorf("insert into %s: %w", l.logTable, err)
	}
	return true, nil
}

// insertIntoEmpty runs the insert only when the table has no row: a
// restart, or the other keeper after a failover, must not add a second
// "first" primary.  The lock makes two keepers that race agree.
func (l *Local) insertIntoEmpty(ctx context.Context, conn *pgx.Conn, table, insert string, args []any) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("insert into %s: %w", l.logTable, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var exists bool
	if _, err := tx.Exec(ctx, "lock table "+table+" in share row exclusive mode"); err != nil {
		return false, fmt.Errorf("lock %s: %w", l.logTable, err)
	}
	if err := tx.QueryRow(ctx, "select exists (select from "+table+")").Scan(&exists); err != nil {
		return false, fmt.Errorf("read %s: %w", l.logTable, err)
	}
	if exists {
		return false, nil
	}
	if _, err := tx.Exec(ctx, insert, args...); err != nil {
		return false, fmt.Errorf("insert into %s: %w", l.logTable, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("insert into %s: %w", l.logTable, err)
	}
	return true, nil
}

// Extension is the extension the keeper needs on a primary: leases
// (pg_keeper_grant_lease() on the standby) and the WAL heartbeat.
const Extension = "pg_keeper_go"

// ExtensionChange is what EnsureExtension did in one database.
type ExtensionChange struct {
	Database string
	From     string // the version it had; "" when it was created
	To       string // the version it has now
}

// EnsureExtension creates the extension in each database where it is
// missing and updates it where it is older than the version installed on
// the server, and returns what it changed.  The statements replicate to
// the standby.
func (l *Local) EnsureExtension(ctx context.Context, databases []string) ([]ExtensionChange, error) {
	var changes []ExtensionChange
	for _, db := range databases {
		c, changed, err := l.ensureExtensionIn(ctx, db)
		if err != nil {
			return changes, fmt.Errorf("database %q: %w", db, err)
		}
		if changed {
			changes = append(changes, c)
		}
	}
	return changes, nil
}

func (l *Local) ensureExtensionIn(ctx context.Context, db string) (ExtensionChange, bool, error) {
	c := ExtensionChange{Database: db}
	s, err := l.in(db)
	if err != nil {
		return c, false, err
	}
	defer s.Close()
	var have, available *string
	err = s.QueryRow(ctx, `select (select extversion from pg_catalog.pg_extension where extname = '`+Extension+`'),
	                              (select default_version from pg_catalog.pg_available_extensions where name = '`+Extension+`')`,
		&have, &available)
	switch {
	case err != nil:
		return c, false, err
	case available == nil:
		return c, false, fmt.Errorf("the extension's files (%s.control) are not installed on this server", Extension)
	case have != nil && *have == *available:
		return c, false, nil
	case have == nil:
		err = s.Exec(ctx, "create extension if not exists "+Extension)
	default:
		c.From = *have
		err = s.Exec(ctx, "alter extension "+Extension+" update")
	}
	c.To = *available
	return c, err == nil, err
}

// DisableSync sets synchronous_standby_names to the empty string and,
// if reload, reloads.  It returns the setting it replaced and where it
// came from, so that RestoreSync can put it back the same way.
func (l *Local) DisableSync(ctx context.Context, reload bool) (SyncSetting, error) {
	var saved SyncSetting
	var sourceFile string
	if err := l.session.QueryRow(ctx,
		`select setting, coalesce(sourcefile, '') from pg_settings where name = 'synchronous_standby_names'`,
		&saved.Value, &sourceFile); err != nil {
		return saved, fmt.Errorf("read synchronous_standby_names: %w", err)
	}
	saved.FromAutoConf = strings.HasSuffix(sourceFile, "postgresql.auto.conf")
	if saved.Value == "" {
		return saved, nil
	}
	if err := l.session.Exec(ctx, "alter system set synchronous_standby_names = ''"); err != nil {
		return saved, err
	}
	if !reload {
		return saved, nil
	}
	return saved, l.Reload(ctx)
}

// Reload makes the server read its configuration files again.
func (l *Local) Reload(ctx context.Context) error {
	return l.session.Exec(ctx, "select pg_reload_conf()")
}

// RestoreSync puts back what DisableSync saved: with ALTER SYSTEM SET if
// it came from postgresql.auto.conf, else by removing the override.
func (l *Local) RestoreSync(ctx context.Context, saved SyncSetting) error {
	stmt := "alter system reset synchronous_standby_names"
	if saved.FromAutoConf {
		stmt = "alter system set synchronous_standby_names = " + quoteLiteral(saved.Value)
	}
	if err := l.session.Exec(ctx, stmt); err != nil {
		return err
	}
	return l.session.Exec(ctx, "select pg_reload_conf()")
}

// TerminateClients ends every session and worker that could write: client
// sessions, walsenders connected to a database, and background workers of
// other extensions (logical replication apply, pg_cron...); not physical
// replication, autovacuum, the server's own processes, or this session.
// The keeper's other sessions end too and reconnect with the session
// token, which lets them through the connection gate.  The role of
// my_conninfo should be a superuser: a member of pg_signal_backend ends
// only the sessions of roles that are not (the others are skipped).
func (l *Local) TerminateClients(ctx context.Context) (int, error) {
	var n int
	err := l.session.QueryRow(ctx, terminateWriters, &n)
	if err != nil {
		return 0, fmt.Errorf("terminate client sessions: %w", err)
	}
	return n, nil
}

// TwoPhaseSubscriptions names the subscriptions created with two_phase
// (PostgreSQL 15 and later; none before).  pg_subscription is shared by
// every database of the server.
func (l *Local) TwoPhaseSubscriptions(ctx context.Context) ([]string, error) {
	var names []string
	err := l.session.QueryRow(ctx,
		`select coalesce(array_agg(subname::text order by subname), '{}') from pg_catalog.pg_subscription where subtwophasestate <> 'd'`, &names)
	if pgsession.SQLState(err) == "42703" { // undefined_column: before 15
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pg_subscription: %w", err)
	}
	return names, nil
}

// Close closes the session.
func (l *Local) Close() { l.session.Close() }

// terminateWriters ends what TerminateClients says.  Background workers
// show their own type in pg_stat_activity: they are what is not one of
// the server's own process types (nor a parallel worker, which ends with
// its leader).
const terminateWriters = `select count(*) filter (where pg_catalog.pg_terminate_backend(pid))::int
	from pg_catalog.pg_stat_activity
	where pid <> pg_catalog.pg_backend_pid()
	  and ((select rolsuper from pg_catalog.pg_roles where rolname = current_user)
	       or not coalesce((select rolsuper from pg_catalog.pg_roles where oid = usesysid), true))
	  and ((backend_type = 'walsender' and datid is not null)
	       or backend_type not in ('walsender', 'autovacuum launcher', 'autovacuum worker',
	                               'logical replication launcher', 'background writer',
	                               'checkpointer', 'walwriter', 'startup', 'archiver',
	                               'walreceiver', 'walsummarizer', 'slotsync worker',
	                               'io worker', 'stats collector', 'parallel worker',
	                               'standalone backend', 'pg_keeper_go'))`

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
