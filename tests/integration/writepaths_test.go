package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// waitGuard polls pg_keeper_status() on n until its guard is want.
func waitGuard(t *testing.T, n *pgtest.Node, want string) {
	t.Helper()
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), n, "guard")
		return err == nil && got == want, fmt.Sprintf("guard %q (want %q) %v", got, want, err)
	})
}

// sqlState is the SQLSTATE of err, "" when it is not a server error.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// execOver runs sql on n over a new connection with the startup
// parameters params (replication=database, application_name...).
func execOver(n *pgtest.Node, params map[string]string, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := pgconn.ParseConfig(n.ConnString("postgres"))
	if err != nil {
		return err
	}
	for k, v := range params {
		if k == "user" {
			cfg.User = v
			continue
		}
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql).ReadAll()
	return err
}

// TestNoWritePathAroundAClosedGuard: once the lease of a primary under the
// safety policy has expired, no path makes a write durable there: not
// COMMIT PREPARED of a transaction prepared while the lease held, not SQL
// over a walsender connected to a database, not the apply worker of a
// logical replication subscription.  With the standby back each path
// commits again, so each was a real path.
func TestNoWritePathAroundAClosedGuard(t *testing.T) {
	in := pgtest.Require(t, true)
	publisher := in.NewPrimary(t, "publisher", map[string]string{"wal_level": "logical"})
	publisher.Exec(t, "postgres", "create table items (id int primary key)")
	publisher.Exec(t, "postgres", "create publication items_pub for table items")

	p := startPair(t, map[string]string{
		"pg_keeper.split_brain_policy": "safety",
		"max_prepared_transactions":    "4",
	})
	primary := p.primary
	primary.Exec(t, "postgres", "create table writes (at timestamptz default clock_timestamp())")
	primary.Exec(t, "postgres", "create table items (id int primary key)")
	primary.Exec(t, "postgres", "create subscription items_sub connection "+
		pgtest.Quote(publisher.ConnString("postgres"))+" publication items_pub")
	waitGuard(t, primary, "leased")
	publisher.Exec(t, "postgres", "insert into items values (1)")
	itemCount := func() string { return primary.QueryString(t, "postgres", "select count(*) from items") }
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		n := itemCount()
		return n == "1", "items applied by the subscription: " + n
	})
	require.NoError(t, execOver(primary, nil, "begin; insert into writes default values; prepare transaction 'before'"))

	p.standby.StopOrFail(t, "immediate")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		code, err := tryWrite(primary, "postgres")
		return code == "25006", fmt.Sprintf("an ordinary write: %v", err)
	})

	err := execOver(primary, nil, "commit prepared 'before'")
	assert.Equal(t, "25006", sqlState(err), "COMMIT PREPARED: %v", err)
	assert.Equal(t, "1", primary.QueryString(t, "postgres", "select count(*) from pg_prepared_xacts where gid = 'before'"),
		"the prepared transaction is still prepared")

	err = execOver(primary, map[string]string{"replication": "database"}, "insert into writes default values")
	assert.Equal(t, "25006", sqlState(err), "an INSERT over a walsender connected to a database: %v", err)

	publisher.Exec(t, "postgres", "insert into items values (2)")
	primary.WaitLog(t, "processing remote data for replication origin", 15*time.Second)
	assert.Equal(t, "1", itemCount(), "the row the apply worker could not commit")
	assert.Contains(t, linesBefore(primary.Log(), "processing remote data for replication origin", 3),
		"cannot commit a write transaction: this node does not hold the primary lease", "the apply worker's error")

	p.standby.Start(t)
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		_, err := tryWrite(primary, "postgres")
		return err == nil, fmt.Sprintf("an ordinary write once the standby is back: %v", err)
	})
	require.NoError(t, execOver(primary, nil, "commit prepared 'before'"))
	require.NoError(t, execOver(primary, map[string]string{"replication": "database"}, "insert into writes default values"))
	pgtest.Eventually(t, 20*time.Second, poll, func() (bool, string) {
		n := itemCount()
		return n == "2", "items applied by the subscription once the lease is back: " + n
	})
}

// linesBefore returns the n lines of log before the first line holding
// substr, and that line.
func linesBefore(log, substr string, n int) string {
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		if strings.Contains(l, substr) {
			return strings.Join(lines[max(0, i-n):i+1], "\n")
		}
	}
	return ""
}

