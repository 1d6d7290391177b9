package keeper

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGuardFor(t *testing.T) {
	judged := GuardInput{Judged: true, Policy: Availability, Armed: true}
	tests := []struct {
		name string
		in   func(*GuardInput)
		want GuardMode
	}{
		{"a fenced node is fenced even with invalid settings", func(in *GuardInput) { in.Fenced, in.Misconfigured = "old", "bad" }, GuardFenced},
		{"a node not judged since start-up is pending", func(in *GuardInput) { in.Judged = false }, GuardPending},
		{"a keeper that cannot judge does not guard", func(in *GuardInput) { in.Judged, in.Misconfigured = false, "bad" }, GuardOpen},
		{"with a witness writes need the lease even without a standby", func(in *GuardInput) { in.Witness, in.Armed, in.PartnerLost = true, false, true }, GuardLeased},
		{"a primary no standby has followed is open under safety", func(in *GuardInput) { in.Policy, in.Armed = Safety, false }, GuardOpen},
		{"safety keeps the lease when the standby is lost", func(in *GuardInput) { in.Policy, in.PartnerLost = Safety, true }, GuardLeased},
		{"availability opens when the standby is lost", func(in *GuardInput) { in.PartnerLost = true }, GuardOpen},
		{"availability uses the lease while the standby grants it", func(in *GuardInput) {}, GuardLeased},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := judged
			tt.in(&in)
			mode, reason := GuardFor(in)
			assert.Equal(t, tt.want, mode)
			assert.NotEmpty(t, reason)
		})
	}
}

func TestPromotionHold(t *testing.T) {
	base := PromotionInput{KeepaliveTime: time.Second, WALReceiverAge: -1, Now: 100 * time.Second,
		Lease: 2 * time.Second, Margin: 120 * time.Millisecond}
	tests := []struct {
		name      string
		in        func(*PromotionInput)
		held      bool
		recheckIn time.Duration
	}{
		{"nothing holds a standby whose primary is silent everywhere", func(*PromotionInput) {}, false, 0},
		{"fresh WAL from the primary holds the promotion", func(in *PromotionInput) { in.WALReceiverAge = 1500 * time.Millisecond }, true, 500 * time.Millisecond},
		{"WAL older than two keepalive_times does not hold", func(in *PromotionInput) { in.WALReceiverAge = 2 * time.Second }, false, 0},
		{"an unexpired grant holds until it ends with its margin", func(in *PromotionInput) { in.LastGrant = 99 * time.Second }, true, 1120 * time.Millisecond},
		{"an expired grant does not hold", func(in *PromotionInput) { in.LastGrant = 97 * time.Second }, false, 0},
		{"an unreachable witness holds", func(in *PromotionInput) { in.Witness, in.WitnessErr = true, errors.New("timeout") }, true, 0},
		{"a lease at the witness holds", func(in *PromotionInput) { in.Witness, in.WitnessHolder = true, "node1:5432" }, true, 0},
		{"a witness with no lease lets the standby promote", func(in *PromotionInput) { in.Witness = true }, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := base
			tt.in(&in)
			why, after := PromotionHold(in)
			assert.Equal(t, tt.held, why != "", why)
			assert.Equal(t, tt.recheckIn, after)
		})
	}
}

func TestStandbyDoesNotPromoteWhileWALStillArrives(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.walAge.Store(int64(10 * time.Millisecond)) // 2 x keepalive_time is 80 ms
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	st := r.waitStatus(t, "held", stateIs("standby", "held"))
	assert.Contains(t, st.Hold, "WAL receiver")
	// Hold for a while (several keepalive_count rounds): no promotion.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, _, promotes := r.host.snapshot()
		require.Zero(t, promotes)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	r.prober.walAge.Store(-1) // the stream is gone too
	r.waitStatus(t, "promoted", func(s Status) bool { return s.Role == "primary" })
}

