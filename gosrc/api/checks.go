package api

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// The health checks, with Patroni's meanings carried over to a pair: the
// primary is the one node Patroni would call the leader, and there is no
// distributed store, so every answer comes from the node's own keeper.
// Each check returns why the node fails it, "" when it passes.

// check is one health check on a fresh snapshot.
type check func(snap status.Snapshot, q query, now time.Time) string

// query holds the parameters a health check takes.
type query struct {
	maxLag           time.Duration // ?max_lag= (seconds or a duration); -1: none
	maxLagBytes      int64         // ?lag= (bytes, kB, MB, GB, TB); -1: none
	replicationState string        // ?replication_state=; "": any
}

// parseQuery reads the parameters; a malformed one is an error (Patroni
// ignores it; here a load balancer is better told than silently passed).
func parseQuery(v url.Values) (query, error) {
	q := query{maxLag: -1, maxLagBytes: -1, replicationState: v.Get("replication_state")}
	if s := v.Get("max_lag"); s != "" {
		d, err := ParseLag(s)
		if err != nil {
			return q, err
		}
		q.maxLag = d
	}
	if s := v.Get("lag"); s != "" {
		n, err := ParseLagBytes(s)
		if err != nil {
			return q, err
		}
		q.maxLagBytes = n
	}
	switch q.replicationState {
	case "", "streaming", "in archive recovery":
	default:
		return q, fmt.Errorf("invalid replication_state %q: want streaming or \"in archive recovery\"", q.replicationState)
	}
	return q, nil
}

// PrimaryProblem returns why a node with this snapshot must not receive
// writes, or "" when it is a writable, unfenced primary.
func PrimaryProblem(snap status.Snapshot) string {
	switch {
	case snap.Role != status.RolePrimary:
		return fmt.Sprintf("the node is not a primary (role %s)", orUnknown(snap.Role))
	case !snap.Writable:
		return "the node does not accept writes (in recovery, default_transaction_read_only is on, or its write guard holds writes: " +
			orUnknown(snap.GuardReason) + ")"
	case snap.Fenced:
		return "the node is fenced: " + orUnknown(snap.FenceReason)
	}
	return ""
}

// checkPrimary (/, /primary, /master, /read-write): a primary that takes
// writes now: writable, unfenced, and under a lease only until it ends.
func checkPrimary(snap status.Snapshot, _ query, now time.Time) string {
	if p := PrimaryProblem(snap); p != "" {
		return p
	}
	if !snap.WritableUntil.IsZero() && !now.Before(snap.WritableUntil) {
		return fmt.Sprintf("the node's write lease ended %s ago and the keeper has not renewed it",
			now.Sub(snap.WritableUntil).Round(time.Millisecond))
	}
	return ""
}

// checkLeader (/leader): the node is the pair's primary, whether or not
// its write guard lets writes through at this moment (Patroni: the holder
// of the leader lock).  A primary not yet judged since it started (guard
// pending) may be an old primary, and a fenced one is one: neither leads.
func checkLeader(snap status.Snapshot, _ query, _ time.Time) string {
	switch {
	case snap.Role != status.RolePrimary:
		return fmt.Sprintf("the node is not a primary (role %s)", orUnknown(snap.Role))
	case snap.Fenced:
		return "the node is fenced: " + orUnknown(snap.FenceReason)
	case snap.Guard == "pending":
		return "the keeper has not judged this primary since it started: " + orUnknown(snap.GuardReason)
	}
	return ""
}

// ReplicaProblem returns why a node with this snapshot must not receive
// reads meant for a standby, or "" when it is an unfenced standby, not
// being promoted, within the query's limits: replay lag in seconds and in
// bytes (a lag the keeper could not measure passes, as in Patroni), and
// how it receives WAL (a standby that does not stream passes unless
// ?replication_state=streaming asks for it, as in Patroni).
func ReplicaProblem(snap status.Snapshot, q query) string {
	switch {
	case snap.Role != status.RoleStandby:
		return fmt.Sprintf("the node is not a standby (role %s)", orUnknown(snap.Role))
	case snap.Fenced:
		return "the node is fenced: " + orUnknown(snap.FenceReason)
	case snap.State == "promoting":
		return "the standby is being promoted"
	case q.replicationState != "" && snap.ReplicationState != q.replicationState:
		return fmt.Sprintf("replication_state is %q, not %q", snap.ReplicationState, q.replicationState)
	case q.maxLag >= 0 && snap.ReplayLagSeconds > q.maxLag.Seconds():
		return fmt.Sprintf("replay lag %.3fs exceeds max_lag %s", snap.ReplayLagSeconds, q.maxLag)
	case q.maxLagBytes >= 0 && snap.ReplayLagBytes > q.maxLagBytes:
		return fmt.Sprintf("replay lag %d bytes exceeds lag %d bytes", snap.ReplayLagBytes, q.maxLagBytes)
	}
	return ""
}