// TestFencingEndsEverySessionThatCouldWrite: the fence ends client
// sessions whatever application_name they chose (pg_keeper_go included)
// and the apply worker of a subscription; a client that names itself
// pg_keeper_go, or makes up a session token, does not get back in.
func TestFencingEndsEverySessionThatCouldWrite(t *testing.T) {
	in := pgtest.Require(t, true)
	publisher := in.NewPrimary(t, "publisher", map[string]string{"wal_level": "logical"})
	publisher.Exec(t, "postgres", "create table items (id int primary key)")
	publisher.Exec(t, "postgres", "create publication items_pub for table items")

	p := startPair(t, nil)
	primary := p.primary
	primary.Exec(t, "postgres", "create table items (id int primary key)")
	primary.Exec(t, "postgres", "create role regress_app login")
	primary.Exec(t, "postgres", "create subscription items_sub connection "+
		pgtest.Quote(publisher.ConnString("postgres"))+" publication items_pub")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		n := primary.QueryString(t, "postgres", "select count(*) from pg_stat_subscription where pid is not null")
		return n == "1", "apply workers: " + n
	})
	apply := primary.QueryString(t, "postgres", "select pid from pg_stat_subscription where pid is not null")
	impostor := primary.MustConnect(t, "postgres")
	_, err := impostor.Exec(t.Context(), "set application_name = 'pg_keeper_go'")
	require.NoError(t, err)

	primary.Pause(t)
	promotedAt(t, p.standby, failoverBound+2*time.Second)
	primary.Resume(t)
	p.waitState(t, primary, "primary", "fenced", 15*time.Second)

	_, err = impostor.Exec(t.Context(), "select 1")
	assert.Error(t, err, "the session named pg_keeper_go outlived the fence")
	// The apply worker is ended by the fence, unless it died first: once
	// resumed it may find its slot taken by the new primary's apply worker
	// (the subscription was replicated) and exit by itself.
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		log := primary.Log()
		return strings.Contains(log, "terminating logical replication worker due to administrator command") ||
			strings.Contains(log, `"logical replication worker" (PID `+apply+`) exited`), "the apply worker " + apply + " still runs"
	})
	err = execOver(primary, map[string]string{"user": "regress_app", "application_name": "pg_keeper_go"}, "select 1")
	assert.Equal(t, "57P03", sqlState(err), "a client named pg_keeper_go: %v", err)
	err = execOver(primary, map[string]string{"user": "regress_app", "pg_keeper.session_token": strings.Repeat("0", 32)}, "select 1")
	assert.Equal(t, "57P03", sqlState(err), "a client with a made-up session token: %v", err)
}

// TestACommitThatOutlivesItsLeaseIsNotAcknowledged: a write that passed the
// commit check under the lease and then stalled before its commit record
// (pg_keeper.test_commit_delay, as a machine frozen inside a commit) while
// the lease ended is never acknowledged to its client: the connection is
// cut at the commit instead.
func TestACommitThatOutlivesItsLeaseIsNotAcknowledged(t *testing.T) {
	for _, c := range []struct{ name, prepare, commit string }{
		{"insert", "", "insert into writes default values"},
		{"commit prepared", "begin; insert into writes default values; prepare transaction 'stalled'", "commit prepared 'stalled'"},
	} {
		t.Run(c.name, func(t *testing.T) { commitOutlivesItsLease(t, c.prepare, c.commit) })
	}
}

func commitOutlivesItsLease(t *testing.T, prepare, commit string) {
	p := startPair(t, map[string]string{"pg_keeper.split_brain_policy": "safety", "max_prepared_transactions": "5"})
	primary := p.primary
	primary.Exec(t, "postgres", "create table writes (at timestamptz default clock_timestamp())")
	waitGuard(t, primary, "leased")

	conn := primary.MustConnect(t, "postgres")
	if prepare != "" {
		_, err := conn.Exec(t.Context(), prepare)
		require.NoError(t, err)
	}
	_, err := conn.Exec(t.Context(), "set pg_keeper.test_commit_delay = '4s'")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := conn.Exec(ctx, commit)
		done <- err
	}()
	// The commit has passed the check and waits before its commit record:
	// the standby goes, and with it the renewals of the lease (2 s).
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		n := primary.QueryString(t, "postgres", "select count(*) from pg_stat_activity where state = 'active' and query = $1", commit)
		return n == "1", "the commit is not running"
	})
	p.standby.StopOrFail(t, "immediate")
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the commit never returned")
	}
	require.Error(t, err, "the commit was acknowledged after its lease had ended")
	assert.Empty(t, sqlState(err), "a server error instead of a lost connection: %v", err)
	primary.WaitLog(t, "the primary lease ended while a transaction committed", 5*time.Second)
}

// TestATwoPhaseSubscriptionIsReportedOnce: the one write path PostgreSQL
// gives the guard no hook on, the apply worker of a subscription created
// with two_phase committing a prepared transaction, is named in the log
// once, with what to do.
func TestATwoPhaseSubscriptionIsReportedOnce(t *testing.T) {
	in := pgtest.Require(t, true)
	publisher := in.NewPrimary(t, "publisher", map[string]string{"wal_level": "logical"})
	publisher.Exec(t, "postgres", "create table items (id int primary key)")
	publisher.Exec(t, "postgres", "create publication items_pub for table items")

	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "create table items (id int primary key)")
	p.primary.Exec(t, "postgres", "create subscription items_2pc connection "+
		pgtest.Quote(publisher.ConnString("postgres"))+" publication items_pub with (two_phase = true)")
	const warning = "subscription created with two_phase commits: items_2pc"
	p.primary.WaitLog(t, warning, 25*time.Second)
	waitGoodChecks(t, p.primary, 3)
	assert.Equal(t, 1, strings.Count(p.primary.Log(), warning))
}
