package keeper

import (
	"strconv"
	"time"
)

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

// setTitle shows the keeper's state in the process title, as pg_keeper
// did ("(standby:connected)"), and whether it is paused.
func (k *Keeper) setTitle() {
	t := k.state.Title()
	if !k.pausedSince.IsZero() {
		t += pausedTitle
	}
	k.host.SetTitle(t)
}
