package keeper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
)

func TestStandbyDoesNotPromoteWhileWALStillArrives(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.walAge.Store(int64(10 * time.Millisecond)) // 2 x keepalive_time is 80 ms
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	st := r.waitStatus(t, "held", stateIs("standby", "held"))
	assert.Contains(t, st.PromotionHeld, "WAL receiver")
	// Hold for a while (several keepalive_count rounds): no promotion.
	r.neverPromotes(t, 300*time.Millisecond, "promoted while the WAL receiver streams")
	r.prober.walAge.Store(-1) // the stream is gone too
	r.waitStatus(t, "promoted", func(s status.Snapshot) bool { return s.Role == "primary" })
}

func TestAHeldPromotionIsRecheckedWithAShortDeadline(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.keepalive_time": "200ms"})
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	var (
		mu        sync.Mutex
		deadlines []time.Duration // of the checks made while held
	)
	r.prober.walAge.Store(int64(10 * time.Millisecond)) // streams: 2 x keepalive_time is 400 ms
	r.prober.primary.Store(func(ctx context.Context) error {
		if r.status().PromotionHeld != "" {
			d, _ := ctx.Deadline()
			mu.Lock()
			deadlines = append(deadlines, time.Until(d))
			mu.Unlock()
		}
		<-ctx.Done() // the primary hangs
		return ctx.Err()
	})
	st := r.waitStatus(t, "held", stateIs("standby", "held"))
	assert.Contains(t, st.PromotionHeld, "WAL receiver")
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(deadlines) >= 2 }, 5*time.Second, 5*time.Millisecond)
	r.prober.walAge.Store(-1) // the stream is gone too
	r.waitStatus(t, "promoted", func(s status.Snapshot) bool { return s.Role == "primary" })
	mu.Lock()
	defer mu.Unlock()
	for _, d := range deadlines {
		assert.LessOrEqual(t, d, 50*time.Millisecond, "a check while held only refreshes the hold's facts")
	}
}

func TestStandbyWaitsForTheLeaseItGrantedToExpire(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	// The primary asked for a lease of its own length just now: 400 ms,
	// five times this standby's (max(3-1, 2) x 40 ms = 80 ms).
	r.host.grant(400 * time.Millisecond)
	granted := time.Now()
	r.waitStatus(t, "promoted", func(s status.Snapshot) bool { return s.Role == "primary" })
	// the primary's lease and its margin (104 ms), not this standby's
	assert.GreaterOrEqual(t, time.Since(granted), 504*time.Millisecond)
	assert.Contains(t, r.host.logText(), "promotion held: the lease this standby granted")
}

func TestStandbyThatCannotReadItsGrantsDoesNotPromote(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.host.mu.Lock()
	r.host.grantsErr = errors.New("could not read the lease grants")
	r.host.mu.Unlock()
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	require.Eventually(t, func() bool {
		return strings.Contains(r.host.logText(), "promotion held: the lease this standby granted")
	}, 5*time.Second, 5*time.Millisecond)
	r.neverPromotes(t, time.Second, "a standby that cannot tell what it promised must not promote") // over eight failover windows of 120 ms
	r.host.mu.Lock()
	r.host.grantsErr = nil
	r.host.mu.Unlock()
	r.waitStatus(t, "promoted", func(s status.Snapshot) bool { return s.Role == "primary" })
}

