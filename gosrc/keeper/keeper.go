// Package keeper runs the failover keeper inside a PostgreSQL background
// worker.  It sits on top of the project's packages and wires them: each
// turn it checks the partner (package probe, and the witness), gathers
// what it knows into one fsm.Observation, lets fsm.Decide choose, and runs
// the chosen transition's action through its table of action functions on
// the local node (package node) and the host (package host).  It publishes
// one status.Snapshot per turn to shared memory and to its HTTP API
// (package api).
//
// The keeper's main loop runs on the goroutine that the C worker called
// into; it alone calls the Host.  Everything that can block (connections,
// queries, after_command) runs in other goroutines that never touch the
// Host: they hand results back and wake the loop through an eventfd the
// host waits on together with its latch.  docs/design.md tells the rules.
//
// Files: keeper.go (the keeper and its loop), check.go (the checks and the
// observation), actions.go (the action table and the actions),
// extension.go (creating the extension a primary needs), state.go (the
// state file), pause.go (the maintenance pause), publish.go (the status
// snapshot), http.go (the HTTP API),
// settings.go (the pg_keeper.* settings), deps.go (what the keeper is
// built from), waker.go (waking the loop).
package keeper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
)

const (
	// promotePoll is how often the end of recovery is polled while promoting.
	promotePoll = 10 * time.Millisecond
	// idleWait is the longest wait when nothing is scheduled.
	idleWait = time.Minute
)

var errShutdown = errors.New("shutdown requested")

// Keeper is one run of the keeper in a background worker.
type Keeper struct {
	host host.Host
	deps Deps
	wake *waker
	loop loopState // the main loop's own state

	settings  Settings
	configErr error  // the settings are invalid; the keeper waits for a reload
	partner   string // conninfo.Summary of the partner, made on reload
	conns     conns  // the connections, rebuilt when the conninfos change

	// The state machine: the state, and everything it decides from.
	state fsm.State
	obs   fsm.Observation
	hold  string // the last Decision.Hold, logged once per reason
	// pausedSince is when automatic failover was paused on this node,
	// zero when it is not (readPause).
	pausedSince time.Time
	// switchoverAt is the last switchover request seen (switchoverRequested).
	switchoverAt time.Time
	// witnessSeen: a standby's view of the primaries' renewals at the
	// witness, by node (observeRenewals).
	witnessSeen map[string]seenRenewal

	sched    schedule   // when to check
	history  checkStats // the checks, for the log and the status
	sync     *node.SyncSetting
	guard    appliedGuard
	promo    promotion
	self     identity
	written  persisted         // what the state file holds
	logged   map[string]string // last message per topic, to log each once
	http     httpAPI
	operator operatorAPI
	ext      extensionSetup
}

// extensionSetup is where a primary's keeper stands with creating the
// extension it needs (pg_keeper.create_extension).
type extensionSetup struct {
	done    bool      // created, updated or found up to date this run
	failed  bool      // the last attempt failed
	retryAt time.Time // when to try again after a failure
	// twoPhaseAt is when to look for two-phase subscriptions next.
	twoPhaseAt time.Time
}

// loopState is what the main loop keeps for itself.
type loopState struct {
	cancelJob context.CancelFunc // cancels the goroutine await is serving
	shutdown  bool
	fatal     error // a recovered panic in a goroutine
}

// schedule is when the last check started and the next one is due.
type schedule struct{ lastCheck, nextCheck time.Time }

// checkStats are the facts of the checks that the state machine does not
// need, for the log and the status.
type checkStats struct {
	lastSuccess, lastFailure, firstFailure time.Time
	// lastGoodStart is when the last good check of the partner started:
	// the partner answered after it, so its silence counts from there
	// (zero until a check succeeds, and again when the partner changes).
	lastGoodStart time.Time
	hedgedAnswers int // checks answered over the second connection (probe.PrimaryCheck.HedgeAnswered)
	lastReason    string
	lastAnswered  string             // last error the partner answered with, to log it once
	standby       probe.PrimaryCheck // a standby's last check of its primary, for the status
}

// appliedGuard is the write guard last set in shared memory.
type appliedGuard struct {
	mode   host.GuardMode
	reason string
}

// promotion is what the keeper remembers of its promotion of this node.
type promotion struct {
	askedAt   time.Time          // when Promote was called
	lsn       uint64             // the last WAL position replayed before it
	at        time.Time          // when recovery ended
	failovers int                // promotions since the worker started
	why       string             // Decision.Why of the last promotion (a switchover's), "" for a failover
	cancel    context.CancelFunc // stops finishing the last promotion (on shutdown)
	// logChecked: the failover log has a row (the keeper wrote the
	// initial primary, or found one); it is not read again this run.
	logChecked bool
}

