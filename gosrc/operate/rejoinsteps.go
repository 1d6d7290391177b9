package operate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// nodeFiles are the node's own files that a rewind or a base backup
// would replace with the primary's: its configuration files in the data
// directory and the keeper's state (its pause, and what it replaced in
// synchronous replication).
func isNodeFile(name string) bool {
	return strings.HasSuffix(name, ".conf") || name == "pg_keeper_go.state" || name == "pg_keeper_go.paused"
}

// savedFiles are the node's own files, by name; nil content: it had none.
type savedFiles map[string][]byte

func saveNodeFiles(dataDir string) (savedFiles, error) {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return nil, fmt.Errorf("reading the data directory: %w", err)
	}
	saved := savedFiles{"pg_keeper_go.paused": nil, "pg_keeper_go.state": nil}
	for _, e := range entries {
		if !e.Type().IsRegular() || !isNodeFile(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dataDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("keeping the node's %s: %w", e.Name(), err)
		}
		saved[e.Name()] = b
	}
	return saved, nil
}

// restore puts the node's own files back, and removes the primary's
// copies of those it had none of.
func (s savedFiles) restore(dataDir string) error {
	for name, b := range s {
		path := filepath.Join(dataDir, name)
		if b == nil {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing the primary's %s: %w", name, err)
			}
			continue
		}
		if err := writeFileSync(path, b); err != nil {
			return fmt.Errorf("restoring the node's %s: %w", name, err)
		}
	}
	return nil
}

// copyFromPrimary rewinds the node, or copies the primary anew, keeping
// the node's own files.
func (r *rejoin) copyFromPrimary(ctx context.Context, res RejoinResult) (RejoinResult, error) {
	saved, err := saveNodeFiles(r.opt.DataDir)
	if err != nil {
		return res, err
	}
	r.opt.Log("kept the node's files: %s", strings.Join(saved.names(), ", "))
	if res.Method == MethodRewind {
		line := shellJoin(filepath.Join(r.opt.BinDir, "pg_rewind"), "--target-pgdata", r.opt.DataDir, "--source-server", r.primaryConninfo())
		err := r.checkpointPrimary(ctx)
		var out string
		if err == nil {
			r.opt.Log("rewinding: %s", line)
			out, err = r.shellOutput(ctx, line, rewindTimeout)
		}
		if err == nil && strings.Contains(out, "no rewind required") {
			// pg_rewind read an older timeline from the primary's control
			// file than its history has: nothing was rewound.
			err = fmt.Errorf("pg_rewind found no rewind required, but the node diverged: %s", lastLine(out))
		}
		if err == nil {
			r.opt.Log("%s", lastLine(out)) // "pg_rewind: Done!"
			return res, saved.restore(r.opt.DataDir)
		}
		if !r.opt.BaseBackup {
			// pg_rewind stops before it changes anything when it cannot
			// start; once it has begun, the node needs a base backup.
			return res, hinted("Rerun with --basebackup to copy the whole primary instead; the node's own configuration files are unchanged only if pg_rewind stopped before copying.",
				"pg_rewind failed: %w", err)
		}
		r.opt.Log("pg_rewind failed (%v): a base backup instead (--basebackup)", err)
		if rerr := saved.restore(r.opt.DataDir); rerr != nil {
			return res, rerr
		}
		res.Method, res.Why = MethodBaseBackup, "pg_rewind failed"
	}
	if empty, err := dirEmpty(filepath.Join(r.opt.DataDir, "pg_tblspc")); err != nil || !empty {
		return res, hinted("Rebuild the node by hand with pg_basebackup --tablespace-mapping.",
			"the node has tablespaces: a base backup into the same paths would overwrite them")
	}
	// The copy and the old files stay inside the data directory, which
	// may be a mount point that cannot be renamed, on one file system.
	newDir := filepath.Join(r.opt.DataDir, rejoinCopyDir)
	if err := os.RemoveAll(newDir); err != nil {
		return res, fmt.Errorf("removing a leftover %s: %w", newDir, err)
	}
	line := shellJoin(filepath.Join(r.opt.BinDir, "pg_basebackup"), "-D", newDir, "-X", "stream", "-c", "fast", "-d", r.primaryConninfo())
	r.opt.Log("copying the primary: %s", line)
	if err := r.shell(ctx, line, baseBackupTimeout); err != nil {
		os.RemoveAll(newDir)
		return res, hinted("The node's data directory is unchanged; see the error, then rerun.", "pg_basebackup failed: %w", err)
	}
	res.OldData = filepath.Join(r.opt.DataDir, "pg_keeper_go.old-"+time.Now().UTC().Format("20060102T150405"))
	if err := swapIn(r.opt.DataDir, newDir, res.OldData); err != nil {
		return res, fmt.Errorf("putting the copy in place (the old files are in %s, the copy in %s): %w", res.OldData, newDir, err)
	}
	r.opt.Log("the node's old files are kept in %s (remove it once the node streams)", res.OldData)
	return res, saved.restore(r.opt.DataDir)
}

