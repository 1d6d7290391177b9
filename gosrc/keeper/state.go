package keeper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
)

// stateFileName holds what must survive a restart of the worker.
const stateFileName = "pg_keeper_go.state"

// persisted is what survives a restart of the worker, in
// $PGDATA/pg_keeper_go.state.
type persisted struct {
	SwitchedAsync *node.SyncSetting `json:"switched_async,omitempty"`
	// Fenced says why this node was fenced: it stays fenced across
	// restarts until it is a standby again.
	Fenced string `json:"fenced,omitempty"`
	// Armed: a standby has followed this primary.
	Armed bool `json:"armed,omitempty"`
}

func (p persisted) equal(q persisted) bool {
	sameSync := (p.SwitchedAsync == nil) == (q.SwitchedAsync == nil) &&
		(p.SwitchedAsync == nil || *p.SwitchedAsync == *q.SwitchedAsync)
	return sameSync && p.Fenced == q.Fenced && p.Armed == q.Armed
}

func (k *Keeper) statePath() string {
	if k.self.dataDir == "" {
		return ""
	}
	return filepath.Join(k.self.dataDir, stateFileName)
}

// loadState reads the state file at start-up.  A fence it holds is set in
// shared memory at once, before the first check, on a node out of
// recovery.
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
		k.host.Log(host.LevelWarning, fmt.Sprintf("pg_keeper_go: ignoring unreadable state file %q: %v", path, err), "", "")
		return
	}
	k.written = p
	k.sync = p.SwitchedAsync
	k.obs.Armed = p.Armed
	if p.Fenced != "" && !k.host.InRecovery() {
		k.obs.Fenced = p.Fenced
		if err := k.host.SetGuard(host.GuardFenced, 0, p.Fenced); err == nil {
			k.guard = appliedGuard{host.GuardFenced, p.Fenced}
		}
		k.host.Log(host.LevelWarning, "pg_keeper_go: this node stays fenced: "+p.Fenced, "It was fenced before the restart.", fenceHint)
	}
}

// saveState writes the state file atomically (write, fsync, rename) when
// what it holds changed.
func (k *Keeper) saveState() {
	path := k.statePath()
	p := persisted{SwitchedAsync: k.sync, Fenced: k.obs.Fenced, Armed: k.obs.Armed}
	if path == "" || p.equal(k.written) {
		return
	}
	if err := writeFileAtomic(path, p); err != nil {
		k.host.Log(host.LevelWarning, "pg_keeper_go: could not save state: "+err.Error(), "",
			"After a restart of the worker the keeper may not restore synchronous replication by itself.")
		return
	}
	k.written = p
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
