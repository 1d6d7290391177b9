package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// switchoverCLI runs pg_keeper_go with args and returns the exit code and
// its combined output.
func switchoverCLI(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	require.NoError(t, err, string(out))
	return 0, string(out)
}

// ackWriter inserts a new id into writes on both nodes every 10 ms and
// remembers which node acknowledged which id, and when.
type ackWriter struct {
	next   atomic.Int64
	mu     sync.Mutex
	acks   map[string][]ack
	cancel context.CancelFunc
	done   sync.WaitGroup
}

type ack struct {
	id int64
	at time.Time
}

func startAckWriter(nodes ...*pgtest.Node) *ackWriter {
	ctx, cancel := context.WithCancel(context.Background())
	w := &ackWriter{acks: map[string][]ack{}, cancel: cancel}
	for _, n := range nodes {
		w.done.Add(1)
		go func() {
			defer w.done.Done()
			for ctx.Err() == nil {
				id := w.next.Add(1)
				qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				_, err := n.TryQueryString(qctx, "postgres", "insert into writes values ($1, $2) returning 1", id, n.Name)
				qcancel()
				if err == nil {
					w.mu.Lock()
					w.acks[n.Name] = append(w.acks[n.Name], ack{id, time.Now()})
					w.mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond): // the writer's pace
				}
			}
		}()
	}
	return w
}

func (w *ackWriter) stop() map[string][]ack {
	w.cancel()
	w.done.Wait()
	return w.acks
}

// TestSwitchoverUnderLoadLosesNothingAndTheOldPrimaryFollows switches a
// pair over while a writer writes to both nodes: every acknowledged write
// is on the new primary, no two nodes took writes at once, the old
// primary streams from the new one, and the switchover goes back the
// other way too.
func TestSwitchoverUnderLoadLosesNothingAndTheOldPrimaryFollows(t *testing.T) {
	p := startPair(t, nil)
	bin := pgtest.BuildCLI(t)
	p.primary.Exec(t, "postgres", "create table writes (id bigint primary key, node text)")
	nodes := []string{"--node", p.primary.ConnString("postgres"), "--node", p.standby.ConnString("postgres")}

	code, out := switchoverCLI(t, bin, append([]string{"switchover", "--dry-run"}, nodes...)...)
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "switchover: dry run: 3. on "+cliNodeName(p.primary)+": pg_keeper_demote()")
	assert.Contains(t, out, "switchover: dry run: "+cliNodeName(p.standby)+" would become the primary; nothing changed")

	for i, pair := range [][2]*pgtest.Node{{p.primary, p.standby}, {p.standby, p.primary}} {
		from, to := pair[0], pair[1]
		w := startAckWriter(from, to)
		pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.acks[from.Name]) >= 10, "the writer has not written yet"
		})
		code, out := switchoverCLI(t, bin, append([]string{"switchover"}, nodes...)...)
		require.Equal(t, 0, code, out)
		t.Logf("switchover %d:\n%s", i+1, out)
		assert.Contains(t, out, fmt.Sprintf("is the primary on timeline %d,", i+2))
		refused := regexp.MustCompile(`writes were refused for (\S+)`).FindStringSubmatch(out)
		require.Len(t, refused, 2, out)
		pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(w.acks[to.Name]) >= 10, "the new primary has taken no writes yet"
		})
		acks := w.stop()

		// No overlap: the old primary's last acknowledgement came before
		// the new primary's first.
		firstNew, lastOld := acks[to.Name][0].at, acks[from.Name][len(acks[from.Name])-1].at
		for _, a := range acks[to.Name] {
			if a.at.Before(firstNew) {
				firstNew = a.at
			}
		}
		assert.True(t, lastOld.Before(firstNew), "the old primary acknowledged a write at %s, after the new one's first at %s", lastOld, firstNew)
		// Nothing lost: every acknowledged id is on the new primary.
		var ids []string
		for _, as := range acks {
			for _, a := range as {
				ids = append(ids, fmt.Sprint(a.id))
			}
		}
		missing := to.QueryString(t, "postgres", fmt.Sprintf(
			"select count(*) from unnest(array[%s]::bigint[]) a(id) where not exists (select from writes w where w.id = a.id)", strings.Join(ids, ",")))
		assert.Equal(t, "0", missing, "acknowledged writes missing on the new primary")
		t.Logf("switchover %d: %d writes acknowledged by %s, %d by %s, none lost; writes refused for %s (measured by the command)",
			i+1, len(acks[from.Name]), from.Name, len(acks[to.Name]), to.Name, refused[1])

		p.waitState(t, to, "primary", "connected", 20*time.Second)
		p.waitState(t, from, "standby", "connected", 20*time.Second)
		row := to.QueryString(t, "pg_state", "select reason from failover_log order by unixtime desc limit 1")
		assert.Contains(t, row, "switchover: the operator moved the primary here")
		assert.Contains(t, to.Log(), "pg_keeper_go: switchover: promotion requested")
		assert.Contains(t, from.Log(), "pg_keeper_go: switchover: this node restarts as a standby")
	}
}