// rejoinCopyDir is where, inside the data directory, a base backup is
// made before it takes the old files' place.
const rejoinCopyDir = "pg_keeper_go.rejoin"

// swapIn moves the data directory's entries into oldDir (created) and the
// entries of newDir (inside the data directory) into their place, then
// removes newDir; every move is a rename within one file system.
func swapIn(dataDir, newDir, oldDir string) error {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return err
	}
	if err := os.Mkdir(oldDir, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == filepath.Base(newDir) || strings.HasPrefix(e.Name(), "pg_keeper_go.old-") {
			continue
		}
		if err := os.Rename(filepath.Join(dataDir, e.Name()), filepath.Join(oldDir, e.Name())); err != nil {
			return err
		}
	}
	entries, err = os.ReadDir(newDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(newDir, e.Name()), filepath.Join(dataDir, e.Name())); err != nil {
			return err
		}
	}
	return os.Remove(newDir)
}

func (s savedFiles) names() []string {
	var out []string
	for name, b := range s {
		if b != nil {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	sort.Strings(out)
	return out
}

// checkpointPrimary runs CHECKPOINT on the primary: pg_rewind reads the
// primary's timeline from its control file, which a promoted node updates
// only at its first checkpoint (spread over minutes after a promotion).
func (r *rejoin) checkpointPrimary(ctx context.Context) error {
	cfg, err := pgsession.NewConnConfig(r.primary.Copy(), ApplicationName)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err == nil {
		r.opt.Log("CHECKPOINT on the primary, so that pg_rewind reads its timeline")
		_, err = conn.Exec(cctx, "checkpoint")
		closeCtx, closeCancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		closeCancel()
	}
	if err != nil {
		return hinted("The role of --primary must be a superuser (or, from PostgreSQL 15, a member of pg_checkpoint) for pg_rewind.",
			"CHECKPOINT on the primary: %s", conninfo.ErrorLine(err))
	}
	return nil
}

// writeStandbySettings makes the data directory a standby's: standby.signal
// and primary_conninfo in postgresql.auto.conf (replacing any there), no
// recovery.signal.
func writeStandbySettings(dataDir, primaryConninfo string) error {
	auto := filepath.Join(dataDir, "postgresql.auto.conf")
	b, err := os.ReadFile(auto)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reading postgresql.auto.conf: %w", err)
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		key, _, _ := strings.Cut(line, "=")
		if strings.TrimSpace(key) == "primary_conninfo" || line == "" && len(lines) == 0 {
			continue
		}
		lines = append(lines, line)
	}
	if len(lines) == 0 {
		lines = append(lines, "# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command.")
	}
	lines = append(lines, "primary_conninfo = '"+strings.ReplaceAll(primaryConninfo, "'", "''")+"'")
	if err := writeFileSync(auto, []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return fmt.Errorf("writing postgresql.auto.conf: %w", err)
	}
	if err := os.Remove(filepath.Join(dataDir, "recovery.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing recovery.signal: %w", err)
	}
	if err := writeFileSync(filepath.Join(dataDir, "standby.signal"), nil); err != nil {
		return fmt.Errorf("writing standby.signal: %w", err)
	}
	return nil
}

// writeFileSync writes a file of the data directory (mode 0600) and
// flushes it.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func dirEmpty(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	return len(entries) == 0, err
}

