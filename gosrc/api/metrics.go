package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// The metrics made from the snapshot at each scrape.  All names start with
// pg_keeper_; pg_keeper_check_duration_seconds is in server.go.
var (
	descUp = prometheus.NewDesc("pg_keeper_up",
		"1 when the keeper published its state within the stale limit, 0 otherwise.", nil, nil)
	descAge = prometheus.NewDesc("pg_keeper_snapshot_age_seconds",
		"Age of the keeper's last published state.", nil, nil)
	descRole = prometheus.NewDesc("pg_keeper_role",
		"Role of the node: 1 for the current role, 0 for the others.", []string{"role"}, nil)
	descState = prometheus.NewDesc("pg_keeper_state",
		"State of the keeper (read it with pg_keeper_role): 1 for the current state, 0 for the others.", []string{"state"}, nil)
	descFailedChecks = prometheus.NewDesc("pg_keeper_consecutive_failed_checks",
		"Checks of the partner that failed in a row.", nil, nil)
	descFailovers = prometheus.NewDesc("pg_keeper_failovers_total",
		"Promotions made by this keeper since the worker started.", nil, nil)
	descHedged = prometheus.NewDesc("pg_keeper_hedged_answers_total",
		"Checks of the primary answered only over a second connection, opened when the first had no answer halfway to the deadline.", nil, nil)
	descLastFailover = prometheus.NewDesc("pg_keeper_last_failover_timestamp_seconds",
		"Unix time of the newest failover known to the node, 0 if none.", nil, nil)
	descLastSuccess = prometheus.NewDesc("pg_keeper_last_successful_check_timestamp_seconds",
		"Unix time of the last good check of the partner, 0 if none.", nil, nil)
	descFenced = prometheus.NewDesc("pg_keeper_fenced",
		"1 when the keeper fenced the node.", nil, nil)
	descPaused = prometheus.NewDesc("pg_keeper_paused",
		"1 while automatic failover is paused on the node (pg_keeper_pause()).", nil, nil)
	descWritable = prometheus.NewDesc("pg_keeper_writable",
		"1 when the node accepts writes.", nil, nil)
	descStreaming = prometheus.NewDesc("pg_keeper_streaming",
		"1 when the node is a standby whose WAL receiver streams.", nil, nil)
	descLag = prometheus.NewDesc("pg_keeper_replay_lag_seconds",
		"On a standby, how far replay is behind (0 when everything received is replayed).", nil, nil)
	descTimeline = prometheus.NewDesc("pg_keeper_timeline",
		"Timeline of the node.", nil, nil)
	descConfigError = prometheus.NewDesc("pg_keeper_config_error",
		"1 when the keeper's settings are invalid.", nil, nil)
	descLagBytes = prometheus.NewDesc("pg_keeper_replay_lag_bytes",
		"On a standby, WAL its primary had written beyond what it had replayed, at the last check.", nil, nil)
	descGuard = prometheus.NewDesc("pg_keeper_write_guard",
		"On a primary, the mode of the write guard: 1 for the current mode, 0 for the others.", []string{"mode"}, nil)
	descLeaseLeft = prometheus.NewDesc("pg_keeper_lease_remaining_seconds",
		"On a primary whose writes run under a lease, how long the lease lasts without a renewal.", nil, nil)
	descHeld = prometheus.NewDesc("pg_keeper_action_held",
		"1 when the keeper does not act on a lost partner yet (a standby holds its promotion, a primary its switch to async).", nil, nil)
	descKeepaliveTime = prometheus.NewDesc("pg_keeper_keepalive_time_seconds",
		"The setting pg_keeper.keepalive_time.", nil, nil)
	descKeepaliveCount = prometheus.NewDesc("pg_keeper_failed_checks_threshold",
		"The setting pg_keeper.keepalive_count: failed checks in a row after which the keeper acts.", nil, nil)
)

// guardModes are the write guard's modes, always exported on a primary.
var guardModes = []string{"pending", "open", "leased", "fenced"}

// roles and states are the label values always exported, so that a series
// exists (at 0) for every role and state, not only the current one.
var (
	roles  = []string{status.RolePrimary, status.RoleStandby, status.RoleUnknown}
	states = shortStates()
)

func shortStates() []string {
	var out []string
	seen := map[string]bool{}
	for _, st := range fsm.States {
		if s := st.Short(); !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// snapshotCollector turns the current snapshot into metrics at each scrape.
type snapshotCollector struct{ s *Server }

// Describe sends the descriptors of every metric Collect may send.
func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descAge, descRole, descState, descFailedChecks, descFailovers, descHedged,
		descLastFailover, descLastSuccess, descFenced, descPaused, descWritable, descStreaming, descLag, descTimeline, descConfigError,
		descLagBytes, descGuard, descLeaseLeft, descHeld, descKeepaliveTime, descKeepaliveCount} {
		ch <- d
	}
}

// Collect sends the metrics of the current snapshot.  Before the first
// snapshot only pg_keeper_up (0) is sent.  A stale snapshot is still
// reported, with pg_keeper_up 0 and its age.
func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	snap, age, problem := c.s.current()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		send(ch, d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descUp, b2f(snap != nil && problem == ""))
	if snap == nil {
		return
	}
	gauge(descAge, age.Seconds())
	role := snap.Role
	if role != status.RolePrimary && role != status.RoleStandby {
		role = status.RoleUnknown
	}
	for _, r := range roles {
		gauge(descRole, b2f(r == role), r)
	}
	known := false
	for _, st := range states {
		known = known || st == snap.State
		gauge(descState, b2f(st == snap.State), st)
	}
	if !known && snap.State != "" {
		gauge(descState, 1, snap.State)
	}
	gauge(descFailedChecks, float64(snap.ConsecutiveFailures))
	send(ch, descFailovers, prometheus.CounterValue, float64(snap.Failovers))
	send(ch, descHedged, prometheus.CounterValue, float64(snap.HedgedAnswers))
	gauge(descLastFailover, unix(snap.LastFailoverAt))
	gauge(descLastSuccess, unix(snap.LastSuccess))
	gauge(descFenced, b2f(snap.Fenced))
	gauge(descPaused, b2f(snap.Paused))
	gauge(descWritable, b2f(snap.Writable))
	gauge(descStreaming, b2f(snap.Streaming))
	if snap.Role == status.RoleStandby {
		gauge(descLag, snap.ReplayLagSeconds)
		if snap.ReplayLagBytes >= 0 {
			gauge(descLagBytes, float64(snap.ReplayLagBytes))
		}
	}
	if snap.Guard != "" {
		for _, m := range guardModes {
			gauge(descGuard, b2f(m == snap.Guard), m)
		}
	}
	if snap.Guard == "leased" {
		left := 0.0
		if !snap.WritableUntil.IsZero() {
			left = max(snap.WritableUntil.Sub(c.s.now()).Seconds(), 0)
		}
		gauge(descLeaseLeft, left)
	}
	gauge(descHeld, b2f(snap.PromotionHeld != ""))
	gauge(descTimeline, float64(snap.Timeline))
	gauge(descConfigError, b2f(snap.ConfigError != ""))
	if snap.KeepaliveTime > 0 {
		gauge(descKeepaliveTime, snap.KeepaliveTime.Seconds())
		gauge(descKeepaliveCount, float64(snap.KeepaliveCount))
	}
}

// send makes a constant metric; an invalid one (a label value that is not
// UTF-8) is sent as an invalid metric, which the handler reports and skips,
// instead of panicking as MustNewConstMetric would.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}
