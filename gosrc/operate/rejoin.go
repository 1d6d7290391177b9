package operate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// Rejoin methods, as RejoinResult.Method names them.
const (
	MethodSettings   = "standby settings only"
	MethodRewind     = "pg_rewind"
	MethodBaseBackup = "base backup"
)

// Deadlines of the steps that run programs.
const (
	stopTimeout       = 10 * time.Minute
	recoveryTimeout   = time.Hour
	rewindTimeout     = 6 * time.Hour
	baseBackupTimeout = 48 * time.Hour
	startTimeout      = time.Hour
	queryTimeout      = 10 * time.Second
)

// RejoinOptions says which node to rejoin to which primary, and how.
type RejoinOptions struct {
	// DataDir is the node's data directory (required).
	DataDir string
	// Primary is the current primary's connection string: one host, a
	// role with REPLICATION (and for pg_rewind a superuser), no password
	// (it comes from PGPASSWORD or ~/.pgpass).  It is written into the
	// node's primary_conninfo.
	Primary string
	// BinDir holds PostgreSQL's programs; "" for the major of DataDir in
	// Debian's layout, else pg_config's.
	BinDir string
	// ConfigFile is the node's postgresql.conf when it is not in DataDir
	// (Debian's /etc/postgresql/NN/main), for crash recovery.
	ConfigFile string
	// StopCommand and StartCommand stop and start the node; "" for pg_ctl.
	StopCommand, StartCommand string
	// BaseBackup allows a fresh base backup when pg_rewind cannot be used
	// or fails.  It copies the whole primary.
	BaseBackup bool
	// DryRun only says what would be done.
	DryRun bool
	// Node reaches the node once started; "" to take its socket and port
	// from postmaster.pid.
	Node string
	// Timeout bounds the wait until the node streams.
	Timeout time.Duration
	// Log prints a progress line.
	Log func(format string, args ...any)
}

// RejoinResult is what Rejoin did.
type RejoinResult struct {
	Method   string        // MethodSettings, MethodRewind or MethodBaseBackup
	Why      string        // why that method
	Took     time.Duration // from the start to streaming
	OldData  string        // where a base backup left the node's old files (inside the data directory)
	Timeline uint32        // the timeline the node streams on
}

// HintError is an error with what the operator can do about it.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

func hinted(hint, format string, args ...any) error {
	return &HintError{Err: fmt.Errorf(format, args...), Hint: hint}
}

// primaryFacts is what the replication protocol says of the primary.
type primaryFacts struct {
	SystemID uint64
	Timeline uint32
	XLogPos  uint64
	History  []Switch
}

// rejoin is one run of Rejoin.
type rejoin struct {
	opt     RejoinOptions
	primary *pgconn.Config
	started time.Time
}

