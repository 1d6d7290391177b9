package keeper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

var errRefused = errors.New("dial tcp 127.0.0.2:5432: connect: connection refused")

func TestStandbyPromotesAfterKeepaliveCountFailedChecks(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "after")
	r := startKeeper(t, true, map[string]string{
		"pg_keeper.after_command": `echo "$PG_KEEPER_ROLE $PG_KEEPER_TIMELINE" > ` + marker + `; echo said-something`,
	})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))

	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	st := r.waitStatus(t, "the promotion", stateIs("primary", "alone"))
	assert.False(t, st.PromotedAt.IsZero())

	var out []byte
	require.Eventually(t, func() bool { out, _ = os.ReadFile(marker); return len(out) > 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "primary 2\n", string(out), "after_command gets the new role and timeline")

	_, _, promotes := r.host.snapshot()
	assert.Equal(t, 1, promotes)
	assert.Equal(t, []string{"writable", "record"}, r.node.history()[:2], "writes are confirmed before the record")
	rec := r.node.records[0]
	assert.Equal(t, uint32(2), rec.NewTimeline)
	assert.Equal(t, uint64(0x3000060), rec.PromoteLSN)
	assert.Contains(t, rec.Reason, "3 of 3 checks of the primary failed")
	assert.Contains(t, rec.OldPrimary, "host=127.0.0.2")
	assert.NotContains(t, rec.OldPrimary, "Pw123456")

	require.Eventually(t, func() bool { return strings.Contains(r.host.logText(), "after_command finished") }, 5*time.Second, 5*time.Millisecond)
	logs := r.host.logText()
	assert.Contains(t, logs, `transition from "standby:failing" to "standby:promoting": the primary is lost: keepalive_count checks failed in a row, or no answer for keepalive_time x keepalive_count (3 of 3 checks failed`)
	assert.Contains(t, logs, "said-something", "after_command's output reaches the log")
	assert.NotContains(t, logs, "Pw123456")
	assert.Contains(t, r.host.titles, "(standby:promoting)")
}

func TestPromotedNodeThatInheritedSyncReplicationSwitchesToAsyncAtOnce(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{SyncStandbyNames: "*"}, errRefused
	})
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.waitStatus(t, "the switch to async", stateIs("primary", "async"))
	require.Eventually(t, func() bool { return len(r.node.history()) == 3 }, 5*time.Second, 5*time.Millisecond)
	assert.ElementsMatch(t, []string{"writable", "record", "disable-sync"}, r.node.history())
	assert.NotContains(t, r.host.logText(), `to "primary:connected"`, "the dead old primary is never taken for a healthy standby")
}

// TestChecksGoOnWhileTheFailoverIsRecorded: the failover record and
// after_command run off the main loop, which keeps checking and
// publishing while the record hangs; after_command starts after it.
func TestChecksGoOnWhileTheFailoverIsRecorded(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.after_command": "true"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	gate := make(chan struct{})
	r.node.recordGate.Store(&gate)
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	require.Eventually(t, func() bool { return strings.Contains(strings.Join(r.node.history(), ","), "record") }, 5*time.Second, 5*time.Millisecond)

	checks := r.prober.checks.Load()
	st := r.waitStatus(t, "the checks of the new primary", stateIs("primary", "alone"))
	updated := st.UpdatedAt
	require.Eventually(t, func() bool { return r.prober.checks.Load() >= checks+3 }, 5*time.Second, 5*time.Millisecond,
		"checks while the record hangs")
	r.waitStatus(t, "a newer status", func(s status.Snapshot) bool { return s.UpdatedAt.After(updated) })
	assert.NotContains(t, r.host.logText(), "after_command started", "after_command waits for the record")

	close(gate)
	require.Eventually(t, func() bool { return strings.Contains(r.host.logText(), "after_command finished") }, 5*time.Second, 5*time.Millisecond)
	logs := r.host.logText()
	assert.Less(t, strings.Index(logs, "failover recorded in"), strings.Index(logs, "after_command started"))
}

func TestStandbyThatNeverReachedItsPrimaryDoesNotPromote(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	st := r.waitStatus(t, "many failed checks", func(s status.Snapshot) bool { return s.ConsecutiveFailures >= 10 })
	assert.Equal(t, "connecting", st.State)
	_, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes)
}

func TestOneGoodCheckResetsTheCount(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	base := r.prober.checks.Load()
	// Two failures, one success, forever: never keepalive_count in a row.
	r.prober.primary.Store(func(context.Context) error {
		if (r.prober.checks.Load()-base)%3 == 0 {
			return nil
		}
		return errRefused
	})
	require.Eventually(t, func() bool { return r.prober.checks.Load()-base > 15 }, 5*time.Second, 5*time.Millisecond)
	_, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes)
	assert.Contains(t, r.host.logText(), `transition from "standby:failing" to "standby:connected": the primary answered again`)
}

