package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		"select role || '/' || timeline from pg_keeper_witness where node like '%%:%d'", p.standby.Port))
	assert.Equal(t, "primary/2", row, "the promoted node's row at the witness")
	_, err := tryWrite(p.standby, "postgres")
	assert.NoError(t, err, "the promoted node takes writes under the lease the witness holds for it")

	// The old primary, restarted, reaches only the witness: it is fenced.
	p.standby.StopOrFail(t, "fast")
	p.primary.Start(t)
	p.waitState(t, p.primary, "primary", "fenced", 10*time.Second)
	assert.Contains(t, p.primary.QueryString(t, "postgres", "select guard_reason from pg_keeper_status()"), "the witness knows")
}