// TestSwitchoverRefusesBeforeChangingAnything checks the preconditions:
// a paused node, a standby too far behind, a primary that cannot restart
// in place, a node given twice; after each refusal the primary still
// takes writes.
func TestSwitchoverRefusesBeforeChangingAnything(t *testing.T) {
	p := startPair(t, nil)
	bin := pgtest.BuildCLI(t)
	nodes := []string{"--node", p.primary.ConnString("postgres"), "--node", p.standby.ConnString("postgres")}
	refused := func(why string, extra ...string) {
		t.Helper()
		code, out := switchoverCLI(t, bin, append(append([]string{"switchover"}, nodes...), extra...)...)
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, why)
		assert.Contains(t, out, "Nothing changed.")
		waitWritable(t, p.primary, time.Now(), 5*time.Second)
		inRecovery, err := p.standby.IsInRecovery(t.Context())
		require.NoError(t, err)
		assert.True(t, inRecovery)
	}

	p.standby.Exec(t, "postgres", "select pg_keeper_pause()")
	refused("refused: " + cliNodeName(p.standby) + " is paused")
	p.standby.Exec(t, "postgres", "select pg_keeper_resume()")

	p.standby.Exec(t, "postgres", "select pg_wal_replay_pause()")
	p.primary.Exec(t, "postgres", "create table filler as select generate_series(1, 10000) id")
	refused("more than --max-lag (100)", "--max-lag", "100")
	p.standby.Exec(t, "postgres", "select pg_wal_replay_resume()")

	saved := p.standby.QueryString(t, "postgres", "show primary_conninfo")
	p.standby.AlterSystem(t, "primary_conninfo", "''")
	p.standby.Reload(t)
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		n, err := p.standby.TryQueryString(t.Context(), "postgres", "select count(*) from pg_stat_wal_receiver")
		return err == nil && n == "0", "the WAL receiver still runs"
	})
	refused("refused: " + cliNodeName(p.standby) + " is not streaming from " + cliNodeName(p.primary))
	p.standby.AlterSystem(t, "primary_conninfo", pgtest.Quote(saved))
	p.standby.Reload(t)
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		st, err := p.standby.TryQueryString(t.Context(), "postgres", "select coalesce((select status from pg_stat_wal_receiver), '')")
		return err == nil && st == "streaming", "the WAL receiver does not stream again: " + st
	})

	p.primary.AlterSystem(t, "pg_keeper.witness_conninfo", pgtest.Quote(fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres connect_timeout=1", closedLocalPort(t))))
	p.primary.Reload(t)
	refused("refused: the witness does not answer")
	p.primary.Exec(t, "postgres", "alter system reset pg_keeper.witness_conninfo")
	p.primary.Reload(t)

	p.primary.AlterSystem(t, "restart_after_crash", "off")
	p.primary.Reload(t)
	refused("refused: restart_after_crash is off on " + cliNodeName(p.primary))

	code, out := switchoverCLI(t, bin, "switchover", "--node", p.primary.ConnString("postgres"))
	assert.Equal(t, 2, code, out)
	assert.Contains(t, out, "give both nodes of the pair with --node")
}

// closedLocalPort is a loopback port nothing listens on.
func closedLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// TestSwitchoverWithAWitness switches a pair with a witness over: the old
// primary's lease there is ended once it answers from recovery, the new
// primary claims the role and writes under the witness's lease.
func TestSwitchoverWithAWitness(t *testing.T) {
	p, witness := startPairWithWitness(t)
	bin := pgtest.BuildCLI(t)
	code, out := switchoverCLI(t, bin, "switchover", "--node", p.primary.ConnString("postgres"), "--node", p.standby.ConnString("postgres"))
	require.Equal(t, 0, code, out)
	t.Logf("switchover with a witness:\n%s", out)
	assert.Contains(t, out, "switchover: "+cliNodeName(p.primary)+"'s lease at the witness ended: it is a standby")
	row := witness.QueryString(t, "postgres", fmt.Sprintf(
		"select role || '/' || timeline from pg_keeper_witness where node like '%%:%d#%%' order by updated_at desc limit 1", p.standby.Port))
	assert.Equal(t, "primary/2", row, "the new primary's row at the witness")
	_, err := tryWrite(p.standby, "postgres")
	assert.NoError(t, err)
	p.waitState(t, p.primary, "standby", "connected", 20*time.Second)
}

// TestADemotedPrimaryTakesBackWhenTheSwitchoverStops demotes the primary
// as the command would and stops there (the command died): the pair must
// not stay without a primary.  Once no request can promote the standby any
// more, the demoted node promotes itself again, and the standby follows.
func TestADemotedPrimaryTakesBackWhenTheSwitchoverStops(t *testing.T) {
	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "create table writes (id bigint primary key, node text)")
	p.primary.Exec(t, "postgres", "insert into writes values (1, 'before')")
	p.primary.AlterSystem(t, "primary_conninfo", pgtest.Quote(p.standby.ConnString("postgres")))
	p.primary.Reload(t)
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		v, err := p.primary.TryQueryString(t.Context(), "postgres", "show primary_conninfo")
		return err == nil && v != "", "primary_conninfo not reloaded"
	})
	demoted := time.Now()
	_, err := p.primary.TryQueryString(t.Context(), "postgres", "select pg_keeper_demote(10000)::text")
	require.Error(t, err, "the demotion ends the connection")
	pgtest.Eventually(t, 20*time.Second, poll, func() (bool, string) {
		in, err := p.primary.IsInRecovery(t.Context())
		return err == nil && in, fmt.Sprintf("the old primary is not in recovery yet: %v", err)
	})
	took := waitWritable(t, p.primary, demoted, 30*time.Second+failoverBound+10*time.Second)
	t.Logf("the demoted node took the primary role back %s after the demotion", took)
	assert.GreaterOrEqual(t, took, 30*time.Second, "not before a request to the standby has run out")
	assert.Contains(t, p.primary.Log(), "switchover not finished: this node was demoted")
	p.waitState(t, p.standby, "standby", "connected", 30*time.Second)
	inRecovery, err := p.standby.IsInRecovery(t.Context())
	require.NoError(t, err)
	assert.True(t, inRecovery, "exactly one primary")
	assert.Equal(t, "1", p.primary.QueryString(t, "postgres", "select count(*) from writes"))
}
