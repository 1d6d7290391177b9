package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/command"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

const (
	// writableTimeout bounds the wait for a promoted node to accept writes.
	writableTimeout = 30 * time.Second
	// recordTimeout bounds writing the failover record.
	recordTimeout = 10 * time.Second
	// syncTimeout bounds switching synchronous replication off or on.
	syncTimeout = 10 * time.Second
	// fenceTimeout bounds ending the client sessions of a fenced node.
	fenceTimeout = 10 * time.Second
)

// actionFunc runs the action of a transition, with the decision that
// chose it.  An error leaves the keeper where it was.
type actionFunc func(k *Keeper, d fsm.Decision) error

// actions pairs each action of the state machine's table with the
// function that does it, as pg_auto_failover's KeeperFSM pairs each
// transition with its function.  A test checks that every fsm action has
// one.
var actions = map[fsm.Action]actionFunc{
	fsm.None:            func(*Keeper, fsm.Decision) error { return nil },
	fsm.Promote:         (*Keeper).promote,
	fsm.FinishPromotion: (*Keeper).finishPromotion,
	fsm.DisableSync:     (*Keeper).disableSync,
	fsm.RestoreSync:     (*Keeper).restoreSync,
	fsm.Fence:           (*Keeper).fence,
	fsm.RecordPrimary:   (*Keeper).recordPrimary,
}

// transition takes the table's transition to d.State, running its action,
// and reports whether it did.  A failed action leaves the keeper where it
// was; it tries again next turn.
func (k *Keeper) transition(d fsm.Decision) bool {
	t, ok := fsm.Lookup(k.state, d.State)
	if !ok {
		t = fsm.Transition{From: k.state, To: d.State, Why: "no such transition in the table (a bug)"}
	}
	why := t.Why
	if d.Why != "" {
		why = d.Why
	}
	msg := fmt.Sprintf("pg_keeper_go: transition from %q to %q: %s", k.state, d.State, why)
	if f := k.facts(); f != "" && d.State != fsm.Misconfigured {
		msg += " (" + f + ")"
	}
	k.host.Log(host.LevelInfo, msg, "", "")
	run, ok := actions[t.Action]
	if !ok {
		run = func(*Keeper, fsm.Decision) error { return fmt.Errorf("no function for action %q (a bug)", t.Action) }
	}
	if err := run(k, d); err != nil {
		if !errors.Is(err, errShutdown) {
			k.host.Log(host.LevelWarning, fmt.Sprintf("pg_keeper_go: %s failed: %s", t.Action, conninfo.RedactError(err)),
				"", fmt.Sprintf("The keeper stays in state %q and tries again in %s.", k.state, k.settings.KeepaliveTime))
		}
		return false
	}
	k.state = d.State
	k.setTitle()
	return true
}

