package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// startPairWithWitness starts a plain PostgreSQL server as the witness,
// then a pair whose keepers use it, with split_brain_policy = safety (which
// a witness overrides: the witness decides).
func startPairWithWitness(t *testing.T) (*pair, *pgtest.Node) {
	in := pgtest.Require(t, true)
	witness := in.NewPrimary(t, "witness", nil)
	p := startPair(t, map[string]string{
		"pg_keeper.witness_conninfo":   pgtest.Quote(witness.ConnString("postgres")),
		"pg_keeper.split_brain_policy": "safety",
	})
	p.primary.Exec(t, "postgres", "create table writes (at timestamptz default clock_timestamp())")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		rows, err := witness.TryQueryString(context.Background(), "postgres",
			"select string_agg(role, ',' order by role) from pg_keeper_witness")
		return err == nil && rows == "primary,standby", fmt.Sprintf("witness rows %q, err %v", rows, err)
	})
	return p, witness
}

func TestPrimaryWhoseStandbyDiedKeepsWritingWhileItReachesTheWitness(t *testing.T) {
	p, _ := startPairWithWitness(t)
	lost := time.Now()
	p.standby.StopOrFail(t, "immediate")
	p.waitState(t, p.primary, "primary", "alone", 10*time.Second)
	// Well past the lease (2 s) the standby can no longer renew: the
	// witness's renewals keep every commit going.
	pgtest.Eventually(t, 15*time.Second, poll, func() (bool, string) {
		_, err := tryWrite(p.primary, "postgres")
		require.NoError(t, err, "a write %s after the standby died", time.Since(lost).Round(time.Millisecond))
		return time.Since(lost) > 3*keepaliveTime*keepaliveCount, ""
	})
	assert.Equal(t, "leased", p.primary.QueryString(t, "postgres", "select guard from pg_keeper_status()"))
}

func TestStandbyClaimsThePrimaryRoleAtTheWitnessBeforePromoting(t *testing.T) {
	p, witness := startPairWithWitness(t)
	p.primary.StopOrFail(t, "immediate")
	promotedAt(t, p.standby, failoverBound+2*time.Second)
	row := witness.QueryString(t, "postgres", fmt.Sprintf(
		"select role || '/' || timeline from pg_keeper_witness where node like '%%:%d#%%'", p.standby.Port))
	assert.Equal(t, "primary/2", row, "the promoted node's row at the witness")
	_, err := tryWrite(p.standby, "postgres")
	assert.NoError(t, err, "the promoted node takes writes under the lease the witness holds for it")

	// The old primary, restarted, reaches only the witness: it is fenced.
	p.standby.StopOrFail(t, "fast")
	p.primary.Start(t)
	p.waitState(t, p.primary, "primary", "fenced", 10*time.Second)
	assert.Contains(t, p.primary.QueryString(t, "postgres", "select guard_reason from pg_keeper_status()"), "the witness knows")
}

// Two machines with the same host name (cloned VMs) and port get rows of
// their own at the witness, and each is told of the other; a claim made
// with a renewal that is no longer the primary's last one is refused.
func TestTheWitnessTellsNamesakesApartAndRefusesAStaleClaim(t *testing.T) {
	in := pgtest.Require(t, false)
	server := in.NewPrimary(t, "witness", nil)
	const sysid = 7400000000000000001
	open := func() *witness.Witness {
		w, err := witness.New(server.ConnString("postgres"), "clone:5432", sysid)
		require.NoError(t, err)
		t.Cleanup(w.Close)
		return w
	}
	primary, standby := open(), open()
	require.NotEqual(t, primary.Node(), standby.Node())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	wl, err := primary.RenewPrimary(ctx, 1, 2*time.Second)
	require.NoError(t, err)
	assert.True(t, wl.Renewed)
	assert.Empty(t, wl.Namesake, "nobody else has written yet")
	st, err := standby.StandbyHeartbeat(ctx, 1, 100*time.Millisecond)
	require.NoError(t, err)
	assert.Empty(t, st.Namesake, "a row older than this keeper's first write may be its own predecessor's")
	assert.Equal(t, primary.Node(), st.Holder)
	require.Len(t, st.Renewals, 1)
	assert.Equal(t, 2*time.Second, st.Renewals[0].Lease)
	stale := st.Renewals
	wl, err = primary.RenewPrimary(ctx, 1, 100*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, standby.Node(), wl.Namesake, "the primary learns of its namesake")
	st, err = standby.StandbyHeartbeat(ctx, 1, 100*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, primary.Node(), st.Namesake, "and the standby of its own")
	assert.Equal(t, "2", server.QueryString(t, "postgres", "select count(*) from pg_keeper_witness where node like 'clone:5432#%'"))

	// The lease (100 ms) has ended on the witness's clock; the standby
	// claims with the renewal it saw before the last one: refused.
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		s, err := standby.StandbyHeartbeat(ctx, 1, 0)
		return err == nil && s.Holder == "", fmt.Sprintf("holder %q %v", s.Holder, err)
	})
	err = standby.Claim(ctx, 2, time.Second, 0, stale)
	require.ErrorIs(t, err, witness.ErrLeaseHeld)
	assert.Contains(t, err.Error(), "renewed it since")
	now, err := standby.StandbyHeartbeat(ctx, 1, 0)
	require.NoError(t, err)
	require.NoError(t, standby.Claim(ctx, 2, time.Second, 0, now.Renewals), "a claim with the last renewal")
}
