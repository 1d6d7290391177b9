// Package keeper runs the failover keeper inside a PostgreSQL background
// worker: it checks the partner node, decides with the fsm package and acts
// on the local node.
//
// The keeper's main loop runs on the goroutine that the C worker called
// into; it alone calls the Host.  Everything that can block (connections,
// queries, after_command) runs in other goroutines that never touch the
// Host: they hand results back and wake the loop through an eventfd the
// host waits on together with its latch.
package keeper

import (
	"context"
	"fmt"
	"time"
)

// Level is the severity of a log line.
type Level int

// Log levels, as the C shim maps them to the server's.
const (
	LevelDebug   Level = iota // DEBUG1
	LevelInfo                 // LOG
	LevelWarning              // WARNING
)

// Event is a set of things that ended a Host.Wait.
type Event int

// Events reported by Host.Wait (the values of the PGK_EV_* bits).
const (
	EventTimeout  Event = 0x01 // the timeout elapsed
	EventLatch    Event = 0x02 // the process latch was set
	EventWake     Event = 0x04 // the wake-up descriptor is readable
	EventReload   Event = 0x08 // the configuration was reloaded (SIGHUP)
	EventShutdown Event = 0x10 // the worker must exit (SIGTERM)
	EventError    Event = 0x20 // the wait failed; the host logged why
)

// Host is what the keeper needs from the server process it runs in.  Only
// the keeper's main goroutine may call it.
type Host interface {
	// Log writes a line to the server log; detail and hint may be empty.
	Log(level Level, msg, detail, hint string)
	// Wait blocks until fd is readable, the latch is set, a signal arrives
	// or the timeout elapses.
	Wait(fd int, timeout time.Duration) Event
	// Setting reads a configuration parameter (see Getter).
	Setting(name string) (value string, isSet bool, ok bool)
	// Env reads a process fact ("data_directory", "bindir") or an
	// environment variable of the postmaster.
	Env(name string) (string, bool)
	// Publish makes a status snapshot visible to pg_keeper_status().
	Publish(Status)
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
	// LeaseGrants reads the time of the last lease this standby granted
	// its primary (a Boottime reading, 0 if none), after closing or
	// reopening grants as op says.
	LeaseGrants(op GrantOp) (lastGrant time.Duration, err error)
}

// GuardMode is the state of the write guard in shared memory: whether
// client backends may commit writes and open connections (values of the C
// side's PGK_GUARD_*).
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

// GrantOp says what Host.LeaseGrants does before it reads.
type GrantOp int

// Grant operations (values of the C side's PGK_GRANTS_*).
const (
	GrantsRead  GrantOp = 0
	GrantsClose GrantOp = 1
	GrantsOpen  GrantOp = 2
)

// Status is one snapshot of the keeper, as pg_keeper_status() shows it.
// It never holds a password.
type Status struct {
	Role                string
	State               string
	Partner             string // redacted summary of partner_conninfo
	ConsecutiveFailures int
	KeepaliveTime       time.Duration
	KeepaliveCount      int
	Timeline            uint32
	LastSuccess         time.Time
	LastFailure         time.Time
	LastFailureReason   string
	PromotedAt          time.Time
	ConfigError         string
	UpdatedAt           time.Time
	Guard               string // write guard of a primary: pending, open, leased, fenced
	GuardReason         string
	Hold                string // why a standby's promotion waits, "" if it does not
}

// StandbyCheck is what a primary learns from one check of its standby.
type StandbyCheck struct {
	Streaming        int    // walsenders in state "streaming"
	SyncStandbyNames string // the local synchronous_standby_names
	Partner          Partner
	// Granted: the standby granted a lease (pg_keeper_grant_lease()).
	Granted bool
	// GrantErr says why the standby could not be asked for a lease
	// (e.g. the extension is not created in the partner's database).
	GrantErr error
	// HeartbeatErr says why the WAL heartbeat could not be written.
	HeartbeatErr error
}

// AnsweredError is a check's error when the partner did answer, with an
// SQL error (a wrong password, too many connections): the partner is alive,
// so it does not count as a failed check.
type AnsweredError struct{ Err error }

func (e *AnsweredError) Error() string { return "partner answered: " + e.Err.Error() }

// Unwrap returns the server's error.
func (e *AnsweredError) Unwrap() error { return e.Err }

// Partner is what a check learnt about the partner server, when it
// answered.
type Partner struct {
	Answered         bool   // the partner answered the check's query
	SystemIdentifier uint64 // pg_control's system identifier
	InRecovery       bool
	Timeline         uint32 // current timeline, when not in recovery
}

