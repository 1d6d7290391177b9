package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
)

const (
	// extensionRetry is how long a primary's keeper waits before trying
	// again to create the extension after a failure.
	extensionRetry = time.Minute
	// extensionTimeout bounds creating or updating the extension.
	extensionTimeout = 10 * time.Second
)

// ensureExtension creates (or updates) the extension a primary needs for
// leases and the WAL heartbeat, once per run, where it is missing: our
// users' pg_keeper configuration, with only the library name changed,
// never ran CREATE EXTENSION.  It waits until the write guard lets the
// keeper's own session commit; a failure is a warning, logged once, and
// tried again a minute later.
func (k *Keeper) ensureExtension() {
	switch {
	case !k.settings.CreateExtension, k.ext.done, k.configErr != nil, k.conns.local == nil,
		time.Now().Before(k.ext.retryAt), !k.guardLetsWrites():
		return
	}
	dbs := k.settings.extensionDatabases()
	local := k.conns.local
	var changes []node.ExtensionChange
	err := k.await(extensionTimeout, func(ctx context.Context) (err error) {
		changes, err = local.EnsureExtension(ctx, dbs)
		return err
	})
	if errors.Is(err, errShutdown) {
		return
	}
	for _, c := range changes {
		what := fmt.Sprintf("created the extension %s %s in database %q", node.Extension, c.To, c.Database)
		if c.From != "" {
			what = fmt.Sprintf("updated the extension %s from %s to %s in database %q", node.Extension, c.From, c.To, c.Database)
		}
		k.host.Log(host.LevelInfo, "pg_keeper_go: "+what, "Leases and the WAL heartbeat need its functions; the standby gets it through replication.",
			"Set pg_keeper.create_extension = off to manage the extension yourself.")
	}
	msg := ""
	if err != nil {
		msg = conninfo.RedactError(err)
	}
	k.logOnce("extension", msg, host.LevelWarning, "pg_keeper_go: could not create the extension "+node.Extension+": ",
		"The role of pg_keeper.my_conninfo must be a superuser, and the extension's files installed on both nodes; or run CREATE EXTENSION pg_keeper_go yourself. Until then writes are not guarded by the standby's lease.")
	k.ext.failed = err != nil
	if err != nil {
		k.ext.retryAt = time.Now().Add(extensionRetry)
		return
	}
	k.ext.done = true
}

// guardLetsWrites reports whether this primary's write guard lets a
// commit through now (the keeper's own sessions are guarded too).
func (k *Keeper) guardLetsWrites() bool {
	switch k.guard.mode {
	case host.GuardOpen:
		return true
	case host.GuardLeased:
		return host.Boottime() < k.obs.LeaseUntil
	}
	return false
}

// twoPhaseEvery is how often a primary's keeper looks for subscriptions
// created with two_phase.
const twoPhaseEvery = 10 * time.Second

// warnTwoPhase says once, while the guard can refuse writes, which
// subscriptions were created with two_phase: their apply worker commits
// prepared transactions without a statement or a commit of its own that
// the commit check could see (PostgreSQL has no hook there), so a prepared
// transaction whose PREPARE was applied under the lease may be committed
// after it ended.  Looked at every 10 s; a read that fails is ignored.
func (k *Keeper) warnTwoPhase() {
	if k.conns.local == nil || k.configErr != nil || time.Now().Before(k.ext.twoPhaseAt) {
		return
	}
	k.ext.twoPhaseAt = time.Now().Add(twoPhaseEvery)
	local := k.conns.local
	var names []string
	err := k.await(extensionTimeout, func(ctx context.Context) (err error) {
		names, err = local.TwoPhaseSubscriptions(ctx)
		return err
	})
	if err != nil {
		return
	}
	msg := ""
	if len(names) > 0 && k.guard.mode != host.GuardOpen {
		msg = strings.Join(names, ", ")
	}
	k.logOnce("twophase", msg, host.LevelWarning, "pg_keeper_go: the write guard cannot check what the apply worker of a subscription created with two_phase commits: ",
		"Such a worker commits prepared transactions without a check: one prepared under the lease may commit after it ended. Create the subscription with two_phase = false where that matters.")
}
