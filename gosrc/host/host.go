// Package host is the keeper's side of the boundary with the C shim: the
// Host interface the background worker offers, and the constants that
// mirror extension/pg_keeper_go_host.h (the cgo package gosrc/core checks
// at compile time that they are equal).
//
// Only the goroutine that C called into may call a Host (docs/design.md,
// "The C/Go boundary").  Everything else in this package is plain data and
// may be used anywhere.
package host

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// Level is the severity of a log line (PGK_LOG_*).
type Level int

// Log levels, as the C shim maps them to the server's.
const (
	LevelDebug   Level = 0 // DEBUG1
	LevelInfo    Level = 1 // LOG
	LevelWarning Level = 2 // WARNING
)

// Event is a set of things that ended a Host.Wait (PGK_EV_* bits).
type Event int

// Events reported by Host.Wait.
const (
	EventTimeout  Event = 0x01 // the timeout elapsed
	EventLatch    Event = 0x02 // the process latch was set
	EventWake     Event = 0x04 // the wake-up descriptor is readable
	EventReload   Event = 0x08 // the configuration was reloaded (SIGHUP)
	EventShutdown Event = 0x10 // the worker must exit (SIGTERM)
	EventError    Event = 0x20 // the wait failed; the host logged why
)

// Exit codes of the keeper's run, as the C worker understands them
// (PGK_EXIT_*).
const (
	ExitShutdown = 0 // requested shutdown: the worker is not restarted
	ExitRestart  = 1 // an error, logged: the postmaster restarts the worker
)

// GuardMode is the state of the write guard in shared memory: whether
// client backends may commit writes and open connections (PGK_GUARD_*).
type GuardMode int

// Guard modes.
const (
	// GuardPending: the node has not been judged since it started: no
	// ordinary connections, no writes.
	GuardPending GuardMode = 0
	// GuardOpen: writes commit without a lease.
	GuardOpen GuardMode = 1
	// GuardLeased: writes commit only before the lease deadline.
	GuardLeased GuardMode = 2
	// GuardFenced: an old primary: no ordinary connections, no writes.
	GuardFenced GuardMode = 3
)

// String returns the name pg_keeper_status() shows.
func (m GuardMode) String() string {
	switch m {
	case GuardPending:
		return "pending"
	case GuardOpen:
		return "open"
	case GuardLeased:
		return "leased"
	case GuardFenced:
		return "fenced"
	}
	return fmt.Sprintf("GuardMode(%d)", int(m))
}

// GrantOp says what Host.LeaseGrants does before it reads (PGK_GRANTS_*).
type GrantOp int

// Grant operations.
const (
	GrantsRead  GrantOp = 0 // only read the promise
	GrantsClose GrantOp = 1 // refuse grants from now on
	GrantsOpen  GrantOp = 2 // accept grants again
)

// The margin a standby adds to a lease before it may promote
// (PGK_LEASE_MARGIN_MS, PGK_LEASE_MARGIN_DIVISOR: the C shim adds the same
// to the grants it gives).
const (
	LeaseMarginBase    = 100 * time.Millisecond
	LeaseMarginDivisor = 100
)

// LeaseMargin is the margin added to lease: 100 ms plus 1 % of it, far
// more than clock rate differences between two machines (NTP keeps them
// within 0.05 %) and scheduling delays.
func LeaseMargin(lease time.Duration) time.Duration {
	return LeaseMarginBase + lease/LeaseMarginDivisor
}

// Host is what the keeper needs from the server process it runs in.  Only
// the keeper's main goroutine may call it.
type Host interface {
	// Log writes a line to the server log; detail and hint may be empty.
	Log(level Level, msg, detail, hint string)
	// Wait blocks until fd is readable, the latch is set, a signal arrives
	// or the timeout elapses.
	Wait(fd int, timeout time.Duration) Event
	// Setting reads a configuration parameter: its value, whether it was
	// set anywhere but its default, and whether it exists at all.
	Setting(name string) (value string, isSet bool, ok bool)
	// Env reads a process fact ("data_directory", "bindir",
	// "system_identifier") or an environment variable of the postmaster.
	Env(name string) (string, bool)
	// Publish makes a status snapshot visible to pg_keeper_status().
	Publish(status.Snapshot)
	// SetTitle sets the activity part of the process title.
	SetTitle(title string)
	// InRecovery reports whether the server is a standby.
	InRecovery() bool
	// Promote asks the server to leave recovery and returns at once.
	Promote() error
	// WALPosition returns the replay position and timeline on a standby,
	// the insert position and timeline on a primary.
	WALPosition() (lsn uint64, timeline uint32, err error)
	// SetGuard sets the write guard of this node; leaseUntil (a Boottime
	// reading) only counts for GuardLeased.
	SetGuard(mode GuardMode, leaseUntil time.Duration, reason string) error
	// LeaseGrants reads the time before which this standby promised, by
	// the leases it granted its primary, not to promote (a Boottime
	// reading: the end of the longest grant plus its margin; 0 if it never
	// granted), after closing or reopening grants as op says.
	LeaseGrants(op GrantOp) (promiseUntil time.Duration, err error)
}

// Boottime reads CLOCK_BOOTTIME, the clock of leases in shared memory: it
// is shared by every process of the machine and keeps counting while the
// machine is suspended, so a lease never outlives a pause.
func Boottime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0 // a zero time makes every lease look expired
	}
	return time.Duration(ts.Nano())
}
