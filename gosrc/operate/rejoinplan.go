package operate

// What rejoin prints: its plan (--dry-run) and the facts it found.

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jackc/pglogrepl"
)

// dryRun says what Rejoin would do; ahead is the divergence of a running
// primary whose WAL already reaches past the primary's history.
func (r *rejoin) dryRun(running bool, cd ControlData, pf primaryFacts, ahead *Divergence) (RejoinResult, error) {
	steps := []string{}
	if running {
		steps = append(steps, "stop the node: "+r.opt.StopCommand)
	}
	var res RejoinResult
	switch {
	case cd.SystemID != pf.SystemID:
		res.Method, res.Why = MethodBaseBackup, "the node belongs to another cluster"
	case ahead != nil:
		m, why, err := r.choose(cd, pf, *ahead)
		if err != nil {
			return res, err
		}
		res.Method, res.Why = m, why
	case running || !cd.CleanlyShutDown():
		if !running {
			steps = append(steps, "run crash recovery (postgres --single): the node was not shut down cleanly")
		}
		res.Why = "decided after the clean shutdown, from its last checkpoint"
		if cd.CanRewind() {
			res.Method = MethodRewind + " if it diverged, else " + MethodSettings
		} else if r.opt.BaseBackup {
			res.Method = MethodBaseBackup + " if it diverged (no wal_log_hints, no checksums), else " + MethodSettings
		} else {
			res.Method = MethodSettings + " if it did not diverge; if it did, stop with an error (no wal_log_hints, no checksums: rerun with --basebackup)"
		}
	default:
		d, err := Diverge(Position{cd.Timeline, cd.Checkpoint}, pf.Timeline, pf.XLogPos, pf.History)
		if err != nil {
			return res, &HintError{Err: err, Hint: "pg_keeper_go status --node ... --node ... shows which node is the primary."}
		}
		m, why, err := r.choose(cd, pf, d)
		if err != nil {
			return res, err
		}
		res.Method, res.Why = m, why
	}
	switch {
	case strings.HasPrefix(res.Method, MethodRewind):
		steps = append(steps, "keep the node's configuration files, "+res.Method+": pg_rewind --target-pgdata "+r.opt.DataDir+" --source-server '"+r.primaryConninfo()+"'")
	case strings.HasPrefix(res.Method, MethodBaseBackup):
		steps = append(steps, "keep the node's configuration files, "+res.Method+" into "+filepath.Join(r.opt.DataDir, rejoinCopyDir)+
			", then the node's old files moved into "+filepath.Join(r.opt.DataDir, "pg_keeper_go.old-TIME")+" and the copy into their place")
	default:
		steps = append(steps, res.Method)
	}
	steps = append(steps, "write standby.signal and primary_conninfo = '"+r.primaryConninfo()+"' into postgresql.auto.conf",
		"start the node: "+r.opt.StartCommand, fmt.Sprintf("wait up to %s until it streams from the primary", r.opt.Timeout))
	for i, s := range steps {
		r.opt.Log("dry run: %d. %s", i+1, s)
	}
	return res, nil
}

func onOff(b bool) string { return map[bool]string{true: "on", false: "off"}[b] }

func historyText(h []Switch) string {
	if len(h) == 0 {
		return ""
	}
	parts := make([]string, len(h))
	for i, s := range h {
		parts[i] = fmt.Sprintf("timeline %d until %s", s.Parent, pglogrepl.LSN(s.SwitchPoint))
	}
	return "; history: " + strings.Join(parts, ", ")
}