func TestAPartnerThatAnswersWithAnErrorIsAlive(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	authErr := &probe.AnsweredError{Err: &pgconn.PgError{Code: "28P01", Message: "password authentication failed"}}
	base := r.prober.checks.Load()
	r.prober.primary.Store(func(context.Context) error { return authErr })
	require.Eventually(t, func() bool { return r.prober.checks.Load()-base > 6 }, 5*time.Second, 5*time.Millisecond)
	st, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes)
	assert.Equal(t, "connected", st.State)
	assert.Equal(t, 1, strings.Count(r.host.logText(), "the partner answers with an error"), "logged once")
}

func TestASilentPrimaryIsLostKeepaliveTimeTimesCountAfterItsLastGoodCheck(t *testing.T) {
	const keepalive = 200 * time.Millisecond
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "200ms"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	// The primary answers at once, then hangs: every check after the
	// switch runs into its deadline.  Record when the last good check
	// started and the deadline of every hung one.
	var (
		mu        sync.Mutex
		lastGood  time.Time
		deadlines []time.Time
		hung      atomic.Bool
	)
	r.prober.primary.Store(func(ctx context.Context) error {
		mu.Lock()
		if !hung.Load() {
			lastGood = time.Now()
			mu.Unlock()
			return nil
		}
		d, _ := ctx.Deadline()
		deadlines = append(deadlines, d)
		mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	})
	r.waitChecks(t, 2)
	hung.Store(true)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	r.waitStatus(t, "the promotion", stateIs("primary", "alone"))

	mu.Lock()
	defer mu.Unlock()
	// keepalive_count 3: the checks one and two keepalive_times after the
	// last good one; the second ends three keepalive_times after it, where
	// a crashed primary's third refused check would be.  (The keeper used
	// to run a third check with a deadline of its own, check_timeout
	// later.)
	require.Len(t, deadlines, 2, "the hung checks before the promotion")
	assert.WithinDuration(t, lastGood.Add(3*keepalive), deadlines[1], 10*time.Millisecond,
		"the last hung check ends keepalive_time x keepalive_count after the last good one started")
	assert.Contains(t, r.host.logText(), "2 of 3 checks failed in a row")
}

func TestASlowPartnerThatAnswersWithinKeepaliveTimeIsNotLost(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "200ms"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	base := r.prober.checks.Load()
	// Every check answers after 150 ms: sooner than keepalive_time, like a
	// network that retransmits.
	slow := func(ctx context.Context) error {
		select {
		case <-time.After(150 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.prober.primary.Store(slow)
	require.Eventually(t, func() bool { return r.prober.checks.Load()-base >= 8 }, 5*time.Second, 5*time.Millisecond)
	st, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes)
	assert.Equal(t, 0, st.ConsecutiveFailures)

	// After keepalive_count-1 outright failures the third check starts
	// when the silence has reached keepalive_time x keepalive_count: it
	// still gets time to answer slowly, and its answer counts.
	n := r.prober.checks.Load()
	r.prober.primary.Store(func(ctx context.Context) error {
		if r.prober.checks.Load()-n <= 2 {
			return errRefused
		}
		return slow(ctx)
	})
	r.waitChecks(t, 6)
	st, _, promotes = r.host.snapshot()
	assert.Zero(t, promotes)
	assert.Equal(t, 0, st.ConsecutiveFailures)
}

func TestAPausedStandbyDoesNotPromoteUntilResumed(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.host.setPaused(true)
	r.waitStatus(t, "the pause", func(s status.Snapshot) bool { return s.Paused })

	r.prober.primary.Store(func(context.Context) error { return errRefused })
	st := r.waitStatus(t, "the hold", stateIs("standby", "held"))
	assert.Equal(t, fsm.PausedHold, st.PromotionHeld)
	assert.Equal(t, time.UnixMicro(1796264400000000), st.PausedSince)
	require.Eventually(t, func() bool { return r.status().ConsecutiveFailures >= 6 }, 5*time.Second, 5*time.Millisecond)
	_, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes, "paused: no promotion however many checks fail")
	r.host.mu.Lock()
	assert.Contains(t, r.host.titles, "(standby:held) paused")
	r.host.mu.Unlock()
	r.host.setPaused(false)

	r.waitStatus(t, "the promotion after resume", func(s status.Snapshot) bool { return s.Role == "primary" && s.Failovers == 1 })
	assert.Contains(t, r.host.logText(), "promotion held: "+fsm.PausedHold)
}

func TestAPausedPrimaryNeitherSwitchesToAsyncNorBack(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, SyncStandbyNames: "*"}, nil
	})
	r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))
	r.host.setPaused(true)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{SyncStandbyNames: "*"}, errRefused
	})
	st := r.waitStatus(t, "the hold", func(s status.Snapshot) bool { return s.PromotionHeld != "" })
	assert.Equal(t, fsm.PausedHold, st.PromotionHeld)
	require.Eventually(t, func() bool { return r.status().ConsecutiveFailures >= 6 }, 5*time.Second, 5*time.Millisecond)
	assert.NotContains(t, r.node.history(), "disable-sync", "paused: commits keep waiting for the synchronous standby")

	r.host.setPaused(false)
	r.waitStatus(t, "the switch after resume", stateIs("primary", "async"))
	r.host.setPaused(true)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, SyncStandbyNames: ""}, nil
	})
	r.waitStatus(t, "the standby back, paused", func(s status.Snapshot) bool {
		return s.ConsecutiveFailures == 0 && s.State == "async" && s.PromotionHeld == fsm.PausedHold
	})
	assert.NotContains(t, r.node.history(), "restore-sync")
	assert.Contains(t, r.host.logText(), "return to synchronous replication held: "+fsm.PausedHold)
	r.host.setPaused(false)
	r.waitStatus(t, "the restore after resume", stateIs("primary", "connected"))
}