// Rejoin makes the node of opt.DataDir a streaming standby of opt.Primary:
// it stops the node if it runs, finds out from IDENTIFY_SYSTEM and
// TIMELINE_HISTORY of the primary whether the node's WAL diverged from
// the primary's history, rewinds it with pg_rewind (or, with BaseBackup,
// copies the primary anew) when it did, keeps the node's configuration
// files, writes the standby settings, starts it and waits until it
// streams.  With DryRun it says what it would do and changes nothing.
func Rejoin(ctx context.Context, opt RejoinOptions) (RejoinResult, error) {
	r := &rejoin{opt: opt, started: time.Now()}
	if r.opt.Log == nil {
		r.opt.Log = func(string, ...any) {}
	}
	if err := r.validate(); err != nil {
		return RejoinResult{}, err
	}
	pf, err := r.primaryFacts(ctx)
	if err != nil {
		return RejoinResult{}, err
	}
	r.opt.Log("primary %s: system %d, timeline %d, WAL at %s%s", conninfo.Summary(opt.Primary), pf.SystemID, pf.Timeline,
		pglogrepl.LSN(pf.XLogPos), historyText(pf.History))
	running := r.running(ctx)
	cd, err := readControlData(ctx, r.opt.BinDir, r.opt.DataDir)
	if err != nil {
		return RejoinResult{}, err
	}
	r.opt.Log("node %s: system %d, %s, timeline %d, last checkpoint at %s, wal_log_hints %s, data checksums %s",
		r.opt.DataDir, cd.SystemID, map[bool]string{true: "running", false: cd.State}[running], cd.Timeline,
		pglogrepl.LSN(cd.Checkpoint), onOff(cd.WALLogHints), onOff(cd.Checksums))
	if cd.SystemID != pf.SystemID && !r.opt.BaseBackup {
		return RejoinResult{}, hinted("Check --primary; or rerun with --basebackup to replace this node's data with a copy of the primary.",
			"the node belongs to another cluster (system %d) than the primary (system %d)", cd.SystemID, pf.SystemID)
	}
	var ahead *Divergence // a running primary whose WAL already diverged
	if running && cd.SystemID == pf.SystemID {
		if pos, err := r.runningPrimaryPosition(ctx); err == nil {
			if d, err := Diverge(pos, pf.Timeline, pf.XLogPos, pf.History); err == nil && d.Diverged {
				ahead = &d
			}
		}
	}
	if r.opt.DryRun {
		return r.dryRun(running, cd, pf, ahead)
	}
	if ahead != nil && !cd.CanRewind() && !r.opt.BaseBackup {
		_, _, err := r.choose(cd, pf, *ahead)
		return RejoinResult{}, err
	}

	if running {
		r.opt.Log("stopping the node: %s", r.opt.StopCommand)
		if err := r.shell(ctx, r.opt.StopCommand, stopTimeout); err != nil {
			return RejoinResult{}, hinted("Stop the node yourself, or give the command that does with --stop-command.", "stopping the node: %w", err)
		}
	}
	if cd, err = r.cleanShutdown(ctx); err != nil {
		return RejoinResult{}, err
	}
	d, err := Diverge(Position{cd.Timeline, cd.Checkpoint}, pf.Timeline, pf.XLogPos, pf.History)
	if err != nil && cd.SystemID == pf.SystemID {
		return RejoinResult{}, &HintError{Err: err, Hint: "pg_keeper_go status --node ... --node ... shows which node is the primary."}
	}
	method, why, err := r.choose(cd, pf, d)
	if err != nil {
		return RejoinResult{}, err
	}
	r.opt.Log("%s: %s", method, why)
	res := RejoinResult{Method: method, Why: why}
	if method != MethodSettings {
		if res, err = r.copyFromPrimary(ctx, res); err != nil {
			return res, err
		}
	}
	if err := writeStandbySettings(r.opt.DataDir, r.primaryConninfo()); err != nil {
		return res, err
	}
	r.opt.Log("standby settings written: standby.signal, primary_conninfo in postgresql.auto.conf")
	r.opt.Log("starting the node: %s", r.opt.StartCommand)
	if err := r.shell(ctx, r.opt.StartCommand, startTimeout); err != nil {
		return res, hinted("See the node's server log; fix what it says and start the node: it is already set up as a standby.", "starting the node: %w", err)
	}
	tli, err := r.waitStreaming(ctx, pf.Timeline)
	if err != nil {
		return res, err
	}
	res.Took, res.Timeline = time.Since(r.started), tli
	return res, nil
}

