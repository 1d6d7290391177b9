package keeper

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
)

// TestAPrimaryCreatesTheExtensionItNeeds: our users' configuration never
// ran CREATE EXTENSION; the primary's keeper creates it, once, in the
// databases of both conninfos, and says so.
func TestAPrimaryCreatesTheExtensionItNeeds(t *testing.T) {
	r := startKeeper(t, false, map[string]string{"pg_keeper.partner_conninfo": "host=127.0.0.2 dbname=app user=keeper"})
	r.node.extensionMissing.Store(true)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, HeartbeatErr: probe.ErrNoHeartbeat, GrantErr: probe.ErrNoGrant,
			Partner: probe.Partner{Answered: true, InRecovery: true, SystemIdentifier: fakeSystemID}}, nil
	})
	r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))
	require.Eventually(t, func() bool { return len(r.node.extensionCalls()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, [][]string{{"postgres", "app"}}, r.node.extensionCalls())
	require.Eventually(t, func() bool {
		return strings.Contains(r.host.logText(), `created the extension pg_keeper_go 1.1 in database "postgres"`)
	}, 5*time.Second, 5*time.Millisecond)

	// Once done, a lost and returning standby does not make it ask again,
	// and the functions, missing for the first check, were no warning.
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
	r.waitStatus(t, "the standby to be lost", stateIs("primary", "alone"))
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, CanGrant: true, Granted: true}, nil
	})
	r.waitStatus(t, "the standby to be back", stateIs("primary", "connected"))
	assert.Len(t, r.node.extensionCalls(), 1)
	assert.NotContains(t, r.host.logText(), "cannot write the WAL heartbeat")
	assert.NotContains(t, r.host.logText(), "cannot grant a lease")
}

// TestAStandbyNeverCreatesTheExtension: a standby cannot write; it gets
// the extension from its primary.
func TestAStandbyNeverCreatesTheExtension(t *testing.T) {
	r := startKeeper(t, true, nil)
	r.waitStatus(t, "the standby to connect", stateIs("standby", "connected"))
	r.waitChecks(t, 3)
	assert.Empty(t, r.node.extensionCalls())
}

// TestWithoutCreateExtensionTheMissingFunctionsAreWarnedOnce: with
// pg_keeper.create_extension = off the keeper leaves the extension alone
// and says once what is missing; so it does when creating it fails.
func TestWithoutCreateExtensionTheMissingFunctionsAreWarnedOnce(t *testing.T) {
	for name, settings := range map[string]map[string]string{
		"create_extension off": {"pg_keeper.create_extension": "off"},
		"creation fails":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			r := startKeeper(t, false, settings)
			denied := error(errors.New(`database "postgres": ERROR: permission denied to create extension "pg_keeper_go" (SQLSTATE 42501)`))
			r.node.extensionErr.Store(&denied)
			r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
				return probe.StandbyCheck{Streaming: 1, HeartbeatErr: probe.ErrNoHeartbeat, GrantErr: probe.ErrNoGrant,
					Partner: probe.Partner{Answered: true, InRecovery: true, SystemIdentifier: fakeSystemID}}, nil
			})
			r.waitStatus(t, "the primary to connect", stateIs("primary", "connected"))
			r.waitChecks(t, 5)
			logs := r.host.logText()
			assert.Equal(t, 1, strings.Count(logs, "cannot write the WAL heartbeat: the function public.pg_keeper_heartbeat() does not exist"), logs)
			assert.Equal(t, 1, strings.Count(logs, "the standby cannot grant a lease"), logs)
			if settings != nil {
				assert.Empty(t, r.node.extensionCalls())
			} else {
				assert.Len(t, r.node.extensionCalls(), 1, "tried once, again only a minute later")
				assert.Equal(t, 1, strings.Count(logs, "could not create the extension pg_keeper_go: database \"postgres\": ERROR: permission denied"), logs)
			}
			// A standby that does not answer says nothing of its function:
			// the problem is not logged gone.
			r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) { return probe.StandbyCheck{}, errRefused })
			r.waitChecks(t, 3)
			assert.NotContains(t, r.host.logText(), "the standby grants leases")
			assert.NotContains(t, r.host.logText(), "the WAL heartbeat is written")
		})
	}
}

// A guarded primary with a subscription created with two_phase says once
// that its apply worker's commits of prepared transactions go unchecked.
func TestATwoPhaseSubscriptionIsReportedOnce(t *testing.T) {
	r := startKeeper(t, false, nil)
	r.node.twoPhase.Store([]string{"orders_sub"})
	r.waitStatus(t, "connected", stateIs("primary", "connected"))
	require.Eventually(t, func() bool {
		return strings.Contains(r.host.logText(), "subscription created with two_phase commits: orders_sub")
	}, 5*time.Second, 5*time.Millisecond)
	r.waitChecks(t, 3)
	assert.Equal(t, 1, strings.Count(r.host.logText(), "orders_sub"))
}
