package keeper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
)

// Exit codes of Run, as the C worker understands them.
const (
	ExitShutdown = 0 // requested shutdown: the worker is not restarted
	ExitRestart  = 1 // an error, logged: the postmaster restarts the worker
)

const (
	// promotePoll is how often the end of recovery is polled while promoting.
	promotePoll = 10 * time.Millisecond
	// writableTimeout bounds the wait for a promoted node to accept writes.
	writableTimeout = 30 * time.Second
	// recordTimeout bounds writing the failover record.
	recordTimeout = 10 * time.Second
	// syncTimeout bounds switching synchronous replication off or on.
	syncTimeout = 10 * time.Second
	// idleWait is the longest wait when nothing is scheduled.
	idleWait = time.Minute
	// stateFileName holds what must survive a restart of the worker.
	stateFileName = "pg_keeper_go.state"
	// fenceTimeout bounds ending the client sessions of a fenced node.
	fenceTimeout = 10 * time.Second
	// pauseSlack is how much longer than its deadline a check may seem to
	// take before the keeper concludes that it was paused (a stopped
	// process, a suspended machine) and discards the check.
	pauseSlack = time.Second
)

var errShutdown = errors.New("shutdown requested")

// Keeper is one run of the keeper in a background worker.
type Keeper struct {
	host Host
	deps Deps
	wake *waker

	settings  Settings
	partner   string // conninfo.Summary of the partner, made on reload
	configErr error
	prober    Prober
	node      Node
	witness   Witness
	stale     bool               // conninfos changed: rebuild prober and node
	cancelJob context.CancelFunc // cancels the goroutine await is serving
	shutdown  bool
	fatal     error // a recovered panic in a goroutine

	state         fsm.State
	failures      int
	everConnected bool
	syncNames     string       // the primary's synchronous_standby_names
	saved         *SyncSetting // non-nil while the keeper has switched to async
	lastCheck     time.Time
	nextCheck     time.Time
	lastSuccess   time.Time
	lastFailure   time.Time
	firstFailure  time.Time
	lastReason    string
	promoteAsked  time.Time
	promoteLSN    uint64
	promotedAt    time.Time
	lastLogged    string // last configuration problem logged, to log it once
	lastAnswered  string // last error the partner answered with, to log it once
	hostname      string
	dataDir       string

	// Split-brain protection (guard.go).
	systemID    uint64        // this cluster's system identifier
	judged      bool          // a check has completed since start-up
	fenced      string        // why this node is fenced ("" if not); persisted
	armed       bool          // a standby has granted this primary a lease; persisted
	clusterErr  string        // the partner belongs to another cluster
	leaseUntil  time.Duration // Boottime end of this primary's lease
	partnerLost bool          // the last check of the standby failed or got no grant
	guard       GuardMode
	guardReason string
	walAge      time.Duration     // the standby's WAL receiver: age of its last message
	witnessErr  error             // the last witness call failed
	holder      string            // the node holding the primary lease at the witness
	hold        string            // why promotion waits ("" if it does not)
	logged      map[string]string // last message per topic, to log each once

	// What only the HTTP API shows (http.go).
	http      httpAPI
	replayLag time.Duration // the standby's replay lag at the last check
	failovers int           // promotions since the worker started
}

// New prepares a keeper; Run starts it.
func New(host Host, deps Deps) (*Keeper, error) {
	w, err := newWaker()
	if err != nil {
		return nil, err
	}
	k := &Keeper{host: host, deps: deps, wake: w, state: fsm.Init, guard: GuardPending, logged: map[string]string{}}
	k.hostname, _ = os.Hostname()
	k.dataDir, _ = host.Env("data_directory")
	if v, ok := host.Env("system_identifier"); ok {
		k.systemID, _ = strconv.ParseUint(v, 10, 64)
	}
	return k, nil
}