// promote closes lease grants, decides once more with the last grant read
// under the lock that closed them (one may have been granted since the
// observation), claims the primary lease at the witness, sets the guard
// the promoted node takes writes under, and asks the server to promote.
// Whatever fails before the request reopens the grants.
func (k *Keeper) promote(d fsm.Decision) error {
	lsn, tli, err := k.host.WALPosition()
	if err != nil {
		lsn = 0
	}
	until, err := k.host.LeaseGrants(host.GrantsClose)
	if err == nil {
		o := k.obs
		o.PromiseUntil, o.Now, o.Paused = until, host.Boottime(), k.readPause()
		if again := fsm.Decide(o); again.State != fsm.StandbyPromoting {
			err = fmt.Errorf("promotion held after closing lease grants: %s", again.Hold)
		}
	}
	claimStart := host.Boottime() // the lease the claim registers starts no earlier
	if err == nil && k.conns.witness != nil {
		w, seen := k.conns.witness, k.seenRenewals()
		lease, margin := k.settings.Lease(), k.settings.LeaseMargin()
		err = k.await(k.settings.KeepaliveTime, func(ctx context.Context) error {
			return w.Claim(ctx, tli+1, lease, margin, seen)
		})
	}
	if err == nil {
		if d.Guard == host.GuardLeased {
			k.obs.LeaseUntil = claimStart + k.settings.Lease()
		}
		if err = k.host.SetGuard(d.Guard, k.obs.LeaseUntil, d.GuardReason); err == nil {
			k.guard = appliedGuard{d.Guard, d.GuardReason}
		}
	}
	if err == nil {
		reload := k.asyncBeforePromotion()
		err = k.host.Promote()
		if err == nil && reload {
			local := k.conns.local
			if rerr := k.await(syncTimeout, local.Reload); rerr != nil {
				k.host.Log(host.LevelWarning, "pg_keeper_go: could not reload the configuration after switching to asynchronous replication: "+conninfo.RedactError(rerr),
					"The promoted node's commits wait for a synchronous standby until the configuration is reloaded.", "")
			}
		}
	}
	if err != nil {
		if _, rerr := k.host.LeaseGrants(host.GrantsOpen); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	k.obs.Armed, k.obs.Judged = false, true
	k.saveState()
	k.promo.askedAt = time.Now()
	k.promo.lsn = lsn
	k.promo.why = d.Why
	return nil
}

// finishPromotion runs once recovery has ended.  In the background, on
// sessions of its own, it waits until the node accepts writes and records
// the failover; then the main goroutine starts after_command.  The loop
// goes on checking, renewing leases and publishing meanwhile.  Each step
// that fails is logged; none of them undoes the promotion.
func (k *Keeper) finishPromotion(fsm.Decision) error {
	k.promo.at = time.Now()
	k.promo.failovers++
	_, tli, _ := k.host.WALPosition()
	rec := node.FailoverRecord{
		PromotedAt:  k.promo.at,
		Host:        k.self.hostname,
		OldPrimary:  k.partner,
		NewTimeline: tli,
		PromoteLSN:  k.promo.lsn,
		Reason:      fmt.Sprintf("%d of %d checks of the primary failed%s; last: %s", k.obs.Failures, k.settings.KeepaliveCount, k.silence(), k.history.lastReason),
	}
	switch k.promo.why {
	case fsm.WhySwitchover:
		rec.Reason = "switchover: the operator moved the primary here (pg_keeper_go switchover); the old primary is a standby"
	case fsm.WhyTakeBack:
		rec.Reason = "switchover not finished: this node, demoted, took the primary role back; its partner stayed a standby"
	}
	local, err := k.deps.NewNode(k.settings)
	if err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: failover not recorded: "+conninfo.RedactError(err), "", "Check pg_keeper.my_conninfo.")
		k.startAfterCommand(rec)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	k.promo.cancel = cancel
	askedAt, record, target := k.promo.askedAt, k.settings.FailoverLogDatabase != "", k.settings.failoverLogTarget()
	k.goSafe(func() {
		defer local.Close()
		defer cancel()
		wctx, wcancel := context.WithTimeout(ctx, writableTimeout)
		err := local.WaitWritable(wctx)
		wcancel()
		writable := time.Since(askedAt).Round(time.Millisecond)
		if ctx.Err() != nil {
			return // the keeper stops
		}
		k.post(func() {
			if err != nil {
				k.host.Log(host.LevelWarning, "pg_keeper_go: promoted node does not accept writes yet: "+conninfo.RedactError(err), "",
					"Check pg_keeper.my_conninfo; the failover record and after_command run anyway.")
				return
			}
			k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: promoted: the node accepts writes on timeline %d, %s after the promotion request", tli, writable), "", "")
		})
		if record {
			rctx, rcancel := context.WithTimeout(ctx, recordTimeout)
			recorded, err := local.RecordFailover(rctx, rec)
			rcancel()
			if ctx.Err() != nil {
				return
			}
			k.post(func() {
				switch {
				case recorded:
					k.host.Log(host.LevelInfo, "pg_keeper_go: failover recorded in "+target, "", "")
				case err != nil:
					k.host.Log(host.LevelWarning, "pg_keeper_go: failover not recorded: "+conninfo.RedactError(err), "",
						"Create the table with sql/pg_state.sql, or set pg_keeper.failover_log_database = '' to turn the record off.")
				}
			})
		}
		// Forked from the main goroutine (the rules at the C/Go boundary).
		k.post(func() { k.startAfterCommand(rec) })
	})
	return nil
}

// startAfterCommand starts after_command from the main goroutine (a child
// forked on another thread would inherit its blocked signals) and reaps it
// in the background; its output goes to the server log.
func (k *Keeper) startAfterCommand(rec node.FailoverRecord) {
	if k.settings.AfterCommand == "" {
		return
	}
	env := []string{
		"PG_KEEPER_ROLE=primary",
		"PG_KEEPER_OLD_PRIMARY=" + rec.OldPrimary,
		fmt.Sprintf("PG_KEEPER_TIMELINE=%d", rec.NewTimeline),
		"PG_KEEPER_PROMOTE_LSN=" + pgsession.FormatLSN(rec.PromoteLSN),
		fmt.Sprintf("PG_KEEPER_PROMOTED_AT=%d", rec.PromotedAt.Unix()),
	}
	for _, name := range []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR"} {
		if v, ok := k.host.Env(name); ok {
			env = append(env, name+"="+v)
		}
	}
	if k.self.dataDir != "" {
		env = append(env, "PGDATA="+k.self.dataDir)
	}
	p, err := command.Start(context.Background(), command.Spec{Line: k.settings.AfterCommand, Env: env, Dir: k.self.dataDir,
		Timeout: k.settings.AfterCommandTimeout})
	if err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: could not start after_command: "+err.Error(), "", "Check pg_keeper.after_command.")
		return
	}
	k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: after_command started (pid %d)", p.Pid()), "", "")
	k.goSafe(func() {
		res := p.Wait()
		k.post(func() { k.logCommand(res) })
	})
}