// checkReplica (/replica): a standby within the query's limits.
func checkReplica(snap status.Snapshot, q query, _ time.Time) string { return ReplicaProblem(snap, q) }

// checkReadOnly (/read-only): the pair's primary, or a standby within the
// query's limits: any node that serves reads.
func checkReadOnly(snap status.Snapshot, q query, now time.Time) string {
	if snap.Role == status.RolePrimary {
		return checkLeader(snap, q, now)
	}
	return ReplicaProblem(snap, q)
}

// checkSynchronous (/synchronous, /sync): a standby that its primary lists
// as synchronous (sync_state sync or quorum in pg_stat_replication).
var checkSynchronous = syncStateCheck(true)

// checkAsynchronous (/asynchronous, /async): a standby that its primary
// lists as asynchronous (sync_state async or potential).
var checkAsynchronous = syncStateCheck(false)

// syncStateCheck is the check of a standby whose primary lists it as
// synchronous, or as asynchronous.
func syncStateCheck(synchronous bool) check {
	return func(snap status.Snapshot, q query, _ time.Time) string {
		if p := ReplicaProblem(snap, q); p != "" {
			return p
		}
		switch snap.SyncState {
		case "":
			return "the standby's sync state is unknown: its primary did not answer the last check"
		case "sync", "quorum":
			if !synchronous {
				return fmt.Sprintf("the standby is synchronous (sync_state %s)", snap.SyncState)
			}
		default:
			if synchronous {
				return fmt.Sprintf("the standby is not synchronous (sync_state %s)", snap.SyncState)
			}
		}
		return ""
	}
}

// checkHealth (/health): the keeper runs with valid settings (and so does
// PostgreSQL: the keeper runs inside it).
func checkHealth(snap status.Snapshot, _ query, _ time.Time) string {
	if snap.ConfigError != "" {
		return "the keeper's settings are invalid: " + snap.ConfigError
	}
	return ""
}

// checkLiveness (/liveness): the keeper's loop runs (its snapshot is
// fresh, which serveCheck checked), whatever it thinks of its settings.
func checkLiveness(status.Snapshot, query, time.Time) string { return "" }

// checkReadiness (/readiness): the node can serve its role: the pair's
// primary, or a standby that streams within the query's limits (Patroni
// 4.1's meaning).
func checkReadiness(snap status.Snapshot, q query, now time.Time) string {
	if snap.Role == status.RolePrimary {
		return checkLeader(snap, q, now)
	}
	if q.replicationState == "" {
		q.replicationState = "streaming"
	}
	return ReplicaProblem(snap, q)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// ParseLag parses a lag limit in time: a Go duration ("500ms", "10s",
// "1m") or a number of seconds ("5", "0.5").  Negative, infinite and NaN
// values are errors.
func ParseLag(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	var d time.Duration
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || f > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("invalid max_lag %q: not a finite number of seconds", v)
		}
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, fmt.Errorf("invalid max_lag %q: want seconds (5, 0.5) or a duration (500ms, 10s)", v)
	}
	if d < 0 {
		return 0, fmt.Errorf("invalid max_lag %q: must not be negative", v)
	}
	return d, nil
}

// lagUnits are Patroni's units of ?lag=: powers of 1024, case-sensitive.
var lagUnits = map[string]float64{"": 1, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}

// ParseLagBytes parses a lag limit in bytes as Patroni does: a number,
// optionally followed by B, kB, MB, GB or TB (powers of 1024; case
// matters, as in postgresql.conf), with spaces allowed around them:
// "1048576", "1024kB", "16 MB", "1.5GB".
func ParseLagBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	i := strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("0123456789.", r) })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	f, err := strconv.ParseFloat(num, 64)
	mult, ok := lagUnits[unit]
	if err != nil || !ok {
		return 0, fmt.Errorf("invalid lag %q: want bytes, optionally with a unit B, kB, MB, GB or TB (1048576, 1024kB, 16MB)", v)
	}
	b := math.Round(f * mult)
	if b > math.MaxInt64 {
		return 0, fmt.Errorf("invalid lag %q: too large", v)
	}
	return int64(b), nil
}