func TestStandbyWaitsForTheLeaseItGrantedToExpire(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	r.host.grant() // the primary asked for a lease just now
	granted := time.Now()
	r.waitStatus(t, "promoted", func(s Status) bool { return s.Role == "primary" })
	// lease = max(3-1, 2) x 40 ms = 80 ms, margin 100.8 ms
	assert.GreaterOrEqual(t, time.Since(granted), 180*time.Millisecond)
	assert.Contains(t, r.host.logText(), "promotion held: the lease this standby granted")
}

func TestPrimarySupersededByItsPartnerIsFencedAndStaysFenced(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	mode, _ := r.host.guardState()
	require.Equal(t, GuardLeased, mode, "a standby that grants puts the primary under a lease")

	r.prober.standby.Store(func(context.Context) (StandbyCheck, error) {
		return StandbyCheck{Streaming: 0, Partner: Partner{Answered: true, SystemIdentifier: fakeSystemID, Timeline: 3}},
			errors.New("no walsender streams to the standby")
	})
	r.waitStatus(t, "fenced", stateIs("primary", "fenced"))
	mode, why := r.host.guardState()
	assert.Equal(t, GuardFenced, mode)
	assert.Contains(t, why, "timeline 3")
	assert.Contains(t, r.node.history(), "terminate")

	b, err := os.ReadFile(filepath.Join(r.host.dataDir, stateFileName))
	require.NoError(t, err)
	assert.Contains(t, string(b), `"fenced"`)

	// A restarted keeper whose partner cannot be reached stays fenced.
	h2 := newFakeHost(t, false, nil)
	h2.dataDir = r.host.dataDir
	p2 := &fakeProber{}
	p2.standby.Store(func(context.Context) (StandbyCheck, error) { return StandbyCheck{}, errors.New("timeout") })
	k, err := New(h2, Deps{
		NewProber: func(Settings) (Prober, error) { return p2, nil },
		NewNode:   func(Settings) (Node, error) { return &fakeNode{}, nil },
	})
	require.NoError(t, err)
	done := make(chan int, 1)
	go func() { done <- k.Run() }()
	defer func() { h2.signal(EventShutdown); <-done }()
	require.Eventually(t, func() bool {
		st, _, _ := h2.snapshot()
		return st.State == "fenced"
	}, 5*time.Second, 5*time.Millisecond)
	mode, _ = h2.guardState()
	assert.Equal(t, GuardFenced, mode)
}

func TestPartnerOfAnotherClusterStopsTheKeeperFromActing(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "connected", stateIs("standby", "connected"))
	r.prober.sysid.Store(42)
	r.waitStatus(t, "misconfigured", func(s Status) bool { return s.State == "misconfigured" })
	assert.Contains(t, r.host.logText(), "belongs to another cluster (system identifier 42")
	r.prober.primary.Store(func(context.Context) error { return errors.New("connection refused") })
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, _, promotes := r.host.snapshot()
		require.Zero(t, promotes, "a keeper whose partner is another cluster must not promote")
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func TestPrimaryWithoutStandbyIsOpenAndAvailabilityOpensWhenTheStandbyIsLost(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	r.prober.standby.Store(func(context.Context) (StandbyCheck, error) { return StandbyCheck{}, errors.New("timeout") })
	require.Eventually(t, func() bool { m, _ := r.host.guardState(); return m == GuardOpen }, 5*time.Second, 5*time.Millisecond)
}

func TestSafetyPolicyKeepsTheLeaseWhenTheStandbyIsLost(t *testing.T) {
	r := startKeeper(t, false, map[string]string{"pg_keeper.split_brain_policy": "safety"})
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	r.prober.standby.Store(func(context.Context) (StandbyCheck, error) { return StandbyCheck{}, errors.New("timeout") })
	r.waitStatus(t, "alone", stateIs("primary", "alone"))
	mode, why := r.host.guardState()
	assert.Equal(t, GuardLeased, mode)
	assert.Contains(t, why, "safety")
	r.host.mu.Lock()
	until := r.host.guardUntil
	r.host.mu.Unlock()
	assert.Less(t, until, Boottime(), "the lease has expired: no write can commit")
}