// PrimaryCheck is what a standby learns from one check of its primary.
type PrimaryCheck struct {
	Partner Partner
	// WALReceiverAge is how long ago this standby's WAL receiver last
	// heard from the primary while streaming; negative when it does not
	// stream.  The primary's keeper writes a WAL message every
	// keepalive_time so that this stays fresh on an idle primary.
	WALReceiverAge time.Duration
	WALReceiverErr error // why the WAL receiver could not be read
	// ReplayLag is how far this standby's replay is behind what it
	// received: 0 when it has replayed everything, otherwise the age of
	// the last replayed transaction.
	ReplayLag time.Duration
}

// Prober checks the partner node.  Calls never overlap; each finishes when
// ctx ends at the latest.
type Prober interface {
	// CheckPrimary is a standby's check: the primary answers a query; it
	// also reads this standby's WAL receiver.
	CheckPrimary(ctx context.Context) (PrimaryCheck, error)
	// CheckStandby is a primary's check: it writes the WAL heartbeat, asks
	// the standby for a lease, and checks that a walsender streams to it.
	// The returned facts are valid even when the error is not nil, if the
	// local query succeeded.
	CheckStandby(ctx context.Context) (StandbyCheck, error)
	// Close releases the connections.
	Close()
}

// WitnessLease is the answer of the witness to a primary's renewal.
type WitnessLease struct {
	Renewed bool // the witness extended this primary's lease
	// SupersededBy names the node the witness knows as primary on a newer
	// timeline (Renewed is then false).
	SupersededBy string
	Timeline     uint32 // that node's timeline
}

// Witness is the third server both keepers keep their lease rows on.
// Calls never overlap; each finishes when ctx ends at the latest.
type Witness interface {
	// RenewPrimary extends this primary's lease there by lease, unless a
	// node of the same cluster is registered as primary on a newer
	// timeline.
	RenewPrimary(ctx context.Context, timeline uint32, lease time.Duration) (WitnessLease, error)
	// StandbyHeartbeat records this standby and reports whether another
	// node holds a primary lease there that has not expired by margin.
	StandbyHeartbeat(ctx context.Context, timeline uint32, margin time.Duration) (primaryLeased bool, holder string, err error)
	// Claim registers this node as primary on newTimeline, unless another
	// node's primary lease has not expired by margin.  It is atomic with
	// respect to RenewPrimary.
	Claim(ctx context.Context, newTimeline uint32, lease, margin time.Duration) error
	// Close releases the connection.
	Close()
}

// SyncSetting is the synchronous_standby_names that the keeper turned off.
type SyncSetting struct {
	Value        string `json:"synchronous_standby_names"`
	FromAutoConf bool   `json:"from_auto_conf"` // set with ALTER SYSTEM, not in postgresql.conf
}

// FailoverRecord is the row written to the failover log after a promotion.
type FailoverRecord struct {
	PromotedAt  time.Time
	Host        string // this node's host name
	OldPrimary  string // the former primary, "host=... port=..." (no password)
	NewTimeline uint32
	PromoteLSN  uint64 // last WAL position replayed before the promotion
	Reason      string
}

// Node runs SQL on the local node.  Calls never overlap.
type Node interface {
	// WaitWritable returns once the node is out of recovery and not
	// read-only, or when ctx ends.
	WaitWritable(ctx context.Context) error
	// RecordFailover appends rec to the failover log table; recorded is
	// false, with a reason in err, when the table or database is missing.
	RecordFailover(ctx context.Context, rec FailoverRecord) (recorded bool, err error)
	// DisableSync sets synchronous_standby_names to '' with ALTER SYSTEM
	// and reloads, returning what it was.
	DisableSync(ctx context.Context) (SyncSetting, error)
	// RestoreSync puts back a setting DisableSync returned.
	RestoreSync(ctx context.Context, saved SyncSetting) error
	// TerminateClients ends the sessions of ordinary clients (not the
	// keepers', not replication) and returns how many it ended.
	TerminateClients(ctx context.Context) (int, error)
	// Close releases the connections.
	Close()
}

// Deps builds the keeper's connections for a set of settings.  The keeper
// builds new ones when the conninfos change on reload.
type Deps struct {
	NewProber  func(Settings) (Prober, error)
	NewNode    func(Settings) (Node, error)
	NewWitness func(s Settings, node string, systemID uint64) (Witness, error)
}