// Run is the keeper's main loop.  It returns ExitShutdown when the server
// asks the worker to stop and ExitRestart after an error it has logged; it
// never panics.
func (k *Keeper) Run() (code int) {
	defer func() {
		if r := recover(); r != nil {
			k.host.Log(LevelWarning, fmt.Sprintf("pg_keeper_go: keeper stopped by a panic: %v", r),
				string(debug.Stack()), "The worker restarts; please report this as a bug.")
			code = ExitRestart
		}
		k.stopHTTP()
		k.closeConns()
		k.wake.close()
	}()

	k.loadState()
	k.reload()
	k.host.Log(LevelInfo, "pg_keeper_go: keeper started", k.settingsDetail(), "")
	for !k.shutdown {
		k.turn()
		if k.fatal != nil {
			k.host.Log(LevelWarning, "pg_keeper_go: keeper stopped by an error: "+k.fatal.Error(), "",
				"The worker restarts; please report this as a bug.")
			return ExitRestart
		}
		k.publish()
		if !k.shutdown {
			k.serve(k.sleepTime())
		}
	}
	k.host.Log(LevelInfo, "pg_keeper_go: keeper stopped", "", "")
	return ExitShutdown
}

// turn runs one check when it is due, then decides and acts.
func (k *Keeper) turn() {
	inRecovery := k.host.InRecovery()
	if inRecovery && (k.fenced != "" || k.armed) {
		// Rebuilt as a standby (or a base backup carried the primary's
		// state file): nothing of the primary's protection applies.
		k.fenced, k.armed = "", false
		k.saveState()
	}
	if k.configErr == nil && k.state != fsm.StandbyPromoting && !time.Now().Before(k.nextCheck) {
		k.check(inRecovery)
		if k.shutdown {
			return
		}
		inRecovery = k.host.InRecovery()
	}
	// Decide until the state is stable: one observation may lead through
	// several states (init, then connecting, then connected).
	for range fsm.States {
		switch {
		case inRecovery && k.failures >= k.settings.KeepaliveCount && k.state != fsm.StandbyPromoting:
			k.updateHold()
		case k.failures < k.settings.KeepaliveCount:
			k.hold = ""
		}
		target := fsm.Decide(fsm.Observation{
			Current:        k.state,
			ConfigValid:    k.configErr == nil && k.clusterErr == "",
			InRecovery:     inRecovery,
			Failures:       k.failures,
			Threshold:      k.settings.KeepaliveCount,
			EverConnected:  k.everConnected,
			SyncConfigured: k.syncNames != "",
			SwitchedAsync:  k.saved != nil,
			PromotionHeld:  k.hold != "",
			Fenced:         k.fenced != "",
		})
		if target == k.state || !k.transition(target) || k.shutdown {
			break
		}
	}
	if !inRecovery {
		k.updateGuard()
	}
}