func (k *Keeper) logCommand(res command.Result) {
	level, msg := host.LevelInfo, fmt.Sprintf("pg_keeper_go: after_command finished in %s", res.Duration.Round(time.Millisecond))
	switch {
	case res.TimedOut:
		level, msg = host.LevelWarning, fmt.Sprintf("pg_keeper_go: after_command killed after %s (pg_keeper.after_command_timeout)", res.Duration.Round(time.Millisecond))
	case res.Err != nil:
		level, msg = host.LevelWarning, fmt.Sprintf("pg_keeper_go: after_command failed after %s: %v", res.Duration.Round(time.Millisecond), res.Err)
	}
	detail := ""
	if out := strings.TrimSpace(res.Output); out != "" {
		detail = "Output:\n" + out
	}
	k.host.Log(level, msg, detail, "")
}

// disableSync switches synchronous replication off and remembers the
// setting it had (in the state file too).  The state machine holds it back
// while the lease has expired; once switched it does nothing.
func (k *Keeper) disableSync(fsm.Decision) error {
	return k.switchAsync(true)
}

// switchAsync is disableSync; without reload the setting takes effect at
// the next reload of the server.
func (k *Keeper) switchAsync(reload bool) error {
	if k.sync != nil {
		return nil
	}
	local := k.conns.local
	var saved node.SyncSetting
	err := k.await(syncTimeout, func(ctx context.Context) (err error) {
		saved, err = local.DisableSync(ctx, reload)
		return err
	})
	if err != nil {
		return err
	}
	k.sync = &saved
	k.saveState()
	k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: switched to asynchronous replication: synchronous_standby_names was %q", saved.Value),
		"Commits no longer wait for the lost standby.", "The keeper restores the setting when the standby streams again.")
	return nil
}

