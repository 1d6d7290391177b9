package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

// A standby keeps the promise its primary asked for, measured on its own
// clock, whatever its own settings say: here the primary's lease is
// (6 - 1) x 1 s = 5 s and the standby's own settings would give 2 s.  A
// standby that held its promotion by its own settings would promote about
// 3 s after the primary's crash, while a primary that was only cut off
// (not crashed) could still commit for up to 5 s after its last grant.
func TestAStandbyHoldsItsPromotionForTheLeaseThePrimaryAskedFor(t *testing.T) {
	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "alter system set pg_keeper.keepalive_count = 6")
	p.primary.Exec(t, "postgres", "select pg_reload_conf()")
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.primary, "keepalive_count")
		return err == nil && got == "6", fmt.Sprintf("primary's keepalive_count %q %v", got, err)
	})
	// A check under the new settings has granted a lease of 5 s.
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.primary, "(extract(epoch from lease_valid_for) > 4)")
		return err == nil && got == "true", fmt.Sprintf("primary's lease over 4 s: %q %v", got, err)
	})

	fault := time.Now()
	_, err := p.primary.Stop(t, "immediate")
	require.NoError(t, err)
	took := waitWritable(t, p.standby, fault, 15*time.Second)
	t.Logf("standby writable %s after the primary's crash (its own settings alone: about 3 s)", took)
	// The last grant came at most one keepalive_time before the crash:
	// 5 s of lease and its margin after it is at least 4 s after the crash.
	assert.GreaterOrEqual(t, took, 4*time.Second, "the standby promoted before the primary's lease had ended")
	assert.Regexp(t, `promotion held: the lease this standby granted the primary has [0-9.]+m?s left`, p.standby.Log())
}

// A grant names the cluster and the timeline it is for: a standby grants
// nothing to a primary of another cluster, nor to one on no timeline, and
// a lease of any other length than 1 ms to 999 hours is an error.
func TestAStandbyGrantsOnlyToAPrimaryOfItsOwnCluster(t *testing.T) {
	p := startPair(t, nil)
	sysid := p.standby.QueryString(t, "postgres", "select system_identifier from pg_control_system()")
	grant := func(lease int64, sysid string, timeline int) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return p.standby.TryQueryString(ctx, "postgres",
			fmt.Sprintf("select pg_keeper_grant_lease(%d, %s, %d)::text", lease, sysid, timeline))
	}
	got, err := grant(1000, sysid, 1)
	require.NoError(t, err)
	assert.Equal(t, "true", got, "a grant to its own primary")

	other := strings.TrimSuffix(sysid, sysid[len(sysid)-1:]) + fmt.Sprint((int(sysid[len(sysid)-1]-'0')+1)%10)
	got, err = grant(1000, other, 1)
	require.NoError(t, err)
	assert.Equal(t, "false", got, "a grant to a primary of another cluster (%s, not %s)", other, sysid)

	got, err = grant(1000, sysid, 0)
	require.NoError(t, err)
	assert.Equal(t, "false", got, "a grant to a primary on no timeline")

	_, err = grant(0, sysid, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid lease of 0 ms")
}