// identity is this node's: its host name, data directory and cluster,
// and the keeper's background worker.
type identity struct {
	hostname  string
	dataDir   string
	systemID  uint64
	workerPID int
}

// New prepares a keeper; Run starts it.
func New(h host.Host, deps Deps) (*Keeper, error) {
	w, err := newWaker()
	if err != nil {
		return nil, err
	}
	k := &Keeper{host: h, deps: deps, wake: w, state: fsm.Init, logged: map[string]string{}}
	k.obs.WALReceiverAge = -1
	k.guard.mode = host.GuardPending
	k.self.hostname, _ = os.Hostname()
	k.self.dataDir, _ = h.Env("data_directory")
	// The background worker's pid (the keeper runs in a child of it);
	// an older shim has none: this process.
	k.self.workerPID = os.Getpid()
	if v, ok := h.Env("worker_pid"); ok {
		if pid, err := strconv.Atoi(v); err == nil && pid > 0 {
			k.self.workerPID = pid
		}
	}
	if v, ok := h.Env("system_identifier"); ok {
		k.self.systemID, _ = strconv.ParseUint(v, 10, 64)
	}
	return k, nil
}

// Run is the keeper's main loop.  It returns host.ExitShutdown when the
// server asks the worker to stop and host.ExitRestart after an error it has
// logged; it never panics.
func (k *Keeper) Run() (code int) {
	defer func() {
		if r := recover(); r != nil {
			k.host.Log(host.LevelWarning, fmt.Sprintf("pg_keeper_go: keeper stopped by a panic: %v", r),
				string(debug.Stack()), "The worker restarts; please report this as a bug.")
			code = host.ExitRestart
		}
		if k.promo.cancel != nil {
			k.promo.cancel()
		}
		k.stopHTTP()
		k.stopOperator()
		k.closeConns()
		k.wake.close()
	}()

	k.loadState()
	k.reload()
	k.host.Log(host.LevelInfo, "pg_keeper_go: keeper started", k.settingsDetail(), "")
	for !k.loop.shutdown {
		k.turn()
		if k.loop.fatal != nil {
			k.host.Log(host.LevelWarning, "pg_keeper_go: keeper stopped by an error: "+k.loop.fatal.Error(), "",
				"The worker restarts; please report this as a bug.")
			return host.ExitRestart
		}
		k.publish()
		if !k.loop.shutdown {
			k.serve(k.sleepTime())
		}
	}
	k.host.Log(host.LevelInfo, "pg_keeper_go: keeper stopped", "", "")
	return host.ExitShutdown
}

// turn runs one check when it is due, then decides and acts until the
// state is stable: one observation may lead through several states (init,
// then connecting, then connected).
func (k *Keeper) turn() {
	inRecovery := k.host.InRecovery()
	if inRecovery {
		k.switchoverRequested() // a new request makes the check due now
	}
	if k.configErr == nil && k.state != fsm.StandbyPromoting && !time.Now().Before(k.sched.nextCheck) {
		k.check(inRecovery)
		if k.loop.shutdown {
			return
		}
		inRecovery = k.host.InRecovery()
	}
	var d fsm.Decision
	for range fsm.States {
		d = fsm.Decide(k.observe(inRecovery))
		k.apply(d)
		if d.State == k.state || !k.transition(d) || k.loop.shutdown {
			break
		}
	}
	if !inRecovery {
		k.applyGuard(d)
		k.ensureExtension()
		k.warnTwoPhase()
	}
}

// sleepTime is how long the loop may wait before its next turn.
func (k *Keeper) sleepTime() time.Duration {
	d := time.Until(k.sched.nextCheck)
	switch {
	case k.state == fsm.StandbyPromoting:
		return promotePoll
	case k.configErr != nil:
		d = idleWait
	}
	if k.http.addr != "" {
		d = min(d, publishEvery)
	}
	return d
}

// await runs fn in a goroutine under a deadline and serves the host until
// it returns, so that a reload or a shutdown is handled while fn blocks.
// On shutdown it cancels fn and returns errShutdown without waiting.
func (k *Keeper) await(timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	k.loop.cancelJob = cancel
	defer func() { k.loop.cancelJob = nil }()
	done := make(chan error, 1)
	k.goSafe(func() {
		err := errors.New("panic in keeper goroutine")
		defer func() { done <- err }()
		err = fn(ctx)
	})
	for {
		select {
		case err := <-done:
			return err
		default:
		}
		if k.loop.shutdown || k.loop.fatal != nil {
			return errShutdown
		}
		k.serve(timeout) // fn wakes the loop when it returns
	}
}

