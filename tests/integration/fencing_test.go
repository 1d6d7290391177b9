package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// writer inserts a row into n every 20 ms over one connection opened
// before any fault (a pooled application session) and records when each
// INSERT was acknowledged.
type writer struct {
	mu    sync.Mutex
	acked []time.Time
	errs  []string
	stop  chan struct{}
	done  chan struct{}
}

func startWriter(t *testing.T, n *pgtest.Node) *writer {
	t.Helper()
	n.Exec(t, "postgres", "create table if not exists writes (at timestamptz default clock_timestamp())")
	conn := n.MustConnect(t, "postgres")
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_, err := conn.Exec(ctx, "insert into writes default values")
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, time.Now())
			} else {
				w.errs = append(w.errs, err.Error())
			}
			w.mu.Unlock()
			if conn.IsClosed() {
				return // ended by the fence: a pool would reconnect elsewhere
			}
		}
	}()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *writer) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// ackedAfter counts the writes acknowledged after t.
func (w *writer) ackedAfter(t time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, a := range w.acked {
		if a.After(t) {
			n++
		}
	}
	return n
}

// promotedAt waits until n leaves recovery and returns when that was seen.
func promotedAt(t *testing.T, n *pgtest.Node, deadline time.Duration) time.Time {
	t.Helper()
	var at time.Time
	pgtest.Eventually(t, deadline, poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		rec, err := n.IsInRecovery(ctx)
		if err == nil && !rec {
			at = time.Now()
		}
		return err == nil && !rec, fmt.Sprintf("%s in recovery: %t, err %v", n.Name, rec, err)
	})
	return at
}

// tryWrite commits one INSERT on n over a new connection as user and
// returns the server's SQLSTATE when it fails.
func tryWrite(n *pgtest.Node, user string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", n.Port, user))
	if err == nil {
		defer conn.Close(context.Background())
		_, err = conn.Exec(ctx, "insert into writes default values")
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code, err
	}
	return "", err
}

func TestFrozenPrimaryCannotCommitAfterTheFailover(t *testing.T) {
	p := startPair(t, nil)
	w := startWriter(t, p.primary)
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		return w.ackedAfter(time.Time{}) > 5, "the writer's first writes"
	})
	p.primary.Pause(t)
	promoted := promotedAt(t, p.standby, failoverBound+2*time.Second)
	p.primary.Resume(t)

	// The resumed primary's keeper sees its partner on timeline 2 and
	// fences it; until then its expired lease refuses every commit.
	p.waitState(t, p.primary, "primary", "fenced", 15*time.Second)
	w.halt()
	assert.Zero(t, w.ackedAfter(promoted), "writes acknowledged by the old primary after the promotion")
	assert.Contains(t, p.primary.QueryString(t, "postgres", "select guard || ': ' || guard_reason from pg_keeper_status()"), "fenced: the partner")

	code, err := tryWrite(p.primary, "postgres")
	assert.Equal(t, "25006", code, "a superuser's write on the fenced node: %v", err)
	assert.Contains(t, p.primary.Log(), "this node is fenced")
}

func TestOldPrimaryRestartedAfterTheFailoverTakesNoWrites(t *testing.T) {
	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "create table writes (at timestamptz default clock_timestamp())")
	p.primary.Exec(t, "postgres", "create role regress_app login")
	p.primary.Exec(t, "postgres", "grant insert on writes to regress_app")
	// Its keeper's role is no superuser: only the session token lets its
	// sessions through the gate of the pending and then fenced node.
	p.primary.Exec(t, "postgres", "create role regress_keeper login in role pg_monitor, pg_signal_backend")
	p.primary.SetConf(t, "pg_keeper.my_conninfo", pgtest.Quote(strings.Replace(p.primary.ConnString("postgres"), "user=postgres", "user=regress_keeper", 1)))
	p.primary.StopOrFail(t, "immediate")
	promotedAt(t, p.standby, failoverBound+2*time.Second)
	p.waitState(t, p.standby, "primary", "alone", 10*time.Second)

	// Start the old primary as it was (no standby.signal): from its first
	// connection it must not take a write.
	p.primary.Start(t)
	code, err := tryWrite(p.primary, "postgres")
	require.Error(t, err, "the first write on the restarted old primary")
	assert.Equal(t, "25006", code, "%v", err)
	p.waitState(t, p.primary, "primary", "fenced", 10*time.Second)
	code, err = tryWrite(p.primary, "regress_app")
	assert.Equal(t, "57P03", code, "an application's connection to the fenced node: %v", err)
	err = execOver(p.primary, map[string]string{"user": "regress_app", "application_name": "pg_keeper_go"}, "select 1")
	assert.Equal(t, "57P03", sqlState(err), "an application named pg_keeper_go: %v", err)
	assert.NotEqual(t, "0", p.primary.QueryString(t, "postgres",
		"select count(*) from pg_stat_activity where usename = 'regress_keeper' and backend_type = 'client backend'"),
		"the keeper's sessions on its fenced node")
	code, err = tryWrite(p.primary, "postgres")
	assert.Equal(t, "25006", code, "%v", err)

	// It stays fenced across a restart, even with its partner unreachable.
	p.standby.StopOrFail(t, "fast")
	p.primary.StopOrFail(t, "fast")
	p.primary.Start(t)
	p.waitState(t, p.primary, "primary", "fenced", 10*time.Second)
	assert.Contains(t, p.primary.Log(), "this node stays fenced")
}

func TestSafetyPolicyStopsCommitsWhenTheStandbyIsLost(t *testing.T) {
	p := startPair(t, map[string]string{"pg_keeper.split_brain_policy": "safety"})
	p.primary.Exec(t, "postgres", "create table writes (at timestamptz default clock_timestamp())")
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		g := p.primary.QueryString(t, "postgres", "select guard from pg_keeper_status()")
		return g == "leased", "guard " + g
	})
	_, err := tryWrite(p.primary, "postgres")
	require.NoError(t, err)

	lost := time.Now()
	p.standby.StopOrFail(t, "immediate")
	// Lease = (3 - 1) x 1 s after the last grant: commits stop then.
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		code, err := tryWrite(p.primary, "postgres")
		return code == "25006", fmt.Sprintf("write: %v", err)
	})
	t.Logf("safety: commits refused %s after the standby was stopped", time.Since(lost).Round(time.Millisecond))

	// The standby back: the lease is renewed and writes commit again.
	p.standby.Start(t)
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		_, err := tryWrite(p.primary, "postgres")
		return err == nil, fmt.Sprintf("write: %v", err)
	})
}
