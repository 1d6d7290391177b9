package operate

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// ControlData is what pg_controldata says of a data directory that
// rejoin needs.
type ControlData struct {
	SystemID    uint64
	State       string // "shut down", "shut down in recovery", "in production", ...
	Checkpoint  uint64 // the latest checkpoint record's start
	Timeline    uint32 // the latest checkpoint's timeline
	WALLogHints bool
	Checksums   bool
}

// Cluster states of pg_controldata that rejoin tells apart.
const (
	stateShutDown           = "shut down"
	stateShutDownInRecovery = "shut down in recovery"
)

// CleanlyShutDown reports whether the cluster was shut down cleanly, as a
// primary or as a standby: its latest checkpoint is then its last record
// (as a primary) or it only replayed WAL it was sent (as a standby).
func (c ControlData) CleanlyShutDown() bool {
	return c.State == stateShutDown || c.State == stateShutDownInRecovery
}

// CanRewind reports whether pg_rewind can rewind the cluster: it needs
// wal_log_hints or data checksums.
func (c ControlData) CanRewind() bool { return c.WALLogHints || c.Checksums }

// readControlData runs pg_controldata on dataDir (in the C locale).
func readControlData(ctx context.Context, bindir, dataDir string) (ControlData, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bindir, "pg_controldata"), "-D", dataDir)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return ControlData{}, fmt.Errorf("pg_controldata -D %s: %w: %s", dataDir, err, strings.TrimSpace(string(out)))
	}
	return ParseControlData(out)
}

// ParseControlData parses pg_controldata's output (C locale).
func ParseControlData(out []byte) (ControlData, error) {
	var c ControlData
	found := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		var err error
		switch key {
		case "Database system identifier":
			c.SystemID, err = strconv.ParseUint(value, 10, 64)
		case "Database cluster state":
			c.State = value
		case "Latest checkpoint location":
			var lsn pglogrepl.LSN
			lsn, err = pglogrepl.ParseLSN(value)
			c.Checkpoint = uint64(lsn)
		case "Latest checkpoint's TimeLineID":
			var tli uint64
			tli, err = strconv.ParseUint(value, 10, 32)
			c.Timeline = uint32(tli)
		case "wal_log_hints setting":
			c.WALLogHints = value == "on"
		case "Data page checksum version":
			c.Checksums = value != "0"
		default:
			continue
		}
		if err != nil {
			return ControlData{}, fmt.Errorf("pg_controldata: %s: %q: %w", key, value, err)
		}
		found[key] = true
	}
	for _, k := range []string{"Database system identifier", "Database cluster state", "Latest checkpoint location", "Latest checkpoint's TimeLineID"} {
		if !found[k] {
			return ControlData{}, fmt.Errorf("pg_controldata printed no %q", k)
		}
	}
	return c, nil
}