// serve waits on the host once and handles what woke it.
func (k *Keeper) serve(timeout time.Duration) {
	ev := k.host.Wait(k.wake.fd(), timeout)
	if ev&host.EventWake != 0 {
		k.wake.drain()
	}
	k.runPosted()
	if ev&host.EventReload != 0 {
		k.reload()
	}
	if ev&host.EventShutdown != 0 {
		k.loop.shutdown = true
		if k.loop.cancelJob != nil {
			k.loop.cancelJob()
		}
	}
}

// goSafe runs fn in a goroutine that never takes the process down: a panic
// is recovered and makes the main loop return host.ExitRestart.
func (k *Keeper) goSafe(fn func()) {
	go func() {
		defer k.wake.wake()
		defer k.recoverFatal()
		fn()
	}()
}

// recoverFatal, deferred first in a goroutine, turns a panic into an error
// the main loop returns with (host.ExitRestart): a panic that reached the
// runtime would exit the process with a status that makes the postmaster
// restart the whole instance.
func (k *Keeper) recoverFatal() {
	if r := recover(); r != nil {
		err := fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		k.post(func() { k.loop.fatal = err })
	}
}

// post queues fn to run on the main goroutine and wakes it.
func (k *Keeper) post(fn func()) { k.wake.post(fn) }

func (k *Keeper) runPosted() {
	for _, fn := range k.wake.take() {
		fn()
	}
}

// reload reads the settings; invalid ones put the keeper in misconfigured.
func (k *Keeper) reload() {
	defer k.reloadOperator()
	defer k.reloadHTTP()
	if v, _, _ := k.host.Setting("pg_keeper.test_fatal_error"); v == "on" {
		testFatalError()
	}
	s, warnings, err := LoadSettings(k.host.Setting)
	for _, w := range warnings {
		k.host.Log(host.LevelWarning, "pg_keeper_go: "+w, "", "")
	}
	if err != nil {
		k.configErr = err
		hint := ""
		var se *SettingError
		if errors.As(err, &se) {
			hint = se.Hint
		}
		if msg := err.Error(); msg != k.logged["settings"] {
			k.logged["settings"] = msg
			k.host.Log(host.LevelWarning, "pg_keeper_go: "+msg, "The keeper does nothing until the settings are fixed; the server keeps running.", hint)
		}
		k.closeConns()
		return
	}
	old := k.settings
	k.settings, k.configErr = s, nil
	k.logged["settings"] = ""
	k.partner = conninfo.Summary(s.PartnerConninfo)
	if old.MyConninfo != s.MyConninfo || old.PartnerConninfo != s.PartnerConninfo {
		// A new partner must answer once before failover is armed again;
		// check it now rather than at the next tick.
		k.conns.stale, k.obs.EverConnected, k.obs.Failures = true, false, 0
		k.history.lastGoodStart = time.Time{}
		k.sched.nextCheck = time.Now()
		if k.loop.cancelJob != nil {
			k.loop.cancelJob()
		}
	}
	if old.KeepaliveTime != s.KeepaliveTime && !k.sched.lastCheck.IsZero() {
		k.sched.nextCheck = k.sched.lastCheck.Add(s.KeepaliveTime)
	}
	if old != (Settings{}) && old != s {
		k.host.Log(host.LevelInfo, "pg_keeper_go: settings reloaded", k.settingsDetail(), "")
	}
}

func (k *Keeper) settingsDetail() string {
	if k.configErr != nil {
		return ""
	}
	return fmt.Sprintf("%s; failover after %s", k.settings, k.settings.FailoverAfter())
}

// cleared is what the keeper logs, once, when the problem of a topic of
// logOnce is gone (topics whose recovery shows otherwise have none).
var cleared = map[string]string{
	"witness":     "the witness answers again",
	"walreceiver": "the WAL receiver can be read again",
	"grant":       "the standby grants leases",
	"heartbeat":   "the WAL heartbeat is written",
	"twophase":    "no subscription created with two_phase is left unchecked",
}

// logOnce logs prefix+msg when msg differs from what was last logged for
// topic, and reports whether it logged; an empty msg means the problem is
// gone, which is logged once for the topics of cleared.
func (k *Keeper) logOnce(topic, msg string, level host.Level, prefix, hint string) bool {
	before := k.logged[topic]
	if before == msg {
		return false
	}
	k.logged[topic] = msg
	if msg == "" {
		if c := cleared[topic]; c != "" {
			k.host.Log(host.LevelInfo, "pg_keeper_go: "+c, "", "")
		}
		return false
	}
	k.host.Log(level, prefix+msg, "", hint)
	return true
}