// validate checks the options and fills in the defaults.
func (r *rejoin) validate() error {
	o := &r.opt
	if o.DataDir == "" {
		return errors.New("no data directory given")
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	o.DataDir = filepath.Clean(abs)
	version, err := os.ReadFile(filepath.Join(o.DataDir, "PG_VERSION"))
	if err != nil {
		return hinted("Give the node's data directory (--pgdata or PGDATA).", "%s is not a PostgreSQL data directory: %w", o.DataDir, err)
	}
	st, err := os.Stat(o.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return hinted("Run it as that user, e.g. sudo -u postgres pg_keeper_go rejoin ...",
			"the data directory %s belongs to uid %d, and this process runs as uid %d: PostgreSQL's programs must run as its owner", o.DataDir, sys.Uid, os.Geteuid())
	}
	if o.Primary == "" {
		return errors.New("no primary given (--primary)")
	}
	if err := refusePassword(o.Primary); err != nil {
		return &HintError{Err: err, Hint: "primary_conninfo would keep it too; the node's WAL receiver reads the ~/.pgpass of the data directory's owner."}
	}
	if err := refusePassword(o.Node); err != nil {
		return err
	}
	pc, err := conninfo.Parse(o.Primary)
	if err != nil {
		return err
	}
	for _, fb := range pc.Fallbacks {
		if fb.Host != pc.Host || fb.Port != pc.Port {
			return errors.New("the primary's connection string names several hosts: give the current primary only")
		}
	}
	r.primary = pc
	if o.BinDir == "" {
		o.BinDir = filepath.Join("/usr/lib/postgresql", strings.TrimSpace(string(version)), "bin")
		if _, err := os.Stat(filepath.Join(o.BinDir, "pg_ctl")); err != nil {
			return hinted("Give PostgreSQL's bindir with --bindir (pg_config --bindir).", "pg_ctl not found in %s", o.BinDir)
		}
	}
	pgctl := shellJoin(filepath.Join(o.BinDir, "pg_ctl"))
	if o.StopCommand == "" {
		o.StopCommand = pgctl + " -D " + shellJoin(o.DataDir) + " -m fast -w -t 600 stop"
	}
	if o.StartCommand == "" {
		logFile := filepath.Join(o.DataDir, "log", "pg_keeper_go-rejoin.log")
		o.StartCommand = "mkdir -p " + shellJoin(filepath.Dir(logFile)) + " && " + pgctl + " -D " + shellJoin(o.DataDir) +
			" -l " + shellJoin(logFile) + " -w -t 3600 start"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	return nil
}

// primaryFacts asks the primary who it is over SQL (it must not be in
// recovery) and over the replication protocol (IDENTIFY_SYSTEM, and
// TIMELINE_HISTORY of its timeline).
func (r *rejoin) primaryFacts(ctx context.Context) (primaryFacts, error) {
	var pf primaryFacts
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	cfg, err := pgsession.NewConnConfig(r.primary.Copy(), ApplicationName)
	if err != nil {
		return pf, err
	}
	conn, err := pgx.ConnectConfig(qctx, cfg)
	if err != nil {
		return pf, hinted("Check --primary, pg_hba.conf on the primary, and the password in ~/.pgpass or PGPASSWORD.",
			"connecting to the primary: %s", conninfo.ErrorLine(err))
	}
	var inRecovery bool
	err = conn.QueryRow(qctx, "select pg_is_in_recovery()").Scan(&inRecovery)
	closeCtx, closeCancel := context.WithTimeout(context.Background(), time.Second)
	conn.Close(closeCtx)
	closeCancel()
	switch {
	case err != nil:
		return pf, fmt.Errorf("asking the primary: %s", conninfo.ErrorLine(err))
	case inRecovery:
		return pf, hinted("Give the current primary with --primary (pg_keeper_go status shows it).", "%s is a standby, not the primary", conninfo.Summary(r.opt.Primary))
	}

	rc := r.primary.Copy()
	rc.RuntimeParams["replication"] = "true"
	repl, err := pgconn.ConnectConfig(qctx, rc)
	if err != nil {
		return pf, hinted("The role of --primary needs the REPLICATION attribute (or superuser) and a 'replication' line in the primary's pg_hba.conf.",
			"opening a replication connection to the primary: %s", conninfo.ErrorLine(err))
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		repl.Close(cctx)
		ccancel()
	}()
	id, err := pglogrepl.IdentifySystem(qctx, repl)
	if err != nil {
		return pf, fmt.Errorf("IDENTIFY_SYSTEM: %s", conninfo.ErrorLine(err))
	}
	if _, err := fmt.Sscan(id.SystemID, &pf.SystemID); err != nil {
		return pf, fmt.Errorf("IDENTIFY_SYSTEM: system identifier %q: %w", id.SystemID, err)
	}
	pf.Timeline, pf.XLogPos = uint32(id.Timeline), uint64(id.XLogPos)
	if pf.Timeline > 1 {
		h, err := pglogrepl.TimelineHistory(qctx, repl, id.Timeline)
		if err != nil {
			return pf, fmt.Errorf("TIMELINE_HISTORY %d: %s", id.Timeline, conninfo.ErrorLine(err))
		}
		if pf.History, err = ParseHistory(h.Content); err != nil {
			return pf, err
		}
	}
	return pf, nil
}

// running reports whether the node's server runs (pg_ctl status).
func (r *rejoin) running(ctx context.Context) bool {
	err := r.shell(ctx, shellJoin(filepath.Join(r.opt.BinDir, "pg_ctl"), "status", "-D", r.opt.DataDir), queryTimeout)
	return err == nil
}

// cleanShutdown brings a stopped node to a clean shutdown: after a crash,
// crash recovery in single-user mode, as pg_rewind would run it.
func (r *rejoin) cleanShutdown(ctx context.Context) (ControlData, error) {
	cd, err := readControlData(ctx, r.opt.BinDir, r.opt.DataDir)
	if err != nil || cd.CleanlyShutDown() {
		return cd, err
	}
	if r.running(ctx) {
		return cd, hinted("Stop it (or give --stop-command) and run rejoin again.", "the node still runs after the stop command")
	}
	args := []string{filepath.Join(r.opt.BinDir, "postgres"), "--single", "-F", "-D", r.opt.DataDir}
	if r.opt.ConfigFile != "" {
		args = append(args, "-c", "config_file="+r.opt.ConfigFile)
	}
	line := shellJoin(append(args, "template1")...) + " </dev/null"
	r.opt.Log("the node was not shut down cleanly (%s): crash recovery first: %s", cd.State, line)
	if err := r.shell(ctx, line, recoveryTimeout); err != nil {
		return cd, hinted("Give --config-file when postgresql.conf is not in the data directory; or start and stop the node once yourself.",
			"crash recovery of the node: %w", err)
	}
	if cd, err = readControlData(ctx, r.opt.BinDir, r.opt.DataDir); err == nil && !cd.CleanlyShutDown() {
		err = fmt.Errorf("the node is still %q after crash recovery", cd.State)
	}
	return cd, err
}

// choose decides how the node rejoins from what Diverge found.
func (r *rejoin) choose(cd ControlData, pf primaryFacts, d Divergence) (method, why string, err error) {
	if cd.SystemID != pf.SystemID {
		return MethodBaseBackup, fmt.Sprintf("the node belongs to another cluster (system %d)", cd.SystemID), nil
	}
	switch {
	case !d.Diverged:
		return MethodSettings, "it did not diverge: " + d.Why, nil
	case cd.CanRewind():
		return MethodRewind, "it diverged: " + d.Why, nil
	case r.opt.BaseBackup:
		return MethodBaseBackup, "it diverged (" + d.Why + ") and pg_rewind needs wal_log_hints = on or data checksums, which the node has not", nil
	}
	return "", "", hinted("Rerun with --basebackup to copy the whole primary; for the next time, set wal_log_hints = on on both nodes (a restart), so that pg_rewind can rewind them.",
		"the node diverged (%s), and pg_rewind needs wal_log_hints = on or data checksums, which the node has not", d.Why)
}

// primaryConninfo is what the node's primary_conninfo becomes: the
// --primary string (it holds no password).
func (r *rejoin) primaryConninfo() string { return r.opt.Primary }