// waitStreaming waits until the started node is a standby whose WAL
// receiver streams on the primary's timeline (or a newer one), and returns
// that timeline.
func (r *rejoin) waitStreaming(ctx context.Context, primaryTLI uint32) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opt.Timeout)
	defer cancel()
	var last string
	for {
		tli, err := r.streams(ctx)
		if err == nil && tli < primaryTLI {
			err = fmt.Errorf("it streams timeline %d, older than the primary's %d, so far", tli, primaryTLI)
		}
		if err == nil {
			return tli, nil
		}
		if msg := err.Error(); msg != last {
			r.opt.Log("waiting for the node to stream: %s", msg)
			last = msg
		}
		select {
		case <-ctx.Done():
			return 0, hinted("See the node's server log (a timeline that is not a child of this server's history needs pg_rewind: rerun rejoin).",
				"the node does not stream from the primary after %s: %s", r.opt.Timeout, last)
		case <-time.After(200 * time.Millisecond): // poll interval
		}
	}
}

// queryNode runs one query on the running node (opt.Node, else what
// postmaster.pid says) under a deadline.
func (r *rejoin) queryNode(ctx context.Context, sql string, dest ...any) error {
	node := r.opt.Node
	if node == "" {
		var err error
		if node, err = nodeConninfo(r.opt.DataDir); err != nil {
			return err
		}
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	pc, err := conninfo.Parse(node)
	if err != nil {
		return err
	}
	cfg, err := pgsession.NewConnConfig(pc, ApplicationName)
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(qctx, cfg)
	if err != nil {
		return errors.New(conninfo.ErrorLine(err))
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		ccancel()
	}()
	if err := conn.QueryRow(qctx, sql).Scan(dest...); err != nil {
		return errors.New(conninfo.ErrorLine(err))
	}
	return nil
}

// runningPrimaryPosition is where a running node that is a primary writes
// WAL now; an error when it is a standby or cannot be asked.
func (r *rejoin) runningPrimaryPosition(ctx context.Context) (Position, error) {
	var inRecovery bool
	var tli int64
	var lsn string
	err := r.queryNode(ctx, "select pg_is_in_recovery(), "+pgsession.TimelineSQL+"::bigint, pg_current_wal_insert_lsn()::text", &inRecovery, &tli, &lsn)
	if err == nil && inRecovery {
		err = errors.New("the node is a standby")
	}
	if err != nil {
		return Position{}, err
	}
	pos, err := pglogrepl.ParseLSN(lsn)
	return Position{uint32(tli), uint64(pos)}, err
}

// streams asks the node once whether it streams.
func (r *rejoin) streams(ctx context.Context) (uint32, error) {
	var inRecovery bool
	var status *string
	var tli *int64
	err := r.queryNode(ctx, `select pg_is_in_recovery(), (select status from pg_stat_wal_receiver),
	                                (select received_tli::bigint from pg_stat_wal_receiver)`, &inRecovery, &status, &tli)
	switch {
	case err != nil:
		return 0, errors.New(conninfo.ErrorLine(err))
	case !inRecovery:
		return 0, errors.New("the node is not in recovery")
	case status == nil || *status != "streaming" || tli == nil:
		return 0, errors.New("no WAL receiver streams yet")
	}
	return uint32(*tli), nil
}

// nodeConninfo reaches the node through what postmaster.pid says: its
// port and first socket directory (else its first listen address).
func nodeConninfo(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return "", fmt.Errorf("the node has not started: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 6 {
		return "", errors.New("postmaster.pid is not complete yet")
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return "", fmt.Errorf("postmaster.pid: port %q", lines[3])
	}
	host := strings.TrimSpace(lines[4])
	if host == "" {
		host = strings.TrimSpace(strings.Split(lines[5], ",")[0])
		if host == "" || host == "*" {
			host = "127.0.0.1"
		}
	}
	return fmt.Sprintf("host='%s' port=%d dbname=postgres", strings.ReplaceAll(host, "'", `\'`), port), nil
}