// check runs one check of the partner and counts its result.  Its deadline
// is keepalive_time, except for a check whose failure would make the keeper
// act (the keepalive_count-th in a row): that one gets check_timeout.  Only
// that last deadline adds to the time a silent partner takes to be declared
// lost, while the earlier checks tolerate a lost packet or two (TCP
// retransmits after 200 ms or more).
func (k *Keeper) check(inRecovery bool) {
	if err := k.ensureConns(); err != nil {
		k.countFailure(err)
		k.nextCheck = time.Now().Add(k.settings.KeepaliveTime)
		return
	}
	start := time.Now()
	k.lastCheck = start
	k.nextCheck = start.Add(k.settings.KeepaliveTime)
	bootStart := Boottime()
	var (
		sc     StandbyCheck
		pc     PrimaryCheck
		wl     WitnessLease
		wErr   error
		holder string
	)
	deadline := k.settings.KeepaliveTime
	if k.failures+1 >= k.settings.KeepaliveCount {
		deadline = k.settings.CheckTimeout
	}
	_, timeline, _ := k.host.WALPosition()
	err := k.await(deadline, func(ctx context.Context) error {
		// The witness is asked at the same time as the partner: a primary
		// whose standby hangs must still renew its lease there in time.
		var wg sync.WaitGroup
		if k.witness != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if inRecovery {
					_, holder, wErr = k.witness.StandbyHeartbeat(ctx, timeline, k.settings.LeaseMargin())
				} else {
					wl, wErr = k.witness.RenewPrimary(ctx, timeline, k.settings.Lease())
				}
			}()
		}
		defer wg.Wait()
		var err error
		if inRecovery {
			pc, err = k.prober.CheckPrimary(ctx)
		} else {
			sc, err = k.prober.CheckStandby(ctx)
		}
		return err
	})
	switch {
	case k.shutdown:
		return
	case k.stale:
		// The settings changed under the check: its result says nothing.
		k.closeConns()
		k.nextCheck = time.Now()
		return
	}
	if took := time.Since(start); took > deadline+pauseSlack {
		// This process did not run for a while (a stopped process, a
		// suspended machine): what the check saw is stale, and counting
		// it could promote a standby over one pause.  Check again now.
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: a check took %s for a deadline of %s: the keeper was paused; the check is discarded and repeated",
			took.Round(time.Millisecond), deadline), "", "")
		k.nextCheck = time.Now()
		return
	}
	k.judged = true
	if k.witness != nil {
		k.witnessErr, k.holder = wErr, holder
		k.logOnce("witness", errText(wErr), LevelWarning, "pg_keeper_go: the witness cannot be reached: ",
			"Check pg_keeper.witness_conninfo; the witness's role needs CREATE on its schema once, or run sql/pg_keeper_witness.sql there.")
	}
	if inRecovery {
		k.walAge, k.replayLag = pc.WALReceiverAge, pc.ReplayLag
		k.logOnce("walreceiver", errText(pc.WALReceiverErr), LevelWarning, "pg_keeper_go: cannot read the WAL receiver: ",
			"The role of pg_keeper.my_conninfo needs pg_read_all_stats (or superuser) to see pg_stat_wal_receiver.")
		k.observePartner(pc.Partner)
	} else {
		k.syncNames = sc.SyncStandbyNames
		k.observePartner(sc.Partner)
		k.primaryLease(bootStart, sc, wl, wErr, err)
	}
	var answered *AnsweredError
	if errors.As(err, &answered) {
		// Alive, but something is wrong that a failover would not cure.
		if msg := conninfo.RedactError(answered.Err); msg != k.lastAnswered {
			k.lastAnswered = msg
			k.host.Log(LevelWarning, "pg_keeper_go: the partner answers with an error: "+msg, "This does not count as a failed check.", "Check pg_keeper.partner_conninfo and the partner's pg_hba.conf.")
		}
		err = nil
	}
	k.observeCheck(time.Since(start), err == nil)
	if err != nil {
		k.countFailure(err)
		return
	}
	if k.failures > 0 {
		k.host.Log(LevelDebug, fmt.Sprintf("pg_keeper_go: partner answered after %d failed checks", k.failures), "", "")
	}
	k.failures = 0
	k.firstFailure = time.Time{}
	k.lastSuccess = time.Now()
	if inRecovery {
		k.everConnected = true
	}
}

func (k *Keeper) countFailure(err error) {
	now := time.Now()
	if k.failures == 0 {
		k.firstFailure = now
	}
	k.failures++
	k.lastFailure = now
	k.lastReason = oneLine(conninfo.RedactError(err))
}

