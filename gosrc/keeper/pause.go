package keeper

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
)

// The operator's requests: the pause (pg_keeper_pause()), a switchover's
// promotion (pg_keeper_switchover_promote()) and its demotion
// (pg_keeper_demote()'s file).

// pausedTitle is added to the process title while automatic failover is
// paused.
const pausedTitle = " paused"

// readPause reads the maintenance pause from shared memory
// (pg_keeper_pause(), kept across restarts by the C shim) and reports
// whether it holds.  The process title follows it.
func (k *Keeper) readPause() bool {
	var since time.Time
	if v, ok := k.host.Env("paused_since"); ok {
		if us, err := strconv.ParseInt(v, 10, 64); err == nil && us > 0 {
			since = time.UnixMicro(us)
		} else {
			since = time.Unix(0, 0) // unreadable: paused all the same
		}
	}
	if !since.Equal(k.pausedSince) {
		k.pausedSince = since
		k.setTitle()
	}
	return !since.IsZero()
}

// switchoverRequested reads pg_keeper_switchover_promote()'s request from
// shared memory: true while it is less than a minute old.  A new request
// brings the next check forward to now: the switchover waits for it.
func (k *Keeper) switchoverRequested() bool {
	v, ok := k.host.Env("switchover_requested")
	if !ok {
		return false
	}
	us, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return false
	}
	at := time.UnixMicro(us)
	if !at.Equal(k.switchoverAt) {
		k.switchoverAt = at
		k.sched.nextCheck = time.Now()
		k.host.Log(host.LevelInfo, "pg_keeper_go: switchover: promotion requested; checking the primary now", "", "")
	}
	age := time.Since(at)
	return age >= -time.Second && age < fsm.SwitchoverRequestLasts
}

// demotedFile is what pg_keeper_demote() leaves in the data directory:
// when it made this node a standby.
const demotedFile = "pg_keeper_go.demoted"

// demotedFor says how long ago a switchover demoted this standby, 0 when
// it did not or a primary has appeared since (then the file goes).
func (k *Keeper) demotedFor(inRecovery bool) time.Duration {
	if k.self.dataDir == "" {
		return 0
	}
	path := filepath.Join(k.self.dataDir, demotedFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	o := &k.obs
	if !inRecovery || o.PartnerAnswered && !o.PartnerInRecovery {
		os.Remove(path) // this node or its partner is the primary: done
		return 0
	}
	us, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fsm.TakeBackAfter // unreadable: it was demoted, long enough ago
	}
	return max(time.Since(time.UnixMicro(us)), time.Nanosecond)
}

// setTitle shows the keeper's state in the process title, as pg_keeper
// did ("(standby:connected)"), and whether it is paused.
func (k *Keeper) setTitle() {
	t := k.state.Title()
	if !k.pausedSince.IsZero() {
		t += pausedTitle
	}
	k.host.SetTitle(t)
}