func TestPrimarySwitchesToAsyncAndRestoresSync(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, SyncStandbyNames: "*"}, nil
	})
	r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))

	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{SyncStandbyNames: "*"}, errRefused
	})
	r.waitStatus(t, "the switch to async", stateIs("primary", "async"))
	state, err := os.ReadFile(filepath.Join(r.host.dataDir, stateFileName))
	require.NoError(t, err)
	assert.Contains(t, string(state), `"synchronous_standby_names": "*"`, "the saved setting survives a restart")

	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, SyncStandbyNames: ""}, nil
	})
	r.waitStatus(t, "the restore", stateIs("primary", "connected"))
	assert.Equal(t, []string{"record initial", "disable-sync", "restore-sync"}, r.node.history(),
		"the first primary is recorded once, when its standby first streams")
	assert.Equal(t, []node.SyncSetting{{Value: "*"}}, r.node.restored)
	state, err = os.ReadFile(filepath.Join(r.host.dataDir, stateFileName))
	require.NoError(t, err)
	assert.NotContains(t, string(state), "switched_async")
}

func TestRestartedKeeperRestoresSyncItHadSwitchedOff(t *testing.T) {
	h := newFakeHost(t, false, nil)
	require.NoError(t, writeFileAtomic(filepath.Join(h.dataDir, stateFileName),
		persisted{SwitchedAsync: &node.SyncSetting{Value: "node2", FromAutoConf: true}}))
	local := &fakeNode{}
	prober := &fakeProber{}
	prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{Streaming: 1}, nil })
	k, err := New(h, Deps{
		NewProber: func(Settings) (Prober, error) { return prober, nil },
		NewNode:   func(Settings) (Node, error) { return local, nil },
	})
	require.NoError(t, err)
	done := make(chan int, 1)
	go func() { done <- k.Run() }()
	require.Eventually(t, func() bool { return len(local.history()) > 0 }, 5*time.Second, 5*time.Millisecond)
	h.signal(host.EventShutdown)
	<-done
	assert.Equal(t, []string{"restore-sync"}, local.history())
	assert.Equal(t, []node.SyncSetting{{Value: "node2", FromAutoConf: true}}, local.restored)
}

func TestMisconfiguredKeeperWaitsForAReload(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.partner_conninfo": "host=x port=notaport password=Pw123456"})
	st := r.waitStatus(t, "misconfigured", stateIs("standby", "misconfigured"))
	assert.Contains(t, st.ConfigError, "pg_keeper.partner_conninfo")
	assert.NotContains(t, st.ConfigError, "Pw123456")
	assert.Contains(t, r.host.logText(), "Use a libpq connection string")
	assert.Zero(t, r.prober.checks.Load(), "no checks while misconfigured")

	r.host.set("pg_keeper.partner_conninfo", "host=127.0.0.2 port=5432")
	r.host.signal(host.EventReload)
	r.waitStatus(t, "the keeper to recover", stateIs("standby", "connected"))
}

func TestReloadAppliesANewKeepaliveTimeAtOnce(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "30s"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.host.set("pg_keeper.keepalive_time", "20ms")
	r.host.signal(host.EventReload)
	st := r.waitStatus(t, "the new keepalive_time", func(s status.Snapshot) bool { return s.KeepaliveTime == 20*time.Millisecond })
	assert.Equal(t, 3, st.KeepaliveCount)
	base := r.prober.checks.Load()
	require.Eventually(t, func() bool { return r.prober.checks.Load()-base >= 3 }, 2*time.Second, 5*time.Millisecond,
		"checks follow the new interval at once, not after the old 30 s")
}