func TestPrimarySupersededByItsPartnerIsFencedAndStaysFenced(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	mode, _ := r.host.guardState()
	require.Equal(t, host.GuardLeased, mode, "a standby that grants puts the primary under a lease")

	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 0, Partner: probe.Partner{Answered: true, SystemIdentifier: fakeSystemID, Timeline: 3}},
			errors.New("no walsender streams to the standby")
	})
	r.waitStatus(t, "fenced", stateIs("primary", "fenced"))
	mode, why := r.host.guardState()
	assert.Equal(t, host.GuardFenced, mode)
	assert.Contains(t, why, "timeline 3")
	assert.Contains(t, r.node.history(), "terminate")

	b, err := os.ReadFile(filepath.Join(r.host.dataDir, stateFileName))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"fenced"`)

	// A restarted keeper whose partner cannot be reached stays fenced.
	h2 := newFakeHost(t, false, nil)
	h2.dataDir = r.host.dataDir
	p2 := &fakeProber{}
	p2.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errors.New("timeout") })
	k, err := New(h2, Deps{
		NewProber: func(Settings) (Prober, error) { return p2, nil },
		NewNode:   func(Settings) (Node, error) { return &fakeNode{}, nil },
	})
	require.NoError(t, err)
	done := make(chan int, 1)
	go func() { done <- k.Run() }()
	defer func() { h2.signal(host.EventShutdown); <-done }()
	require.Eventually(t, func() bool {
		st, _, _ := h2.snapshot()
		return st.State == "fenced"
	}, 5*time.Second, 5*time.Millisecond)
	mode, _ = h2.guardState()
	assert.Equal(t, host.GuardFenced, mode)
}

func TestPartnerOfAnotherClusterStopsTheKeeperFromActing(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.sysid.Store(42)
	r.waitStatus(t, "misconfigured", func(s status.Snapshot) bool { return s.State == "misconfigured" })
	assert.Contains(t, r.host.logText(), "belongs to another cluster (system identifier 42")
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	r.neverPromotes(t, 300*time.Millisecond, "a keeper whose partner is another cluster must not promote")
}

func TestPrimaryWithoutStandbyIsOpenAndAvailabilityOpensWhenTheStandbyIsLost(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errors.New("timeout") })
	require.Eventually(t, func() bool { m, _ := r.host.guardState(); return m == host.GuardOpen }, 5*time.Second, 5*time.Millisecond)
}

func TestSafetyPolicyKeepsTheLeaseWhenTheStandbyIsLost(t *testing.T) {
	r := startKeeper(t, false, map[string]string{"pg_keeper.split_brain_policy": "safety"})
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errors.New("timeout") })
	r.waitStatus(t, "alone", stateIs("primary", "alone"))
	mode, why := r.host.guardState()
	assert.Equal(t, host.GuardLeased, mode)
	assert.Contains(t, why, "safety")
	r.host.mu.Lock()
	until := r.host.guardUntil
	r.host.mu.Unlock()
	assert.Less(t, until, host.Boottime(), "the lease has expired: no write can commit")
}

func TestAStandbyClaimsAtTheWitnessThenSetsItsGuardThenPromotes(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.witness_conninfo": "host=127.0.0.9 dbname=witness"})
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	r.waitStatus(t, "the promotion", stateIs("primary", "alone"))
	events := r.host.eventLog()
	require.GreaterOrEqual(t, len(events), 4, "%v", events)
	assert.Equal(t, []string{"close grants", "claim timeline 2", "guard leased", "promote"}, events[:4],
		"no lease is granted once the claim is made, and the node takes writes under the claimed lease only after it is registered")
}

func TestARefusedClaimLeavesTheGuardAloneAndReopensTheGrants(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.witness_conninfo": "host=127.0.0.9 dbname=witness"})
	r.witness.claimErr.Store(witness.ErrLeaseHeld)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	require.Eventually(t, func() bool { return strings.Contains(r.host.logText(), "promote failed") }, 5*time.Second, 5*time.Millisecond)
	events := r.host.eventLog()
	require.GreaterOrEqual(t, len(events), 3, "%v", events)
	assert.Equal(t, []string{"close grants", "claim refused", "open grants"}, events[:3])
	_, _, promotes := r.host.snapshot()
	assert.Zero(t, promotes)
	assert.NotContains(t, events, "guard leased")
	assert.Contains(t, r.host.logText(), "another node holds the primary lease at the witness")
}

// A standby measures the primary's lease at the witness on its own clock:
// it promotes only once the last renewal it saw is older than that lease
// and its margin, and claims with the renewals it saw (the witness then
// refuses the claim if the primary renewed since).
func TestAStandbyTimesThePrimarysWitnessLeaseOnItsOwnClock(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.witness_conninfo": "host=127.0.0.9 dbname=witness"})
	renewal := func(token string) witness.Standby {
		return witness.Standby{Renewals: []witness.Renewal{{Node: "db1:5432#0a0b0c0d", Token: token, Lease: 400 * time.Millisecond}}}
	}
	r.witness.standby.Store(renewal("1"))
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	// The primary keeps renewing at the witness (its clock may say
	// anything): no promotion.
	for i := 2; i < 30; i++ {
		r.witness.standby.Store(renewal(fmt.Sprint(i)))
		r.waitChecks(t, 1)
		_, _, promotes := r.host.snapshot()
		require.Zero(t, promotes, "promoted while the primary renews at the witness")
	}
	lastRenewal := time.Now()
	r.waitStatus(t, "the promotion", func(s status.Snapshot) bool { return s.Role == "primary" })
	// 400 ms of lease and 104 ms of margin after this standby saw it.
	assert.GreaterOrEqual(t, time.Since(lastRenewal), 504*time.Millisecond)
	assert.Contains(t, r.host.logText(), "the primary's last renewal at the witness may last")
	seen, _ := r.witness.claimedWith.Load().([]witness.Renewal)
	assert.Equal(t, renewal("29").Renewals, seen, "the claim names the renewal it waited out")
}

// Under safety a primary is armed as soon as its standby can grant leases,
// before it has granted one: from then on it writes only under a lease.
// (It used to arm at the first grant: a standby that granted while the
// answer was lost could promote while its primary still wrote unleased.)
func TestAPrimaryIsArmedBeforeItsStandbyFirstGrants(t *testing.T) {
	r := startKeeper(t, false, map[string]string{"pg_keeper.split_brain_policy": "safety"})
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, CanGrant: true,
			Partner: probe.Partner{Answered: true, InRecovery: true, SystemIdentifier: fakeSystemID}}, nil
	})
	r.waitChecks(t, 2)
	require.Eventually(t, func() bool { m, _ := r.host.guardState(); return m == host.GuardLeased }, 5*time.Second, 5*time.Millisecond)
	r.host.mu.Lock()
	until := r.host.guardUntil
	r.host.mu.Unlock()
	assert.Less(t, until, host.Boottime(), "no grant yet: no write may commit")
}

// Under safety a standby promotes only once it has granted its primary a
// lease: a primary that never asked for one may be writing unleased.
func TestUnderSafetyAStandbyThatNeverGrantedDoesNotPromote(t *testing.T) {
	r := startKeeper(t, true, map[string]string{"pg_keeper.split_brain_policy": "safety"})
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errRefused })
	require.Eventually(t, func() bool {
		return strings.Contains(r.host.logText(), "promotion held: this standby has granted its primary no lease")
	}, 5*time.Second, 5*time.Millisecond)
	r.neverPromotes(t, time.Second, "promoted without having granted") // over eight failover windows of 120 ms
	r.host.grant(80 * time.Millisecond)
	r.waitStatus(t, "promoted", func(s status.Snapshot) bool { return s.Role == "primary" })
}
