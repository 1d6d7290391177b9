// Package probe checks the partner of the pair under deadlines, and reads
// this node's replication facts on the way: a standby's WAL receiver, a
// primary's walsenders, and the WAL heartbeat a primary writes for its
// standby.
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

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// callable is an SQL expression that is true when the function (a
// regprocedure literal, schema-qualified) exists and the session may run
// it.  The keeper asks it before calling a function of the extension, so
// that a missing extension logs no ERROR in the server log at every check.
func callable(fn string) string {
	return fmt.Sprintf("coalesce(has_function_privilege(to_regprocedure('%s'), 'execute'), false)", fn)
}

// The extension's functions the checks call, and the errors that say why
// they could not be called.
const (
	heartbeatFunc = "public.pg_keeper_heartbeat()"
	grantFunc     = "public.pg_keeper_grant_lease(bigint,bigint,integer)"
	// grantFunc11 is the grant of extension 1.1, which says neither how
	// long the lease lasts nor whose it is: asked only where the extension
	// has not been updated yet.
	grantFunc11 = "public.pg_keeper_grant_lease()"
	// grantCall asks for a lease of $1 ms for cluster $2 on timeline $3.
	grantCall = "public.pg_keeper_grant_lease($1::int8, $2::int8, $3::int4)"
)

var (
	// ErrNoHeartbeat: this node has no pg_keeper_heartbeat() the keeper
	// may call (the extension is not created in its database).
	ErrNoHeartbeat = errors.New("the function " + heartbeatFunc + " does not exist here or may not be run by this role (CREATE EXTENSION pg_keeper_go)")
	// ErrNoGrant: the standby has no pg_keeper_grant_lease() the keeper
	// may call.
	ErrNoGrant = errors.New("the function public.pg_keeper_grant_lease() does not exist on the standby or may not be run by this role (CREATE EXTENSION pg_keeper_go on the primary)")
)

// Partner is what a check learnt about the partner server, when it
// answered.
type Partner struct {
	Answered         bool   // the partner answered the check's query
	SystemIdentifier uint64 // pg_control's system identifier
	InRecovery       bool
	Timeline         uint32 // current timeline, when not in recovery
	// IsThisServer: the partner is the very server this keeper runs in
	// (its postmaster started at the same microsecond): partner_conninfo
	// names this node under another spelling.
	IsThisServer bool
}

// PrimaryCheck is what a standby learns from one check of its primary.
type PrimaryCheck struct {
	Partner Partner
	// WALReceiverAge is how long ago this standby's WAL receiver last
	// heard from the primary while streaming; negative when it does not
	// stream.  The primary's keeper writes a WAL message every
	// keepalive_time so that this stays fresh on an idle primary.
	WALReceiverAge time.Duration
	WALReceiverErr error // why the WAL receiver could not be read
	// ReplayLag is how far this standby's replay is behind what it
	// received: 0 when it has replayed everything, otherwise the age of
	// the last replayed transaction.
	ReplayLag time.Duration
	// ReplayLagBytes is how much WAL the primary had written beyond what
	// this standby had replayed; -1 when the primary did not answer.
	ReplayLagBytes int64
	// ReplicationState is "streaming", "in archive recovery" (replaying
	// from restore_command) or "".
	ReplicationState string
	// SyncState is this standby's sync_state in the primary's
	// pg_stat_replication ("sync", "quorum", "potential", "async"), ""
	// when the primary did not answer or does not list it.
	SyncState string
	// HedgeAnswered: the primary's answer came over the second connection
	// of a hedged check (the first got none halfway to the deadline).
	HedgeAnswered bool
}

// StandbyCheck is what a primary learns from one check of its standby.
type StandbyCheck struct {
	Streaming        int    // walsenders in state "streaming"
	SyncStandbyNames string // the local synchronous_standby_names
	Partner          Partner
	// CanGrant: the standby has a pg_keeper_grant_lease() this role may
	// run.  Unless the primary is armed already, the check that first
	// finds it asks for no lease yet, so that the keeper records that a
	// standby may grant before one ever does.
	CanGrant bool
	// Granted: the standby granted a lease (pg_keeper_grant_lease()).
	Granted bool
	// GrantErr says why the standby could not be asked for a lease
	// (ErrNoGrant: the extension is not created in the partner's
	// database); nil when it could, or when the standby did not answer.
	GrantErr error
	// Heartbeat: the WAL heartbeat was written; HeartbeatErr says why it
	// could not be (both unset when the local node did not answer).
	Heartbeat    bool
	HeartbeatErr error
}

// AnsweredError is a check's error when the partner did answer, with an
// SQL error (a wrong password, too many connections): the partner is alive,
// so it does not count as a failed check.
type AnsweredError struct{ Err error }

func (e *AnsweredError) Error() string { return "partner answered: " + e.Err.Error() }

// Unwrap returns the server's error.
func (e *AnsweredError) Unwrap() error { return e.Err }