func TestShutdownIsNotDelayedByAHungCheck(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "60s"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.host.set("pg_keeper.keepalive_time", "10ms")
	r.prober.primary.Store(func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	r.host.signal(host.EventReload)
	require.Eventually(t, func() bool { return r.prober.checks.Load() >= 2 }, 2*time.Second, 5*time.Millisecond)
	r.host.signal(host.EventShutdown)
	select {
	case code := <-r.done:
		assert.Equal(t, host.ExitShutdown, code)
		r.done <- code // for the cleanup
	case <-time.After(2 * time.Second):
		t.Fatal("keeper did not stop while a check hung")
	}
}

func TestPanicInAGoroutineRestartsTheWorkerInsteadOfCrashing(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.prober.primary.Store(func(context.Context) error { panic("boom") })
	r.waitRestartAfterPanic(t, "panic: boom")
}

// waitRestartAfterPanic waits until the keeper returns host.ExitRestart,
// having logged msg.
func (r *running) waitRestartAfterPanic(t *testing.T, msg string) {
	t.Helper()
	select {
	case code := <-r.done:
		assert.Equal(t, host.ExitRestart, code)
		r.done <- code
	case <-time.After(5 * time.Second):
		t.Fatal("keeper did not stop after a panic")
	}
	assert.Contains(t, r.host.logText(), msg)
}

// TestPanicAskingTheWitnessRestartsTheWorkerInsteadOfCrashing: the
// witness is asked on its own goroutine, next to the partner check; a
// panic there must not reach the runtime (exit status 2 makes the
// postmaster restart the whole instance).
func TestPanicAskingTheWitnessRestartsTheWorkerInsteadOfCrashing(t *testing.T) {
	for _, standby := range []bool{true, false} {
		r := startKeeper(t, standby, map[string]string{"pg_keeper.witness_conninfo": "host=127.0.0.9 dbname=witness"})
		r.witness.panics.Store(true)
		r.waitRestartAfterPanic(t, "panic: witness boom")
	}
}

func TestFailoverRecordCanBeTurnedOff(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.failover_log_database": ""})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	r.waitStatus(t, "the promotion", stateIs("primary", "alone"))
	assert.Equal(t, []string{"writable"}, r.node.history())
}

func TestANewPartnerIsCheckedAtOnceAfterAReload(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "60s"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	base := r.prober.checks.Load()
	r.host.set("pg_keeper.partner_conninfo", "host=127.0.0.3 port=5432")
	r.host.signal(host.EventReload)
	st := r.waitStatus(t, "a check of the new partner", func(s status.Snapshot) bool {
		return r.prober.checks.Load() > base && s.State == "connected"
	})
	assert.Contains(t, st.Partner, "host=127.0.0.3")
	assert.Contains(t, r.host.logText(), "settings reloaded")
}

func TestEveryActionOfTheStateMachineHasAFunction(t *testing.T) {
	for _, a := range append([]fsm.Action{fsm.None}, fsm.Actions...) {
		assert.NotNil(t, actions[a], "action %q", a)
	}
	assert.Len(t, actions, len(fsm.Actions)+1, "no function for an action the table does not know")
}

func TestTheFirstPrimaryIsRecordedOnceWhenItsStandbyStreams(t *testing.T) {
	r := startKeeper(t, false, nil)
	missing := error(fmt.Errorf("%w: no table \"failover_log\" in database \"pg_state\"", node.ErrNoTable))
	r.node.recordErr.Store(&missing)
	r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))
	assert.Equal(t, []string{"record initial"}, r.node.history())
	assert.Equal(t, 1, strings.Count(r.host.logText(), "could not record the initial primary"), "a missing table is a warning, once")

	// The standby is lost and back: the keeper tries again, and the log
	// (created meanwhile) gets its first row, once.
	r.node.recordErr.Store(nil)
	for range 2 {
		r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
		r.waitStatus(t, "the standby to be lost", stateIs("primary", "alone"))
		r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
			return probe.StandbyCheck{Streaming: 1, CanGrant: true, Granted: true}, nil
		})
		r.waitStatus(t, "the standby to be back", stateIs("primary", "connected"))
	}
	assert.Equal(t, []string{"record initial", "record initial"}, r.node.history(), "once recorded, the log is not read again")
	require.Len(t, r.node.records, 1)
	rec := r.node.records[0]
	assert.True(t, rec.Initial)
	assert.Contains(t, rec.Reason, "initial primary")
	assert.Equal(t, 1, strings.Count(r.host.logText(), "recorded this node as the initial primary"))
}