// asyncBeforePromotion switches synchronous replication off on a standby
// about to promote whose synchronous_standby_names (inherited from its
// primary) names standbys: the only one was its old primary, which is
// gone, and the promoted node's first commits would wait for it.  The
// keeper restores the setting once a standby streams from the new primary.
// It reports whether the configuration must be reloaded once the promotion
// is requested: a reload just before it wakes the startup process, which
// may then sleep wal_retrieve_retry_interval before it notices the
// promotion.  A failure is a warning: the state machine switches at the
// next turn.
func (k *Keeper) asyncBeforePromotion() (reload bool) {
	if v, _, _ := k.host.Setting("synchronous_standby_names"); strings.TrimSpace(v) == "" || k.sync != nil {
		return false
	}
	if err := k.switchAsync(false); err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: could not switch to asynchronous replication before promoting: "+conninfo.RedactError(err),
			"The promoted node's commits wait for a synchronous standby until the keeper switches at its next check.", "")
		return false
	}
	return true
}

// restoreSync puts back the setting disableSync saved.
func (k *Keeper) restoreSync(fsm.Decision) error {
	saved, local := *k.sync, k.conns.local
	if err := k.await(syncTimeout, func(ctx context.Context) error { return local.RestoreSync(ctx, saved) }); err != nil {
		return err
	}
	k.sync = nil
	k.saveState()
	k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: restored synchronous replication: synchronous_standby_names = %q", saved.Value), "", "")
	return nil
}

// fenceHint tells the operator how to bring a fenced node back.
const fenceHint = "Make it a standby of the new primary: on this host, as the data directory's owner, run pg_keeper_go rejoin --pgdata DATADIR --primary 'host=NEW_PRIMARY user=postgres dbname=postgres' (README, \"Bringing a fenced node back\")."

// fence makes this primary refuse connections and writes, persists it, and
// ends the sessions of ordinary clients.
func (k *Keeper) fence(d fsm.Decision) error {
	if err := k.host.SetGuard(host.GuardFenced, 0, d.Fence); err != nil {
		return err
	}
	k.guard = appliedGuard{host.GuardFenced, d.Fence}
	k.saveState()
	k.host.Log(host.LevelWarning, "pg_keeper_go: this node is fenced: "+d.Fence,
		"It refuses ordinary connections and write commits.", fenceHint)
	var n int
	local := k.conns.local
	err := k.await(fenceTimeout, func(ctx context.Context) (err error) {
		if local == nil {
			return errors.New("no connection to this node (the settings are invalid)")
		}
		n, err = local.TerminateClients(ctx)
		return err
	})
	if err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: could not end client sessions of the fenced node: "+err.Error(), "",
			"Their writes cannot commit anyway; the role of pg_keeper.my_conninfo needs pg_signal_backend to end them.")
	} else {
		k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: ended %d client sessions of the fenced node", n), "", "")
	}
	return nil
}

// recordPrimary writes this node into an empty failover log as the
// primary, once per run of the worker, so that readers of the log (the
// users' monitor, pg_keeper_go watch) find the primary before the first
// failover.  A problem is logged once; it never holds the transition back.
func (k *Keeper) recordPrimary(fsm.Decision) error {
	if k.settings.FailoverLogDatabase == "" || k.promo.logChecked {
		return nil
	}
	_, tli, _ := k.host.WALPosition()
	rec := node.FailoverRecord{
		PromotedAt:  time.Now(),
		Host:        k.self.hostname,
		NewTimeline: tli,
		Reason:      "initial primary: the failover log had no row when the keeper first saw its standby stream",
		Initial:     true,
	}
	local := k.conns.local
	var recorded bool
	err := k.await(recordTimeout, func(ctx context.Context) (err error) {
		recorded, err = local.RecordFailover(ctx, rec)
		return err
	})
	if errors.Is(err, errShutdown) {
		return nil
	}
	msg := ""
	if err != nil {
		msg = conninfo.RedactError(err)
	}
	k.logOnce("initial-record", msg, host.LevelWarning, "pg_keeper_go: could not record the initial primary in the failover log: ",
		"Create the table with sql/pg_state.sql, or set pg_keeper.failover_log_database = '' to turn the record off; the keeper tries again when the standby next comes back.")
	if err != nil {
		return nil
	}
	k.promo.logChecked = true
	if recorded {
		k.host.Log(host.LevelInfo, fmt.Sprintf("pg_keeper_go: recorded this node as the initial primary in %s", k.settings.failoverLogTarget()), "", "")
	}
	return nil
}