// Prober checks the partner over one session to it and one to this node.
// Its methods must not be called concurrently.
type Prober struct {
	partner *pgsession.Session
	// hedge is a second session to the partner, for a standby's check
	// that gets no answer halfway to its deadline (hedged).
	hedge *pgsession.Session
	local *pgsession.Session
	// grant is the call that asks the standby for a lease, "" until a
	// check found a pg_keeper_grant_lease() this role may run there.
	grant string
	// selfStarted: when this node's postmaster started (startedAt), 0
	// until read.
	selfStarted int64
}

// New prepares the sessions to the partner and to this node (with the
// server's session token, see pgsession.NewOwn); it does not connect.
func New(partnerConninfo, myConninfo, sessionToken string) (*Prober, error) {
	partner, err := pgsession.New(partnerConninfo, pgsession.ApplicationName)
	if err != nil {
		return nil, err
	}
	hedge, err := pgsession.New(partnerConninfo, pgsession.ApplicationName)
	if err != nil {
		return nil, err
	}
	local, err := pgsession.NewOwn(myConninfo, sessionToken)
	if err != nil {
		return nil, err
	}
	return &Prober{partner: partner, hedge: hedge, local: local}, nil
}

// startedAt is when the server's postmaster started, in Unix microseconds:
// with the system identifier, it tells one running server from another.
const startedAt = `(extract(epoch from pg_postmaster_start_time()) * 1000000)::int8`

// partnerFacts asks a server whether it is in recovery, its system
// identifier, on a primary its current timeline, and when it started.
const partnerFacts = `select pg_is_in_recovery(),
       (select system_identifier from pg_control_system()),
       case when pg_is_in_recovery() then 0 else ` + pgsession.TimelineSQL + ` end,
       ` + startedAt

// primaryFacts is partnerFacts on the primary with, for a standby's
// check, the primary's WAL position in bytes and the sync_state it lists
// for the application name given as $1.
const primaryFacts = partnerFacts + `,
       case when pg_is_in_recovery() then -1 else pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8 end,
       coalesce((select sync_state from pg_stat_replication where application_name = $1
                  order by state = 'streaming' desc limit 1), '')`

// queryPartner runs sql (partnerFacts, optionally with more columns) on
// the partner with its arguments and fills p.
func (p *Prober) queryPartner(ctx context.Context, sql string, args []any, extra ...any) (Partner, error) {
	pt, started, err := askPartner(ctx, p.partner, sql, args, extra...)
	if err != nil {
		return pt, err
	}
	p.recognize(ctx, &pt, started)
	return pt, nil
}

// askPartner runs sql (partnerFacts, optionally with more columns) on s;
// it also returns when the partner's postmaster started.
func askPartner(ctx context.Context, s *pgsession.Session, sql string, args []any, extra ...any) (Partner, int64, error) {
	var (
		pt       Partner
		sysid    int64
		timeline int32
		started  int64
	)
	dest := append([]any{&pt.InRecovery, &sysid, &timeline, &started}, extra...)
	if err := classify(s.QueryRowArgs(ctx, sql, args, dest...)); err != nil {
		return pt, 0, err
	}
	pt.Answered = true
	pt.SystemIdentifier = uint64(sysid) // pg_control_system() shows it as a signed bigint
	pt.Timeline = uint32(timeline)
	return pt, started, nil
}

// recognize tells whether the partner that started at started is this
// very server.
func (p *Prober) recognize(ctx context.Context, pt *Partner, started int64) {
	if p.selfStarted == 0 {
		// Once: this server's start, for as long as this keeper runs in it.
		_ = p.local.QueryRow(ctx, "select "+startedAt, &p.selfStarted)
	}
	pt.IsThisServer = p.selfStarted != 0 && started == p.selfStarted
}

// CheckPrimary is a standby's check: the primary answers a query and tells
// its identity; it also reads this standby's WAL receiver (even when the
// primary does not answer: that is when it matters).
func (p *Prober) CheckPrimary(ctx context.Context) (PrimaryCheck, error) {
	pc := PrimaryCheck{ReplayLagBytes: -1}
	var (
		primaryLSN int64 = -1
		syncState  string
	)
	replayed, appName := p.readWALReceiver(ctx, &pc)
	// The primary's answer decides a failover: a question lost on the way
	// is asked again over a second connection (hedged).
	type answer struct {
		pt        Partner
		started   int64
		lsn       int64
		syncState string
	}
	a, second, err := hedged(ctx, p.partner, p.hedge, func(ctx context.Context, s *pgsession.Session) (answer, error) {
		a := answer{lsn: -1}
		var err error
		a.pt, a.started, err = askPartner(ctx, s, primaryFacts, []any{appName}, &a.lsn, &a.syncState)
		return a, err
	})
	if second {
		// The second session answered: it becomes the first, and the
		// first (cancelled, hence closed) becomes the spare.
		p.partner, p.hedge = p.hedge, p.partner
		pc.HedgeAnswered = true
	}
	pc.Partner, primaryLSN, syncState = a.pt, a.lsn, a.syncState
	if err == nil {
		p.recognize(ctx, &pc.Partner, a.started)
		pc.SyncState = syncState
		if primaryLSN >= 0 && replayed >= 0 {
			pc.ReplayLagBytes = max(primaryLSN-replayed, 0)
		}
		return pc, nil
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		// The check may have run into its deadline: what the WAL receiver
		// said at its start is that much older now, and a promotion is
		// decided on this check's end.  Read it again, under a deadline of
		// its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rereadTimeout)
		p.readWALReceiver(rctx, &pc)
		cancel()
	}
	return pc, err
}