// oneLine folds a multi-line error (pgx lists every address it tried) into
// one line, without repeated lines.
func oneLine(s string) string {
	var parts []string
	seen := map[string]bool{}
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !seen[l] {
			seen[l] = true
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// facts describes the checks behind a decision, for its log line.
func (k *Keeper) facts() string {
	if k.failures == 0 {
		if k.lastSuccess.IsZero() {
			return ""
		}
		return fmt.Sprintf("last good check %s ago", time.Since(k.lastSuccess).Round(time.Millisecond))
	}
	return fmt.Sprintf("%d of %d checks failed in a row over %s, last: %s",
		k.failures, k.settings.KeepaliveCount, time.Since(k.firstFailure).Round(time.Millisecond), k.lastReason)
}

// transition takes the table's transition to target, running its action,
// and reports whether it did.  A failed action leaves the keeper where it
// was; it tries again next turn.
func (k *Keeper) transition(target fsm.State) bool {
	t, ok := fsm.Lookup(k.state, target)
	if !ok {
		t = fsm.Transition{From: k.state, To: target, Why: "no such transition in the table (a bug)"}
	}
	msg := fmt.Sprintf("pg_keeper_go: transition from %q to %q: %s", k.state, target, t.Why)
	if f := k.facts(); f != "" && target != fsm.Misconfigured {
		msg += " (" + f + ")"
	}
	k.host.Log(LevelInfo, msg, "", "")
	if err := k.act(t.Action); err != nil {
		if !errors.Is(err, errShutdown) {
			k.host.Log(LevelWarning, fmt.Sprintf("pg_keeper_go: %s failed: %s", t.Action, conninfo.RedactError(err)),
				"", fmt.Sprintf("The keeper stays in state %q and tries again in %s.", k.state, k.settings.KeepaliveTime))
		}
		return false
	}
	if k.state.Role() == "primary" && target.Role() == "standby" {
		// Demoted: the partner is a new primary that must answer first.
		// (On promotion the count carries over: the old primary is still
		// failing, and a promoted node with synchronous replication
		// configured switches to async at once.)
		k.failures, k.firstFailure, k.everConnected = 0, time.Time{}, false
	}
	k.state = target
	k.host.SetTitle(target.Title())
	return true
}

// act runs the action of a transition.
func (k *Keeper) act(a fsm.Action) error {
	switch a {
	case fsm.Promote:
		return k.promote()
	case fsm.FinishPromotion:
		k.finishPromotion()
		return nil
	case fsm.DisableSync:
		if k.saved != nil {
			return nil
		}
		if k.guard == GuardLeased && Boottime() >= k.leaseUntil {
			// The standby may be promoting: releasing the commits that
			// wait for it would acknowledge writes it never received.
			return errors.New("the lease has expired: commits keep waiting for the standby rather than be acknowledged without it")
		}
		var saved SyncSetting
		err := k.await(syncTimeout, func(ctx context.Context) (err error) {
			saved, err = k.node.DisableSync(ctx)
			return err
		})
		if err != nil {
			return err
		}
		k.saved = &saved
		k.saveState()
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: switched to asynchronous replication: synchronous_standby_names was %q", saved.Value),
			"Commits no longer wait for the lost standby.", "The keeper restores the setting when the standby streams again.")
	case fsm.Fence:
		return k.fence()
	case fsm.RestoreSync:
		saved := *k.saved
		if err := k.await(syncTimeout, func(ctx context.Context) error { return k.node.RestoreSync(ctx, saved) }); err != nil {
			return err
		}
		k.saved = nil
		k.saveState()
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: restored synchronous replication: synchronous_standby_names = %q", saved.Value), "", "")
	}
	return nil
}

func (k *Keeper) promote() error {
	lsn, tli, err := k.host.WALPosition()
	if err != nil {
		lsn = 0
	}
	// From here on this standby grants no lease; the last one it granted
	// must have expired (PromotionHold checked it, but one may have been
	// granted since).
	last, err := k.host.LeaseGrants(GrantsClose)
	if err == nil && last > 0 {
		if end := last + k.settings.Lease() + k.settings.LeaseMargin(); Boottime() < end {
			err = fmt.Errorf("the primary was granted a lease %s ago", (Boottime() - last).Round(time.Millisecond))
		}
	}
	claimStart := Boottime() // the lease the claim registers starts no earlier
	if err == nil && k.witness != nil {
		err = k.await(k.settings.KeepaliveTime, func(ctx context.Context) error {
			return k.witness.Claim(ctx, tli+1, k.settings.Lease(), k.settings.LeaseMargin())
		})
	}
	if err == nil {
		// The promoted node must take writes at once: under a lease that
		// the witness holds for it, or open (its partner was the primary).
		if k.witness != nil {
			k.leaseUntil = claimStart + k.settings.Lease()
			err = k.host.SetGuard(GuardLeased, k.leaseUntil, "promoted: lease registered at the witness")
		} else {
			err = k.host.SetGuard(GuardOpen, 0, "promoted by the keeper: no standby has followed this primary yet")
		}
	}
	if err == nil {
		err = k.host.Promote()
	}
	if err != nil {
		if _, rerr := k.host.LeaseGrants(GrantsOpen); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	k.armed, k.judged = false, true
	k.saveState()
	k.promoteAsked = time.Now()
	k.promoteLSN = lsn
	k.host.SetTitle(fsm.StandbyPromoting.Title())
	return nil
}

// finishPromotion runs once recovery has ended: it waits until the node
// accepts writes, records the failover and starts after_command.  Each step
// that fails is logged; none of them undoes the promotion.
func (k *Keeper) finishPromotion() {
	k.promotedAt = time.Now()
	k.failovers++
	err := k.await(writableTimeout, func(ctx context.Context) error { return k.node.WaitWritable(ctx) })
	if errors.Is(err, errShutdown) {
		return
	}
	_, tli, _ := k.host.WALPosition()
	writable := time.Since(k.promoteAsked).Round(time.Millisecond)
	if err != nil {
		k.host.Log(LevelWarning, "pg_keeper_go: promoted node does not accept writes yet: "+conninfo.RedactError(err), "",
			"Check pg_keeper.my_conninfo; the failover record and after_command run anyway.")
	} else {
		k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: promoted: the node accepts writes on timeline %d, %s after the promotion request", tli, writable), "", "")
	}

	rec := FailoverRecord{
		PromotedAt:  k.promotedAt,
		Host:        k.hostname,
		OldPrimary:  k.partner,
		NewTimeline: tli,
		PromoteLSN:  k.promoteLSN,
		Reason:      fmt.Sprintf("%d of %d checks of the primary failed; last: %s", k.failures, k.settings.KeepaliveCount, k.lastReason),
	}
	if k.settings.FailoverLogDatabase != "" {
		var recorded bool
		err := k.await(recordTimeout, func(ctx context.Context) (err error) {
			recorded, err = k.node.RecordFailover(ctx, rec)
			return err
		})
		switch {
		case errors.Is(err, errShutdown):
			return
		case recorded:
			k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: failover recorded in %s", k.settings.failoverLogTarget()), "", "")
		case err != nil:
			k.host.Log(LevelWarning, "pg_keeper_go: failover not recorded: "+conninfo.RedactError(err), "",
				"Create the table with sql/pg_state.sql, or set pg_keeper.failover_log_database = '' to turn the record off.")
		}
	}
	k.startAfterCommand(rec)
}

// startAfterCommand starts after_command from the main goroutine (a child
// forked on another thread would inherit its blocked signals) and reaps it
// in the background; its output goes to the server log.
func (k *Keeper) startAfterCommand(rec FailoverRecord) {
	if k.settings.AfterCommand == "" {
		return
	}
	env := []string{
		"PG_KEEPER_ROLE=primary",
		"PG_KEEPER_OLD_PRIMARY=" + rec.OldPrimary,
		fmt.Sprintf("PG_KEEPER_TIMELINE=%d", rec.NewTimeline),
		"PG_KEEPER_PROMOTE_LSN=" + FormatLSN(rec.PromoteLSN),
		fmt.Sprintf("PG_KEEPER_PROMOTED_AT=%d", rec.PromotedAt.Unix()),
	}
	for _, name := range []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR"} {
		if v, ok := k.host.Env(name); ok {
			env = append(env, name+"="+v)
		}
	}
	if k.dataDir != "" {
		env = append(env, "PGDATA="+k.dataDir)
	}
	cmd, err := StartCommand(k.settings.AfterCommand, env, k.dataDir, k.settings.AfterCommandTimeout)
	if err != nil {
		k.host.Log(LevelWarning, "pg_keeper_go: could not start after_command: "+err.Error(), "", "Check pg_keeper.after_command.")
		return
	}
	k.host.Log(LevelInfo, fmt.Sprintf("pg_keeper_go: after_command started (pid %d)", cmd.Pid()), "", "")
	k.goSafe(func() {
		res := cmd.Wait()
		k.post(func() { k.logCommand(res) })
	})
}

func (k *Keeper) logCommand(res CommandResult) {
	level, msg := LevelInfo, fmt.Sprintf("pg_keeper_go: after_command finished in %s", res.Duration.Round(time.Millisecond))
	switch {
	case res.TimedOut:
		level, msg = LevelWarning, fmt.Sprintf("pg_keeper_go: after_command killed after %s (pg_keeper.after_command_timeout)", res.Duration.Round(time.Millisecond))
	case res.Err != nil:
		level, msg = LevelWarning, fmt.Sprintf("pg_keeper_go: after_command failed after %s: %v", res.Duration.Round(time.Millisecond), res.Err)
	}
	detail := ""
	if out := strings.TrimSpace(res.Output); out != "" {
		detail = "Output:\n" + out
	}
	k.host.Log(level, msg, detail, "")
}

// reload reads the settings; invalid ones put the keeper in misconfigured.
func (k *Keeper) reload() {
	defer k.reloadHTTP()
	s, warnings, err := LoadSettings(k.host.Setting)
	for _, w := range warnings {
		k.host.Log(LevelWarning, "pg_keeper_go: "+w, "", "")
	}
	if err != nil {
		k.configErr = err
		if msg := err.Error(); msg != k.lastLogged {
			k.lastLogged = msg
			hint := ""
			var se *SettingError
			if errors.As(err, &se) {
				hint = se.Hint
			}
			k.host.Log(LevelWarning, "pg_keeper_go: "+msg, "The keeper does nothing until the settings are fixed; the server keeps running.", hint)
		}
		k.closeConns()
		return
	}
	old := k.settings
	k.settings, k.configErr, k.lastLogged = s, nil, ""
	k.partner = conninfo.Summary(s.PartnerConninfo)
	if old.MyConninfo != s.MyConninfo || old.PartnerConninfo != s.PartnerConninfo {
		// A new partner must answer once before failover is armed again;
		// check it now rather than at the next tick.
		k.stale, k.everConnected, k.failures = true, false, 0
		k.nextCheck = time.Now()
		if k.cancelJob != nil {
			k.cancelJob()
		}
	}
	if old.KeepaliveTime != s.KeepaliveTime && !k.lastCheck.IsZero() {
		k.nextCheck = k.lastCheck.Add(s.KeepaliveTime)
	}
	if old != (Settings{}) && old != s {
		k.host.Log(LevelInfo, "pg_keeper_go: settings reloaded", k.settingsDetail(), "")
	}
}

func (k *Keeper) settingsDetail() string {
	if k.configErr != nil {
		return ""
	}
	return fmt.Sprintf("%s; failover after %s", k.settings, k.settings.FailoverAfter())
}

func (k *Keeper) ensureConns() error {
	if k.stale {
		k.closeConns()
	}
	var err error
	if k.prober == nil {
		if k.prober, err = k.deps.NewProber(k.settings); err != nil {
			return fmt.Errorf("prepare partner checks: %w", err)
		}
	}
	if k.node == nil {
		if k.node, err = k.deps.NewNode(k.settings); err != nil {
			return fmt.Errorf("prepare local connection: %w", err)
		}
	}
	if k.witness == nil && k.settings.WitnessConninfo != "" && k.deps.NewWitness != nil {
		port, _, _ := k.host.Setting("port")
		if k.witness, err = k.deps.NewWitness(k.settings, k.hostname+":"+port, k.systemID); err != nil {
			return fmt.Errorf("prepare witness connection: %w", err)
		}
	}
	return nil
}

func (k *Keeper) closeConns() {
	if k.witness != nil {
		k.witness.Close()
		k.witness = nil
	}
	if k.prober != nil {
		k.prober.Close()
		k.prober = nil
	}
	if k.node != nil {
		k.node.Close()
		k.node = nil
	}
	k.stale = false
}

// sleepTime is how long the loop may wait before its next turn.
func (k *Keeper) sleepTime() time.Duration {
	d := time.Until(k.nextCheck)
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

func (k *Keeper) publish() {
	lastReason := ""
	if k.failures > 0 {
		lastReason = k.lastReason
	}
	st := Status{
		Role:                k.state.Role(),
		State:               k.state.Short(),
		Partner:             k.partner,
		ConsecutiveFailures: k.failures,
		KeepaliveTime:       k.settings.KeepaliveTime,
		KeepaliveCount:      k.settings.KeepaliveCount,
		LastSuccess:         k.lastSuccess,
		LastFailure:         k.lastFailure,
		LastFailureReason:   lastReason,
		PromotedAt:          k.promotedAt,
		UpdatedAt:           time.Now(),
		Guard:               k.guard.String(),
		GuardReason:         k.guardReason,
		Hold:                k.hold,
	}
	if k.configErr != nil {
		st.ConfigError = k.configErr.Error()
		if st.Role == "unknown" {
			st.Role = map[bool]string{true: "standby", false: "primary"}[k.host.InRecovery()]
		}
	}
	lsn, tli, err := k.host.WALPosition()
	if err == nil {
		st.Timeline = tli
	}
	k.host.Publish(st)
	k.publishHTTP(st, lsn, k.host.InRecovery())
}

// await runs fn in a goroutine under a deadline and serves the host until
// it returns, so that a reload or a shutdown is handled while fn blocks.
// On shutdown it cancels fn and returns errShutdown without waiting.
func (k *Keeper) await(timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	k.cancelJob = cancel
	defer func() { k.cancelJob = nil }()
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
		if k.shutdown || k.fatal != nil {
			return errShutdown
		}
		k.serve(timeout) // fn wakes the loop when it returns
	}
}

// serve waits on the host once and handles what woke it.
func (k *Keeper) serve(timeout time.Duration) {
	ev := k.host.Wait(k.wake.fd(), timeout)
	if ev&EventWake != 0 {
		k.wake.drain()
	}
	k.runPosted()
	if ev&EventReload != 0 {
		k.reload()
	}
	if ev&EventShutdown != 0 {
		k.shutdown = true
		if k.cancelJob != nil {
			k.cancelJob()
		}
	}
}

// goSafe runs fn in a goroutine that never takes the process down: a panic
// is recovered and makes the main loop return ExitRestart.
func (k *Keeper) goSafe(fn func()) {
	go func() {
		defer k.wake.wake()
		defer func() {
			if r := recover(); r != nil {
				err := fmt.Errorf("panic: %v\n%s", r, debug.Stack())
				k.post(func() { k.fatal = err })
			}
		}()
		fn()
	}()
}

// post queues fn to run on the main goroutine and wakes it.
func (k *Keeper) post(fn func()) { k.wake.post(fn) }

func (k *Keeper) runPosted() {
	for _, fn := range k.wake.take() {
		fn()
	}
}

// persisted is what survives a restart of the worker, in
// $PGDATA/pg_keeper_go.state.
type persisted struct {
	SwitchedAsync *SyncSetting `json:"switched_async,omitempty"`
	// Fenced says why this node was fenced: it stays fenced across
	// restarts until it is a standby again.
	Fenced string `json:"fenced,omitempty"`
	// Armed: a standby has followed this primary.
	Armed bool `json:"armed,omitempty"`
}

func (k *Keeper) statePath() string {
	if k.dataDir == "" {
		return ""
	}
	return filepath.Join(k.dataDir, stateFileName)
}

func (k *Keeper) loadState() {
	path := k.statePath()
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var p persisted
	if err == nil {
		err = json.Unmarshal(b, &p)
	}
	if err != nil {
		k.host.Log(LevelWarning, fmt.Sprintf("pg_keeper_go: ignoring unreadable state file %q: %v", path, err), "", "")
		return
	}
	k.saved = p.SwitchedAsync
	k.armed = p.Armed
	if p.Fenced != "" && !k.host.InRecovery() {
		k.fenced = p.Fenced
		k.host.SetGuard(GuardFenced, 0, k.fenced)
		k.guard, k.guardReason = GuardFenced, k.fenced
		k.host.Log(LevelWarning, "pg_keeper_go: this node stays fenced: "+k.fenced, "It was fenced before the restart.", fenceHint)
	}
}

// saveState writes the state file atomically (write, fsync, rename).
func (k *Keeper) saveState() {
	path := k.statePath()
	if path == "" {
		return
	}
	if err := writeFileAtomic(path, persisted{SwitchedAsync: k.saved, Fenced: k.fenced, Armed: k.armed}); err != nil {
		k.host.Log(LevelWarning, "pg_keeper_go: could not save state: "+err.Error(), "",
			"After a restart of the worker the keeper may not restore synchronous replication by itself.")
	}
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// FormatLSN writes a WAL position the way PostgreSQL does ("0/3000060").
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", uint32(lsn>>32), uint32(lsn))
}