// classify wraps the errors of a server that answered in AnsweredError,
// except those saying it is going away: shutting down, crashing, or not
// yet accepting connections (SQLSTATE class 57P).  The connection gate of
// a partner whose writes are closed (pending or fenced) answers 57P03 too,
// but its server runs: that is an answer (IsGateRefusal).
func classify(err error) error {
	code := pgsession.SQLState(err)
	if err == nil || code == "" || (strings.HasPrefix(code, "57P") && !IsGateRefusal(err)) {
		return err
	}
	return &AnsweredError{Err: err}
}

// IsGateRefusal tells whether err is the refusal of a pg_keeper_go
// connection gate: the server runs, its keeper has closed writes there,
// and this session's role is not a superuser.
func IsGateRefusal(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57P03" && strings.HasPrefix(pgErr.Message, "pg_keeper_go: this node")
}

// CheckStandby is a primary's check: it reads this node's walsenders and
// synchronous setting, writes the WAL heartbeat its standby's keeper
// watches, then asks the standby for a lease of length lease, for this
// node's cluster and timeline (armed: the keeper has recorded that a
// standby that can grant follows this primary).  A standby that answers
// but does not stream fails the check: synchronous commits would wait for
// it.  The returned facts are valid even when the error is not nil, if the
// local query succeeded.
func (p *Prober) CheckStandby(ctx context.Context, lease time.Duration, armed bool) (StandbyCheck, error) {
	var sc StandbyCheck
	var (
		canHeartbeat bool
		sysid        int64
		timeline     int32
	)
	err := p.local.QueryRow(ctx,
		`select (select count(*) from pg_stat_replication where state = 'streaming')::int,
		        current_setting('synchronous_standby_names'), `+callable(heartbeatFunc)+`,
		        (select system_identifier from pg_control_system()),
		        case when pg_is_in_recovery() then 0 else `+pgsession.TimelineSQL+` end`,
		&sc.Streaming, &sc.SyncStandbyNames, &canHeartbeat, &sysid, &timeline)
	if err != nil {
		return sc, fmt.Errorf("local node: %w", err)
	}
	// A flushed WAL message without a transaction, which the standby's
	// WAL receiver sees arrive (NULL on a fenced node, which writes none).
	sc.HeartbeatErr = ErrNoHeartbeat
	if canHeartbeat {
		var lsn *string
		sc.HeartbeatErr = p.local.QueryRow(ctx, "select "+heartbeatFunc+"::text", &lsn)
		if sc.HeartbeatErr != nil {
			sc.HeartbeatErr = fmt.Errorf("local node: %w", sc.HeartbeatErr)
		}
		sc.Heartbeat = sc.HeartbeatErr == nil
	}

	// Ask for a lease when the standby can grant one.  Until it could,
	// first look whether it can now (a standby without the extension then
	// logs no ERROR); unless armed, the check that finds it asks for
	// nothing yet.
	firstFound := false
	if p.grant == "" {
		var can, can11 bool
		sc.Partner, err = p.queryPartner(ctx, partnerFacts+", "+callable(grantFunc)+", "+callable(grantFunc11), nil, &can, &can11)
		switch {
		case err != nil:
		case can:
			p.grant = grantCall
		case can11:
			p.grant = grantFunc11
		default:
			sc.GrantErr = ErrNoGrant
		}
		firstFound = !armed
	}
	switch {
	case p.grant == "" || firstFound || err != nil:
	case p.grant == grantCall:
		sc.Partner, err = p.queryPartner(ctx, partnerFacts+", "+grantCall, []any{lease.Milliseconds(), sysid, timeline}, &sc.Granted)
	default:
		// The grant of extension 1.1; switch once the extension is updated.
		var updated bool
		sc.Partner, err = p.queryPartner(ctx, partnerFacts+", "+grantFunc11+", "+callable(grantFunc), nil, &sc.Granted, &updated)
		if err == nil && updated {
			p.grant = grantCall
		}
	}
	switch pgsession.SQLState(err) {
	case "42883", "42501", "3F000":
		// Dropped since, or no longer allowed: look again next time.
		p.grant, sc.GrantErr = "", ErrNoGrant
		sc.Partner, err = p.queryPartner(ctx, partnerFacts, nil)
	}
	sc.CanGrant = p.grant != "" && err == nil
	var answered *AnsweredError
	if err != nil && !errors.As(err, &answered) {
		return sc, err
	}
	// Even a standby that answers with an error must stream: synchronous
	// commits wait for the walsender, not for the answer.
	if sc.Streaming == 0 {
		if answered != nil {
			return sc, fmt.Errorf("no walsender streams to the standby, which answered: %w", answered.Err)
		}
		return sc, errors.New("no walsender streams to the standby")
	}
	return sc, err
}

// Close closes both sessions.
func (p *Prober) Close() { pgsession.CloseAll(p.partner, p.hedge, p.local) }
